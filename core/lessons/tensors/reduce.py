"""Reductions with `dim` and `keepdim`, and `clamp`, on a small integer tensor drawn as grids.

A reduction over `dim` removes that axis (keepdim=False) or keeps it with size 1 (keepdim=True).
Only the kept size-1 axis lines the result up with x again, so `x - r` (or `x.gather(dim, i)` for
argmax) works; without it the shapes align from the right and the operation fails or, for some
shapes, silently pairs the wrong elements. Both are computed here, and the page shows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, first_line, to_numpy
from core.params import Params, bounds, choices, seed_field, shape_spec

REDUCE_OPS = ("sum", "mean", "max", "argmax", "clamp")


@dataclass(frozen=True)
class ReduceParams(Params):
    op: str = field(default="sum", metadata=choices(*REDUCE_OPS))
    shape: tuple[int, ...] = field(default=(3, 4), metadata=shape_spec(max_dims=3, lo=1, hi=6))
    dim: int = field(default=1, metadata=bounds(0, 2, hi_of="last_dim"))
    keepdim: bool = False
    low: float = field(default=2.0, metadata=bounds(-10.0, 10.0, 0.5))
    high: float = field(default=6.0, metadata=bounds(-10.0, 10.0, 0.5))
    seed: int = seed_field()

    def last_dim(self) -> int:
        """Return the largest dim the shape has (a reduction's dim is below len(shape))."""
        return len(self.shape) - 1

    def roles(self) -> dict[str, str]:
        """Return the fields the op reads: dim and keepdim for a reduction, the bounds for clamp."""
        names = ("op", "shape", "low", "high", "seed") if self.op == "clamp" else ("op", "shape", "dim", "keepdim", "seed")
        return {n: n for n in names}

    def estimate_bytes(self) -> int:
        """Return x, its results and their numpy copies (at most 216 elements), 8 bytes each, with room to spare."""
        return 216 * 8 * 12

    def estimate_work(self) -> float:
        """Return the element operations: drawing x, two reductions and two broadcasts back."""
        return 216.0 * 10


@dataclass(frozen=True)
class ReduceResult:
    op: str
    x: np.ndarray
    out: np.ndarray  # the reduction with the chosen keepdim, or clamp's output
    picked: np.ndarray  # bool, shape of x: the max (argmax) along dim, or the cells clamp changed
    shape_drop: tuple[int, ...]  # the reduction's shape with keepdim=False (clamp: x's shape)
    shape_keep: tuple[int, ...]  # with keepdim=True
    back_keep: np.ndarray | None  # x - r (argmax: x.gather(dim, i)) with keepdim=True
    back_drop: np.ndarray | None  # the same with keepdim=False, when torch accepts it
    back_drop_error: str | None  # torch's error for it
    back_drop_right: bool  # back_drop exists and equals back_keep


def reduce_expr(p: ReduceParams, keepdim: bool | None = None) -> str:
    """Return the statement that computes r, as Python."""
    if p.op == "clamp":
        return f"r = x.clamp(min={p.low:g}, max={p.high:g})"
    k = p.keepdim if keepdim is None else keepdim
    tail = ".values" if p.op == "max" else ""
    return f"r = x.{p.op}(dim={p.dim}, keepdim={k}){tail}"


def back_expr(p: ReduceParams) -> str:
    """Return how r goes back against x: x - r, or for argmax x.gather(dim, r) (the maxima)."""
    return f"x.gather({p.dim}, r)" if p.op == "argmax" else "x - r"


def _reduce(p: ReduceParams, x: torch.Tensor, keepdim: bool) -> torch.Tensor:
    """Return x reduced over p.dim by p.op."""
    if p.op == "sum":
        return x.sum(dim=p.dim, keepdim=keepdim)
    if p.op == "mean":
        return x.mean(dim=p.dim, keepdim=keepdim)
    if p.op == "max":
        return x.max(dim=p.dim, keepdim=keepdim).values
    return x.argmax(dim=p.dim, keepdim=keepdim)


def _back(p: ReduceParams, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Return r taken back against x: x - r, or x.gather(dim, r) for argmax."""
    return x.gather(p.dim, r) if p.op == "argmax" else x - r


def run(p: ReduceParams, ctx: RunContext) -> ReduceResult:
    """Draw x (integers 0..9 as float32), reduce it both ways or clamp it, and take the reduction back against x."""
    x = torch.randint(0, 10, p.shape, generator=ctx.generator, device=ctx.device).float()
    if p.op == "clamp":
        out = x.clamp(min=p.low, max=p.high)
        shape = tuple(out.shape)
        return ReduceResult(p.op, to_numpy(x), to_numpy(out), to_numpy(out != x), shape, shape, None, None, None, False)
    keep, drop = _reduce(p, x, True), _reduce(p, x, False)
    if p.op in ("max", "argmax"):
        index = x.argmax(dim=p.dim, keepdim=True)  # torch's own choice among ties
        picked = torch.zeros_like(x, dtype=torch.bool).scatter_(p.dim, index, True)
    else:
        picked = torch.ones_like(x, dtype=torch.bool)  # every element enters a sum or a mean
    back_keep = _back(p, x, keep)
    back_drop = error = None
    try:
        back_drop = _back(p, x, drop)
    except RuntimeError as e:
        error = first_line(e)
    right = back_drop is not None and back_drop.shape == back_keep.shape and bool(torch.equal(back_drop, back_keep))
    return ReduceResult(
        p.op,
        to_numpy(x),
        to_numpy(keep if p.keepdim else drop),
        to_numpy(picked),
        tuple(drop.shape),
        tuple(keep.shape),
        to_numpy(back_keep),
        None if back_drop is None else to_numpy(back_drop),
        error,
        right,
    )


def shown(r: ReduceResult) -> list[float | str]:
    """Return x, r, both shapes, and the broadcast back both ways (or torch's error), as the page shows them."""
    values: list[float | str] = [float(v) for v in (*r.x.ravel(), *r.out.ravel())]
    if r.op == "clamp":
        return values
    out: list[float | str] = [*values, f"keepdim=False: {r.shape_drop}", f"keepdim=True: {r.shape_keep}"]
    if r.back_keep is not None:
        out += [float(v) for v in r.back_keep.ravel()]
    if r.back_drop is not None:
        out += [float(v) for v in r.back_drop.ravel()]
    if r.back_drop_error is not None:
        out.append(r.back_drop_error)
    return out


def context(p: ReduceParams, device_type: str) -> Mapping[str, Any]:
    """Return what reduce.py.j2 reads: x's shape and seed, the statements for both keepdims and the way back."""
    return {
        "shape": p.shape,
        "seed": p.seed,
        "device": device_type,
        "clamp": p.op == "clamp",
        "expr": reduce_expr(p),
        "expr_drop": reduce_expr(p, keepdim=False),
        "expr_keep": reduce_expr(p, keepdim=True),
        "back": back_expr(p),
    }


REDUCE = Experiment(
    "reduce",
    ReduceParams,
    run,
    script="reduce.py.j2",
    context=context,
    shown=shown,
    examples=(
        ReduceParams(op="mean", shape=(4, 4), dim=1),  # x - r without keepdim runs, and is wrong
        ReduceParams(op="argmax", shape=(2, 3, 4), dim=1, keepdim=True, seed=3),
        ReduceParams(op="clamp", shape=(3, 5), low=7.0, high=3.0),  # min > max: every element becomes max
        ReduceParams(op="max", shape=(5,), dim=0),
    ),
)


def _shape_text(r: ReduceResult) -> str:
    """Return the shape of r without keepdim, as the options spell it."""
    return str(r.shape_drop)


SUM_SHAPE = Prediction(
    "reduce_shape",
    REDUCE,
    ReduceParams(shape=(2, 3, 4), dim=1),
    options=("(2, 4)", "(2, 1, 4)", "(3, 4)", "(2, 3)"),
    answer=_shape_text,
    question="reduce.predict_q",
    why="reduce.predict_why",
)
