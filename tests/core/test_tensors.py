"""The Tensors lesson against theory or an independent torch computation done here, in the test."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import tensors as T
from core.params import InvalidParams, Params
from core.runner import execute
from core.tensors import (
    DTYPES,
    INDEX_OPS,
    INPLACE_FORMS,
    LAYOUT_DERIVED,
    LAYOUT_TARGETS,
    NP_DTYPES,
    NUMERIC_DTYPES,
    NUMPY_WAYS,
    PREVIEW,
    SAMPLE_VALUES,
    SHAPE_OPS,
    SHOWN,
    BroadcastParams,
    CreateParams,
    DtypeParams,
    IndexParams,
    InplaceParams,
    LayoutParams,
    NumpyParams,
    ShapeParams,
)
from tests.params_strategies import any_params, check_runs_or_refused

CPU = torch.device("cpu")  # the seeded comparisons below use CPU generators
K = 5.0  # tolerance in standard deviations of the estimator
TIMING = frozenset({"times_us", "spreads_us", "time_us", "spread_us"})


def run(run_fn: Callable[[Any, Any], Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(run_fn, params, device=CPU)


def first_line(error: BaseException) -> str:
    """Return the first line of an exception's message, as a student reads it."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def dtype_of(name: str) -> torch.dtype:
    dtype = getattr(torch, name)
    assert isinstance(dtype, torch.dtype)
    return dtype


def itemsize(name: str) -> int:
    return torch.tensor([], dtype=dtype_of(name)).element_size()


