"""Shape operations: view, reshape, squeeze, transpose, cat, chunk... on an arange tensor, with strides and sharing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, Prediction, RunContext, first_line
from core.lessons.tensors.common import MAX_GRID, StorageIds, TensorFacts, describe, numel
from core.params import InvalidParams, Params, bounds, choices, shape_spec

SHAPE_OPS = ("view", "reshape", "squeeze", "unsqueeze", "transpose", "permute", "flatten", "cat", "stack", "chunk", "split")
SHAPE_ROLES: dict[str, tuple[str, ...]] = {
    "view": ("new_shape",),
    "reshape": ("new_shape",),
    "squeeze": ("dim",),
    "unsqueeze": ("dim",),
    "transpose": ("dim", "dim2"),
    "permute": ("perm",),
    "flatten": ("dim", "dim2"),
    "cat": ("dim",),
    "stack": ("dim",),
    "chunk": ("size", "dim"),
    "split": ("size", "dim"),
}


@dataclass(frozen=True)
class ShapeParams(Params):
    op: str = field(default="view", metadata=choices(*SHAPE_OPS))
    shape: tuple[int, ...] = field(default=(2, 3, 4), metadata=shape_spec(max_dims=4, lo=1, hi=8))
    transposed: bool = False
    new_shape: tuple[int, ...] = field(default=(4, -1), metadata=shape_spec(4, lo=1, hi=256, allow_infer=True))
    dim: int = field(default=0, metadata=bounds(-4, 4))
    dim2: int = field(default=1, metadata=bounds(-4, 4))
    perm: tuple[int, ...] = field(default=(2, 0, 1), metadata=shape_spec(max_dims=4, lo=0, hi=3))
    size: int = field(default=2, metadata=bounds(1, 8))

    def roles(self) -> dict[str, str]:
        """Return the fields this op reads."""
        names = ("op", "shape", "transposed", *SHAPE_ROLES[self.op])
        return {n: n for n in names}

    def validate(self) -> None:
        """Check the bounds, then that x has no more cells than the page draws."""
        super().validate()
        if numel(self.shape) > MAX_GRID:
            raise InvalidParams("shape", "too_many_elements", numel=numel(self.shape), max=MAX_GRID)

    def estimate_bytes(self) -> int:
        """Return x, the outputs (cat and stack double it) and their numpy copies, 8 bytes each."""
        return numel(self.shape) * 8 * 6

    def estimate_work(self) -> float:
        """Return the element operations: x, the op's outputs, and copying each to numpy."""
        return 8.0 * numel(self.shape)


@dataclass(frozen=True)
class ShapeResult:
    input: TensorFacts
    outputs: tuple[TensorFacts, ...]
    torch_error: str | None


def transposes(p: ShapeParams) -> bool:
    """Return whether x starts transposed (only a tensor of 2 or more dimensions can be)."""
    return p.transposed and len(p.shape) >= 2


def input_expr(p: ShapeParams) -> str:
    """Return the code that builds x."""
    return f"torch.arange({numel(p.shape)}).reshape{p.shape}" + (".transpose(0, -1)" if transposes(p) else "")


def shape_expr(p: ShapeParams) -> str:
    """Return the code of the shape operation on x."""
    return {
        "view": f"x.view{p.new_shape}",
        "reshape": f"x.reshape{p.new_shape}",
        "squeeze": f"x.squeeze({p.dim})",
        "unsqueeze": f"x.unsqueeze({p.dim})",
        "transpose": f"x.transpose({p.dim}, {p.dim2})",
        "permute": f"x.permute{p.perm}",
        "flatten": f"x.flatten({p.dim}, {p.dim2})",
        "cat": f"torch.cat([x, x + 100], dim={p.dim})",
        "stack": f"torch.stack([x, x + 100], dim={p.dim})",
        "chunk": f"x.chunk({p.size}, dim={p.dim})",
        "split": f"x.split({p.size}, dim={p.dim})",
    }[p.op]


def apply_shape_op(p: ShapeParams, x: torch.Tensor) -> list[torch.Tensor]:
    """Return the tensors the op gives (one, or the pieces of chunk and split)."""
    ops: dict[str, Callable[[], torch.Tensor | Sequence[torch.Tensor]]] = {
        "view": lambda: x.view(p.new_shape),
        "reshape": lambda: x.reshape(p.new_shape),
        "squeeze": lambda: x.squeeze(p.dim),
        "unsqueeze": lambda: x.unsqueeze(p.dim),
        "transpose": lambda: x.transpose(p.dim, p.dim2),
        "permute": lambda: x.permute(p.perm),
        "flatten": lambda: x.flatten(p.dim, p.dim2),
        "cat": lambda: torch.cat([x, x + 100], dim=p.dim),
        "stack": lambda: torch.stack([x, x + 100], dim=p.dim),
        "chunk": lambda: x.chunk(p.size, dim=p.dim),
        "split": lambda: torch.split(x, p.size, dim=p.dim),
    }
    out = ops[p.op]()
    return [out] if isinstance(out, torch.Tensor) else list(out)


def run(p: ShapeParams, ctx: RunContext) -> ShapeResult:
    """Apply one shape operation to an arange tensor; report every output's shape, strides, sharing."""
    x = torch.arange(numel(p.shape)).reshape(p.shape)
    if transposes(p):
        x = x.transpose(0, -1)
    ids = StorageIds()
    facts_x = describe("x", input_expr(p), x, ids)
    try:
        outs = apply_shape_op(p, x)
    except (RuntimeError, IndexError, ValueError, TypeError) as e:
        return ShapeResult(facts_x, (), first_line(e))
    expr = shape_expr(p)
    pieces = p.op in ("chunk", "split")  # these return a tuple, even of one tensor
    names = [f"y[{i}]" for i in range(len(outs))] if pieces else ["y"]
    exprs = [f"{expr}[{i}]" for i in range(len(outs))] if pieces else [expr]
    facts = tuple(describe(name, e, t, ids) for name, e, t in zip(names, exprs, outs, strict=True))
    return ShapeResult(facts_x, facts, None)


def shown(r: ShapeResult) -> list[float | str]:
    """Return the header of x and of every output (size, stride, contiguity, sharing), the outputs' values, or torch's error."""
    x = r.input
    out: list[float | str] = [f"x {x.shape} stride {x.stride} contiguous {x.contiguous}"]
    if r.torch_error is not None:
        return [*out, r.torch_error]
    for f in r.outputs:
        out += [f"{f.shape} stride {f.stride} shares x's storage: {f.storage_id == 0}", *map(float, f.values.ravel())]
    return out


def context(p: ShapeParams, device_type: str) -> Mapping[str, Any]:
    """Return what shape.py.j2 reads: how x is built and the operation."""
    return {"x_expr": input_expr(p), "expr": shape_expr(p)}


SHAPE = Experiment(
    "shape",
    ShapeParams,
    run,
    script="shape.py.j2",
    context=context,
    shown=shown,
    examples=(
        ShapeParams(op="view", transposed=True, new_shape=(-1,)),  # torch refuses
        ShapeParams(op="reshape", transposed=True, new_shape=(-1,)),  # copies instead
        ShapeParams(op="split", shape=(4, 6), size=4, dim=-1),
        ShapeParams(op="permute", shape=(4, 6), perm=(2, 0, 1)),  # wrong number of dims
    ),
)

VIEW_T = Prediction(
    "view_t",
    SHAPE,
    ShapeParams(op="view", shape=(3, 4), transposed=True, new_shape=(12,)),
    options=("works", "fails"),
    answer=lambda r: "fails" if r.torch_error else "works",
)
