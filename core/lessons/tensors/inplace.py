"""In-place vs out-of-place: one add statement, and what x, a second name for x, and the result hold afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, first_line, to_numpy
from core.params import Params, bounds, choices, ladder

INPLACE_FORMS = ("out_of_place", "in_place", "augmented", "rebind", "out")
NUMERIC_DTYPES = ("float32", "int64")
SHOWN = 8  # values kept for display


@dataclass(frozen=True)
class InplaceParams(Params):
    form: str = field(default="in_place", metadata=choices(*INPLACE_FORMS))
    dtype: str = field(default="float32", metadata=choices(*NUMERIC_DTYPES))
    value: float = field(default=1.0, metadata=bounds(-100, 100, 0.5))
    n: int = field(default=6, metadata=ladder(1, 1_000_000, "125"))

    def estimate_bytes(self) -> int:
        """Return x, the result and the `out` buffer, 8 bytes each, with room to spare."""
        return self.n * 8 * 4

    def estimate_work(self) -> float:
        """Return the element operations: arange, the add, and an allocation the size of x."""
        return 3.0 * self.n


@dataclass(frozen=True)
class InplaceResult:
    x_before: np.ndarray  # first values of x before the statement
    x_after: np.ndarray  # what the name x refers to afterwards
    alias_after: np.ndarray  # the original tensor object (another name for it, `x0 = x`)
    result: np.ndarray | None  # what the statement produced (y, or x itself)
    same_storage: bool  # the result lives in x's original memory
    new_bytes: int  # bytes of storage the statement allocated
    torch_error: str | None

    def alias_changed(self) -> bool:
        """Return whether the original tensor object (x0) holds other values than x had before."""
        return bool((self.alias_after != self.x_before).any())


def scalar(p: InplaceParams) -> float | int:
    """Return the value added as the student writes it: an integer for an integer tensor when it is whole."""
    return int(p.value) if p.dtype == "int64" and float(p.value).is_integer() else p.value


def inplace_statement(p: InplaceParams) -> str:
    """Return the statement the experiment runs, as Python."""
    v = scalar(p)
    return {
        "out_of_place": f"y = x.add({v})",
        "in_place": f"x.add_({v})",
        "augmented": f"x += {v}",
        "rebind": f"x = x + {v}",
        "out": f"buf = torch.empty_like(x); torch.add(x, {v}, out=buf)",
    }[p.form]


def run(p: InplaceParams, ctx: RunContext) -> InplaceResult:
    """Run one add statement; report what x, another name for x, and the result hold afterwards."""
    x = torch.arange(p.n, dtype=getattr(torch, p.dtype), device=ctx.device)
    alias, v = x, scalar(p)
    ptr = x.untyped_storage().data_ptr()
    before = to_numpy(x[:SHOWN])
    result: torch.Tensor | None = None
    error = None
    try:
        if p.form == "out_of_place":
            result = x.add(v)
        elif p.form == "in_place":
            result = x.add_(v)
        elif p.form == "augmented":
            x += v
            result = x
        elif p.form == "rebind":
            x = x + v
            result = x
        else:
            result = torch.empty_like(x)
            torch.add(x, v, out=result)
    except RuntimeError as e:
        error = first_line(e)
        result = None  # e.g. the `out` buffer was allocated, but nothing was written into it
    same = result is not None and result.untyped_storage().data_ptr() == ptr
    new_bytes = 0 if result is None or same else result.untyped_storage().nbytes()
    kept = None if result is None else to_numpy(result[:SHOWN])
    return InplaceResult(before, to_numpy(x[:SHOWN]), to_numpy(alias[:SHOWN]), kept, same, new_bytes, error)


def shown(r: InplaceResult) -> list[float | str]:
    """Return the first values of x and of its second name x0, and whether the result is in x's memory; or the error."""
    if r.torch_error is not None:
        return [r.torch_error]
    values = [float(v) for v in (*r.x_after, *r.alias_after)]
    return [*values, f"result in x's original memory: {r.same_storage}"]


def context(p: InplaceParams, device_type: str) -> Mapping[str, Any]:
    """Return what inplace.py.j2 reads: x's size and dtype, the statement, and the name of its result."""
    result = {"out_of_place": "y", "out": "buf"}.get(p.form, "x")
    return {"n": p.n, "dtype": p.dtype, "statement": inplace_statement(p), "result": result, "shown": SHOWN}


INPLACE = Experiment(
    "inplace",
    InplaceParams,
    run,
    script="inplace.py.j2",
    context=context,
    shown=shown,
    examples=(
        InplaceParams(form="augmented", dtype="int64", value=0.5),  # int64 += 0.5 fails
        InplaceParams(form="rebind", dtype="int64", value=1.5),
        InplaceParams(form="out", value=-2.0, n=20),
        InplaceParams(form="out_of_place", dtype="int64", value=2.0),
    ),
)

INT_INPLACE = Prediction(
    "int_inplace",
    INPLACE,
    InplaceParams(form="augmented", dtype="int64", value=0.5),
    options=("ok", "error"),
    answer=lambda r: "error" if r.torch_error else "ok",
)
