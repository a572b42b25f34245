"""Experiments of the "Tensors and memory" lesson: each is Params, Result, run_* and code_*.

Results hold numpy arrays and plain Python values only, so they can be cached and shared.
A torch error that *is* the lesson (a view that cannot be taken, shapes that do not broadcast)
is part of the result as `torch_error`; anything else goes up to the runner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.params import InvalidParams, Params, bounds, choices, shape_spec
from core.runner import RunContext

SEED = field(default=0, metadata=bounds(0, 2**31 - 1))


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _error_text(error: Exception) -> str:
    """Return torch's message, first line, as a student would read it."""
    lines = str(error).strip().splitlines()
    return lines[0][:400] if lines else type(error).__name__


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


# --------------------------------------------------------------------------------------------
# 1. Creation


CREATE_FNS = (
    "arange", "linspace", "logspace", "eye", "zeros", "ones", "full", "empty",
    "rand", "randn", "normal", "randint", "randperm", "bernoulli",
)  # fmt: skip
RANDOM_FNS = frozenset({"rand", "randn", "normal", "randint", "randperm", "bernoulli"})
# Which of a/b/step/p each function reads, and under which name (the widget label's key).
CREATE_ROLES: dict[str, dict[str, str]] = {
    "arange": {"a": "start", "b": "end", "step": "step"},
    "linspace": {"a": "start", "b": "end", "n": "steps"},
    "logspace": {"a": "start_exp", "b": "end_exp", "n": "steps"},
    "eye": {"n": "rows"},
    "full": {"n": "n", "a": "fill"},
    "normal": {"n": "n", "a": "mean", "b": "std"},
    "randint": {"n": "n", "a": "low", "b": "high"},
    "bernoulli": {"n": "n", "p": "p"},
}
PREVIEW = 2000  # values kept for the value plot


@dataclass(frozen=True)
class CreateParams(Params):
    fn: str = field(default="randn", metadata=choices(*CREATE_FNS))
    n: int = field(default=10_000, metadata=bounds(1, 1_000_000))
    a: float = field(default=0.0, metadata=bounds(-100, 100, 0.5))
    b: float = field(default=1.0, metadata=bounds(-100, 100, 0.5))
    step: float = field(default=1.0, metadata=bounds(0.01, 100, 0.01))
    p: float = field(default=0.5, metadata=bounds(0.0, 1.0, 0.01))
    seed: int = SEED

    def roles(self) -> dict[str, str]:
        """Return the fields this function reads, each with its role (start, mean, ...)."""
        roles = {"fn": "fn", **CREATE_ROLES.get(self.fn, {"n": "n"})}
        if self.fn in RANDOM_FNS:
            roles["seed"] = "seed"
        return roles

    def validate(self) -> None:
        super().validate()
        if self.fn == "normal" and self.b <= 0:
            raise InvalidParams("b", "must_be_positive")
        if self.fn == "randint" and int(self.b) <= int(self.a):
            raise InvalidParams("b", "must_exceed", other=int(self.a))

    def numel(self) -> int:
        """Return how many elements the created tensor has."""
        if self.fn == "arange":
            return max(0, math.ceil((self.b - self.a) / self.step))
        if self.fn == "eye":
            return self.n * self.n
        return self.n

    def estimate_bytes(self) -> int:
        # The tensor (up to 8 bytes/element), its float64 copy, the finite mask and finite copy.
        return self.numel() * 25


@dataclass(frozen=True)
class CreateResult:
    fn: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    values: np.ndarray  # the first PREVIEW values, float64; empty for torch.empty
    random: bool
    discrete: bool
    bin_x: np.ndarray  # bin centres, or the integer values of a discrete distribution
    bin_width: float
    counts: np.ndarray
    expected: np.ndarray  # expected count per bin under the true distribution
    mean: float
    std: float
    theory_mean: float | None
    theory_std: float | None
    torch_error: str | None


def _create_tensor(p: CreateParams, g: torch.Generator, device: torch.device) -> torch.Tensor:
    n, d = p.n, device
    builders: dict[str, Callable[[], torch.Tensor]] = {
        "arange": lambda: torch.arange(p.a, p.b, p.step, device=d),
        "linspace": lambda: torch.linspace(p.a, p.b, n, device=d),
        "logspace": lambda: torch.logspace(p.a, p.b, n, device=d),
        "eye": lambda: torch.eye(n, device=d),
        "zeros": lambda: torch.zeros(n, device=d),
        "ones": lambda: torch.ones(n, device=d),
        "full": lambda: torch.full((n,), p.a, device=d),
        "empty": lambda: torch.empty(n, device=d),
        "rand": lambda: torch.rand(n, generator=g, device=d),
        "randn": lambda: torch.randn(n, generator=g, device=d),
        "normal": lambda: torch.normal(p.a, p.b, (n,), generator=g, device=d),
        "randint": lambda: torch.randint(int(p.a), int(p.b), (n,), generator=g, device=d),
        "randperm": lambda: torch.randperm(n, generator=g, device=d),
        "bernoulli": lambda: torch.bernoulli(torch.full((n,), p.p, device=d), generator=g),
    }
    return builders[p.fn]()


