"""savers: one training step in fp32, under bf16 / fp16 autocast, and with activation checkpointing.

For each mode: the activations saved for backward, the time per step, the loss, and how far the
gradient is from fp32's. With non-reentrant checkpointing (torch 2.13) every checkpointed segment
stores its input with `ctx.save_for_backward` *outside* its own hooks, so our outer hooks see
exactly what is kept (the segment inputs), while the tensors saved inside the segment go to
checkpoint's inner hooks and are not kept: they are recomputed during backward. That recomputation
briefly holds one segment's saved tensors again; `recompute_bytes` reports them for the largest
segment. (Each checkpoint call also stashes the RNG state, about 5 KiB on the CPU: not counted.)
Checkpointing a single (Linear, ReLU) block saves nothing here, because such a block keeps only its
input and output, which its neighbours keep anyway: hence `blocks_per_checkpoint`, default 2.
Every mode starts from the same generator state, so a run of one mode gives exactly the numbers of
that mode inside a run of many. The speed lesson shows this experiment too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.accumulation import timed
from core.lessons.accumulation.model import CHANNELS, CLASSES, IN_FEATURES, MODELS, ModelSpec, model_context
from core.measure import cuda_peak_bytes, time_call
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fp32", "bf16", "fp16", "checkpoint")
MODE_COST = {"fp32": 1.0, "bf16": 2.0, "fp16": 1.0, "checkpoint": 4 / 3}  # relative step cost (checkpoint: one more forward)


@dataclass(frozen=True)
class SaversParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=256, metadata=ladder(8, 1024))
    width: int = field(default=256, metadata=ladder(8, 1024))
    depth: int = field(default=4, metadata=bounds(1, 8))
    modes: tuple[str, ...] = field(default=MODES, metadata=choices(*MODES))
    # Hidden blocks per torch.utils.checkpoint call (the last segment may be shorter; more than depth is one segment).
    blocks_per_checkpoint: int = field(default=2, metadata=bounds(1, 8))
    min_run_time: float = timed.min_run_time_field()
    seed: int = seed_field()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no norm layer)."""
        return ModelSpec(self.model, self.width, self.depth)

    def roles(self) -> dict[str, str]:
        """Return the fields this choice of modes reads (blocks_per_checkpoint only with checkpointing)."""
        names = [f.name for f in self.specs()]
        return {n: n for n in names if n != "blocks_per_checkpoint" or "checkpoint" in self.modes}

    def segments(self) -> tuple[int, ...]:
        """Return the hidden blocks of each checkpointed segment, e.g. (2, 2) for depth 4."""
        every = min(self.blocks_per_checkpoint, self.depth)
        return tuple(min(every, self.depth - start) for start in range(0, self.depth, every))

    def work_seconds(self) -> float:
        """Return the estimated seconds of one step of every mode plus the fp32 reference step (one CPU thread)."""
        compute = self._steps() * 3 * self.batch * timed.forward_macs(self.spec()) / timed.MACS_PER_SECOND
        return compute + self._fixed_seconds()

    def _steps(self) -> float:
        """Return the full steps of compute one step of every mode costs, with the reference step (a quarter of a mode)."""
        return sum(MODE_COST[m] for m in self.modes) + 1 / timed.CALLS

    def _fixed_seconds(self) -> float:
        """Return the estimated per-pass costs of one step of every mode and of the reference step."""
        return (len(self.modes) + 1) * timed.micro_batch_seconds(self.spec())

    def estimate_work(self) -> float:
        """Return the multiply-adds (and their equivalent in fixed costs) of the steps beyond the timer's min_run_time."""
        return timed.macs_of_seconds(self.work_seconds())

    def validate(self) -> None:
        super().validate()
        if not self.modes:
            raise InvalidParams("modes", "empty")
        timed.check_work(self)

    def estimate_bytes(self) -> int:
        spec = self.spec()
        per_sample = timed.saved_bytes_per_sample(spec) + timed.transient_bytes_per_sample(spec)
        data = self.batch * (4 * math.prod(spec.input_shape()) + 8)
        # Parameters, gradients, the optimizer's temporaries, half-precision weight copies and the fp32
        # reference gradient; three float64 copies of the largest weight while the gradients are compared;
        # the batch's activations (a 16-bit mode keeps at most fp32's, besides its weight copies).
        w, n_in = spec.width, IN_FEATURES if spec.model == "mlp" else 9 * CHANNELS
        largest = max(n_in * w, w * w if spec.model == "mlp" else 9 * w * w, w * CLASSES)
        return 18 * spec.parameter_count() + 24 * largest + data + self.batch * per_sample + (1 << 20)


