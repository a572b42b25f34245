"""Memory: what a forward pass keeps for backward (grad, no_grad, inference_mode; ReLU in place or not),
and gradient checkpointing's memory-for-time trade-off.

Saved bytes are counted with saved-tensor hooks (core.measure.saved_activation_bytes), which a CPU can
report; on CUDA the allocator's peak (core.measure.cuda_peak_bytes) is added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.speed.common import check_increasing
from core.measure import cuda_peak_bytes, saved_activation_bytes, time_call
from core.params import InvalidParams, Params, bounds, check_value, ladder, seed_field, shape_spec

GRAD_MODES = ("grad", "no_grad", "inference_mode")
RELUS = ("out_of_place", "in_place")
# One run does at most this many FLOPs (a few seconds on one CPU core): six forward passes, then per segments
# value one counted forward pass and STEPS_PER_POINT training steps (the gradient check, the benchmark's
# warm-up, block-size estimate and blocks), each about STEP_PASSES forward passes' worth.
MEMORY_MAX_FLOPS = 1.5e11
STEPS_PER_POINT = 5
STEP_PASSES = 4  # forward 1, backward 2 (gradients of the input and of the weight), recomputation up to 1


@dataclass(frozen=True)
class FootprintParams(Params):
    # the width and batch sliders stop where the work limit does (for one sample, and for this width)
    width: int = field(default=512, metadata=ladder(16, 2048) | {"hi_of": "max_width"})
    depth: int = field(default=8, metadata=bounds(1, 32))  # blocks of Linear(width, width) + ReLU
    batch: int = field(default=64, metadata=ladder(1, 1024) | {"hi_of": "max_batch"})
    # checkpoint_sequential's segments, rising, each at most depth; () means every value 1..depth
    segments: tuple[int, ...] = field(default=(), metadata=shape_spec(max_dims=32, lo=1, hi=32, min_dims=0, sep=","))
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.2, 0.01))  # benchmark seconds per segments value
    seed: int = seed_field()

    def segment_values(self) -> tuple[int, ...]:
        """Return the segments values the run measures."""
        return self.segments or tuple(range(1, self.depth + 1))

    def work_per_sample(self) -> int:
        """Return the run's FLOPs per sample of the batch."""
        forward = 2 * self.width * self.width * self.depth
        return forward * (len(GRAD_MODES) * len(RELUS) + len(self.segment_values()) * (1 + STEPS_PER_POINT * STEP_PASSES))

    def max_width(self) -> int:
        """Return the widest layers for which one sample stays within the work limit (the work grows with width^2)."""
        per_width2 = self.work_per_sample() / self.width**2
        return math.isqrt(int(MEMORY_MAX_FLOPS // per_width2))

    def max_batch(self) -> int:
        """Return the largest batch within the work limit at this width and depth (at least 1)."""
        return max(1, int(MEMORY_MAX_FLOPS // self.work_per_sample()))

    def validate(self) -> None:
        """Raise InvalidParams for a bad field; over the work limit, name the widest layers or largest batch allowed.

        The limits are checked before the sliders' stops (hi_of), so a refusal says which limit it is.
        """
        for spec in self.specs():
            check_value(spec, getattr(self, spec.name))
        check_increasing("segments", self.segments)
        if any(s > self.depth for s in self.segments):
            raise InvalidParams("segments", "more_than_depth", max=self.depth)
        per_sample = self.work_per_sample()
        if per_sample > MEMORY_MAX_FLOPS:  # even one sample is too much: the layers are too wide
            raise InvalidParams("width", "too_large", max=self.max_width())
        if self.batch * per_sample > MEMORY_MAX_FLOPS:
            raise InvalidParams("batch", "too_large", max=int(MEMORY_MAX_FLOPS // per_sample))
        super().validate()

    def estimate_bytes(self) -> int:
        weights = self.depth * self.width * (self.width + 1) * 4
        activation = self.batch * self.width * 4
        # weights, their gradients and the plain run's gradients; X, R and every Linear and ReLU output, twice
        # (a recomputed segment's while the saved ones are alive)
        return 3 * weights + (4 * self.depth + 4) * activation

    def estimate_work(self) -> float:
        """Return the multiply-adds of every pass the run makes (benchmark's fewest steps; its blocks are bounded in time)."""
        return self.batch * self.work_per_sample() / 2


@dataclass(frozen=True)
class FootprintResult:
    activation_bytes: int  # one layer's output: batch * width * 4 bytes (float32)
    modes: tuple[str, ...]  # GRAD_MODES: axis 0 of the (a) tables
    relus: tuple[str, ...]  # RELUS: axis 1
    # (a) one forward pass, (3, 2) int64 bytes
    saved_bytes: np.ndarray  # what autograd keeps for backward (saved-tensor hooks; parameters excluded)
    new_bytes: np.ndarray  # storages the modules' outputs newly allocated, summed (in-place ReLU allocates none)
    new_tensors: np.ndarray  # how many such outputs
    cuda_peak_bytes: np.ndarray | None  # allocator peak during the pass above what was allocated before; None on the CPU
    # (b) checkpoint_sequential(net, s, X, use_reentrant=False), (k,) per segments value s
    segments: np.ndarray  # int64; s = 1 is the plain network (checkpoint_sequential checkpoints nothing then)
    ckpt_saved_bytes: np.ndarray  # int64 bytes kept for backward after the forward pass (hooks, see run)
    ckpt_theory_bytes: np.ndarray  # int64: checkpoint_saved_activations(depth, s) * activation_bytes
    ckpt_step_seconds: np.ndarray  # median seconds per training step (forward, loss, backward)
    ckpt_step_iqr: np.ndarray
    ckpt_grad_max_diff: np.ndarray  # max |grad - plain grad| over every weight and bias: recomputation is exact
    ckpt_cuda_peak_bytes: np.ndarray | None  # allocator peak during a training step; None on the CPU
    device: str
    gpu_only: tuple[str, ...]  # ("cuda_peak",) on the CPU


def checkpoint_saved_activations(depth: int, segments: int) -> int:
    """Return how many activations (batch x width each) checkpoint_sequential keeps for backward.

    It cuts the depth blocks into segments of depth // segments blocks; each of the first segments - 1
    segments keeps only its input; the last segment (the rest) runs plainly and keeps its input and each
    block's output. segments = 1: everything, depth + 1. The fewest near segments = sqrt(depth).
    """
    size = depth // segments
    return (segments - 1) + (depth - (segments - 1) * size) + 1


def mlp(p: FootprintParams, ctx: RunContext) -> tuple[nn.Sequential, list[nn.ReLU]]:
    """Return depth blocks of Linear(width, width) + ReLU (nn.Linear's init, drawn from ctx.generator) and their ReLUs."""
    relus = [nn.ReLU() for _ in range(p.depth)]
    # Meta first: nn.Linear would draw its default weights from the global RNG, which the run does not own.
    blocks = [nn.Sequential(nn.Linear(p.width, p.width, device="meta"), relu) for relu in relus]
    net = nn.Sequential(*blocks).to_empty(device=ctx.device)
    bound = 1 / math.sqrt(p.width)  # kaiming_uniform_(a=sqrt(5)) and the bias's uniform: both +-1/sqrt(fan_in)
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-bound, bound, generator=ctx.generator)
    return net, relus


def new_outputs(net: nn.Module, fn: Callable[[], object]) -> tuple[int, int]:
    """Return (how many, bytes) of module outputs that fn() allocated anew (not written into an input).

    Counted per call, not per address: a freed output's memory is reused by the next at once.
    """
    count, total = 0, 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal count, total
        storage = output.untyped_storage()
        if all(storage.data_ptr() != t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)):
            count += 1
            total += storage.nbytes()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not isinstance(m, nn.Sequential)]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return count, total


def checkpointed(net: nn.Sequential, segments: int, X: torch.Tensor) -> torch.Tensor:
    """Return net(X) run by checkpoint_sequential in `segments` segments, non-reentrant (torch's recommendation)."""
    out: torch.Tensor = checkpoint_sequential(net, segments, X, use_reentrant=False)  # type: ignore[no-untyped-call]
    return out


def grad_context(mode: str) -> Any:
    """Return a fresh context manager for the grad mode: enable_grad, no_grad or inference_mode."""
    return {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]()


def run(p: FootprintParams, ctx: RunContext) -> FootprintResult:
    """Count a forward pass's memory per grad mode and ReLU kind; then checkpointing's memory and time per segments.

    The saved-tensor hooks count honestly under non-reentrant checkpointing: checkpoint saves each
    segment's input through autograd (seen by the hooks) and swaps in its own hooks inside the segment,
    which keep no tensor, only a way to recompute it; the counts equal checkpoint_saved_activations.
    """
    device, cuda, g = ctx.device, ctx.device.type == "cuda", ctx.generator
    net, relus = mlp(p, ctx)
    params = list(net.parameters())
    X = torch.randn(p.batch, p.width, generator=g, device=device)
    R = torch.randn(p.batch, p.width, generator=g, device=device)  # dloss/doutput: a fixed random read-out
    shape = (len(GRAD_MODES), len(RELUS))
    saved, new_bytes, new_tensors = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    peaks = np.zeros(shape, np.int64) if cuda else None
    for i, mode in enumerate(GRAD_MODES):
        for j, relu in enumerate(RELUS):
            ctx.check_deadline()
            for module in relus:
                module.inplace = relu == "in_place"

            def forward(mode: str = mode) -> torch.Tensor:
                with grad_context(mode):
                    out: torch.Tensor = net(X)
                return out

            saved[i, j] = saved_activation_bytes(forward, params)
            new_tensors[i, j], new_bytes[i, j] = new_outputs(net, forward)
            if peaks is not None:
                before, peak = cuda_peak_bytes(forward, device)
                peaks[i, j] = peak - before
    for module in relus:
        module.inplace = False

    def step(segments: int) -> None:
        for param in params:
            param.grad = None
        torch.autograd.backward((checkpointed(net, segments, X) * R).sum())

    step(1)  # one segment: checkpoint_sequential runs the blocks plainly
    plain = [param.grad.clone() for param in params if param.grad is not None]
    segment_values = p.segment_values()
    k = len(segment_values)
    ckpt_saved, diffs = np.zeros(k, np.int64), np.zeros(k)
    step_seconds, step_iqr = np.zeros(k), np.zeros(k)
    ckpt_peaks = np.zeros(k, np.int64) if cuda else None
    for i, s in enumerate(segment_values):
        ctx.check_deadline()
        ctx.progress(i, k)
        ckpt_saved[i] = saved_activation_bytes(partial(checkpointed, net, s, X), params)
        step(s)
        diffs[i] = max(
            float((param.grad - ref).abs().max().item())
            for param, ref in zip(params, plain, strict=True)
            if param.grad is not None
        )
        ctx.check_deadline()
        timing = time_call(partial(step, s), device, p.min_run_time)
        step_seconds[i], step_iqr[i] = timing.median, timing.iqr
        if ckpt_peaks is not None:
            before, peak = cuda_peak_bytes(partial(step, s), device)
            ckpt_peaks[i] = peak - before
    activation = p.batch * p.width * 4
    theory = np.array([checkpoint_saved_activations(p.depth, s) * activation for s in segment_values], dtype=np.int64)
    return FootprintResult(
        activation_bytes=activation,
        modes=GRAD_MODES,
        relus=RELUS,
        saved_bytes=saved,
        new_bytes=new_bytes,
        new_tensors=new_tensors,
        cuda_peak_bytes=peaks,
        segments=np.array(segment_values, dtype=np.int64),
        ckpt_saved_bytes=ckpt_saved,
        ckpt_theory_bytes=theory,
        ckpt_step_seconds=step_seconds,
        ckpt_step_iqr=step_iqr,
        ckpt_grad_max_diff=diffs,
        ckpt_cuda_peak_bytes=ckpt_peaks,
        device=device.type,
        gpu_only=() if cuda else ("cuda_peak",),
    )


def context(p: FootprintParams, device_type: str) -> dict[str, Any]:
    """Return the values memory_footprint.py.j2 reads, for the device type the page ran on (CUDA adds allocator peaks)."""
    values = {"batch": p.batch, "width": p.width, "depth": p.depth, "seed": p.seed}
    device = {"device": device_type, "cuda": device_type == "cuda"}
    return values | device | {"segment_values": list(p.segment_values()), "min_run_time": repr(p.min_run_time)}


def shown(r: FootprintResult) -> list[float | str]:
    """Return what the page shows that the script prints: bytes kept and allocated per mode, and per segments value."""
    out: list[float | str] = [f"activation bytes {r.activation_bytes}"]
    for i, mode in enumerate(r.modes):
        for j, relu in enumerate(r.relus):
            out.append(f"{mode} {relu}: saved {r.saved_bytes[i, j]} B, new {r.new_tensors[i, j]} tensors {r.new_bytes[i, j]} B")
    out += [f"segments {s}: saved {saved} B" for s, saved in zip(r.segments.tolist(), r.ckpt_saved_bytes.tolist(), strict=True)]
    return out


def checkpoint_kept_answer(r: FootprintResult) -> str:
    """Return how many activations (batch x width each) the first measured segments value kept, counted by the hooks."""
    return f"{r.ckpt_saved_bytes[0] / r.activation_bytes:g}"


FOOTPRINT = Experiment(
    "footprint",
    FootprintParams,
    run,
    script="memory_footprint.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(
        FootprintParams(width=32, depth=4, batch=8, min_run_time=0.01),
        FootprintParams(width=16, depth=5, batch=4, segments=(2, 5), min_run_time=0.01),
    ),
)
# Every grad mode and every segments value for 8 blocks is on the page by default, and the prose lists them: the
# question asks for 16 blocks in 4 segments (sqrt(16)), where the unchecked last segment keeps 4 + 1 activations.
CHECKPOINT_KEPT = Prediction(
    "checkpoint_16_in_4",
    FOOTPRINT,
    FootprintParams(depth=16, segments=(4,)),
    options=("4", "5", "8", "17"),
    answer=checkpoint_kept_answer,
)