def assert_same(a: Any, b: Any, path: str = "result") -> None:
    """Assert two results are equal in every field except timings (arrays exactly, NaN == NaN)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            if f.name not in TIMING:
                assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), path
    elif isinstance(a, tuple | list):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


# --------------------------------------------------------------------------------------------
# Layout inspector

LAYOUT_SIZES = [(3, 4), (1, 5), (4, 1), (2, 2), (6, 8)]
ALL_VIEWS = tuple(LAYOUT_DERIVED)

# The same derived tensors, spelled independently of core/tensors.py.
MY_DERIVED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "t": lambda x: x.transpose(0, 1),
    "row": lambda x: x.select(0, x.shape[0] - 1),
    "col_step": lambda x: x[:, 0 : x.shape[1] : 2],
    "flat": lambda x: x.view(x.numel()),
    "diagonal": lambda x: torch.diagonal(x),
    "expand": lambda x: x[0].unsqueeze(0).expand(x.shape[0], -1),
    "detach": lambda x: x.detach(),
    "numpy": lambda x: torch.from_numpy(x.numpy()),
    "contiguous": lambda x: x.transpose(0, 1).contiguous(),
    "clone": lambda x: x.clone(),
    "fancy": lambda x: x[torch.tensor([0, x.shape[0] - 1])],
    "repeat": lambda x: torch.cat([x, x], dim=1),
    "tensor": lambda x: torch.tensor(x.numpy()),
    "reshape_t": lambda x: torch.reshape(x.transpose(0, 1), (-1,)),
}


def my_layout(rows: int, cols: int) -> dict[str, torch.Tensor]:
    """Return x and every derived tensor, built here (kept alive together, so pointers are distinct)."""
    x = torch.arange(rows * cols).reshape(rows, cols)
    return {"x": x, **{name: build(x) for name, build in MY_DERIVED.items()}}


def shares(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def test_my_derived_covers_every_view() -> None:
    assert set(MY_DERIVED) == set(LAYOUT_DERIVED)
    assert ("x", *LAYOUT_DERIVED) == LAYOUT_TARGETS


@pytest.mark.parametrize(("rows", "cols"), LAYOUT_SIZES)
def test_layout_facts_match_torch(rows: int, cols: int) -> None:
    result = run(T.run_layout, LayoutParams(rows, cols, views=ALL_VIEWS, edit_target="x", edit_index=0))
    mine = my_layout(rows, cols)
    assert [f.name for f in result.before] == list(mine)
    for facts in result.before:
        t = mine[facts.name]
        assert facts.shape == tuple(t.shape), facts.name
        assert facts.stride == t.stride(), facts.name
        assert facts.offset == t.storage_offset(), facts.name
        assert facts.contiguous == t.is_contiguous(), facts.name
        assert (facts.storage_id == 0) == shares(t, mine["x"]), facts.name
        np.testing.assert_array_equal(facts.values, t.numpy(), err_msg=facts.name)
    for a in result.before:
        for b in result.before:
            assert (a.storage_id == b.storage_id) == shares(mine[a.name], mine[b.name]), (a.name, b.name)


@pytest.mark.parametrize(("rows", "cols"), LAYOUT_SIZES)
def test_layout_storage_index_reads_the_storage(rows: int, cols: int) -> None:
    result = run(T.run_layout, LayoutParams(rows, cols, views=ALL_VIEWS, edit_target="x", edit_index=0))
    np.testing.assert_array_equal(result.storages_before[0], np.arange(rows * cols))
    for facts in result.before:
        storage = result.storages_before[facts.storage_id]
        cells = torch.arange(storage.size).as_strided(facts.shape, facts.stride, facts.offset).numpy()
        np.testing.assert_array_equal(facts.storage_index, cells, err_msg=facts.name)
        np.testing.assert_array_equal(storage[facts.storage_index], facts.values, err_msg=facts.name)


@pytest.mark.parametrize(("rows", "cols"), LAYOUT_SIZES)
def test_layout_expressions_shown_build_the_same_tensors(rows: int, cols: int) -> None:
    mine = my_layout(rows, cols)
    for name in LAYOUT_DERIVED:
        shown = eval(T.layout_expr(name, rows, cols), {"torch": torch, "x": mine["x"]})
        t = mine[name]
        assert (tuple(shown.shape), shown.stride(), shown.storage_offset()) == (
            tuple(t.shape), t.stride(), t.storage_offset()), name  # fmt: skip
        assert shares(shown, mine["x"]) == shares(t, mine["x"]), name
        assert torch.equal(shown, t), name


def edit_cases() -> list[tuple[int, int, str, int]]:
    cases = []
    for rows, cols in LAYOUT_SIZES:
        mine = my_layout(rows, cols)
        for target in LAYOUT_TARGETS:
            numel = mine[target].numel()
            cases += [(rows, cols, target, i) for i in sorted({0, numel // 2, numel - 1})]
    return cases


@pytest.mark.parametrize(("rows", "cols", "target", "index"), edit_cases())
def test_layout_edit_changes_what_torch_changes(rows: int, cols: int, target: str, index: int) -> None:
    value = -7
    result = run(T.run_layout, LayoutParams(rows, cols, ALL_VIEWS, target, index, value))
    mine = my_layout(rows, cols)
    before = {name: t.clone() for name, t in mine.items()}
    position = tuple(int(i) for i in np.unravel_index(index, tuple(mine[target].shape)))
    try:
        mine[target][position] = value
        error = None
    except RuntimeError as e:
        error = first_line(e)
    assert result.edit_position == position
    assert result.edit_error == error
    for name, t in mine.items():
        np.testing.assert_array_equal(result.changed(name), (t != before[name]).numpy(), err_msg=name)
    for facts in result.after:
        np.testing.assert_array_equal(facts.values, mine[facts.name].numpy(), err_msg=facts.name)


@pytest.mark.parametrize(("rows", "cols"), [(3, 4), (6, 8), (2, 1)])
def test_expand_edit_changes_a_column_and_one_element_of_x(rows: int, cols: int) -> None:
    i, j = rows - 1, cols - 1
    result = run(T.run_layout, LayoutParams(rows, cols, ("expand",), "expand", i * cols + j, 500))
    column = np.zeros((rows, cols), dtype=bool)
    column[:, j] = True
    one = np.zeros((rows, cols), dtype=bool)
    one[0, j] = True
    assert result.edit_error is None
    np.testing.assert_array_equal(result.changed("expand"), column)
    np.testing.assert_array_equal(result.changed("x"), one)


def test_layout_rejects_edits_it_cannot_show() -> None:
    with pytest.raises(InvalidParams) as e:
        run(T.run_layout, LayoutParams(views=("clone",), edit_target="t"))
    assert e.value.field == "edit_target"
    with pytest.raises(InvalidParams) as e:
        run(T.run_layout, LayoutParams(3, 4, views=("row",), edit_target="row", edit_index=4))
    assert e.value.field == "edit_index"


# --------------------------------------------------------------------------------------------
# Shape operations

# The same operations, spelled independently of core/tensors.py.
MY_SHAPE_OPS: dict[str, Callable[[torch.Tensor, ShapeParams], torch.Tensor | tuple[torch.Tensor, ...]]] = {
    "view": lambda x, p: x.view(*p.new_shape),
    "reshape": lambda x, p: torch.reshape(x, p.new_shape),
    "squeeze": lambda x, p: torch.squeeze(x, p.dim),
    "unsqueeze": lambda x, p: torch.unsqueeze(x, p.dim),
    "transpose": lambda x, p: torch.transpose(x, p.dim, p.dim2),
    "permute": lambda x, p: torch.permute(x, p.perm),
    "flatten": lambda x, p: torch.flatten(x, p.dim, p.dim2),
    "cat": lambda x, p: torch.cat((x, x + 100), p.dim),
    "stack": lambda x, p: torch.stack((x, x + 100), p.dim),
    "chunk": lambda x, p: torch.chunk(x, p.size, p.dim),
    "split": lambda x, p: x.split(p.size, p.dim),
}
SHAPE_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "view": [{"new_shape": s} for s in [(4, -1), (-1,), (2, -1, 2), (5, -1)]],
    "reshape": [{"new_shape": s} for s in [(4, -1), (-1,), (2, -1, 2), (5, -1)]],
    "squeeze": [{"dim": d} for d in (0, 2, -1, 4)],
    "unsqueeze": [{"dim": d} for d in (0, -1, 4)],
    "transpose": [{"dim": d, "dim2": d2} for d, d2 in [(0, 1), (-1, 0), (1, 3)]],
    "permute": [{"perm": p} for p in [(2, 0, 1), (1, 0), (3, 2, 1, 0)]],
    "flatten": [{"dim": d, "dim2": d2} for d, d2 in [(0, -1), (1, 2), (2, 1)]],
    "cat": [{"dim": d} for d in (0, -1, 3)],
    "stack": [{"dim": d} for d in (0, -1, 3)],
    "chunk": [{"size": s, "dim": d} for s, d in [(2, 0), (3, -1), (8, 1)]],
    "split": [{"size": s, "dim": d} for s, d in [(2, 0), (3, -1), (8, 1)]],
}
SHAPE_CASES = [ShapeParams(op=op) for op in SHAPE_OPS] + [
    ShapeParams(op=op, shape=shape, transposed=transposed, **variant)
    for shape in [(2, 3, 4), (4, 6), (1, 3, 1, 2), (8,)]
    for transposed in (False, True)
    for op, variants in SHAPE_VARIANTS.items()
    for variant in variants
]


def query_id(p: Params) -> str:
    return "&".join(f"{k[2:]}={v}" for k, v in p.to_query("p").items())


def assert_facts(facts: T.TensorFacts, t: torch.Tensor, x: torch.Tensor) -> None:
    assert facts.shape == tuple(t.shape), facts.name
    assert facts.stride == t.stride(), facts.name
    assert facts.offset == t.storage_offset(), facts.name
    assert facts.ptr_offset == t.storage_offset() * t.element_size(), facts.name
    assert facts.contiguous == t.is_contiguous(), facts.name
    assert (facts.storage_id == 0) == shares(t, x), facts.name
    np.testing.assert_array_equal(facts.values, t.numpy(), err_msg=facts.name)


def test_shape_variants_cover_every_op() -> None:
    assert set(MY_SHAPE_OPS) == set(SHAPE_OPS) == set(SHAPE_VARIANTS)


@pytest.mark.parametrize("p", SHAPE_CASES, ids=query_id)
def test_shape_op_matches_torch(p: ShapeParams) -> None:
    result = run(T.run_shape, p)
    x = torch.arange(math.prod(p.shape)).view(p.shape)
    if p.transposed and x.ndim > 1:
        x = x.transpose(0, x.ndim - 1)
    assert_facts(result.input, x, x)
    try:
        out = MY_SHAPE_OPS[p.op](x, p)
    except Exception as e:  # whatever torch raises is what the page must report
        assert result.torch_error == first_line(e)
        assert result.outputs == ()
        return
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert result.torch_error is None
    assert len(result.outputs) == len(outs)
    names = ["y"] if isinstance(out, torch.Tensor) else [f"y[{i}]" for i in range(len(outs))]
    for facts, name, t in zip(result.outputs, names, outs, strict=True):
        assert facts.name == name
        assert_facts(facts, t, x)


def test_view_of_transposed_input_reports_torch_error() -> None:
    p = ShapeParams(op="view", shape=(2, 3, 4), transposed=True, new_shape=(-1,))
    with pytest.raises(RuntimeError) as e:
        torch.arange(24).reshape(2, 3, 4).transpose(0, -1).view(-1)
    assert run(T.run_shape, p).torch_error == first_line(e.value)
    reshaped = run(T.run_shape, dataclasses.replace(p, op="reshape"))
    assert reshaped.torch_error is None and reshaped.outputs[0].storage_id != 0  # reshape had to copy


def test_shape_rejects_too_many_cells() -> None:
    with pytest.raises(InvalidParams):
        run(T.run_shape, ShapeParams(shape=(8, 8, 8)))


# --------------------------------------------------------------------------------------------
# Broadcasting

SIZE = st.one_of(st.sampled_from([1, 1, 2, 3]), st.integers(1, 8))
SHAPE = st.lists(SIZE, max_size=6).map(tuple)


@settings(max_examples=150, deadline=None, database=None)
@given(shape_a=SHAPE, shape_b=SHAPE)
def test_broadcast_matches_torch(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    result = run(T.run_broadcast, BroadcastParams(shape_a, shape_b))
    a = np.arange(math.prod(shape_a)).reshape(shape_a)
    b = np.asarray(10 * np.arange(math.prod(shape_b)).reshape(shape_b))
    try:
        expected = tuple(torch.broadcast_shapes(shape_a, shape_b))
    except RuntimeError:
        assert result.torch_error is not None and result.result_shape is None
        assert result.a is None and result.b is None and result.total is None
        assert "mismatch" in result.status
        return
    assert result.torch_error is None and "mismatch" not in result.status
    assert result.result_shape == expected
    if math.prod(expected) <= T.MAX_GRID:  # values are kept only when the page draws them
        np.testing.assert_array_equal(result.a, a)
        np.testing.assert_array_equal(result.b, b)
        np.testing.assert_array_equal(result.total, a + b)
    else:
        assert result.a is None and result.b is None and result.total is None
    dims = len(expected)
    for shape, aligned, stride, values in [
        (shape_a, result.aligned_a, result.stride_a, a),
        (shape_b, result.aligned_b, result.stride_b, b),
    ]:
        assert aligned == (None,) * (dims - len(shape)) + shape
        for size, step, out in zip(aligned, stride, expected, strict=True):
            if out != 1:  # a stride along a dimension of size 1 is never used, so it can be anything
                assert (step == 0) == (size in (None, 1))
        # Reading the operand's storage with the reported strides gives the broadcast operand.
        read = torch.as_strided(torch.from_numpy(values).flatten(), expected, stride).numpy()
        np.testing.assert_array_equal(read, np.broadcast_to(values, expected))


def test_broadcast_status_names_who_is_one() -> None:
    result = run(T.run_broadcast, BroadcastParams((3, 1, 5), (4, 2)))
    assert result.status == ("b_is_1", "a_is_1", "mismatch")
    assert result.aligned_b == (None, 4, 2)
    assert run(T.run_broadcast, BroadcastParams((2, 1), (2, 7))).status == ("equal", "a_is_1")


# --------------------------------------------------------------------------------------------
# Creation: random functions against their distribution


def my_sample(p: CreateParams) -> torch.Tensor:
    """Draw what the experiment draws, with a CPU generator seeded the same way."""
    g = torch.Generator().manual_seed(p.seed)
    draws: dict[str, Callable[[], torch.Tensor]] = {
        "rand": lambda: torch.rand(p.n, generator=g),
        "randn": lambda: torch.randn(p.n, generator=g),
        "normal": lambda: torch.normal(p.a, p.b, size=(p.n,), generator=g),
        "randint": lambda: torch.randint(int(p.a), int(p.b), (p.n,), generator=g),
        "randperm": lambda: torch.randperm(p.n, generator=g),
        "bernoulli": lambda: torch.bernoulli(torch.full((p.n,), p.p), generator=g),
    }
    return draws[p.fn]()


def discrete_law(p: CreateParams) -> tuple[np.ndarray, np.ndarray]:
    """Return (support, probabilities) of a discrete random function."""
    if p.fn == "randint":
        support = np.arange(int(p.a), int(p.b), dtype=np.float64)
        return support, np.full(support.size, 1 / support.size)
    if p.fn == "bernoulli":
        return np.array([0.0, 1.0]), np.array([1 - p.p, p.p])
    return np.arange(p.n, dtype=np.float64), np.full(p.n, 1 / p.n)  # randperm: each value once


def moments(p: CreateParams) -> tuple[float, float, float]:
    """Return the true mean, std and fourth central moment of the sampled distribution."""
    if p.fn == "rand":
        return 0.5, math.sqrt(1 / 12), 1 / 80
    if p.fn in ("randn", "normal"):
        mean, std = (0.0, 1.0) if p.fn == "randn" else (p.a, p.b)
        return mean, std, 3 * std**4
    support, prob = discrete_law(p)
    mean = float(prob @ support)
    return mean, math.sqrt(float(prob @ (support - mean) ** 2)), float(prob @ (support - mean) ** 4)


def cdf(p: CreateParams, x: np.ndarray) -> np.ndarray:
    if p.fn == "rand":
        return np.clip(x, 0.0, 1.0)
    mean, std, _ = moments(p)
    return np.array([0.5 * (1 + math.erf((v - mean) / (std * math.sqrt(2)))) for v in x])


RANDOM_CASES = [
    CreateParams(fn="rand", n=20_000, seed=0),
    CreateParams(fn="rand", n=1, seed=3),
    CreateParams(fn="randn", n=20_000, seed=1),
    CreateParams(fn="randn", n=50_000, seed=12345),
    CreateParams(fn="normal", n=20_000, a=3.0, b=2.0, seed=2),
    CreateParams(fn="normal", n=20_000, a=-50.0, b=0.5, seed=4),
    CreateParams(fn="randint", n=20_000, a=-3.0, b=4.0, seed=5),
    CreateParams(fn="randint", n=20_000, a=0.0, b=2.0, seed=6),
    CreateParams(fn="randint", n=20_000, a=-2.5, b=90.5, seed=7),
    CreateParams(fn="bernoulli", n=20_000, p=0.3, seed=8),
    CreateParams(fn="bernoulli", n=20_000, p=0.97, seed=9),
    CreateParams(fn="bernoulli", n=500, p=1.0, seed=9),
    CreateParams(fn="randperm", n=1000, seed=10),
    CreateParams(fn="randperm", n=1, seed=10),
]


@pytest.mark.parametrize("p", RANDOM_CASES, ids=query_id)
def test_random_creation_matches_theory(p: CreateParams) -> None:
    result = run(T.run_create, p)
    mean, std, mu4 = moments(p)
    assert result.torch_error is None and result.random
    assert result.theory_mean == pytest.approx(mean, abs=1e-12)
    assert result.theory_std == pytest.approx(std, abs=1e-12)
    n = p.n
    if p.fn == "randperm":  # a permutation of 0..n-1: its statistics are exact
        assert result.mean == pytest.approx(mean) and result.std == pytest.approx(std)
        return
    assert abs(result.mean - mean) <= K * std / math.sqrt(n) + 1e-12
    if std > 0:  # sd of the sample std: sqrt((mu4 - sigma^4) / (4 sigma^2 n)); bias ~ sigma / n
        assert abs(result.std - std) <= K * math.sqrt((mu4 - std**4) / (4 * std**2 * n)) + std / n
    else:
        assert result.std == 0.0


@pytest.mark.parametrize("p", RANDOM_CASES, ids=query_id)
def test_random_creation_histogram(p: CreateParams) -> None:
    result = run(T.run_create, p)
    sample = my_sample(p).double().numpy()
    np.testing.assert_array_equal(result.values, sample[:PREVIEW])
    assert result.mean == pytest.approx(sample.mean(), rel=1e-9, abs=1e-12)
    assert result.std == pytest.approx(sample.std(), rel=1e-9, abs=1e-12)
    assert result.shape == (p.n,) and result.nbytes == my_sample(p).untyped_storage().nbytes()
    if p.fn == "randperm":
        assert result.counts.size == 0
        return
    assert result.counts.shape == result.expected.shape == result.bin_x.shape
    n = p.n
    if result.discrete:
        support, prob = discrete_law(p)
        np.testing.assert_array_equal(result.bin_x, support)
        np.testing.assert_array_equal(result.counts, [(sample == v).sum() for v in support])
        assert result.counts.sum() == n
        np.testing.assert_allclose(result.expected, n * prob)
        bin_prob = prob
    else:
        edges = np.append(result.bin_x - result.bin_width / 2, result.bin_x[-1] + result.bin_width / 2)
        np.testing.assert_allclose(np.diff(result.bin_x), result.bin_width)
        np.testing.assert_array_equal(result.counts, np.histogram(sample, bins=edges)[0])
        assert result.counts.sum() == ((sample >= edges[0]) & (sample <= edges[-1])).sum()
        bin_prob = np.diff(cdf(p, edges))
        np.testing.assert_allclose(result.expected, n * bin_prob, rtol=1e-9, atol=1e-9)
    assert result.expected.sum() == pytest.approx(n, rel=1e-3)
    # Each bin count is binomial(n, prob): within K standard deviations (plus one for tiny bins).
    assert np.all(np.abs(result.counts - n * bin_prob) <= K * np.sqrt(n * bin_prob * (1 - bin_prob)) + 1)


def test_seed_changes_random_values() -> None:
    a = run(T.run_create, CreateParams(fn="randn", n=100, seed=1))
    b = run(T.run_create, CreateParams(fn="randn", n=100, seed=2))
    assert not np.array_equal(a.values, b.values)


DETERMINISTIC_CASES: list[tuple[CreateParams, Callable[[], torch.Tensor]]] = [
    (CreateParams(fn="arange", a=-2.0, b=5.0, step=0.5), lambda: torch.arange(-2.0, 5.0, 0.5)),
    (CreateParams(fn="arange", a=0.0, b=1.0, step=0.01), lambda: torch.arange(0.0, 1.0, 0.01)),
    (CreateParams(fn="linspace", a=-1.0, b=1.0, n=11), lambda: torch.linspace(-1.0, 1.0, 11)),
    (CreateParams(fn="linspace", a=3.0, b=3.0, n=1), lambda: torch.linspace(3.0, 3.0, 1)),
    (CreateParams(fn="logspace", a=-2.0, b=2.0, n=9), lambda: torch.logspace(-2.0, 2.0, 9)),
    (CreateParams(fn="eye", n=5), lambda: torch.eye(5)),
    (CreateParams(fn="zeros", n=7), lambda: torch.zeros(7)),
    (CreateParams(fn="ones", n=3000), lambda: torch.ones(3000)),
    (CreateParams(fn="full", n=7, a=2.5), lambda: torch.full((7,), 2.5)),
]


@pytest.mark.parametrize(("p", "build"), DETERMINISTIC_CASES, ids=[query_id(p) for p, _ in DETERMINISTIC_CASES])
def test_deterministic_creation_matches_torch(p: CreateParams, build: Callable[[], torch.Tensor]) -> None:
    result = run(T.run_create, p)
    t = build()
    x = t.double().flatten().numpy()
    assert result.torch_error is None and not result.random
    assert result.shape == tuple(t.shape) and result.dtype == str(t.dtype).removeprefix("torch.")
    assert result.nbytes == t.numel() * t.element_size()
    np.testing.assert_array_equal(result.values, x[:PREVIEW])
    assert result.mean == pytest.approx(x.mean()) and result.std == pytest.approx(x.std(), abs=1e-12)
    assert result.theory_mean is None and result.counts.size == 0


def test_arange_with_wrong_step_sign_reports_torch_error() -> None:
    with pytest.raises(RuntimeError) as e:
        torch.arange(5.0, 0.0, 1.0)
    assert run(T.run_create, CreateParams(fn="arange", a=5.0, b=0.0)).torch_error == first_line(e.value)


@pytest.mark.parametrize("n", [1, 1000, 123_457])
def test_empty_allocates_and_shows_nothing(n: int) -> None:
    result = run(T.run_create, CreateParams(fn="empty", n=n))
    assert result.nbytes == n * itemsize("float32")
    assert result.shape == (n,) and result.values.size == 0 and result.counts.size == 0


@pytest.mark.parametrize(
    "p",
    [
        CreateParams(fn="normal", b=0.0),
        CreateParams(fn="normal", b=-1.0),
        CreateParams(fn="randint", a=3.0, b=3.0),
        CreateParams(fn="randint", a=3.0, b=-4.0),
        CreateParams(fn="randint", a=0.5, b=0.9),  # both truncate to 0
    ],
    ids=query_id,
)
def test_invalid_creation_combinations_are_rejected(p: CreateParams) -> None:
    with pytest.raises(InvalidParams):
        run(T.run_create, p)


def test_bernoulli_accepts_integer_probability() -> None:
    result = run(T.run_create, CreateParams(fn="bernoulli", n=100, p=1))
    assert result.torch_error is None and result.mean == 1.0


# --------------------------------------------------------------------------------------------
# Indexing


def my_matrix(p: IndexParams) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(p.seed)
    return torch.randint(0, 10, (p.rows, p.cols), generator=g), g


def my_index(p: IndexParams) -> tuple[np.ndarray | None, np.ndarray]:
    """Return (out, picked) for the op, or (None, no cells) where the op cannot run."""
    x, g = my_matrix(p)
    a = x.numpy()
    mask = a > p.threshold
    if p.op == "masked_select":
        return a[mask], mask
    if p.op == "mask_assign":
        return np.where(mask, 0, a), mask
    if p.op == "nonzero":
        return np.argwhere(mask), mask
    dim = p.dim % 2
    picked = np.zeros_like(mask)
    if p.op == "index_select":
        if max(p.indices) >= a.shape[dim]:
            return None, picked
        idx = list(p.indices)
        picked[(idx, slice(None)) if dim == 0 else (slice(None), idx)] = True
        return (a[idx] if dim == 0 else a[:, idx]), picked
    index = torch.randint(0, a.shape[dim], a.shape, generator=g).numpy()
    out = np.empty_like(a)
    for i, j in np.ndindex(*a.shape):  # out[i][j] = x[index[i][j]][j] (dim 0) or x[i][index[i][j]] (dim 1)
        cell = (index[i, j], j) if dim == 0 else (i, index[i, j])
        out[i, j] = a[cell]
        picked[cell] = True
    return out, picked


INDEX_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "masked_select": [{"threshold": t} for t in (0, 5, 9)],
    "mask_assign": [{"threshold": t} for t in (0, 5, 9)],
    "nonzero": [{"threshold": t} for t in (0, 5, 9)],
    "index_select": [{"dim": d, "indices": i} for d, i in [(0, (0, 2)), (1, (3, 3, 0)), (-1, (7,)), (-2, (1, 0))]],
    "gather": [{"dim": d} for d in (0, 1, -1, -2)],
}
INDEX_CASES = [
    IndexParams(op=op, rows=rows, cols=cols, seed=seed, **variant)
    for op, variants in INDEX_VARIANTS.items()
    for variant in variants
    for rows, cols in [(4, 5), (1, 1), (8, 3)]
    for seed in (0, 7)
] + [IndexParams(op=op) for op in INDEX_OPS]


def test_index_variants_cover_every_op() -> None:
    assert set(INDEX_VARIANTS) == set(INDEX_OPS)


@pytest.mark.parametrize("p", INDEX_CASES, ids=query_id)
def test_index_op_matches_torch(p: IndexParams) -> None:
    result = run(T.run_index, p)
    out, picked = my_index(p)
    np.testing.assert_array_equal(result.x, my_matrix(p)[0].numpy())
    np.testing.assert_array_equal(result.picked, picked)
    if out is None:
        assert result.torch_error is not None and result.out is None
    else:
        assert result.torch_error is None
        np.testing.assert_array_equal(result.out, out)


def test_nonzero_lists_exactly_the_picked_cells() -> None:
    result = run(T.run_index, IndexParams(op="nonzero", rows=8, cols=8, threshold=4, seed=3))
    assert {tuple(row) for row in result.out} == set(zip(*np.nonzero(result.picked), strict=True))


# --------------------------------------------------------------------------------------------
# In-place vs out-of-place


def typed_value(dtype: str, value: float) -> float | int:
    """The scalar as the student writes it: an integer for an integer tensor when it is whole."""
    return int(value) if dtype == "int64" and value.is_integer() else value


def _augmented(x: torch.Tensor, v: float | int) -> torch.Tensor:
    x += v
    return x


MY_STATEMENTS: dict[str, Callable[[torch.Tensor, float | int], torch.Tensor]] = {
    "out_of_place": lambda x, v: x.add(v),
    "in_place": lambda x, v: x.add_(v),
    "augmented": _augmented,
    "rebind": lambda x, v: x + v,
    "out": lambda x, v: torch.add(x, v, out=torch.empty_like(x)),
}
INPLACE_CASES = [
    InplaceParams(form, dtype, value, n)
    for form in INPLACE_FORMS
    for dtype in NUMERIC_DTYPES
    for value in (1.0, -2.0, 0.5, 2.5)
    for n in (6, 50)
]


@pytest.mark.parametrize("p", INPLACE_CASES, ids=query_id)
def test_inplace_semantics(p: InplaceParams) -> None:
    result = run(T.run_inplace, p)
    x = torch.arange(p.n, dtype=dtype_of(p.dtype))
    v = typed_value(p.dtype, p.value)
    out_dtype = torch.result_type(x, v)
    writes_x = p.form in ("in_place", "augmented", "out")  # the result must fit x's dtype
    before = np.arange(p.n)[:SHOWN]
    summed = before + v
    np.testing.assert_array_equal(result.x_before, before)
    if writes_x and out_dtype != x.dtype:
        with pytest.raises(RuntimeError) as e:
            MY_STATEMENTS[p.form](x, v)
        assert result.torch_error == first_line(e.value)
        np.testing.assert_array_equal(result.alias_after, before)
        np.testing.assert_array_equal(result.x_after, before)
        return
    assert result.torch_error is None
    np.testing.assert_allclose(result.result, summed, rtol=1e-6)
    in_place = p.form in ("in_place", "augmented")
    assert result.same_storage == in_place
    bytes_each = torch.tensor([], dtype=x.dtype if p.form == "out" else out_dtype).element_size()
    assert result.new_bytes == (0 if in_place else p.n * bytes_each)
    np.testing.assert_allclose(result.alias_after, summed if in_place else before, rtol=1e-6)
    np.testing.assert_allclose(result.x_after, summed if p.form in ("in_place", "augmented", "rebind") else before,
                               rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize(
    "form",
    [
        "in_place",
        "augmented",
        "out",
    ],
)
def test_inplace_error_produces_no_result(form: str) -> None:
    result = run(T.run_inplace, InplaceParams(form=form, dtype="int64", value=0.5, n=6))
    assert result.torch_error is not None
    assert result.result is None


# --------------------------------------------------------------------------------------------
# NumPy sharing vs copying

NUMPY_CASES = [
    NumpyParams(way, np_dtype, as_dtype, 1000)
    for way in NUMPY_WAYS
    for np_dtype in NP_DTYPES
    for as_dtype in ("same", *NP_DTYPES)
]


def my_shares(p: NumpyParams) -> tuple[bool, str]:
    """Convert here; return (memory shared?, the tensor's dtype)."""
    if p.way == "numpy":
        t = torch.arange(p.n, dtype=dtype_of(p.np_dtype))
        return bool(np.shares_memory(t.numpy(), t.numpy())), p.np_dtype
    arr = np.arange(p.n, dtype=p.np_dtype)
    dtype = None if p.as_dtype == "same" else dtype_of(p.as_dtype)
    t = {
        "from_numpy": lambda: torch.from_numpy(arr),
        "as_tensor": lambda: torch.as_tensor(arr, dtype=dtype),
        "tensor": lambda: torch.tensor(arr, dtype=dtype),
    }[p.way]()
    return bool(np.shares_memory(arr, t.numpy())), str(t.dtype).removeprefix("torch.")


@pytest.mark.parametrize("p", NUMPY_CASES, ids=query_id)
def test_numpy_sharing(p: NumpyParams) -> None:
    result = run(T.run_numpy, p)
    shared, dtype = my_shares(p)
    expected = p.way in ("from_numpy", "numpy") or (p.way == "as_tensor" and p.as_dtype in ("same", p.np_dtype))
    assert shared == expected  # the theory agrees with torch here
    assert result.shares == shared
    assert result.other_after == (99.0 if shared else 0.0)  # arange starts at 0; 99 is written to the other side
    assert result.copied_bytes == (0 if shared else p.n * itemsize(dtype))
    assert set(result.times_us) == set(result.spreads_us) == set(NUMPY_WAYS)
    assert all(math.isfinite(t) and t > 0 for t in result.times_us.values())


# --------------------------------------------------------------------------------------------
# dtype conversions

DTYPE_PAIRS = [(src, dst) for src in DTYPES for dst in DTYPES]
FLOATS = ("float64", "float32", "float16", "bfloat16")


@pytest.mark.parametrize(("src", "dst"), DTYPE_PAIRS)
def test_dtype_conversion(src: str, dst: str) -> None:
    result = run(T.run_dtype, DtypeParams(src, dst, n=16))
    values = torch.tensor(SAMPLE_VALUES, dtype=torch.float64)
    in_src = values.to(dtype_of(src))
    in_dst = in_src.to(dtype_of(dst))
    np.testing.assert_array_equal(result.original, np.array(SAMPLE_VALUES))
    np.testing.assert_array_equal(result.in_src, in_src.double().numpy())
    np.testing.assert_array_equal(result.in_dst, in_dst.double().numpy())
    assert result.bytes_src == itemsize(src) and result.bytes_dst == itemsize(dst)
    assert result.same_object == (src == dst)
    assert result.time_us > 0
    if dst == "bool":
        np.testing.assert_array_equal(result.in_dst, (result.in_src != 0).astype(float))
    elif src in FLOATS and dst not in FLOATS:  # float -> integer truncates toward zero, where it fits
        info = torch.iinfo(dtype_of(dst))
        truncated = np.trunc(result.in_src)
        fits = np.isfinite(truncated) & (truncated >= info.min) & (truncated <= info.max)
        np.testing.assert_array_equal(result.in_dst[fits], truncated[fits])


def test_float_to_int_truncates_toward_zero() -> None:
    result = run(T.run_dtype, DtypeParams("float32", "int64", n=16))
    i = SAMPLE_VALUES.index(-2.7)
    assert result.in_dst[i] == -2.0 == math.trunc(-2.7)


@pytest.mark.parametrize("dtype", FLOATS)
def test_large_odd_integer_exact_only_with_enough_mantissa(dtype: str) -> None:
    result = run(T.run_dtype, DtypeParams(dtype, "float64", n=16))
    i = SAMPLE_VALUES.index(16777217.0)  # 2**24 + 1 needs 25 significant bits
    significant_bits = 1 - round(math.log2(torch.finfo(dtype_of(dtype)).eps))
    assert (result.in_src[i] == 16777217.0) == (significant_bits >= 25)


# --------------------------------------------------------------------------------------------
# Determinism, also under concurrency

DETERMINISM_CASES: list[tuple[Callable[[Any, Any], Any], Params]] = [
    *[(T.run_create, CreateParams(fn=fn, n=5000, seed=11)) for fn in sorted(T.RANDOM_FNS)],
    (T.run_create, CreateParams(fn="normal", n=3000, a=-4.0, b=3.5, seed=2**31 - 1)),
    *[(T.run_index, IndexParams(op=op, rows=8, cols=8, seed=42)) for op in INDEX_OPS],
    (T.run_index, IndexParams(op="gather", dim=1, seed=5)),
    (T.run_shape, ShapeParams(op="split", shape=(4, 6), transposed=True, size=3, dim=1)),
    (T.run_layout, LayoutParams(views=ALL_VIEWS, edit_target="expand", edit_index=5)),
    (T.run_broadcast, BroadcastParams((3, 1, 4), (5, 1))),
    (T.run_inplace, InplaceParams(form="rebind", dtype="int64", value=0.5)),
    (T.run_numpy, NumpyParams(way="as_tensor", as_dtype="float32", n=1000)),
    (T.run_dtype, DtypeParams("bfloat16", "int8", n=100)),
]


@pytest.mark.parametrize(("run_fn", "p"), DETERMINISM_CASES, ids=[query_id(p) for _, p in DETERMINISM_CASES])
def test_same_params_same_result(run_fn: Callable[[Any, Any], Any], p: Params) -> None:
    reference = run(run_fn, p)
    assert_same(run(run_fn, p), reference)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: run(run_fn, p), range(8)))
    for result in results:
        assert_same(result, reference)