@dataclass(frozen=True)
class SaverRun:
    """One mode's training step (forward, backward, SGD step)."""

    mode: str  # one of MODES
    unavailable: str | None  # message key when this device cannot run the mode (then the numbers are 0 or nan)
    saved_bytes: int  # bytes saved for backward (activations, and autocast's half-precision weight copies), counted
    # with saved-tensor hooks: what is held between forward and backward
    weight_copy_bytes: int  # of saved_bytes, autocast's 16-bit copies of weights (bf16, fp16; else 0): activations are the rest
    recompute_bytes: int  # checkpoint: bytes the largest segment's recomputation saves again, briefly, in backward; else 0
    cuda_baseline_bytes: int | None  # CUDA: torch.cuda.memory_allocated before the step; None on the CPU
    cuda_peak_bytes: int | None  # CUDA: torch.cuda.max_memory_allocated during the step (absolute); None on the CPU
    loss: float  # cross-entropy of the first step (the same weights and batch for every mode)
    grad_rel_error: float  # ||g - g_fp32|| / ||g_fp32|| over all weights, the first step's gradient
    time_median: float  # seconds per step, median
    time_iqr: float  # interquartile range of the per-block times, seconds
    times: np.ndarray  # (blocks,) seconds per step of each timed block


@dataclass(frozen=True)
class SaversResult:
    model: str
    batch: int
    device: str  # "cpu" or "cuda": the CUDA fields are None on the CPU
    parameter_bytes: int  # bytes of the network's weights (float32 in every mode: autocast casts copies)
    segments: tuple[int, ...]  # hidden blocks per checkpointed segment
    runs: tuple[SaverRun, ...]  # one per mode, in the order of modes


def unavailable_reason(mode: str, model: str, device: torch.device) -> str | None:
    """Return why `mode` cannot run on this device (a message key under savers.unavailable), or None when it can."""
    if mode not in HALF:
        return None
    dtype = HALF[mode]
    if not torch.amp.is_autocast_available(device.type):
        return "autocast_unsupported"
    if device.type == "cuda" and mode == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16_unsupported"
    if device.type == "cpu" and model == "cnn":
        # torch 2.13's CPU float16 convolution backward is a slow reference kernel (measured 400x slower
        # than float32 at the lesson's sizes); bfloat16 is fast only where oneDNN supports it.
        if mode == "fp16":
            return "fp16_conv_slow"
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "bf16_conv_slow"
    # Autocast that does not support a dtype warns and runs in float32: check that it really casts.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device.type, dtype=dtype):
                probe = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except RuntimeError:
        return "autocast_failed"
    return None if probe.dtype == dtype else "autocast_ignored"


def mode_loss(net: nn.Sequential, X: torch.Tensor, y: torch.Tensor, mode: str, segments: tuple[int, ...]) -> torch.Tensor:
    """Return the cross-entropy of net on X, y computed the way `mode` computes it (the forward pass only)."""
    if mode in HALF:
        with torch.autocast(X.device.type, dtype=HALF[mode]):
            return F.cross_entropy(net(X), y)  # autocast runs cross_entropy in float32
    if mode == "checkpoint":
        h, start = X, 0
        for blocks in segments:
            segment = net[3 * start : 3 * (start + blocks)]  # (layer, norm, ReLU) per hidden block
            # Keeps only the segment's input; the segment's forward runs again during backward.
            h = checkpoint(segment, h, use_reentrant=False)
            start += blocks
        return F.cross_entropy(net[3 * start :](h), y)
    return F.cross_entropy(net(X), y)


def _recompute_bytes(net: nn.Sequential, X: torch.Tensor, segments: tuple[int, ...]) -> int:
    """Return the bytes the largest segment saves when checkpoint recomputes it (its input excluded: kept anyway)."""
    weights, h, start, most = list(net.parameters()), X, 0, 0
    for blocks in segments:
        segment = net[3 * start : 3 * (start + blocks)]
        x_in = h.detach().requires_grad_(h.requires_grad)  # as checkpoint's recomputation sees it
        h, saved = timed.run_saving(partial(segment, x_in), exclude=[*weights, x_in])
        # Free this graph: measure's pack hook keeps the live tensors, and a saved output (ReLU's) then forms
        # a reference cycle with its grad_fn in C++ that only a backward pass breaks (gc cannot).
        torch.autograd.backward(h, torch.zeros_like(h))
        most, start = max(most, saved), start + blocks
    return most


