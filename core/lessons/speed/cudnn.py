"""cudnn.benchmark off and on: a small conv stack timed per forward pass, for a fixed input shape and a varying one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.experiment import Experiment, RunContext
from core.lessons.speed.common import backend_flags, device_name
from core.measure import one_call_seconds
from core.params import InvalidParams, Params, bounds, check_value, choices, ladder, seed_field

SHAPES = ("fixed", "varying")
CUDNN_CHANNELS = 32
CUDNN_LAYERS = 3  # Conv2d(3x3, padding 1) + ReLU, three times; the first takes 3 channels
FIXED_SIDE = 64
VARYING_SIDES = tuple(range(48, 81, 2))  # 17 sides around FIXED_SIDE, one per iteration; longer runs cycle
WARM_UP_SIDE = 30  # one forward at a side no iteration uses: pays for lazy initialisation, tunes no shape
# Images pushed through the stack in one run (batch x iterations x modes x 2 flag settings): about 3 s on one CPU core.
CUDNN_MAX_IMAGES = 1600
MIN_ITERS = 5


@dataclass(frozen=True)
class CudnnParams(Params):
    batch: int = field(default=8, metadata=ladder(1, 64))
    # the slider stops at the most iterations the image limit allows for this batch and these shapes
    iters: int = field(default=10, metadata=bounds(MIN_ITERS, 50, hi_of="max_iters"))
    shapes: tuple[str, ...] = field(default=SHAPES, metadata=choices(*SHAPES))
    seed: int = seed_field()

    def max_iters(self) -> int:
        """Return the most iterations within CUDNN_MAX_IMAGES (never below the lowest iters)."""
        return max(MIN_ITERS, CUDNN_MAX_IMAGES // (self.batch * max(1, len(self.shapes)) * 2))

    def validate(self) -> None:
        """Raise InvalidParams for a bad field; over the image limit, name the most iterations allowed.

        The limit is checked before the slider's stop (hi_of), so a refusal says which limit it is.
        """
        for spec in self.specs():
            check_value(spec, getattr(self, spec.name))
        if not self.shapes:
            raise InvalidParams("shapes", "empty")
        per_iter = self.batch * len(self.shapes) * 2
        if per_iter * self.iters > CUDNN_MAX_IMAGES:
            raise InvalidParams("iters", "too_much_work", max=CUDNN_MAX_IMAGES // per_iter)
        super().validate()

    def estimate_bytes(self) -> int:
        side = max(VARYING_SIDES)
        images = (len(VARYING_SIDES) + 2) * self.batch * 3 * side * side  # every input is drawn before the clock runs
        activations = self.batch * side * side * 2 * CUDNN_CHANNELS  # no_grad: a layer's input and output at most
        weights = 9 * CUDNN_CHANNELS * (3 + (CUDNN_LAYERS - 1) * CUDNN_CHANNELS)
        return 4 * (images + 2 * (activations + weights))  # float32; as much again for convolution workspaces

    def estimate_work(self) -> float:
        """Return the multiply-adds of every forward pass: the warm-up, then each iteration per mode and flag."""
        passes = [side for mode in self.shapes for side in iteration_sides(mode, self.iters)] * 2
        return sum(stack_flops(self.batch, side) / 2 for side in [WARM_UP_SIDE, *passes])


@dataclass(frozen=True)
class CudnnResult:
    shapes: tuple[str, ...]  # the modes run, in order
    benchmark: tuple[bool, bool]  # (False, True): the second axis of seconds
    sides: np.ndarray  # (len(shapes), iters) int64: the input side of each iteration
    flops: np.ndarray  # (len(shapes), iters) int64: FLOPs of each iteration's forward pass
    seconds: np.ndarray  # (len(shapes), 2, iters) synchronised seconds of each forward pass
    median: np.ndarray  # (len(shapes), 2) median over the iterations
    total: np.ndarray  # (len(shapes), 2) sum over the iterations: autotuning included
    device: str
    device_name: str
    cudnn_version: int | None  # torch.backends.cudnn.version() on CUDA
    flag_has_effect: bool  # False on the CPU: there is no cuDNN, the flag steers nothing
    gpu_only: tuple[str, ...]  # ("cudnn",) on the CPU


def iteration_sides(mode: str, iters: int) -> tuple[int, ...]:
    """Return the input side of every iteration: always FIXED_SIDE, or VARYING_SIDES in turn."""
    if mode == "fixed":
        return (FIXED_SIDE,) * iters
    return tuple(VARYING_SIDES[i % len(VARYING_SIDES)] for i in range(iters))


def stack_flops(batch: int, side: int) -> int:
    """Return the FLOPs of one forward through the conv stack (2 * N * C_out * H * W * C_in * 9 per layer)."""
    total, c_in = 0, 3
    for _ in range(CUDNN_LAYERS):
        total += 2 * batch * CUDNN_CHANNELS * side * side * c_in * 9
        c_in = CUDNN_CHANNELS
    return total


def run(p: CudnnParams, ctx: RunContext) -> CudnnResult:
    """Time every forward pass of the conv stack with cudnn.benchmark off, then on, for each shape mode."""
    device, cuda, g = ctx.device, ctx.device.type == "cuda", ctx.generator
    weights, c_in = [], 3
    for _ in range(CUDNN_LAYERS):
        weights.append(torch.randn(CUDNN_CHANNELS, c_in, 3, 3, generator=g, device=device) * math.sqrt(2 / (9 * c_in)))
        c_in = CUDNN_CHANNELS
    images = {
        side: torch.randn(p.batch, 3, side, side, generator=g, device=device)
        for side in sorted({s for mode in p.shapes for s in iteration_sides(mode, p.iters)} | {WARM_UP_SIDE})
    }

    def forward(x: torch.Tensor) -> torch.Tensor:
        for w in weights:
            x = F.relu(F.conv2d(x, w, padding=1))
        return x

    seconds = np.zeros((len(p.shapes), 2, p.iters))
    with torch.no_grad():
        with backend_flags(device, cudnn_benchmark=False):
            forward(images[WARM_UP_SIDE])  # creates the cuDNN handle and workspace; autotunes nothing
        for m, mode in enumerate(p.shapes):
            for b, flag in enumerate((False, True)):
                with backend_flags(device, cudnn_benchmark=flag):
                    ctx.progress(2 * m + b, 2 * len(p.shapes))
                    for i, side in enumerate(iteration_sides(mode, p.iters)):
                        ctx.check_deadline()
                        # each call is the measurement: the first of a shape pays for autotuning
                        batch = images[side]
                        seconds[m, b, i] = one_call_seconds(lambda: forward(batch), device)  # noqa: B023
    sides = np.array([iteration_sides(mode, p.iters) for mode in p.shapes], dtype=np.int64)
    stack = np.array([[stack_flops(p.batch, int(s)) for s in row] for row in sides], dtype=np.int64)
    return CudnnResult(
        shapes=tuple(p.shapes),
        benchmark=(False, True),
        sides=sides,
        flops=stack,
        seconds=seconds,
        median=np.median(seconds, axis=2),
        total=seconds.sum(axis=2),
        device=device.type,
        device_name=device_name(device),
        cudnn_version=torch.backends.cudnn.version() if cuda else None,  # type: ignore[no-untyped-call]
        flag_has_effect=cuda and torch.backends.cudnn.is_available(),  # type: ignore[no-untyped-call]
        gpu_only=() if cuda else ("cudnn",),
    )


def context(p: CudnnParams, device_type: str) -> dict[str, Any]:
    """Return the values cudnn_benchmark.py.j2 reads (the script picks its device itself)."""
    return {
        "seed": p.seed,
        "channels": CUDNN_CHANNELS,
        "more_layers": CUDNN_LAYERS - 1,
        "fixed_side": FIXED_SIDE,
        "iters": p.iters,
        "varying_sides": list(VARYING_SIDES),
        "batch": p.batch,
        "warm_up_side": WARM_UP_SIDE,
        "shapes": list(p.shapes),
    }


def shown(r: CudnnResult) -> list[float | str]:
    """Return what the page shows that the script prints: the input sides per mode (and cuDNN's version on CUDA)."""
    out: list[float | str] = [f"{mode} sides {sides}" for mode, sides in zip(r.shapes, r.sides.tolist(), strict=True)]
    if r.cudnn_version is not None:
        out.append(f"cudnn {r.cudnn_version}")
    return out


CUDNN = Experiment(
    "cudnn",
    CudnnParams,
    run,
    script="cudnn_benchmark.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(CudnnParams(batch=1, iters=5), CudnnParams(batch=2, iters=5, shapes=("varying",), seed=3)),
)
