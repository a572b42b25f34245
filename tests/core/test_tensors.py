"""The Tensors lesson against theory or an independent torch computation done here, in the test."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.experiment import Experiment
from core.lessons import tensors as lesson
from core.lessons.tensors.broadcast import BROADCAST, BROADCAST_SHAPE, BroadcastParams
from core.lessons.tensors.common import MAX_GRID, TensorFacts
from core.lessons.tensors.create import CREATE, PREVIEW, CreateParams
from core.lessons.tensors.dtype import DTYPE, DTYPES, SAMPLE_VALUES, DtypeParams
from core.lessons.tensors.index import INDEX, INDEX_OPS, IndexParams
from core.lessons.tensors.inplace import INPLACE, INPLACE_FORMS, INT_INPLACE, NUMERIC_DTYPES, SHOWN, InplaceParams
from core.lessons.tensors.layout import LAYOUT, LAYOUT_DERIVED, LAYOUT_TARGETS, STRIDE_T, LayoutParams, layout_expr
from core.lessons.tensors.numpy_sharing import NP_DTYPES, NUMPY, NUMPY_WAYS, NumpyParams
from core.lessons.tensors.shape import SHAPE, SHAPE_OPS, VIEW_T, ShapeParams
from core.params import InvalidParams, Params, ladder_values
from core.runner import execute

CPU = torch.device("cpu")  # the seeded comparisons below use CPU generators
K = 5.0  # tolerance in standard deviations of the estimator


def run(experiment: Experiment[Any, Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(experiment.run, params, device=CPU, exclusive=experiment.exclusive)


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


# --------------------------------------------------------------------------------------------
# The lesson's declarations


def test_lesson_lists_every_experiment_in_tab_order() -> None:
    names = [e.name for e in lesson.EXPERIMENTS]
    assert names == [
        "create",
        "shape",
        "layout",
        "broadcast",
        "index",
        "reduce",
        "loop",
        "inplace",
        "numpy",
        "dtype",
        "tensor_pitfalls",
    ]
    # The reduce tab holds reduce and loop; the pitfalls tab runs tensor_pitfalls.
    tabs = [n for n in names if n != "loop"]
    assert (*tabs[:-1], "pitfalls") == lesson.TABS
    predictions = ["view_t", "stride_t", "broadcast", "reduce_shape", "loop_factor", "int_inplace"]
    assert [p.name for p in lesson.PREDICTIONS] == predictions


def test_timing_experiments_run_alone() -> None:
    assert {e.name for e in lesson.EXPERIMENTS if e.exclusive} == {"loop", "numpy", "dtype"}


# --------------------------------------------------------------------------------------------
# Predictions: each answer is the theory's


def test_view_of_a_transposed_tensor_fails() -> None:
    assert VIEW_T.answer(run(SHAPE, VIEW_T.params)) == "fails"  # no single stride walks x.t() as one flat row


def test_transpose_swaps_the_strides() -> None:
    assert STRIDE_T.answer(run(LAYOUT, STRIDE_T.params)) == "(1, 7)"  # x (5, 7) has stride (7, 1)


def test_broadcast_shape_takes_the_larger_size_of_each_aligned_pair() -> None:
    assert BROADCAST_SHAPE.answer(run(BROADCAST, BROADCAST_SHAPE.params)) == "(8, 7, 6, 5)"


def test_int_tensor_cannot_add_a_float_in_place() -> None:
    assert INT_INPLACE.answer(run(INPLACE, INT_INPLACE.params)) == "error"  # the float sum cannot be cast to int64


def test_every_answer_is_one_of_its_options() -> None:
    for prediction in lesson.PREDICTIONS:
        assert prediction.answer(run(prediction.experiment, prediction.params)) in prediction.options, prediction.name


# --------------------------------------------------------------------------------------------
# Sliders: the element slider stops at the edited tensor's last element; sizes move on a 1-2-5 ladder


@pytest.mark.parametrize(
    ("rows", "cols", "target", "last"),
    [
        (3, 4, "x", 11),
        (3, 4, "t", 11),
        (3, 4, "row", 3),
        (3, 4, "col_step", 5),
        (3, 4, "diagonal", 2),
        (3, 4, "repeat", 23),
        (3, 4, "fancy", 7),
        (6, 8, "repeat", 95),
        (1, 1, "x", 0),
        (1, 5, "diagonal", 0),
    ],
)
def test_edit_index_stops_at_the_targets_last_element(rows: int, cols: int, target: str, last: int) -> None:
    views = () if target == "x" else (target,)
    p = LayoutParams(rows, cols, views=views, edit_target=target, edit_index=last)
    assert p.max_index() == last
    spec = next(s for s in LayoutParams.specs() if s.name == "edit_index")
    assert p.upper_bound(spec) == last
    p.validate()
    with pytest.raises(InvalidParams) as e:
        dataclasses.replace(p, edit_index=last + 1).validate()
    assert e.value.field == "edit_index" and e.value.info["hi"] == last


def test_a_link_past_the_last_element_lands_on_it() -> None:
    query = {
        "layout.rows": "3",
        "layout.cols": "4",
        "layout.views": "row",
        "layout.edit_target": "row",
        "layout.edit_index": "90",
    }
    p, rejected = LayoutParams.from_query(query, "layout")
    assert p.edit_target == "row" and p.edit_index == 3
    assert [r.field for r in rejected] == ["edit_index"]


@pytest.mark.parametrize(
    ("cls", "name", "hi"),
    [(CreateParams, "n", 10**6), (InplaceParams, "n", 10**6), (NumpyParams, "n", 10**7), (DtypeParams, "n", 10**7)],
)
def test_sizes_spanning_decades_move_on_a_125_ladder(cls: type[Params], name: str, hi: int) -> None:
    spec = next(s for s in cls.specs() if s.name == name)
    assert spec.meta["lo"] == 1 and spec.meta["hi"] == hi
    assert spec.meta["ladder"] == ladder_values(1, hi, "125")
    assert spec.meta["ladder"][:4] == (1, 2, 5, 10) and spec.meta["ladder"][-1] == hi
    cls(**{name: 300}).validate()  # a value between the stops (a link's, or in-place's default 6) stays valid


def test_only_seeds_are_number_boxes() -> None:
    for experiment in lesson.EXPERIMENTS:
        for spec in experiment.params.specs():
            if spec.kind in ("int", "float"):
                assert spec.meta.get("exact") is None, (experiment.name, spec.name)
                assert bool(spec.meta.get("seed")) == (spec.name == "seed"), (experiment.name, spec.name)


# --------------------------------------------------------------------------------------------
# Layout inspector

LAYOUT_SIZES = [(3, 4), (1, 5), (4, 1), (2, 2), (6, 8)]
ALL_VIEWS = tuple(LAYOUT_DERIVED)

# The same derived tensors, spelled independently of core/lessons/tensors.
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
    result = run(LAYOUT, LayoutParams(rows, cols, views=ALL_VIEWS, edit_target="x", edit_index=0))
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
    result = run(LAYOUT, LayoutParams(rows, cols, views=ALL_VIEWS, edit_target="x", edit_index=0))
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
        shown = eval(layout_expr(name, rows, cols), {"torch": torch, "x": mine["x"]})
        t = mine[name]
        assert (tuple(shown.shape), shown.stride(), shown.storage_offset()) == (
            tuple(t.shape),
            t.stride(),
            t.storage_offset(),
        ), name
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
    result = run(LAYOUT, LayoutParams(rows, cols, ALL_VIEWS, target, index, value))
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
    result = run(LAYOUT, LayoutParams(rows, cols, ("expand",), "expand", i * cols + j, 500))
    column = np.zeros((rows, cols), dtype=bool)
    column[:, j] = True
    one = np.zeros((rows, cols), dtype=bool)
    one[0, j] = True
    assert result.edit_error is None
    np.testing.assert_array_equal(result.changed("expand"), column)
    np.testing.assert_array_equal(result.changed("x"), one)


def test_whole_tensor_add_is_refused_on_expand_and_changes_every_alias_elsewhere() -> None:
    # The prose: add_ on an expanded tensor is refused (several elements share one cell) and
    # changes nothing; on a transpose it adds to every element of x through the shared storage.
    refused = run(LAYOUT, LayoutParams(3, 4, ("expand", "t"), "expand", edit_value=10, edit_op="add_"))
    assert refused.edit_error is not None and "single memory location" in refused.edit_error
    assert not any(refused.changed(name).any() for name in ("x", "expand", "t"))
    x = torch.arange(12).reshape(3, 4)
    with pytest.raises(RuntimeError, match="single memory location"):
        x[0].expand(3, 4).add_(10)
    done = run(LAYOUT, LayoutParams(3, 4, ("t", "clone"), "t", edit_value=10, edit_op="add_"))
    assert done.edit_error is None and done.edit_position == ()
    assert done.changed("x").all() and done.changed("t").all() and not done.changed("clone").any()
    np.testing.assert_array_equal(done.after[0].values, (x + 10).numpy())
    assert "edit_index" not in LayoutParams(edit_op="add_").roles()


def test_layout_rejects_edits_it_cannot_show() -> None:
    with pytest.raises(InvalidParams) as e:
        run(LAYOUT, LayoutParams(views=("clone",), edit_target="t"))
    assert e.value.field == "edit_target"
    with pytest.raises(InvalidParams) as e:
        run(LAYOUT, LayoutParams(3, 4, views=("row",), edit_target="row", edit_index=4))
    assert e.value.field == "edit_index"


# --------------------------------------------------------------------------------------------
# Shape operations

# The same operations, spelled independently of core/lessons/tensors.
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


def assert_facts(facts: TensorFacts, t: torch.Tensor, x: torch.Tensor) -> None:
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
    result = run(SHAPE, p)
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
    assert run(SHAPE, p).torch_error == first_line(e.value)
    reshaped = run(SHAPE, dataclasses.replace(p, op="reshape"))
    assert reshaped.torch_error is None and reshaped.outputs[0].storage_id != 0  # reshape had to copy


def test_shape_rejects_too_many_cells() -> None:
    with pytest.raises(InvalidParams):
        run(SHAPE, ShapeParams(shape=(8, 8, 8)))


# --------------------------------------------------------------------------------------------
# Broadcasting

SIZE = st.one_of(st.sampled_from([1, 1, 2, 3]), st.integers(1, 8))
SHAPES = st.lists(SIZE, max_size=6).map(tuple)


@settings(max_examples=150, deadline=None, database=None)
@given(shape_a=SHAPES, shape_b=SHAPES)
def test_broadcast_matches_torch(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    result = run(BROADCAST, BroadcastParams(shape_a, shape_b))
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
    if math.prod(expected) <= MAX_GRID:  # values are kept only when the page draws them
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
    result = run(BROADCAST, BroadcastParams((3, 1, 5), (4, 2)))
    assert result.status == ("b_is_1", "a_is_1", "mismatch")
    assert result.aligned_b == (None, 4, 2)
    assert run(BROADCAST, BroadcastParams((2, 1), (2, 7))).status == ("equal", "a_is_1")


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
    result = run(CREATE, p)
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
    result = run(CREATE, p)
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
    a = run(CREATE, CreateParams(fn="randn", n=100, seed=1))
    b = run(CREATE, CreateParams(fn="randn", n=100, seed=2))
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
    result = run(CREATE, p)
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
    assert run(CREATE, CreateParams(fn="arange", a=5.0, b=0.0)).torch_error == first_line(e.value)


@pytest.mark.parametrize("n", [1, 1000, 123_457])
def test_empty_allocates_and_shows_nothing(n: int) -> None:
    result = run(CREATE, CreateParams(fn="empty", n=n))
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
        run(CREATE, p)


def test_bernoulli_accepts_integer_probability() -> None:
    result = run(CREATE, CreateParams(fn="bernoulli", n=100, p=1))
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
    result = run(INDEX, p)
    out, picked = my_index(p)
    np.testing.assert_array_equal(result.x, my_matrix(p)[0].numpy())
    np.testing.assert_array_equal(result.picked, picked)
    if out is None:
        assert result.torch_error is not None and result.out is None
    else:
        assert result.torch_error is None
        np.testing.assert_array_equal(result.out, out)


def test_nonzero_lists_exactly_the_picked_cells() -> None:
    result = run(INDEX, IndexParams(op="nonzero", rows=8, cols=8, threshold=4, seed=3))
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
    result = run(INPLACE, p)
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
    np.testing.assert_allclose(result.x_after, summed if p.form in ("in_place", "augmented", "rebind") else before, rtol=1e-6)


@pytest.mark.parametrize(
    "form",
    [
        "in_place",
        "augmented",
        "out",
    ],
)
def test_inplace_error_produces_no_result(form: str) -> None:
    result = run(INPLACE, InplaceParams(form=form, dtype="int64", value=0.5, n=6))
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
    result = run(NUMPY, p)
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
    result = run(DTYPE, DtypeParams(src, dst, n=16))
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
    result = run(DTYPE, DtypeParams("float32", "int64", n=16))
    i = SAMPLE_VALUES.index(-2.7)
    assert result.in_dst[i] == -2.0 == math.trunc(-2.7)


@pytest.mark.parametrize("dtype", FLOATS)
def test_large_odd_integer_exact_only_with_enough_mantissa(dtype: str) -> None:
    result = run(DTYPE, DtypeParams(dtype, "float64", n=16))
    i = SAMPLE_VALUES.index(16777217.0)  # 2**24 + 1 needs 25 significant bits
    significant_bits = 1 - round(math.log2(torch.finfo(dtype_of(dtype)).eps))
    assert (result.in_src[i] == 16777217.0) == (significant_bits >= 25)
