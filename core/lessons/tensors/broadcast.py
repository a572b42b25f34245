"""Broadcasting: a + b for two shapes, aligned from the right, with the result's shape and the operands' strides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, first_line, to_numpy
from core.lessons.tensors.common import MAX_GRID, numel
from core.params import Params, shape_spec


@dataclass(frozen=True)
class BroadcastParams(Params):
    shape_a: tuple[int, ...] = field(default=(3, 1), metadata=shape_spec(max_dims=6, min_dims=0, lo=1, hi=8))
    shape_b: tuple[int, ...] = field(default=(4,), metadata=shape_spec(max_dims=6, min_dims=0, lo=1, hi=8))

    def result_numel(self) -> int:
        """Return the elements of a + b were every pair of sizes compatible (the larger size of each pair)."""
        dims = max(len(self.shape_a), len(self.shape_b))
        a = (1,) * (dims - len(self.shape_a)) + self.shape_a
        b = (1,) * (dims - len(self.shape_b)) + self.shape_b
        return numel([max(i, j) for i, j in zip(a, b, strict=True)])

    def estimate_bytes(self) -> int:
        """Return a + b and its numpy copy, and the operands, 8 bytes each."""
        return self.result_numel() * 8 * 3

    def estimate_work(self) -> float:
        """Return the element operations: the sum, and copying it to numpy."""
        return 3.0 * self.result_numel()


@dataclass(frozen=True)
class BroadcastResult:
    aligned_a: tuple[int | None, ...]  # right-aligned; None where a has no such dimension
    aligned_b: tuple[int | None, ...]
    status: tuple[str, ...]  # per dimension: equal | a_is_1 | b_is_1 | mismatch
    result_shape: tuple[int, ...] | None
    stride_a: tuple[int, ...] | None  # strides of a expanded to the result (0 = repeated, no copy)
    stride_b: tuple[int, ...] | None
    # The values are kept only when the page draws them (a + b has at most MAX_GRID cells): the
    # result is shared by the whole class through the cache, so it holds what the page shows.
    a: np.ndarray | None
    b: np.ndarray | None
    total: np.ndarray | None  # a + b
    torch_error: str | None


def dim_status(i: int | None, j: int | None) -> str:
    """Return how one aligned pair of sizes broadcasts: equal, a_is_1, b_is_1 or mismatch."""
    si, sj = 1 if i is None else i, 1 if j is None else j
    if si == sj:
        return "equal"
    if si == 1:
        return "a_is_1"
    if sj == 1:
        return "b_is_1"
    return "mismatch"


def run(p: BroadcastParams, ctx: RunContext) -> BroadcastResult:
    """Add a of shape_a and b of shape_b; report the alignment, result shape or torch's error."""
    dims = max(len(p.shape_a), len(p.shape_b))
    aligned_a = (None,) * (dims - len(p.shape_a)) + tuple(p.shape_a)
    aligned_b = (None,) * (dims - len(p.shape_b)) + tuple(p.shape_b)
    status = tuple(dim_status(i, j) for i, j in zip(aligned_a, aligned_b, strict=True))
    a = torch.arange(numel(p.shape_a), device=ctx.device).reshape(p.shape_a)
    b = 10 * torch.arange(numel(p.shape_b), device=ctx.device).reshape(p.shape_b)
    try:
        total = a + b
    except RuntimeError as e:
        return BroadcastResult(aligned_a, aligned_b, status, None, None, None, None, None, None, first_line(e))
    shape = tuple(total.shape)
    drawn = total.numel() <= MAX_GRID
    return BroadcastResult(
        aligned_a,
        aligned_b,
        status,
        shape,
        tuple(a.expand(shape).stride()),
        tuple(b.expand(shape).stride()),
        to_numpy(a) if drawn else None,
        to_numpy(b) if drawn else None,
        to_numpy(total) if drawn else None,
        None,
    )


def shown(r: BroadcastResult) -> list[float | str]:
    """Return the result's shape, the expanded strides and the values of a + b, or torch's error."""
    if r.torch_error is not None:
        return [r.torch_error]
    assert r.result_shape is not None and r.stride_a is not None and r.stride_b is not None
    values = [] if r.total is None else [float(v) for v in r.total.ravel()]
    return [
        f"result shape {r.result_shape}",
        f"a expanded strides {r.stride_a} (0 = repeated without copying)",
        f"b expanded strides {r.stride_b}",
        *values,
    ]


def context(p: BroadcastParams, device_type: str) -> Mapping[str, Any]:
    """Return what broadcast.py.j2 reads: the two shapes and their sizes."""
    return {"numel_a": numel(p.shape_a), "shape_a": p.shape_a, "numel_b": numel(p.shape_b), "shape_b": p.shape_b}


BROADCAST = Experiment(
    "broadcast",
    BroadcastParams,
    run,
    script="broadcast.py.j2",
    context=context,
    shown=shown,
    examples=(
        BroadcastParams((2, 3), (4,)),  # do not broadcast
        BroadcastParams((), (2, 1, 3)),
        BroadcastParams((8, 1, 6, 1), (7, 1, 5)),
    ),
)

BROADCAST_SHAPE = Prediction(
    "broadcast",
    BROADCAST,
    BroadcastParams(shape_a=(8, 1, 6, 1), shape_b=(7, 1, 5)),
    options=("(8, 7, 6, 5)", "(8, 1, 6, 5)", "(7, 6, 5)", "error"),
    answer=lambda r: "error" if r.result_shape is None else str(r.result_shape),
)
