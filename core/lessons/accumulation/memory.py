"""memory: one effective step of `batch` samples split into k micro-batches, for each k.

The activations one micro-batch keeps for backward (about 1/k of the full batch's) and the time per
step and per sample. Each micro-batch's backward frees its saved tensors before the next forward,
so the most held at once is the largest micro-batch's. Every k starts from the same generator state,
so a run of one k gives exactly the numbers of that k inside a run of many (the page runs one k at a time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.accumulation import timed
from core.lessons.accumulation.model import MODELS, ModelSpec, model_context
from core.measure import cuda_peak_bytes, time_call
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field, shape_spec


@dataclass(frozen=True)
class MemoryParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=256, metadata=ladder(8, 1024))  # B: samples per effective step
    accum_steps: tuple[int, ...] = field(default=(1, 2, 4, 8, 16), metadata=shape_spec(max_dims=8, lo=1, hi=1024, sep=","))
    width: int = field(default=256, metadata=ladder(8, 1024))  # units (MLP) or channels (CNN) per hidden block
    depth: int = field(default=4, metadata=bounds(1, 8))  # hidden blocks: layer -> ReLU
    min_run_time: float = timed.min_run_time_field()
    seed: int = seed_field()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no norm layer)."""
        return ModelSpec(self.model, self.width, self.depth)

    def work_seconds(self) -> float:
        """Return the estimated seconds of one effective step for every k (one CPU thread)."""
        spec = self.spec()
        compute = len(self.accum_steps) * 3 * self.batch * timed.forward_macs(spec) / timed.MACS_PER_SECOND
        return compute + self._fixed_seconds()

    def _fixed_seconds(self) -> float:
        """Return the estimated per-micro-batch costs of one step of every k: they grow with the number of micro-batches."""
        return sum(self.accum_steps) * timed.micro_batch_seconds(self.spec())

    def estimate_work(self) -> float:
        """Return the multiply-adds (and their equivalent in fixed costs) of the steps beyond the timer's min_run_time."""
        return timed.macs_of_seconds(self.work_seconds())

    def validate(self) -> None:
        super().validate()
        if any(k > self.batch for k in self.accum_steps):
            raise InvalidParams("accum_steps", "more_than_batch", batch=self.batch)
        if len(set(self.accum_steps)) != len(self.accum_steps):
            raise InvalidParams("accum_steps", "duplicate")
        layers = sum(self.accum_steps) * (self.depth + 2) * timed.LAYER_SECONDS
        if layers > timed.MAX_WORK_SECONDS / 2:
            # Many micro-batches cost time whatever their size: the number of them is what to lower.
            most = int(timed.MAX_WORK_SECONDS / 2 / ((self.depth + 2) * timed.LAYER_SECONDS))
            raise InvalidParams("accum_steps", "too_many_micro_batches", max=most)
        timed.check_work(self, least_batch=max(8, *self.accum_steps))

    def estimate_bytes(self) -> int:
        spec = self.spec()
        largest = -(-self.batch // min(self.accum_steps, default=1))  # samples of the largest micro-batch
        per_sample = timed.saved_bytes_per_sample(spec) + timed.transient_bytes_per_sample(spec)
        data = 2 * self.batch * (4 * math.prod(spec.input_shape()) + 8)  # the batch and its micro-batch copies
        # Parameters, gradients and the optimizer's temporaries; the largest micro-batch's activations.
        return 12 * spec.parameter_count() + data + largest * per_sample + (1 << 20)


@dataclass(frozen=True)
class AccumMemory:
    """One k: the effective step of `batch` samples as k micro-batches."""

    accum_steps: int  # k
    micro_batches: tuple[int, ...]  # samples per micro-batch (torch.tensor_split sizes), summing to batch
    saved_bytes: int  # bytes of activations saved for backward by the largest micro-batch, counted with saved-tensor hooks:
    # the most held at once, since each micro-batch's backward frees them before the next forward
    loss: float  # the accumulated loss of the first step: sum of each micro-batch's mean loss * n_i / batch
    cuda_baseline_bytes: int | None  # CUDA: torch.cuda.memory_allocated before the step; None on the CPU
    cuda_peak_bytes: int | None  # CUDA: torch.cuda.max_memory_allocated during the step (absolute); None on the CPU
    time_median: float  # seconds per effective step (zero_grad, k forward + backward, SGD step), median
    time_iqr: float  # interquartile range of the per-block times, seconds
    times: np.ndarray  # (blocks,) seconds per step of each timed block
    time_per_sample: float  # time_median / batch, seconds


@dataclass(frozen=True)
class MemoryResult:
    model: str
    batch: int
    device: str  # "cpu" or "cuda": the CUDA fields are None on the CPU
    parameter_bytes: int  # bytes of the network's weights (float32)
    gradient_bytes: int  # bytes of their .grad after a step (the same: one float32 per weight)
    steps: tuple[AccumMemory, ...]  # one per k, in the order of accum_steps


def micro_batch_sizes(batch: int, k: int) -> tuple[int, ...]:
    """Return the sizes torch.tensor_split gives when it splits `batch` samples into k parts (larger first)."""
    return tuple(batch // k + (1 if i < batch % k else 0) for i in range(k))


def _accum_step(p: MemoryParams, k: int, state: torch.Tensor, ctx: RunContext) -> tuple[AccumMemory, int, int]:
    """Return the measurements of one k, with the parameter and gradient bytes."""
    net, X, y = timed.setup(p.spec(), p.batch, state, ctx)
    # Each micro-batch in storage of its own, as a data loader delivers it: a view into the whole batch
    # would keep (and be counted as) the whole batch's storage.
    micro = [(Xi.clone(), yi.clone()) for Xi, yi in zip(torch.tensor_split(X, k), torch.tensor_split(y, k), strict=True)]
    del X, y
    optimizer = torch.optim.SGD(net.parameters(), lr=timed.LR)
    weights = list(net.parameters())

    def micro_loss(Xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        # Weighted by n_i / B, the accumulated gradient is the full batch's mean-loss gradient.
        return F.cross_entropy(net(Xi), yi) * (yi.shape[0] / p.batch)

    def step() -> None:
        optimizer.zero_grad()
        for Xi, yi in micro:
            torch.autograd.backward(micro_loss(Xi, yi))  # frees this micro-batch's saved activations
        optimizer.step()

    # The first step, measured: the largest micro-batch comes first and its saved tensors are the peak.
    optimizer.zero_grad()
    loss, saved = timed.run_saving(partial(micro_loss, *micro[0]), exclude=weights)
    torch.autograd.backward(loss)
    losses = [loss.detach()]
    for Xi, yi in micro[1:]:
        loss = micro_loss(Xi, yi)
        torch.autograd.backward(loss)
        losses.append(loss.detach())
    optimizer.step()
    total = float(torch.stack(losses).sum().item())
    grad_bytes = timed.gradient_bytes(net)
    baseline = peak = None
    if ctx.device.type == "cuda":
        baseline, peak = cuda_peak_bytes(step, ctx.device)
    t = time_call(step, ctx.device, p.min_run_time)
    sizes = tuple(Xi.shape[0] for Xi, _ in micro)
    row = AccumMemory(k, sizes, saved, total, baseline, peak, t.median, t.iqr, timed.block_times(t), t.median / p.batch)
    return row, timed.parameter_bytes(net), grad_bytes


def run(p: MemoryParams, ctx: RunContext) -> MemoryResult:
    """Time one effective step for each k and count the activations its largest micro-batch saves."""
    state = ctx.generator.get_state()
    rows = []
    param_bytes = grad_bytes = 0
    for k in p.accum_steps:
        ctx.check_deadline()
        row, param_bytes, grad_bytes = _accum_step(p, k, state, ctx)
        rows.append(row)
    return MemoryResult(p.model, p.batch, ctx.device.type, param_bytes, grad_bytes, tuple(rows))


def context(p: MemoryParams, device_type: str) -> dict[str, Any]:
    """Return what the script template reads: on CUDA it also prints the allocator's peak per step."""
    return {
        **model_context(p.spec(), device_type=device_type),
        "cuda": device_type == "cuda",
        **timed.measure_context(p.min_run_time),
        "batch": p.batch,
        "accum_steps": repr(p.accum_steps),
        "seed": p.seed,
        "lr": timed.LR,
    }


def shown(r: MemoryResult) -> list[float | str]:
    """Return each k, its micro-batch sizes and its saved bytes, as the table shows them (not the times)."""
    return [n for s in r.steps for n in (s.accum_steps, *s.micro_batches, s.saved_bytes)]


MEMORY = Experiment(
    "memory",
    MemoryParams,
    run,
    "accumulation_memory.py.j2",
    context,
    exclusive=True,
    sweep="accum_steps",
    shown=shown,
    examples=(
        MemoryParams(batch=24, accum_steps=(1, 5, 24), width=16, depth=2, min_run_time=0.05, seed=1),
        MemoryParams(model="cnn", batch=10, accum_steps=(1, 3), width=8, depth=2, min_run_time=0.05),
    ),
)

# The fraction of k = 1's saved activations each option means.
FRACTIONS = {"same": 1.0, "half": 0.5, "quarter": 0.25}


def _quarter_answer(results: Any) -> str:
    """Return the option nearest to the ratio of k = 4's saved bytes to k = 1's (a CNN: the chart opens on the MLP)."""
    one, four = (part.steps[0] for part in results)  # a sweep experiment answers with one result per k
    ratio = four.saved_bytes / one.saved_bytes
    return min(FRACTIONS, key=lambda option: abs(FRACTIONS[option] - ratio))


QUARTER = Prediction(
    "memory",
    MEMORY,
    MemoryParams(model="cnn", batch=64, accum_steps=(1, 4), width=32),
    options=tuple(FRACTIONS),
    answer=_quarter_answer,
    question="memory.predict_q",
    why="memory.predict_why",
)
