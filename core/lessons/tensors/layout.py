"""Memory layout: tensors derived from x (views and copies), one element written, and who sees the change."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, first_line, to_numpy
from core.lessons.tensors.common import StorageIds, TensorFacts, describe, numel
from core.params import InvalidParams, Params, bounds, choices

# name -> the expression on x that builds it (also the code shown); ROWS and COLS are x's sizes.
LAYOUT_DERIVED: dict[str, str] = {
    "t": "x.t()",
    "row": "x[-1]",
    "col_step": "x[:, ::2]",
    "flat": "x.view(-1)",
    "diagonal": "x.diagonal()",
    "expand": "x[0].expand(ROWS, COLS)",
    "detach": "x.detach()",
    "numpy": "torch.from_numpy(x.numpy())",
    "contiguous": "x.t().contiguous()",
    "clone": "x.clone()",
    "fancy": "x[[0, -1]]",
    "repeat": "x.repeat(1, 2)",
    "tensor": "torch.tensor(x.numpy())",
    "reshape_t": "x.t().reshape(-1)",
}
LAYOUT_TARGETS = ("x", *LAYOUT_DERIVED)
EDIT_OPS = ("set", "add_")


def derive(name: str, x: torch.Tensor) -> torch.Tensor:
    """Return the derived tensor `name` built from x, as LAYOUT_DERIVED writes it."""
    rows, cols = x.shape
    builders: dict[str, Callable[[], torch.Tensor]] = {
        "t": lambda: x.t(),
        "row": lambda: x[-1],
        "col_step": lambda: x[:, ::2],
        "flat": lambda: x.view(-1),
        "diagonal": lambda: x.diagonal(),
        "expand": lambda: x[0].expand(rows, cols),
        "detach": lambda: x.detach(),
        "numpy": lambda: torch.from_numpy(x.numpy()),
        "contiguous": lambda: x.t().contiguous(),
        "clone": lambda: x.clone(),
        "fancy": lambda: x[[0, -1]],
        "repeat": lambda: x.repeat(1, 2),
        "tensor": lambda: torch.tensor(x.numpy()),
        "reshape_t": lambda: x.t().reshape(-1),
    }
    return builders[name]()


def layout_expr(name: str, rows: int, cols: int) -> str:
    """Return the code that builds a derived tensor from x."""
    return LAYOUT_DERIVED[name].replace("ROWS", str(rows)).replace("COLS", str(cols))


@dataclass(frozen=True)
class LayoutParams(Params):
    rows: int = field(default=3, metadata=bounds(1, 6))
    cols: int = field(default=4, metadata=bounds(1, 8))
    views: tuple[str, ...] = field(default=("t", "col_step", "expand", "clone"), metadata=choices(*LAYOUT_DERIVED))
    edit_target: str = field(default="t", metadata=choices(*LAYOUT_TARGETS))
    edit_index: int = field(default=1, metadata=bounds(0, 95, hi_of="max_index"))
    edit_value: int = field(default=-1, metadata=bounds(-99, 999))
    # "set": x[i] = v, one element; "add_": x.add_(v), every element in place. On an expanded
    # tensor the first goes through and the second is refused: the lesson shows both.
    edit_op: str = field(default="set", metadata=choices(*EDIT_OPS))

    def target_shape(self) -> tuple[int, ...]:
        """Return the shape of the edited tensor (edit_index counts through its elements in row-major order)."""
        x = torch.zeros(self.rows, self.cols)
        return tuple((x if self.edit_target == "x" else derive(self.edit_target, x)).shape)

    def target_numel(self) -> int:
        """Return how many elements the edited tensor has."""
        return numel(self.target_shape())

    def max_index(self) -> int:
        """Return the last flat position of the edited tensor: edit_index's bound given the other fields."""
        return self.target_numel() - 1

    def roles(self) -> dict[str, str]:
        """Return every field but edit_index when the edit is a whole-tensor add_."""
        roles = super().roles()
        if self.edit_op == "add_":
            del roles["edit_index"]
        return roles

    def validate(self) -> None:
        """Check the bounds (edit_index below the target's numel), then that the edited tensor is one of those built."""
        super().validate()
        if self.edit_target != "x" and self.edit_target not in self.views:
            raise InvalidParams("edit_target", "not_selected")

    def estimate_bytes(self) -> int:
        """Return every tensor (at most twice x) before and after, with its storage and index arrays, 8 bytes each."""
        return self.rows * self.cols * 2 * (len(self.views) + 1) * 8 * 6

    def estimate_work(self) -> float:
        """Return the element operations: building, describing and copying every tensor twice."""
        return 20.0 * self.rows * self.cols * 2 * (len(self.views) + 1)