def test_mixed_experiments_from_eight_threads() -> None:
    references = [run(fn, p) for fn, p in DETERMINISM_CASES]
    jobs = DETERMINISM_CASES * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    for result, reference in zip(results, references * 2, strict=True):
        assert_same(result, reference)


# --------------------------------------------------------------------------------------------
# Property: every input runs or is refused cleanly


def experiments() -> list[tuple[type[Params], Callable[[Any, Any], Any], type]]:
    """Return (Params class, run function, Result class) for every experiment in core/tensors.py."""
    found = []
    for name, cls in inspect.getmembers(T, inspect.isclass):
        if issubclass(cls, Params) and cls is not Params and cls.__module__ == T.__name__:
            stem = name.removesuffix("Params")
            found.append((cls, getattr(T, f"run_{stem.lower()}"), getattr(T, f"{stem}Result")))
    return found


EXPERIMENTS = experiments()


def test_every_experiment_is_found() -> None:
    names = {cls.__name__ for cls, _, _ in EXPERIMENTS}
    assert names >= {"CreateParams", "ShapeParams", "LayoutParams", "BroadcastParams", "IndexParams",
                     "InplaceParams", "NumpyParams", "DtypeParams"}  # fmt: skip


@pytest.mark.parametrize(("cls", "run_fn", "result_type"), EXPERIMENTS, ids=[c.__name__ for c, _, _ in EXPERIMENTS])
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(
    cls: type[Params], run_fn: Callable[[Any, Any], Any], result_type: type, data: st.DataObject
) -> None:
    check_runs_or_refused(run_fn, data.draw(any_params(cls)), result_type)
