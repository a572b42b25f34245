"""Indexing: masked_select, assigning through a mask, nonzero, index_select and gather on a random integer matrix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, RunContext, first_line, to_numpy
from core.params import Params, bounds, choices, seed_field, shape_spec

INDEX_OPS = ("masked_select", "mask_assign", "nonzero", "index_select", "gather")
INDEX_ROLES: dict[str, tuple[str, ...]] = {
    "masked_select": ("threshold",),
    "mask_assign": ("threshold",),
    "nonzero": ("threshold",),
    "index_select": ("dim", "indices"),
    "gather": ("dim",),
}


@dataclass(frozen=True)
class IndexParams(Params):
    op: str = field(default="masked_select", metadata=choices(*INDEX_OPS))
    rows: int = field(default=4, metadata=bounds(1, 8))
    cols: int = field(default=5, metadata=bounds(1, 8))
    threshold: int = field(default=5, metadata=bounds(0, 9))
    dim: int = field(default=0, metadata=bounds(-2, 1))
    indices: tuple[int, ...] = field(default=(0, 2), metadata=shape_spec(max_dims=8, lo=0, hi=7))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields this op reads."""
        names = ("op", "rows", "cols", *INDEX_ROLES[self.op], "seed")
        return {n: n for n in names}

    def estimate_bytes(self) -> int:
        """Return x, the mask or index, the output and their numpy copies, 8 bytes each."""
        return self.rows * self.cols * 8 * 10

    def estimate_work(self) -> float:
        """Return the element operations: drawing x (and an index), the mask, the op, and the copies."""
        return 20.0 * self.rows * self.cols


@dataclass(frozen=True)
class IndexResult:
    x: np.ndarray
    picked: np.ndarray  # bool, shape of x: which elements of x the operation read
    index: np.ndarray | None  # the mask or index tensor used
    out: np.ndarray | None
    expr: str
    torch_error: str | None
    op: str = ""


def index_expr(p: IndexParams) -> str:
    """Return the code of the indexing operation on x."""
    return {
        "masked_select": f"torch.masked_select(x, x > {p.threshold})",
        "mask_assign": f"x[x > {p.threshold}] = 0",
        "nonzero": f"torch.nonzero(x > {p.threshold})",
        "index_select": f"torch.index_select(x, {p.dim}, torch.tensor({list(p.indices)}))",
        "gather": f"torch.gather(x, {p.dim}, index)",
    }[p.op]


def run(p: IndexParams, ctx: RunContext) -> IndexResult:
    """Apply one indexing operation to a random integer matrix; report which cells it read."""
    g = ctx.generator
    x = torch.randint(0, 10, (p.rows, p.cols), generator=g, device=ctx.device)
    x_np, expr = to_numpy(x), index_expr(p)
    mask = x > p.threshold
    try:
        if p.op == "masked_select":
            out = torch.masked_select(x, mask)
            return IndexResult(x_np, to_numpy(mask), to_numpy(mask), to_numpy(out), expr, None, p.op)
        if p.op == "mask_assign":
            y = x.clone()
            y[mask] = 0
            return IndexResult(x_np, to_numpy(mask), to_numpy(mask), to_numpy(y), expr, None, p.op)
        if p.op == "nonzero":
            return IndexResult(x_np, to_numpy(mask), to_numpy(mask), to_numpy(torch.nonzero(mask)), expr, None, p.op)
        if p.op == "index_select":
            idx = torch.tensor(p.indices, device=ctx.device)
            out = torch.index_select(x, p.dim, idx)
            picked = torch.zeros_like(x, dtype=torch.bool).index_fill(p.dim, idx, True)
            return IndexResult(x_np, to_numpy(picked), to_numpy(idx), to_numpy(out), expr, None, p.op)
        size = x.shape[p.dim]
        index = torch.randint(0, size, tuple(x.shape), generator=g, device=ctx.device)
        out = torch.gather(x, p.dim, index)
        picked = torch.zeros_like(x, dtype=torch.bool).scatter(p.dim, index, True)
        return IndexResult(x_np, to_numpy(picked), to_numpy(index), to_numpy(out), expr, None, p.op)
    except (RuntimeError, IndexError) as e:
        return IndexResult(x_np, np.zeros_like(x_np, dtype=bool), None, None, expr, first_line(e), p.op)


def shown(r: IndexResult) -> list[float | str]:
    """Return x's values, gather's index, and the output's values, or torch's error."""
    out: list[float | str] = [float(v) for v in r.x.ravel()]
    if r.op == "gather" and r.index is not None:
        out += [float(v) for v in r.index.ravel()]
    if r.torch_error is not None:
        return [*out, r.torch_error]
    assert r.out is not None
    return [*out, *(float(v) for v in r.out.ravel())]


def context(p: IndexParams, device_type: str) -> Mapping[str, Any]:
    """Return what indexing.py.j2 reads: the seed, x's sizes, the op and its code, the device."""
    return {
        "seed": p.seed,
        "rows": p.rows,
        "cols": p.cols,
        "op": p.op,
        "dim": p.dim,
        "expr": index_expr(p),
        "device": device_type,
    }


INDEX = Experiment(
    "index",
    IndexParams,
    run,
    script="indexing.py.j2",
    context=context,
    shown=shown,
    examples=(
        IndexParams(op="gather", dim=1, seed=5),
        IndexParams(op="index_select", indices=(0, 7)),  # index out of range
        IndexParams(op="mask_assign", threshold=3, seed=4),
        IndexParams(op="nonzero", threshold=7, seed=6),
    ),
)