def _saver_run(p: SaversParams, mode: str, state: torch.Tensor, reference: list[torch.Tensor], ctx: RunContext) -> SaverRun:
    """Return the measurements of one mode's training step."""
    reason = unavailable_reason(mode, p.model, ctx.device)
    if reason is not None:
        return SaverRun(mode, reason, 0, 0, 0, None, None, math.nan, math.nan, math.nan, math.nan, np.zeros(0))
    net, X, y = timed.setup(p.spec(), p.batch, state, ctx)
    segments = p.segments()
    optimizer = torch.optim.SGD(net.parameters(), lr=timed.LR)
    scaler = torch.amp.GradScaler(ctx.device.type) if mode == "fp16" else None  # fp16 gradients underflow unscaled

    def backward_and_step(loss: torch.Tensor, before_step: Callable[[], None] = lambda: None) -> None:
        if scaler is None:
            torch.autograd.backward(loss)
            before_step()
            optimizer.step()
        else:
            torch.autograd.backward(scaler.scale(loss))
            scaler.unscale_(optimizer)  # the gradients as fp32 would have them (step skips them if inf or nan)
            before_step()
            scaler.step(optimizer)
            scaler.update()

    def step() -> None:
        optimizer.zero_grad()
        backward_and_step(mode_loss(net, X, y, mode, segments))

    optimizer.zero_grad()
    loss, saved = timed.run_saving(partial(mode_loss, net, X, y, mode, segments), exclude=net.parameters())
    errors: list[float] = []
    backward_and_step(loss, lambda: errors.append(timed.relative_error(net, reference)))
    recompute = _recompute_bytes(net, X, segments) if mode == "checkpoint" else 0
    copies = timed.weight_copy_bytes(partial(mode_loss, net, X, y, mode, segments), net) if mode in HALF else 0
    baseline = peak = None
    if ctx.device.type == "cuda":
        baseline, peak = cuda_peak_bytes(step, ctx.device)
    t = time_call(step, ctx.device, p.min_run_time)
    return SaverRun(
        mode,
        None,
        saved,
        copies,
        recompute,
        baseline,
        peak,
        float(loss.item()),
        errors[0],
        t.median,
        t.iqr,
        timed.block_times(t),
    )


def run(p: SaversParams, ctx: RunContext) -> SaversResult:
    """Run one training step per mode from the same weights and batch; count, time and compare each."""
    state = ctx.generator.get_state()
    net, X, y = timed.setup(p.spec(), p.batch, state, ctx)
    torch.autograd.backward(F.cross_entropy(net(X), y))
    reference = [t.grad.detach().clone() for t in net.parameters() if t.grad is not None]  # what every mode is compared with
    param_bytes = timed.parameter_bytes(net)
    del net, X, y
    runs = []
    for mode in p.modes:
        ctx.check_deadline()
        runs.append(_saver_run(p, mode, state, reference, ctx))
    return SaversResult(p.model, p.batch, ctx.device.type, param_bytes, p.segments(), tuple(runs))


def context(p: SaversParams, device_type: str) -> dict[str, Any]:
    """Return what the script template reads, for the device type the page ran on (slow CPU modes skipped there)."""
    return {
        **model_context(p.spec(), device_type=device_type),
        "device": device_type,
        "cuda": device_type == "cuda",
        **timed.measure_context(p.min_run_time),
        "segments": repr(p.segments()),
        "seed": p.seed,
        "batch": p.batch,
        "modes": repr(p.modes),
        "lr": timed.LR,
        "skip_slow_convolutions": p.model == "cnn" and device_type == "cpu",
    }


def shown(r: SaversResult) -> list[float | str]:
    """Return the table's bytes, loss and gradient error per mode, and which modes were skipped (not the times)."""
    out: list[float | str] = []
    for m in r.runs:
        if m.unavailable is not None:
            out.append(f"{m.mode} skipped")
        else:
            out += [m.saved_bytes, m.recompute_bytes, m.loss, m.grad_rel_error]
    return out


SAVERS = Experiment(
    "savers",
    SaversParams,
    run,
    "accumulation_memory_savers.py.j2",
    context,
    exclusive=True,
    sweep="modes",
    shown=shown,
    examples=(
        SaversParams(batch=16, width=32, depth=3, min_run_time=0.05, seed=4),
        SaversParams(model="cnn", batch=8, width=8, depth=3, blocks_per_checkpoint=3, min_run_time=0.05),
    ),
)


def _checkpoint_answer(results: Any) -> str:
    """Return "exact" when checkpointing's gradient is fp32's to rounding, else "approximate"."""
    parts: Sequence[SaversResult] = results  # a sweep experiment answers with one result per mode
    return "exact" if parts[0].runs[0].grad_rel_error < 1e-6 else "approximate"


CHECKPOINT = Prediction(
    "checkpoint",
    SAVERS,
    SaversParams(model="cnn", batch=64, width=32, modes=("checkpoint",)),  # the table opens on the MLP
    options=("exact", "approximate"),
    answer=_checkpoint_answer,
    question="savers.predict_q",
    why="savers.predict_why",
)