@dataclass(frozen=True)
class LayoutResult:
    before: tuple[TensorFacts, ...]  # x first, then each derived tensor
    after: tuple[TensorFacts, ...]  # the same tensors after the edit
    storages_before: tuple[np.ndarray, ...]  # full contents of each storage, by storage id
    storages_after: tuple[np.ndarray, ...]
    edit_position: tuple[int, ...]  # index of the edited element in its tensor (() for a whole-tensor add_)
    edit_error: str | None

    def changed(self, name: str) -> np.ndarray:
        """Return a bool array: which elements of the named tensor changed with the edit."""
        i = [f.name for f in self.before].index(name)
        return np.asarray(self.before[i].values != self.after[i].values)


def storage_contents(t: torch.Tensor) -> np.ndarray:
    """Return every element of t's storage, in storage order."""
    size = t.untyped_storage().nbytes() // t.element_size()
    flat = t.new_empty(0).set_(t.untyped_storage(), 0, (size,), (1,))
    contents: np.ndarray = to_numpy(flat)
    return contents


def edit_position(p: LayoutParams) -> tuple[int, ...]:
    """Return the index of the edited element in its tensor (edit_index unravelled in row-major order)."""
    return tuple(int(i) for i in np.unravel_index(p.edit_index, p.target_shape()))


def run(p: LayoutParams, ctx: RunContext) -> LayoutResult:
    """Build x and the chosen tensors from it, write one element, report who sees the change."""
    x = torch.arange(p.rows * p.cols).reshape(p.rows, p.cols)
    tensors = {"x": x, **{name: derive(name, x) for name in p.views}}
    exprs = {"x": f"torch.arange({p.rows * p.cols}).reshape({p.rows}, {p.cols})"}
    exprs.update({name: layout_expr(name, p.rows, p.cols) for name in p.views})

    def snapshot() -> tuple[tuple[TensorFacts, ...], tuple[np.ndarray, ...]]:
        ids = StorageIds()
        facts = tuple(describe(n, exprs[n], t, ids) for n, t in tensors.items())
        first: dict[int, torch.Tensor] = {}
        for f, t in zip(facts, tensors.values(), strict=True):
            first.setdefault(f.storage_id, t)
        return facts, tuple(storage_contents(first[i]) for i in range(len(first)))

    before, storages_before = snapshot()
    position = edit_position(p) if p.edit_op == "set" else ()
    edit_error = None
    try:
        if p.edit_op == "set":
            tensors[p.edit_target][position] = p.edit_value
        else:
            tensors[p.edit_target].add_(p.edit_value)
    except RuntimeError as e:
        edit_error = first_line(e)
    after, storages_after = snapshot()
    return LayoutResult(before, after, storages_before, storages_after, position, edit_error)


def shown(r: LayoutResult) -> list[float | str]:
    """Return each tensor's header as the table shows it, how many of its elements changed, and torch's error."""
    out: list[float | str] = []
    for f in r.before:
        out.append(
            f"{f.name:10} size={f.shape} stride={f.stride} offset={f.offset} contiguous={f.contiguous} "
            f"shares x's storage={f.storage_id == 0}"
        )
    out += [f"{f.name} elements changed: {int(r.changed(f.name).sum())}" for f in r.before]
    return out if r.edit_error is None else [*out, r.edit_error]


def context(p: LayoutParams, device_type: str) -> Mapping[str, Any]:
    """Return what layout.py.j2 reads: x's sizes, the derived tensors, and the edit."""
    names = ("x", *p.views)
    return {
        "numel": p.rows * p.cols,
        "rows": p.rows,
        "cols": p.cols,
        "views": [(name, layout_expr(name, p.rows, p.cols)) for name in p.views],
        "tensors": "{" + ", ".join(f"{n!r}: {n}" for n in names) + "}",
        "target": p.edit_target,
        "position": ", ".join(map(str, edit_position(p))),
        "value": p.edit_value,
        "whole": p.edit_op == "add_",
    }


ALL_VIEWS = tuple(LAYOUT_DERIVED)

LAYOUT = Experiment(
    "layout",
    LayoutParams,
    run,
    script="layout.py.j2",
    context=context,
    shown=shown,
    examples=(
        LayoutParams(views=("expand",), edit_target="expand", edit_index=6, edit_value=500),
        LayoutParams(rows=2, cols=3, views=ALL_VIEWS, edit_target="x", edit_index=5),
        LayoutParams(rows=4, cols=2, views=ALL_VIEWS, edit_target="diagonal", edit_index=1),
        LayoutParams(views=("clone", "t"), edit_target="t", edit_index=4),
        LayoutParams(views=("expand", "t"), edit_target="expand", edit_value=10, edit_op="add_"),
    ),
)

STRIDE_T = Prediction(
    "stride_t",
    LAYOUT,
    LayoutParams(rows=5, cols=7, views=("t",), edit_target="x", edit_index=0),
    options=("(7, 1)", "(1, 7)", "(5, 1)", "(1, 5)"),
    answer=lambda r: str(r.before[1].stride),
)
