"""Reductions with dim/keepdim, clamp, and the loop against the vectorised op, against NumPy or Python computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.lessons.tensors import loop as tensors_loop
from core.lessons.tensors import reduce as tensors_reduce
from core.lessons.tensors.loop import CLAMP, LoopParams
from core.lessons.tensors.reduce import ReduceParams
from core.params import InvalidParams
from tests.params_strategies import query_id, run_cpu

GRID = [(op, d, k) for op in ("sum", "mean", "max", "argmax") for d in (0, 1, 2) for k in (False, True)]
REDUCE_CASES = [
    ReduceParams(),
    *tensors_reduce.REDUCE.examples,
    *(ReduceParams(op=op, shape=(2, 3, 4), dim=d, keepdim=k) for op, d, k in GRID),
    ReduceParams(op="sum", shape=(3, 3), dim=0),
    ReduceParams(op="clamp", shape=(4, 6), low=-3.0, high=4.5, seed=2),
]


def numpy_reduce(op: str, x: np.ndarray, dim: int, keepdims: bool) -> np.ndarray:
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "argmax": np.argmax}[op]
    return np.asarray(fn(x, axis=dim, keepdims=keepdims))


@pytest.mark.parametrize("p", REDUCE_CASES, ids=query_id)
def test_reductions_and_clamp_against_numpy(p: ReduceParams) -> None:
    r = run_cpu(tensors_reduce.run, p)
    x = r.x.astype(np.float64)
    assert x.shape == p.shape and np.all((x >= 0) & (x <= 9) & (x == np.round(x)))
    if p.op == "clamp":
        expected = np.minimum(np.maximum(x, p.low), p.high)  # torch's rule, also for min > max: everything is max
        np.testing.assert_array_equal(r.out, expected)
        np.testing.assert_array_equal(r.picked, expected != x)
        assert r.shape_drop == r.shape_keep == p.shape and r.back_keep is None
        return
    drop, keep = numpy_reduce(p.op, x, p.dim, False), numpy_reduce(p.op, x, p.dim, True)
    assert r.shape_drop == drop.shape == tuple(s for i, s in enumerate(p.shape) if i != p.dim)
    assert r.shape_keep == keep.shape == tuple(1 if i == p.dim else s for i, s in enumerate(p.shape))
    np.testing.assert_allclose(r.out, keep if p.keepdim else drop, rtol=1e-6)
    if p.op == "argmax":
        # keepdim=True lets gather read the maxima back; without it the index has one dimension too few.
        np.testing.assert_array_equal(r.back_keep, np.take_along_axis(x, keep, axis=p.dim))
        np.testing.assert_array_equal(r.back_keep, numpy_reduce("max", x, p.dim, True))
        assert r.back_drop is None and "same number of dimensions" in (r.back_drop_error or "")
    else:
        np.testing.assert_allclose(r.back_keep, x - keep, rtol=1e-6)
        try:
            by_numpy: np.ndarray | None = x - drop  # NumPy's broadcasting rules are torch's
        except ValueError:
            by_numpy = None
        if by_numpy is None:
            assert r.back_drop is None and "must match the size" in (r.back_drop_error or "")
        else:
            assert r.back_drop is not None and r.back_drop_error is None
            np.testing.assert_allclose(r.back_drop, by_numpy, rtol=1e-6)
            assert r.back_drop_right == (by_numpy.shape == x.shape and np.allclose(by_numpy, x - keep))
    if p.op in ("max", "argmax"):
        # One marked cell per slice along dim, holding that slice's maximum.
        assert np.array_equal(r.picked.sum(axis=p.dim), np.ones(drop.shape))
        assert np.all(x[r.picked] == np.broadcast_to(numpy_reduce("max", x, p.dim, True), x.shape)[r.picked])
    else:
        assert r.picked.all()


def test_a_square_matrix_without_keepdim_runs_and_subtracts_the_wrong_means() -> None:
    r = run_cpu(tensors_reduce.run, ReduceParams(op="mean", shape=(4, 4), dim=1))
    assert r.back_drop is not None and r.back_drop_error is None and not r.back_drop_right
    row_means = r.x.mean(axis=1)
    np.testing.assert_allclose(r.back_drop, r.x - row_means[None, :], rtol=1e-6)  # row i's mean lands in column i
    np.testing.assert_allclose(r.back_keep.mean(axis=1), np.zeros(4), atol=1e-5)  # keepdim: every row centred


def test_a_dim_the_shape_lacks_is_refused() -> None:
    with pytest.raises(InvalidParams) as e:
        ReduceParams(shape=(3, 4), dim=2).validate()
    assert e.value.field == "dim"
    assert set(ReduceParams(op="clamp").roles()) == {"op", "shape", "low", "high", "seed"}
    assert "keepdim" in ReduceParams().roles() and "low" not in ReduceParams().roles()


def test_shape_prediction() -> None:
    prediction = tensors_reduce.SUM_SHAPE
    assert prediction.answer(run_cpu(tensors_reduce.run, prediction.params)) == "(2, 4)"
    assert "(2, 4)" in prediction.options and "(2, 1, 4)" in prediction.options


def test_the_script_states_what_ran() -> None:
    p = ReduceParams(op="argmax", shape=(2, 3, 4), dim=1, keepdim=True)
    script = tensors_reduce.REDUCE.write_script(p)
    assert "r = x.argmax(dim=1, keepdim=True)" in script and "x.gather(1, r)" in script
    assert "r = x.argmax(dim=1, keepdim=False)" in script


# --------------------------------------------------------------------------------------------
# A Python loop against the vectorised op


@pytest.mark.parametrize("p", [LoopParams(n=100), LoopParams(n=37, seed=5)], ids=query_id)
def test_loop_sums_are_the_sums_computed_here(p: LoopParams) -> None:
    r = run_cpu(tensors_loop.run, p)
    x = torch.randn(p.n, generator=torch.Generator().manual_seed(p.seed))
    assert r.ways == ("tensor_loop", "list_loop", "vectorised") and (r.n, r.op) == (p.n, "sum")
    acc32 = np.float32(0)
    for v in x.numpy():  # the tensor loop adds float32 to float32, one element at a time
        acc32 = np.float32(acc32 + v)
    acc64 = 0.0
    for v in x.tolist():
        acc64 += v
    assert r.values[0] == float(acc32)
    assert r.values[1] == acc64
    assert r.values[2] == pytest.approx(float(x.double().sum()), rel=1e-5)
    assert r.max_diff == pytest.approx(max(abs(r.values[0] - r.values[2]), abs(r.values[1] - r.values[2])), rel=1e-12)


def test_loop_clamps_agree_exactly() -> None:
    p = LoopParams(op="clamp", n=300, seed=1)
    r = run_cpu(tensors_loop.run, p)
    x = torch.randn(p.n, generator=torch.Generator().manual_seed(p.seed)).numpy().astype(np.float64)
    expected = float(np.clip(x, *CLAMP).astype(np.float32).astype(np.float64).sum())
    np.testing.assert_allclose(r.values, [expected] * 3, rtol=1e-12)
    assert r.max_diff == 0.0


def test_loop_over_tensor_elements_is_slowest_and_the_times_are_consistent() -> None:
    r = run_cpu(tensors_loop.run, LoopParams(n=1000))
    assert r.threads == torch.get_num_threads()
    assert np.all(r.q25_us <= r.median_us + 1e-9) and np.all(r.median_us <= r.q75_us + 1e-9) and np.all(r.median_us > 0)
    # 1,000 elements: a thousand rounds of torch's per-call overhead against one call.
    assert r.speedup("tensor_loop") > 10 and r.speedup("tensor_loop") > r.speedup("list_loop")
    assert tensors_loop.LOOP_FACTOR.answer(r) == ("over_100x" if r.speedup("tensor_loop") > 100 else "under_100x")
    assert LoopParams(n=50_000).estimate_work() > LoopParams(n=10).estimate_work()