def _normal_cdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return np.asarray(0.5 * (1 + erf((x - mean) / (std * math.sqrt(2)))), dtype=np.float64)


def _theory(p: CreateParams) -> tuple[float | None, float | None]:
    """Return the true mean and std of the distribution a random function samples."""
    if p.fn == "rand":
        return 0.5, 1 / math.sqrt(12)
    if p.fn == "randn":
        return 0.0, 1.0
    if p.fn == "normal":
        return p.a, p.b
    if p.fn == "randint":
        lo, hi = int(p.a), int(p.b)
        return (lo + hi - 1) / 2, math.sqrt(((hi - lo) ** 2 - 1) / 12)
    if p.fn == "randperm":
        return (p.n - 1) / 2, math.sqrt((p.n**2 - 1) / 12)
    if p.fn == "bernoulli":
        return p.p, math.sqrt(p.p * (1 - p.p))
    return None, None


def _histogram(p: CreateParams, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, bool]:
    """Return (bin x, bin width, observed counts, expected counts, discrete?) for a random fn."""
    n = x.size
    if p.fn in ("randint", "bernoulli"):
        lo, hi = (int(p.a), int(p.b)) if p.fn == "randint" else (0, 2)
        values = np.arange(lo, hi)
        counts = np.bincount((x - lo).astype(np.int64), minlength=hi - lo)[: hi - lo]
        pmf = np.full(hi - lo, 1 / (hi - lo)) if p.fn == "randint" else np.array([1 - p.p, p.p])
        return values.astype(np.float64), 1.0, counts.astype(np.float64), n * pmf, True
    if p.fn == "rand":
        edges = np.linspace(0.0, 1.0, 41)
        cdf = np.clip(edges, 0, 1)
    else:
        mean, std = (0.0, 1.0) if p.fn == "randn" else (p.a, p.b)
        edges = np.linspace(mean - 4 * std, mean + 4 * std, 41)
        cdf = _normal_cdf(edges, mean, std)
    counts, _ = np.histogram(x, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, float(edges[1] - edges[0]), counts.astype(np.float64), n * np.diff(cdf), False


def run_create(p: CreateParams, ctx: RunContext) -> CreateResult:
    """Create the tensor, then summarise it: preview, histogram vs the true distribution, stats."""
    empty = np.zeros(0)
    try:
        t = _create_tensor(p, ctx.generator, ctx.device)
    except RuntimeError as e:
        return CreateResult(p.fn, (), "", 0, empty, p.fn in RANDOM_FNS, False, empty, 0.0, empty, empty,
                            math.nan, math.nan, None, None, _error_text(e))  # fmt: skip
    nbytes = t.untyped_storage().nbytes()
    shape, dtype = tuple(t.shape), str(t.dtype).removeprefix("torch.")
    if p.fn == "empty":
        # Uninitialised memory: its contents are whatever was there, so we show none of them.
        return CreateResult(p.fn, shape, dtype, nbytes, empty, False, False, empty, 0.0, empty, empty,
                            math.nan, math.nan, None, None, None)  # fmt: skip
    x = t.detach().to("cpu", torch.float64).flatten().numpy()
    theory_mean, theory_std = _theory(p)
    bin_x, width, counts, expected, discrete = empty, 0.0, empty, empty, False
    if p.fn in RANDOM_FNS and p.fn != "randperm":
        bin_x, width, counts, expected, discrete = _histogram(p, x)
    finite = x[np.isfinite(x)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std()) if finite.size else math.nan
    return CreateResult(p.fn, shape, dtype, nbytes, x[:PREVIEW].copy(), p.fn in RANDOM_FNS, discrete,
                        bin_x, width, counts, expected, mean, std, theory_mean, theory_std, None)  # fmt: skip


def _create_call(p: CreateParams) -> str:
    g = "generator=g"
    return {
        "arange": f"torch.arange({p.a}, {p.b}, {p.step})",
        "linspace": f"torch.linspace({p.a}, {p.b}, steps={p.n})",
        "logspace": f"torch.logspace({p.a}, {p.b}, steps={p.n})",
        "eye": f"torch.eye({p.n})",
        "zeros": f"torch.zeros({p.n})",
        "ones": f"torch.ones({p.n})",
        "full": f"torch.full(({p.n},), {p.a})",
        "empty": f"torch.empty({p.n})  # allocated now, contents uninitialised",
        "rand": f"torch.rand({p.n}, {g})",
        "randn": f"torch.randn({p.n}, {g})",
        "normal": f"torch.normal({p.a}, {p.b}, size=({p.n},), {g})",
        "randint": f"torch.randint({int(p.a)}, {int(p.b)}, ({p.n},), {g})",
        "randperm": f"torch.randperm({p.n}, {g})",
        "bernoulli": f"torch.bernoulli(torch.full(({p.n},), {p.p}), {g})",
    }[p.fn]


def code_create(p: CreateParams) -> str:
    """Return a standalone script that creates the same tensor and prints what the page shows."""
    lines = ["import torch", ""]
    if p.fn in RANDOM_FNS:
        lines.append(f"g = torch.Generator().manual_seed({p.seed})")
    lines += [
        "try:",
        f"    t = {_create_call(p)}",
        "except RuntimeError as e:",
        '    print("RuntimeError:", e)',
        "else:",
        '    print("shape", tuple(t.shape), "dtype", t.dtype, "bytes", t.untyped_storage().nbytes())',
    ]
    if p.fn != "empty":
        lines += [
            "    x = t.double().flatten()",
            '    print("first values", x[:8].tolist())',
            '    print("mean", x.mean().item(), "std", x.std(unbiased=False).item())',
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Shared description of a tensor's memory


@dataclass(frozen=True)
class TensorFacts:
    """What one tensor is in memory, and its values."""

    name: str
    expr: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    contiguous: bool
    storage_id: int  # tensors with equal ids share one storage
    ptr_offset: int  # data_ptr() minus the storage's start, in bytes (= offset * element size)
    storage_index: np.ndarray  # storage cell of each element, same shape as the tensor
    values: np.ndarray


class _StorageIds:
    """Number storages in the order first seen, so equal ids mean shared memory."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def __call__(self, t: torch.Tensor) -> int:
        return self._ids.setdefault(t.untyped_storage().data_ptr(), len(self._ids))


def storage_index(shape: Sequence[int], stride: Sequence[int], offset: int) -> np.ndarray:
    """Return, for each element, the storage cell it lives in: offset + sum(index * stride)."""
    index = np.full(tuple(shape), offset, dtype=np.int64)
    for dim, (size, step) in enumerate(zip(shape, stride, strict=True)):
        along = np.arange(size, dtype=np.int64) * step
        index = index + along.reshape([-1 if d == dim else 1 for d in range(len(shape))])
    return index


def describe(name: str, expr: str, t: torch.Tensor, ids: _StorageIds) -> TensorFacts:
    """Return the memory facts of t, as torch reports them."""
    return TensorFacts(
        name, expr, tuple(t.shape), tuple(t.stride()), int(t.storage_offset()), t.is_contiguous(), ids(t),
        t.data_ptr() - t.untyped_storage().data_ptr(), storage_index(t.shape, t.stride(), int(t.storage_offset())),
        _to_numpy(t),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# 2. Shape operations


SHAPE_OPS = (
    "view", "reshape", "squeeze", "unsqueeze", "transpose", "permute", "flatten",
    "cat", "stack", "chunk", "split",
)  # fmt: skip
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
MAX_GRID = 256  # cells we draw


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
        super().validate()
        if _numel(self.shape) > MAX_GRID:
            raise InvalidParams("shape", "too_many_elements", numel=_numel(self.shape), max=MAX_GRID)


@dataclass(frozen=True)
class ShapeResult:
    input: TensorFacts
    outputs: tuple[TensorFacts, ...]
    torch_error: str | None


def _shape_input(p: ShapeParams) -> tuple[torch.Tensor, str]:
    x = torch.arange(_numel(p.shape)).reshape(p.shape)
    if p.transposed and x.dim() >= 2:
        return x.transpose(0, -1), f"torch.arange({_numel(p.shape)}).reshape{p.shape}.transpose(0, -1)"
    return x, f"torch.arange({_numel(p.shape)}).reshape{p.shape}"


def _shape_expr(p: ShapeParams) -> str:
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


def _apply_shape_op(p: ShapeParams, x: torch.Tensor) -> list[torch.Tensor]:
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


def run_shape(p: ShapeParams, ctx: RunContext) -> ShapeResult:
    """Apply one shape operation to an arange tensor; report every output's shape, strides, sharing."""
    x, x_expr = _shape_input(p)
    ids = _StorageIds()
    facts_x = describe("x", x_expr, x, ids)
    try:
        outs = _apply_shape_op(p, x)
    except (RuntimeError, IndexError, ValueError, TypeError) as e:
        return ShapeResult(facts_x, (), _error_text(e))
    expr = _shape_expr(p)
    pieces = p.op in ("chunk", "split")  # these return a tuple, even of one tensor
    names = [f"y[{i}]" for i in range(len(outs))] if pieces else ["y"]
    exprs = [f"{expr}[{i}]" for i in range(len(outs))] if pieces else [expr]
    return ShapeResult(facts_x, tuple(describe(n, e, t, ids) for n, e, t in zip(names, exprs, outs, strict=True)), None)


def code_shape(p: ShapeParams) -> str:
    """Return a script performing the same shape operation and printing shapes, strides, sharing."""
    _, x_expr = _shape_input(p)
    return f"""import torch

x = {x_expr}
print("x", tuple(x.shape), "stride", x.stride(), "contiguous", x.is_contiguous())
try:
    y = {_shape_expr(p)}
except (RuntimeError, IndexError, ValueError, TypeError) as e:
    print(type(e).__name__ + ":", e)
else:
    for t in (y if isinstance(y, tuple) else (y,)):
        shares = t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        print(tuple(t.shape), "stride", t.stride(), "shares x's storage:", shares)
        print(t)
"""


# --------------------------------------------------------------------------------------------
# 3. Memory-layout inspector

# name -> (expression on x, makes a view?) — the expression is also the code shown.
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


def _derive(name: str, x: torch.Tensor) -> torch.Tensor:
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
    edit_index: int = field(default=1, metadata=bounds(0, 95))
    edit_value: int = field(default=-1, metadata=bounds(-99, 999))

    def target_numel(self) -> int:
        """Return how many elements the edited tensor has (edit_index counts through them)."""
        x = torch.zeros(self.rows, self.cols)
        return (x if self.edit_target == "x" else _derive(self.edit_target, x)).numel()

    def validate(self) -> None:
        super().validate()
        if self.edit_target != "x" and self.edit_target not in self.views:
            raise InvalidParams("edit_target", "not_selected")
        if self.edit_index >= self.target_numel():
            raise InvalidParams("edit_index", "out_of_range", lo=0, hi=self.target_numel() - 1, value=self.edit_index)


@dataclass(frozen=True)
class LayoutResult:
    before: tuple[TensorFacts, ...]  # x first, then each derived tensor
    after: tuple[TensorFacts, ...]  # the same tensors after the edit
    storages_before: tuple[np.ndarray, ...]  # full contents of each storage, by storage id
    storages_after: tuple[np.ndarray, ...]
    edit_position: tuple[int, ...]  # index of the edited element in its tensor
    edit_error: str | None

    def changed(self, name: str) -> np.ndarray:
        """Return a bool array: which elements of the named tensor changed with the edit."""
        i = [f.name for f in self.before].index(name)
        return np.asarray(self.before[i].values != self.after[i].values)


def _storage_contents(t: torch.Tensor) -> np.ndarray:
    size = t.untyped_storage().nbytes() // t.element_size()
    flat = t.new_empty(0).set_(t.untyped_storage(), 0, (size,), (1,))
    return _to_numpy(flat)


def run_layout(p: LayoutParams, ctx: RunContext) -> LayoutResult:
    """Build x and the chosen tensors from it, write one element, report who sees the change."""
    x = torch.arange(p.rows * p.cols).reshape(p.rows, p.cols)
    tensors = {"x": x, **{name: _derive(name, x) for name in p.views}}
    exprs = {"x": f"torch.arange({p.rows * p.cols}).reshape({p.rows}, {p.cols})"}
    exprs.update({name: layout_expr(name, p.rows, p.cols) for name in p.views})

    def snapshot() -> tuple[tuple[TensorFacts, ...], tuple[np.ndarray, ...]]:
        ids = _StorageIds()
        facts = tuple(describe(n, exprs[n], t, ids) for n, t in tensors.items())
        first: dict[int, torch.Tensor] = {}
        for f, t in zip(facts, tensors.values(), strict=True):
            first.setdefault(f.storage_id, t)
        return facts, tuple(_storage_contents(first[i]) for i in range(len(first)))

    before, storages_before = snapshot()
    target = tensors[p.edit_target]
    position = tuple(int(i) for i in np.unravel_index(p.edit_index, tuple(target.shape)))
    edit_error = None
    try:
        target[position] = p.edit_value
    except RuntimeError as e:
        edit_error = _error_text(e)
    after, storages_after = snapshot()
    return LayoutResult(before, after, storages_before, storages_after, position, edit_error)


def code_layout(p: LayoutParams) -> str:
    """Return a script that builds the same tensors, prints their layout, and makes the same edit."""
    lines = ["import torch", "", f"x = torch.arange({p.rows * p.cols}).reshape({p.rows}, {p.cols})"]
    names = ["x", *p.views]
    for name in p.views:
        lines.append(f"{name} = {layout_expr(name, p.rows, p.cols)}")
    lines += [
        f"tensors = {{{', '.join(f'{n!r}: {n}' for n in names)}}}",
        "base = x.untyped_storage().data_ptr()",
        # key/value, not name/t: `t` may be one of the tensors (x.t()).
        "for key, value in tensors.items():",
        "    shares = value.untyped_storage().data_ptr() == base",
        '    print(f"{key:10} size={tuple(value.shape)} stride={value.stride()} offset={value.storage_offset()} "',
        '          f"contiguous={value.is_contiguous()} shares x\'s storage={shares}")',
        "before = {key: value.clone() for key, value in tensors.items()}",
        "try:",
        f"    {p.edit_target}[{', '.join(map(str, np.unravel_index(p.edit_index, _layout_shape(p))))}] = {p.edit_value}",
        "except RuntimeError as e:",
        '    print("RuntimeError:", e)',
        "for key, value in tensors.items():",
        "    changed = (value != before[key]).sum().item()",
        '    print(key, "elements changed:", changed)',
    ]
    return "\n".join(lines) + "\n"


def _layout_shape(p: LayoutParams) -> tuple[int, ...]:
    x = torch.zeros(p.rows, p.cols)
    return tuple((x if p.edit_target == "x" else _derive(p.edit_target, x)).shape)


# --------------------------------------------------------------------------------------------
# 4. Broadcasting


@dataclass(frozen=True)
class BroadcastParams(Params):
    shape_a: tuple[int, ...] = field(default=(3, 1), metadata=shape_spec(max_dims=6, min_dims=0, lo=1, hi=8))
    shape_b: tuple[int, ...] = field(default=(4,), metadata=shape_spec(max_dims=6, min_dims=0, lo=1, hi=8))

    def estimate_bytes(self) -> int:
        dims = max(len(self.shape_a), len(self.shape_b))
        a = (1,) * (dims - len(self.shape_a)) + self.shape_a
        b = (1,) * (dims - len(self.shape_b)) + self.shape_b
        return _numel([max(i, j) for i, j in zip(a, b, strict=True)]) * 8 * 3


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


def _dim_status(i: int | None, j: int | None) -> str:
    si, sj = 1 if i is None else i, 1 if j is None else j
    if si == sj:
        return "equal"
    if si == 1:
        return "a_is_1"
    if sj == 1:
        return "b_is_1"
    return "mismatch"


def run_broadcast(p: BroadcastParams, ctx: RunContext) -> BroadcastResult:
    """Add a of shape_a and b of shape_b; report the alignment, result shape or torch's error."""
    dims = max(len(p.shape_a), len(p.shape_b))
    aligned_a = (None,) * (dims - len(p.shape_a)) + tuple(p.shape_a)
    aligned_b = (None,) * (dims - len(p.shape_b)) + tuple(p.shape_b)
    status = tuple(_dim_status(i, j) for i, j in zip(aligned_a, aligned_b, strict=True))
    a = torch.arange(_numel(p.shape_a), device=ctx.device).reshape(p.shape_a)
    b = 10 * torch.arange(_numel(p.shape_b), device=ctx.device).reshape(p.shape_b)
    try:
        total = a + b
    except RuntimeError as e:
        return BroadcastResult(aligned_a, aligned_b, status, None, None, None, None, None, None, _error_text(e))
    shape = tuple(total.shape)
    drawn = total.numel() <= MAX_GRID
    return BroadcastResult(
        aligned_a, aligned_b, status, shape, tuple(a.expand(shape).stride()), tuple(b.expand(shape).stride()),
        _to_numpy(a) if drawn else None, _to_numpy(b) if drawn else None, _to_numpy(total) if drawn else None, None,
    )  # fmt: skip


def code_broadcast(p: BroadcastParams) -> str:
    """Return a script that adds the two tensors and prints the result shape or the error."""
    return f"""import torch

a = torch.arange({_numel(p.shape_a)}).reshape({p.shape_a})
b = 10 * torch.arange({_numel(p.shape_b)}).reshape({p.shape_b})
try:
    c = a + b
except RuntimeError as e:
    print("RuntimeError:", e)
else:
    print("result shape", tuple(c.shape))
    print("a expanded strides", a.expand(c.shape).stride(), "(0 = repeated without copying)")
    print("b expanded strides", b.expand(c.shape).stride())
    print(c)
"""


# --------------------------------------------------------------------------------------------
# 5. Indexing


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
    seed: int = SEED

    def roles(self) -> dict[str, str]:
        """Return the fields this op reads."""
        names = ("op", "rows", "cols", *INDEX_ROLES[self.op], "seed")
        return {n: n for n in names}


@dataclass(frozen=True)
class IndexResult:
    x: np.ndarray
    picked: np.ndarray  # bool, shape of x: which elements of x the operation read
    index: np.ndarray | None  # the mask or index tensor used
    out: np.ndarray | None
    expr: str
    torch_error: str | None


def _index_expr(p: IndexParams) -> str:
    return {
        "masked_select": f"torch.masked_select(x, x > {p.threshold})",
        "mask_assign": f"x[x > {p.threshold}] = 0",
        "nonzero": f"torch.nonzero(x > {p.threshold})",
        "index_select": f"torch.index_select(x, {p.dim}, torch.tensor({list(p.indices)}))",
        "gather": f"torch.gather(x, {p.dim}, index)",
    }[p.op]


def run_index(p: IndexParams, ctx: RunContext) -> IndexResult:
    """Apply one indexing operation to a random integer matrix; report which cells it read."""
    g = ctx.generator
    x = torch.randint(0, 10, (p.rows, p.cols), generator=g, device=ctx.device)
    x_np, expr = _to_numpy(x), _index_expr(p)
    mask = x > p.threshold
    try:
        if p.op == "masked_select":
            return IndexResult(x_np, _to_numpy(mask), _to_numpy(mask), _to_numpy(torch.masked_select(x, mask)),
                               expr, None)  # fmt: skip
        if p.op == "mask_assign":
            y = x.clone()
            y[mask] = 0
            return IndexResult(x_np, _to_numpy(mask), _to_numpy(mask), _to_numpy(y), expr, None)
        if p.op == "nonzero":
            return IndexResult(x_np, _to_numpy(mask), _to_numpy(mask), _to_numpy(torch.nonzero(mask)), expr, None)
        if p.op == "index_select":
            idx = torch.tensor(p.indices, device=ctx.device)
            out = torch.index_select(x, p.dim, idx)
            picked = torch.zeros_like(x, dtype=torch.bool).index_fill(p.dim, idx, True)
            return IndexResult(x_np, _to_numpy(picked), _to_numpy(idx), _to_numpy(out), expr, None)
        size = x.shape[p.dim]
        index = torch.randint(0, size, tuple(x.shape), generator=g, device=ctx.device)
        out = torch.gather(x, p.dim, index)
        picked = torch.zeros_like(x, dtype=torch.bool).scatter(p.dim, index, True)
        return IndexResult(x_np, _to_numpy(picked), _to_numpy(index), _to_numpy(out), expr, None)
    except (RuntimeError, IndexError) as e:
        return IndexResult(x_np, np.zeros_like(x_np, dtype=bool), None, None, expr, _error_text(e))


def code_index(p: IndexParams) -> str:
    """Return a script that repeats the indexing operation with the same random matrix."""
    setup = ""
    if p.op == "gather":
        setup = f"index = torch.randint(0, x.shape[{p.dim}], x.shape, generator=g)\nprint(index)\n"
    body = f"{_index_expr(p)}\nprint(x)" if p.op == "mask_assign" else f"print({_index_expr(p)})"
    return f"""import torch

g = torch.Generator().manual_seed({p.seed})
x = torch.randint(0, 10, ({p.rows}, {p.cols}), generator=g)
print(x)
{setup}try:
    {body.replace(chr(10), chr(10) + "    ")}
except (RuntimeError, IndexError) as e:
    print(type(e).__name__ + ":", e)
"""


# --------------------------------------------------------------------------------------------
# 6. In-place vs out-of-place


INPLACE_FORMS = ("out_of_place", "in_place", "augmented", "rebind", "out")
NUMERIC_DTYPES = ("float32", "int64")


@dataclass(frozen=True)
class InplaceParams(Params):
    form: str = field(default="in_place", metadata=choices(*INPLACE_FORMS))
    dtype: str = field(default="float32", metadata=choices(*NUMERIC_DTYPES))
    value: float = field(default=1.0, metadata=bounds(-100, 100, 0.5))
    n: int = field(default=6, metadata=bounds(1, 1_000_000))

    def estimate_bytes(self) -> int:
        return self.n * 8 * 4


@dataclass(frozen=True)
class InplaceResult:
    x_before: np.ndarray  # first values of x before the statement
    x_after: np.ndarray  # what the name x refers to afterwards
    alias_after: np.ndarray  # the original tensor object (another name for it, `x0 = x`)
    result: np.ndarray | None  # what the statement produced (y, or x itself)
    same_storage: bool  # the result lives in x's original memory
    new_bytes: int  # bytes of storage the statement allocated
    torch_error: str | None


SHOWN = 8  # values kept for display


def _scalar(p: InplaceParams) -> float | int:
    return int(p.value) if p.dtype == "int64" and float(p.value).is_integer() else p.value


def inplace_statement(p: InplaceParams) -> str:
    v = _scalar(p)
    return {
        "out_of_place": f"y = x.add({v})",
        "in_place": f"x.add_({v})",
        "augmented": f"x += {v}",
        "rebind": f"x = x + {v}",
        "out": f"buf = torch.empty_like(x); torch.add(x, {v}, out=buf)",
    }[p.form]


def run_inplace(p: InplaceParams, ctx: RunContext) -> InplaceResult:
    """Run one add statement; report what x, another name for x, and the result hold afterwards."""
    x = torch.arange(p.n, dtype=getattr(torch, p.dtype), device=ctx.device)
    alias, v = x, _scalar(p)
    ptr = x.untyped_storage().data_ptr()
    before = _to_numpy(x[:SHOWN])
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
        error = _error_text(e)
        result = None  # e.g. the `out` buffer was allocated, but nothing was written into it
    same = result is not None and result.untyped_storage().data_ptr() == ptr
    new_bytes = 0 if result is None or same else result.untyped_storage().nbytes()
    return InplaceResult(before, _to_numpy(x[:SHOWN]), _to_numpy(alias[:SHOWN]),
                         None if result is None else _to_numpy(result[:SHOWN]), same, new_bytes, error)  # fmt: skip


def code_inplace(p: InplaceParams) -> str:
    """Return a script running the same statement and printing who changed."""
    result = {"out_of_place": "y", "out": "buf"}.get(p.form, "x")
    return f"""import torch

x = torch.arange({p.n}, dtype=torch.{p.dtype})
x0 = x  # a second name for the same tensor object
ptr = x.untyped_storage().data_ptr()
try:
    {inplace_statement(p)}
except RuntimeError as e:
    print("RuntimeError:", e)
else:
    print("x  now", x[:{SHOWN}])
    print("x0 now", x0[:{SHOWN}])
    print("result in x's original memory:", {result}.untyped_storage().data_ptr() == ptr)
"""


# --------------------------------------------------------------------------------------------
# 7. NumPy: sharing vs copying


NUMPY_WAYS = ("from_numpy", "as_tensor", "tensor", "numpy")
NP_DTYPES = ("float64", "float32", "int64")


@dataclass(frozen=True)
class NumpyParams(Params):
    way: str = field(default="from_numpy", metadata=choices(*NUMPY_WAYS))
    np_dtype: str = field(default="float64", metadata=choices(*NP_DTYPES))
    as_dtype: str = field(default="same", metadata=choices("same", *NP_DTYPES))
    n: int = field(default=1_000_000, metadata=bounds(1, 10_000_000))

    def roles(self) -> dict[str, str]:
        """Return the fields this way reads (a target dtype only for as_tensor and tensor)."""
        names = ("way", "np_dtype", "as_dtype", "n") if self.way in ("as_tensor", "tensor") else ("way", "np_dtype", "n")
        return {n: n for n in names}

    def estimate_bytes(self) -> int:
        return self.n * 8 * 4


@dataclass(frozen=True)
class NumpyResult:
    shares: bool  # the tensor and the array use the same memory
    other_after: float  # element 0 of the other object after writing 99 into the first
    copied_bytes: int
    times_us: dict[str, float]  # median time of each way at size n, microseconds
    spreads_us: dict[str, float]  # interquartile range of those times


def _convert(way: str, arr: np.ndarray, as_dtype: str) -> torch.Tensor:
    dtype = None if as_dtype == "same" else getattr(torch, as_dtype)
    if way == "from_numpy":
        return torch.from_numpy(arr)
    if way == "as_tensor":
        return torch.as_tensor(arr, dtype=dtype)
    return torch.tensor(arr, dtype=dtype)


def _median_time_us(fn: Callable[[], object], ctx: RunContext, repeats: int = 7) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        ctx.check_deadline()
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float(med), float(q3 - q1)


def run_numpy(p: NumpyParams, ctx: RunContext) -> NumpyResult:
    """Convert between NumPy and torch one way, write into one side, and time every way."""
    if p.way == "numpy":
        t = torch.arange(p.n, dtype=getattr(torch, p.np_dtype))
        arr = t.numpy()
        t[0] = 99
        other, shares, copied = float(arr[0]), np.shares_memory(arr, t.numpy()), 0
    else:
        arr = np.arange(p.n, dtype=p.np_dtype)
        t = _convert(p.way, arr, p.as_dtype)
        arr[0] = 99
        other = float(t[0])
        shares = t.data_ptr() == arr.ctypes.data
        copied = 0 if shares else t.untyped_storage().nbytes()
    source = np.arange(p.n, dtype=p.np_dtype)
    tensor = torch.arange(p.n, dtype=getattr(torch, p.np_dtype))
    timed: dict[str, Callable[[], object]] = {
        "from_numpy": lambda: torch.from_numpy(source),
        "as_tensor": lambda: torch.as_tensor(source, dtype=None if p.as_dtype == "same" else getattr(torch, p.as_dtype)),
        "tensor": lambda: torch.tensor(source, dtype=None if p.as_dtype == "same" else getattr(torch, p.as_dtype)),
        "numpy": lambda: tensor.numpy(),
    }
    times, spreads = {}, {}
    for way, fn in timed.items():
        times[way], spreads[way] = _median_time_us(fn, ctx)
    return NumpyResult(bool(shares), other, copied, times, spreads)


def code_numpy(p: NumpyParams) -> str:
    """Return a script that converts the same way and shows whether memory is shared."""
    dtype = "" if p.as_dtype == "same" else f", dtype=torch.{p.as_dtype}"
    if p.way == "numpy":
        body = f"""t = torch.arange({p.n}, dtype=torch.{p.np_dtype})
arr = t.numpy()
t[0] = 99
print("arr[0] after writing t[0] = 99:", arr[0])"""
    else:
        call = {"from_numpy": "torch.from_numpy(arr)", "as_tensor": f"torch.as_tensor(arr{dtype})",
                "tensor": f"torch.tensor(arr{dtype})"}[p.way]  # fmt: skip
        body = f"""arr = np.arange({p.n}, dtype=np.{p.np_dtype})
t = {call}
arr[0] = 99
print("t[0] after writing arr[0] = 99:", t[0].item())
print("shares memory:", t.data_ptr() == arr.ctypes.data)"""
    return f"""import timeit

import numpy as np
import torch

{body}
src = np.arange({p.n}, dtype=np.{p.np_dtype})
for stmt in ("torch.from_numpy(src)", "torch.as_tensor(src)", "torch.tensor(src)"):
    seconds = min(timeit.repeat(stmt, globals=globals(), number=1, repeat=7))
    print(f"{{stmt:24}} {{seconds * 1e6:10.1f}} us")
"""


# --------------------------------------------------------------------------------------------
# 8. dtype conversions


DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
# Values chosen to show truncation, rounding, overflow and lost integers.
SAMPLE_VALUES = (-2.7, -0.5, 0.1, 0.5, 1.5, 2.5, 3.99, 200.0, 300.0, 70000.0, 16777217.0, 1e-8)


@dataclass(frozen=True)
class DtypeParams(Params):
    src: str = field(default="float32", metadata=choices(*DTYPES))
    dst: str = field(default="int64", metadata=choices(*DTYPES))
    n: int = field(default=1_000_000, metadata=bounds(1, 10_000_000))

    def estimate_bytes(self) -> int:
        return self.n * 8 * 3


@dataclass(frozen=True)
class DtypeResult:
    original: np.ndarray  # the sample values in float64
    in_src: np.ndarray  # after conversion to src (as float64 for display)
    in_dst: np.ndarray  # after src -> dst
    bytes_src: int  # per element
    bytes_dst: int
    same_object: bool  # .to(dst) returned the tensor itself (dst == src)
    time_us: float  # median time to convert n elements
    spread_us: float


def run_dtype(p: DtypeParams, ctx: RunContext) -> DtypeResult:
    """Convert sample values float64 -> src -> dst and time converting n elements."""
    src, dst = getattr(torch, p.src), getattr(torch, p.dst)
    original = torch.tensor(SAMPLE_VALUES, dtype=torch.float64, device=ctx.device)
    in_src = original.to(src)
    in_dst = in_src.to(dst)
    big = torch.ones(p.n, dtype=src, device=ctx.device)
    med, spread = _median_time_us(lambda: big.to(dst), ctx)

    def show(t: torch.Tensor) -> np.ndarray:
        return _to_numpy(t.to(torch.float64))

    return DtypeResult(show(original), show(in_src), show(in_dst), in_src.element_size(), in_dst.element_size(),
                       in_src.to(dst) is in_src, med, spread)  # fmt: skip


def code_dtype(p: DtypeParams) -> str:
    """Return a script that converts the same values and times the conversion."""
    return f"""import timeit

import torch

values = torch.tensor({list(SAMPLE_VALUES)}, dtype=torch.float64)
a = values.to(torch.{p.src})
b = a.to(torch.{p.dst})
for v, x, y in zip(values.tolist(), a.double().tolist(), b.double().tolist()):
    print(f"{{v:>14}} -> {p.src}: {{x:<14}} -> {p.dst}: {{y}}")
print("bytes per element:", a.element_size(), "->", b.element_size())
print(".to() returned the same tensor:", a.to(torch.{p.dst}) is a)
big = torch.ones({p.n}, dtype=torch.{p.src})
seconds = min(timeit.repeat(lambda: big.to(torch.{p.dst}), number=1, repeat=7))
print(f"converting {p.n} elements: {{seconds * 1e6:.1f}} us")
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


@dataclass(frozen=True)
class Experiment:
    """One experiment: its Params class, run function and code writer."""

    params: type[Params]
    run: Callable[[Any, RunContext], object]
    code: Callable[[Any], str]


EXPERIMENTS: dict[str, Experiment] = {
    "create": Experiment(CreateParams, run_create, code_create),
    "shape": Experiment(ShapeParams, run_shape, code_shape),
    "layout": Experiment(LayoutParams, run_layout, code_layout),
    "broadcast": Experiment(BroadcastParams, run_broadcast, code_broadcast),
    "index": Experiment(IndexParams, run_index, code_index),
    "inplace": Experiment(InplaceParams, run_inplace, code_inplace),
    "numpy": Experiment(NumpyParams, run_numpy, code_numpy),
    "dtype": Experiment(DtypeParams, run_dtype, code_dtype),
}
