"""The Gradient-accumulation lesson against theory and against gradients computed here, in the test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from core import accumulation as A
from core.accumulation import CurvesParams, EquivParams, ModelSpec, NormParams
from core.params import InvalidParams, Params
from core.runner import execute
from tests.params_strategies import any_params, assert_same, assert_same_from_threads, check_runs_or_refused, query_id
from tests.scripts import Ran, after, numbers, run_scripts

CPU = torch.device("cpu")  # the seeded comparisons use CPU generators
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Relative error of an accumulated gradient that is exact in theory: a few hundred roundings at most.
EXACT = {"float32": 1e-5, "float64": 1e-13}


def run(run_fn: Callable[[Any, Any], Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(run_fn, params, device=CPU)


def flat(ts: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([t.double().flatten() for t in ts])


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).item())


def grad_of(net: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """Return d loss / d parameters, flattened, computed here with torch.autograd.grad."""
    return flat(torch.autograd.grad(loss, list(net.parameters())))


# --------------------------------------------------------------------------------------------
# 1. equiv


@dataclass
class EquivSetup:
    """The run's network and batches, rebuilt here from the seed in the run's order."""

    net: nn.Sequential
    X: torch.Tensor
    y: torch.Tensor
    X2: torch.Tensor
    y2: torch.Tensor


def equiv_setup(p: EquivParams) -> EquivSetup:
    g = torch.Generator().manual_seed(p.seed)
    spec, dtype = ModelSpec(p.model, p.width, p.depth), DTYPES[p.dtype]
    teacher = A.make_teacher(g, CPU)
    X, y = A.make_batch(spec, p.batch, teacher, g, CPU, dtype)
    X2, y2 = A.make_batch(spec, p.batch, teacher, g, CPU, dtype)
    return EquivSetup(A.build_model(spec, g, CPU, dtype), X, y, X2, y2)


EVEN_CASES = [
    EquivParams(),
    EquivParams(dtype="float64", seed=4),
    EquivParams(model="cnn", batch=12, accum_steps=3, width=16, seed=1),
    EquivParams(model="cnn", batch=16, accum_steps=8, width=8, depth=3, dtype="float64"),
    EquivParams(batch=64, accum_steps=64, width=32, depth=4, dtype="float64", seed=2),
]


@pytest.mark.parametrize("p", EVEN_CASES, ids=query_id)
def test_dividing_by_k_gives_the_full_batch_gradient_and_the_mistakes_scale_it(p: EquivParams) -> None:
    r = run(A.run_equiv, p)
    k = p.accum_steps
    divide, weighted, no_divide, seeds, _ = range(5)
    assert r.variants == A.VARIANTS and r.even and r.micro_sizes == (p.batch // k,) * k
    assert r.eps == torch.finfo(DTYPES[p.dtype]).eps
    for v in (divide, weighted):
        assert r.overall_rel[v] < EXACT[p.dtype], r.overall_rel
        assert np.all(r.rel[v] < 10 * EXACT[p.dtype]), r.rel[v]
        assert r.scale[v] == pytest.approx(1, abs=EXACT[p.dtype])
    # sum_i g_i = k g_full for equal micro-batches: k times too big, and (1 + 1/k) k = k + 1 for the notes' line.
    assert r.predicted_scale[:4] == (1.0, 1.0, k, k + 1)
    assert r.scale[no_divide] == pytest.approx(k, rel=1e-5)
    assert r.scale[seeds] == pytest.approx(k + 1, rel=1e-5)
    assert r.overall_rel[no_divide] == pytest.approx(k - 1, rel=1e-5, abs=1e-5)  # ||k g - g|| / ||g||
    assert r.overall_rel[seeds] == pytest.approx(k, rel=1e-5)
    assert np.allclose(r.rel[seeds], k, rtol=1e-4)  # every parameter tensor alike
    # The largest difference is where the gradient is largest: (factor - 1) max |g| for a scaled gradient.
    assert r.max_abs.shape == r.rel.shape == (5, len(r.param_names))
    assert r.preview.shape == r.preview_ref.shape and r.preview.shape[0] == 5
    np.testing.assert_allclose(r.preview[seeds], (k + 1) * r.preview_ref[seeds], rtol=1e-4, atol=1e-6 * r.ref_norm[seeds])


def test_the_reported_gradient_is_the_one_computed_here() -> None:
    p = EquivParams(model="cnn", batch=12, accum_steps=3, width=16, depth=2, dtype="float64", seed=7)
    r = run(A.run_equiv, p)
    s = equiv_setup(p)
    loss = F.cross_entropy(s.net(s.X), s.y)
    g_full = grad_of(s.net, loss)
    assert r.loss == pytest.approx(loss.item(), rel=1e-14)
    assert r.ref_norm[0] == pytest.approx(g_full.norm().item(), rel=1e-12)
    names = [n for n, _ in s.net.named_parameters()]
    assert list(r.param_names) == names == ["0.weight", "0.bias", "3.weight", "3.bias", "8.weight", "8.bias"]
    assert list(r.param_shapes) == [tuple(w.shape) for w in s.net.parameters()]
    # The notes' line, recomputed here by the chain rule: d(loss + loss/k) = (1 + 1/k) d loss per micro-batch.
    micro = [
        grad_of(s.net, F.cross_entropy(s.net(X_i), y_i))
        for X_i, y_i in zip(torch.tensor_split(s.X, 3), torch.tensor_split(s.y, 3), strict=True)
    ]
    seeds = (1 + 1 / 3) * sum(micro, torch.zeros_like(g_full))
    assert r.overall_rel[3] == pytest.approx(rel_error(seeds, g_full), rel=1e-10)
    assert r.preview_ref[0] == pytest.approx(g_full[np.linspace(0, g_full.numel() - 1, A.PREVIEW).astype(np.int64)].numpy())


def test_an_uneven_split_breaks_divide_by_k_but_not_the_n_i_over_B_weighting() -> None:
    p = EquivParams(batch=10, accum_steps=4, width=16, dtype="float64", seed=3)
    r = run(A.run_equiv, p)
    k, B = 4, 10
    assert r.micro_sizes == (3, 3, 2, 2) and not r.even
    np.testing.assert_allclose(r.micro_weights, [B / (k * n) for n in (3, 3, 2, 2)])
    assert r.predicted_scale[:4] == (None, 1.0, None, None)
    assert r.overall_rel[1] < EXACT["float64"]  # weighted: exact for any split
    assert r.overall_rel[0] > 1e-3  # divide: samples of small micro-batches weigh more
    # no_divide = k * divide and seeds = (k + 1) * divide, whatever the split.
    assert r.scale[2] == pytest.approx(k * r.scale[0], rel=1e-12)
    assert r.scale[3] == pytest.approx((k + 1) * r.scale[0], rel=1e-12)
    # Independently: divide is the gradient of sum_j loss_j / (k n_i) -- a per-sample weighting, computed here.
    s = equiv_setup(p)
    g_full = grad_of(s.net, F.cross_entropy(s.net(s.X), s.y))
    weights = torch.tensor([1 / (k * n) for n in (3, 3, 2, 2) for _ in range(n)], dtype=torch.float64)
    per_sample = F.cross_entropy(s.net(s.X), s.y, reduction="none")
    g_divide = grad_of(s.net, (weights * per_sample).sum())
    assert r.overall_rel[0] == pytest.approx(rel_error(g_divide, g_full), rel=1e-9)
    assert r.scale[0] == pytest.approx(float(g_divide @ g_full / (g_full @ g_full)), rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forgetting_zero_grad_adds_the_previous_steps_gradient(dtype: str) -> None:
    p = EquivParams(batch=24, accum_steps=3, width=32, dtype=dtype, seed=5)
    r = run(A.run_equiv, p)
    # Computed here: the first batch's gradient, one SGD step, the second batch's gradient at the new weights.
    s = equiv_setup(p)
    g_prev = torch.autograd.grad(F.cross_entropy(s.net(s.X), s.y), list(s.net.parameters()))
    with torch.no_grad():
        for w, d in zip(s.net.parameters(), g_prev, strict=True):
            w.sub_(A.STALE_LR * d)
    g_ref = grad_of(s.net, F.cross_entropy(s.net(s.X2), s.y2))
    predicted = (flat(g_prev).norm() / g_ref.norm()).item()
    tol = EXACT[dtype]
    assert r.ref_norm[4] == pytest.approx(g_ref.norm().item(), rel=100 * tol)
    assert r.stale_rel_predicted == pytest.approx(predicted, rel=100 * tol)
    # The error is the previous gradient itself: the relative error is what it predicts, the residual rounding.
    assert r.overall_rel[4] == pytest.approx(r.stale_rel_predicted, rel=100 * tol)
    assert r.stale_residual <= 100 * tol * r.ref_norm[4]
    assert r.scale[4] == pytest.approx(r.predicted_scale[4], rel=100 * tol)
    assert r.predicted_scale[4] == pytest.approx(1 + float(flat(g_prev) @ g_ref / (g_ref @ g_ref)), rel=100 * tol)


def test_equiv_refuses_more_micro_batches_than_samples_and_too_much_work() -> None:
    with pytest.raises(InvalidParams) as e:
        EquivParams(batch=8, accum_steps=9).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("accum_steps", "more_than_batch", {"batch": 8})
    EquivParams(batch=8, accum_steps=8).validate()
    p = EquivParams(model="cnn", batch=512, accum_steps=4, width=256, depth=6)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("batch", "too_much_work")
    largest = e.value.info["max"]
    assert dataclasses.replace(p, batch=largest).work() <= A.MAX_WORK < dataclasses.replace(p, batch=largest + 1).work()
    # With 64 micro-batches the batch cannot drop below 64: the width has to give instead.
    p = dataclasses.replace(p, accum_steps=64)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("width", "too_much_work")
    dataclasses.replace(p, width=e.value.info["max"]).validate()


# --------------------------------------------------------------------------------------------
# 2. norm


def line_index(line: str) -> int:
    return A.LINES.index(line)


@pytest.mark.parametrize(
    "p",
    [NormParams(), NormParams(dtype="float64", seed=2), NormParams(model="cnn", batch=8, width=8, k_max=8, dtype="float64")],
    ids=query_id,
)
def test_batchnorm_breaks_the_equality_and_the_other_norms_keep_it(p: NormParams) -> None:
    r = run(A.run_norm, p)
    assert r.ks.tolist() == [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= min(p.k_max, p.batch)]
    assert r.rel.shape == r.max_abs.shape == (len(A.LINES), len(r.ks)) and r.skipped == ()
    bn = r.rel[line_index("batchnorm")]
    assert bn[0] < EXACT[p.dtype]  # k = 1 is the full batch itself
    assert np.all(bn[1:] > 1e-3), bn  # each micro-batch normalised with its own mean and variance
    for line in ("none", "batchnorm_eval", "groupnorm", "layernorm"):
        assert np.all(r.rel[line_index(line)] < EXACT[p.dtype]), (line, r.rel[line_index(line)])
    assert np.all(np.isfinite(r.loss)) and np.all(r.grad_norm > 0)


def test_first_batchnorm_input_statistics_are_those_computed_here() -> None:
    for p in (NormParams(batch=20, show_k=3, width=16, seed=6), NormParams(model="cnn", batch=6, width=8, show_k=4)):
        r = run(A.run_norm, p)
        g = torch.Generator().manual_seed(p.seed)
        spec = ModelSpec(p.model, p.width, p.depth, "batchnorm")
        teacher = A.make_teacher(g, CPU)
        X, _ = A.make_batch(spec, p.batch, teacher, g, CPU)
        net = A.build_model(spec, g, CPU)
        C = min(A.STAT_CHANNELS, p.width)
        with torch.no_grad():
            h = net[0](X)[:, :C].double()
        dims = [0] if p.model == "mlp" else [0, 2, 3]
        parts = [h, *torch.tensor_split(h, p.show_k)]
        assert r.channels == C and r.stat_mean.shape == r.stat_var.shape == (p.show_k + 1, C)
        assert r.show_sizes == tuple(len(t) for t in parts[1:])
        for i, part in enumerate(parts):
            np.testing.assert_allclose(r.stat_mean[i], part.mean(dim=dims).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(r.stat_var[i], part.var(dim=dims, unbiased=False).numpy(), rtol=1e-5, atol=1e-6)
        # Running statistics: x <- 0.9 x + 0.1 (batch statistic) once per forward, from mean 0 and variance 1;
        # running_var takes the unbiased variance.
        m = 0.1
        per_channel = [part.numel() // part.shape[1] for part in parts]
        unbiased = [r.stat_var[i] * n / (n - 1) for i, n in enumerate(per_channel)]
        np.testing.assert_allclose(r.running_mean_full, m * r.stat_mean[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r.running_var_full, (1 - m) + m * unbiased[0], rtol=1e-5)
        mean, var = np.zeros(C), np.ones(C)
        for i in range(1, p.show_k + 1):
            mean, var = (1 - m) * mean + m * r.stat_mean[i], (1 - m) * var + m * unbiased[i]
        np.testing.assert_allclose(r.running_mean_micro, mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(r.running_var_micro, var, rtol=1e-5)
        assert not r.show_skipped


def test_batchnorm1d_cannot_train_on_micro_batches_of_one_sample() -> None:
    # BatchNorm1d refuses to train on one sample, so that k is skipped; BatchNorm2d has 144 values per channel.
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(4)(torch.ones(1, 4))
    r = run(A.run_norm, NormParams(batch=2, k_max=64, show_k=2, width=8))
    assert r.ks.tolist() == [1, 2] and r.skipped == (2,)
    assert np.isnan(r.rel[line_index("batchnorm"), 1]) and np.isnan(r.max_abs[line_index("batchnorm"), 1])
    assert r.rel[line_index("batchnorm"), 0] == 0.0
    assert np.all(np.isfinite(np.delete(r.rel, line_index("batchnorm"), axis=0)))
    assert r.show_skipped and np.isnan(r.running_mean_micro).all() and np.isnan(r.running_var_full).all()
    assert np.all(r.stat_var[1:] == 0)  # one sample has no spread
    cnn = run(A.run_norm, NormParams(model="cnn", batch=2, k_max=2, show_k=2, width=8))
    assert cnn.skipped == () and cnn.rel[line_index("batchnorm"), 1] > 1e-3 and not cnn.show_skipped


def test_norm_refusals() -> None:
    with pytest.raises(InvalidParams) as e:
        NormParams(batch=4, show_k=5).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("show_k", "more_than_batch", {"batch": 4})
    with pytest.raises(InvalidParams) as e:
        NormParams(width=10).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("width", "not_a_multiple", {"of": A.GROUPS})
    p = NormParams(model="cnn", batch=512, width=128, depth=4, k_max=64)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("batch", "too_much_work")
    assert dataclasses.replace(p, batch=e.value.info["max"]).work() <= A.MAX_WORK


# --------------------------------------------------------------------------------------------
# 3. curves


@pytest.fixture(scope="module")
def curves() -> A.CurvesResult:
    result: A.CurvesResult = run(A.run_curves, CurvesParams())
    return result


def test_accumulation_trains_as_the_big_batch_and_small_batches_take_k_times_more_steps(curves: A.CurvesResult) -> None:
    p = CurvesParams()
    r = curves
    big, accum, small, small_lr = range(4)
    assert r.variants == A.CURVE_VARIANTS and r.steps.tolist() == list(range(p.steps + 1))
    assert r.eval_loss.shape == (4, p.steps + 1) and r.train_loss.shape == (4, p.steps)
    np.testing.assert_allclose(r.eval_loss[accum], r.eval_loss[big], rtol=0, atol=1e-4)
    np.testing.assert_allclose(r.train_loss[accum], r.train_loss[big], rtol=0, atol=1e-4)
    assert r.updates.tolist() == [p.steps, p.steps, p.steps * p.accum_steps, p.steps * p.accum_steps]
    np.testing.assert_allclose(r.lrs, [p.lr, p.lr, p.lr, p.lr / p.accum_steps])
    assert np.all(r.eval_loss[:, 0] == r.eval_loss[big, 0])  # the same initial weights
    assert np.all(r.train_loss[:, 0] == r.train_loss[big, 0])  # and the same first samples, before any update
    # k updates at lr move k times as far per effective step: the small batches' loss falls fastest.
    assert r.eval_loss[small, -1] < r.eval_loss[big, -1] < r.eval_loss[big, 0]
    # k updates at lr / k on the k micro-batches make the big batch's one update, to first order in lr.
    drop = r.eval_loss[big, 0] - r.eval_loss[big, -1]
    assert abs(r.eval_loss[small_lr, -1] - r.eval_loss[big, -1]) < 0.1 * drop
    assert not r.diverged.any() and np.all((r.accuracy >= 0) & (r.accuracy <= 1))


def test_curves_start_from_the_loss_computed_here(curves: A.CurvesResult) -> None:
    p = CurvesParams()
    g = torch.Generator().manual_seed(p.seed)
    spec = ModelSpec(p.model, p.width, p.depth)
    teacher = A.make_teacher(g, CPU)
    X_train, y_train = A.make_batch(spec, A.DATASET, teacher, g, CPU)
    X_test, y_test = A.make_batch(spec, A.HELDOUT, teacher, g, CPU)
    first = torch.randperm(A.DATASET, generator=g)[: p.batch]  # the first epoch's first batch
    net = A.build_model(spec, g, CPU)
    with torch.no_grad():
        assert curves.eval_loss[0, 0] == pytest.approx(F.cross_entropy(net(X_test), y_test).item(), rel=1e-6)
        assert curves.train_loss[0, 0] == pytest.approx(F.cross_entropy(net(X_train[first]), y_train[first]).item(), rel=1e-6)


def test_one_variant_alone_gives_the_same_curve(curves: A.CurvesResult) -> None:
    p = CurvesParams()
    for i, variant in enumerate(p.variants):
        alone = run(A.run_curves, dataclasses.replace(p, variants=(variant,)))
        np.testing.assert_array_equal(alone.eval_loss[0], curves.eval_loss[i])
        np.testing.assert_array_equal(alone.train_loss[0], curves.train_loss[i])
        assert alone.accuracy[0] == curves.accuracy[i] and alone.updates[0] == curves.updates[i]


def test_the_sample_stream_is_a_fresh_permutation_each_epoch() -> None:
    order = A.sample_order(1000, 9, torch.Generator().manual_seed(1), CPU)  # 4 batches per epoch, 96 samples dropped
    assert order.shape == (9, 1000)
    for epoch in range(2):
        seen = order[4 * epoch : 4 * epoch + 4].flatten()
        assert len(set(seen.tolist())) == 4000  # no sample twice within an epoch
    assert not torch.equal(order[0], order[4])


def test_curves_refusals() -> None:
    with pytest.raises(InvalidParams) as e:
        CurvesParams(variants=()).validate()
    assert (e.value.field, e.value.key) == ("variants", "empty")
    with pytest.raises(InvalidParams) as e:
        CurvesParams(batch=8, accum_steps=16).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("accum_steps", "more_than_batch", {"batch": 8})
    p = CurvesParams(steps=500, width=256, depth=4, batch=512)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("steps", "too_much_work")
    largest = e.value.info["max"]
    assert dataclasses.replace(p, steps=largest).work() <= A.MAX_WORK < dataclasses.replace(p, steps=largest + 1).work()
    # A wide CNN's held-out pass is costly: no field alone brings it under the limit, so the refusals lead
    # the way one field at a time: first the steps down to their least, then the width.
    cnn = CurvesParams(model="cnn", steps=60, width=256)
    with pytest.raises(InvalidParams) as e:
        cnn.validate()
    assert (e.value.field, e.value.key, e.value.info) == ("steps", "too_much_work", {"max": 10})
    cnn = dataclasses.replace(cnn, steps=10)
    with pytest.raises(InvalidParams) as e:
        cnn.validate()
    assert (e.value.field, e.value.key) == ("width", "too_much_work")
    assert e.value.info["max"] % 8 == 0
    dataclasses.replace(cnn, width=e.value.info["max"]).validate()


# --------------------------------------------------------------------------------------------
# The work limit and the memory estimate


def test_the_work_estimate_is_about_the_run_time() -> None:
    # MAX_WORK is meant to be a few seconds: the work of a default run, timed on this machine,
    # must not exceed its estimate by much (the estimate is deliberately pessimistic).
    import time

    for fn, p in ((A.run_equiv, EquivParams(batch=128)), (A.run_curves, CurvesParams(steps=20, variants=("small",)))):
        run(fn, p)
        start = time.perf_counter()
        run(fn, p)
        seconds = time.perf_counter() - start
        assert seconds < 5 * p.work() / 1e10 + 0.05, (p, seconds)


@pytest.mark.parametrize("cls", [EquivParams, NormParams, CurvesParams], ids=lambda c: c.__name__)
def test_memory_estimate_covers_the_parameters_and_activations(cls: type[Params]) -> None:
    p = cls()
    spec = ModelSpec(getattr(p, "model"), getattr(p, "width"), getattr(p, "depth"))  # noqa: B009
    itemsize = 4
    assert p.estimate_bytes() >= itemsize * (2 * spec.parameter_count() + getattr(p, "batch") * spec.activations_per_sample())  # noqa: B009
    assert p.estimate_bytes() < 64 * 2**20


# --------------------------------------------------------------------------------------------
# Registry and determinism


def test_registry_names_every_experiment() -> None:
    assert list(A.EXPERIMENTS) == ["equiv", "norm", "curves"]
    for exp in A.EXPERIMENTS.values():
        exp.params().validate()
        assert "import torch" in exp.code(exp.params())


DETERMINISM_CASES: list[tuple[Callable[[Any, Any], Any], Params]] = [
    (A.run_equiv, EquivParams(model="cnn", batch=10, accum_steps=4, width=8, seed=3)),
    (A.run_equiv, EquivParams(batch=30, accum_steps=7, dtype="float64", seed=9)),
    (A.run_norm, NormParams(batch=16, k_max=4, width=16, show_k=3, seed=1)),
    (A.run_curves, CurvesParams(batch=16, accum_steps=3, steps=12, width=16, variants=("accum", "small"), seed=2)),
]


@pytest.mark.parametrize(("run_fn", "p"), DETERMINISM_CASES, ids=[query_id(p) for _, p in DETERMINISM_CASES])
def test_same_params_same_result(run_fn: Callable[[Any, Any], Any], p: Params) -> None:
    assert_same(run(run_fn, p), run(run_fn, p))


def test_same_results_from_eight_threads_at_once() -> None:
    assert_same_from_threads(DETERMINISM_CASES)


def test_the_seed_changes_the_results() -> None:
    a = run(A.run_equiv, EquivParams(seed=1))
    b = run(A.run_equiv, EquivParams(seed=2))
    assert a.loss != b.loss and a.scale[4] != b.scale[4]


# --------------------------------------------------------------------------------------------
# Property: every input runs or is refused cleanly


PARAMS_CLASSES = [EquivParams, NormParams, CurvesParams]
RESULT_TYPES = {EquivParams: A.EquivResult, NormParams: A.NormResult, CurvesParams: A.CurvesResult}
# Valid runs are drawn small so that the test stays quick, plus upper bounds (which the work limit may refuse);
# valid draws of more than TEST_WORK (about half a second) are validated but not run.
TEST_WORK = 5e9
SMALL: dict[str, st.SearchStrategy[Any]] = {
    "EquivParams.batch": st.one_of(st.integers(2, 24), st.just(512)),
    "EquivParams.accum_steps": st.one_of(st.integers(1, 8), st.just(64)),
    "EquivParams.width": st.one_of(st.integers(8, 24), st.just(256)),
    "EquivParams.depth": st.one_of(st.integers(1, 2), st.just(6)),
    "NormParams.batch": st.one_of(st.integers(2, 16), st.just(512)),
    "NormParams.width": st.one_of(st.integers(8, 24), st.just(128)),
    "NormParams.depth": st.integers(1, 2),
    "NormParams.show_k": st.one_of(st.integers(1, 16), st.just(64)),
    "CurvesParams.batch": st.one_of(st.integers(4, 32), st.just(512)),
    "CurvesParams.accum_steps": st.one_of(st.integers(1, 8), st.just(64)),
    "CurvesParams.steps": st.one_of(st.integers(10, 12), st.just(500)),
    "CurvesParams.width": st.one_of(st.integers(8, 16), st.just(256)),
    "CurvesParams.depth": st.integers(1, 2),
    "CurvesParams.variants": st.lists(st.sampled_from(A.CURVE_VARIANTS), min_size=1, max_size=2, unique=True).map(tuple),
}


def test_every_params_class_is_covered() -> None:
    assert {e.params for e in A.EXPERIMENTS.values()} == set(PARAMS_CLASSES) == set(RESULT_TYPES)


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(cls: type[Params], data: st.DataObject) -> None:
    run_fn = A.EXPERIMENTS[next(k for k, e in A.EXPERIMENTS.items() if e.params is cls)].run
    p: Any = data.draw(any_params(cls, overrides=SMALL))
    try:
        p.validate()
    except InvalidParams as e:
        if e.key == "too_much_work":  # the field named, lowered to the value given, fits, or at least helps
            work = dataclasses.replace(p, **{e.field: e.info["max"]}).work()
            assert work <= A.MAX_WORK or work < p.work()
    else:
        if p.work() > TEST_WORK:  # valid, but seconds of work: the work limit's own tests cover these
            event("valid, too slow to run here")
            return
    check_runs_or_refused(run_fn, p, RESULT_TYPES[cls], "needed_mb")


# --------------------------------------------------------------------------------------------
# Every generated script runs on its own and prints what the result holds


def check_equiv(p: EquivParams, r: A.EquivResult, out: str) -> None:
    assert numbers(after(out, "micro-batch sizes")) == list(r.micro_sizes)
    for i, variant in enumerate(r.variants):
        max_abs, rel, scale = numbers(after(out, f"{variant}: max abs diff").replace("relative error", "").replace("scale", ""))
        # Differences at rounding level: the same operations give the same bits; allow for a different BLAS path.
        assert max_abs == pytest.approx(r.overall_max_abs[i], rel=1e-6, abs=100 * r.eps * r.ref_norm[i])
        assert rel == pytest.approx(r.overall_rel[i], rel=1e-6, abs=100 * r.eps)
        assert scale == pytest.approx(r.scale[i], rel=1e-6, abs=100 * r.eps)
    assert numbers(after(out, "no_zero_grad: predicted relative error")) == pytest.approx([r.stale_rel_predicted], rel=1e-6)


def check_norm(p: NormParams, r: A.NormResult, out: str) -> None:
    for i, line in enumerate(r.lines):
        for j, k in enumerate(r.ks):
            text = after(out, f"{line} k={k}:")
            if line == "batchnorm" and k in r.skipped:
                assert text.startswith("skipped")
                continue
            rel, max_abs = numbers(text.replace("relative error", "").replace("max abs diff", ""))
            assert rel == pytest.approx(r.rel[i, j], rel=1e-6, abs=100 * r.eps)
            assert max_abs == pytest.approx(r.max_abs[i, j], rel=1e-6, abs=100 * r.eps * r.grad_norm[i])
        assert f"{line} k={2 * r.ks[-1]}:" not in out
    for i in range(p.show_k + 1):
        name = "full batch" if i == 0 else f"micro-batch {i}"
        mean, var = after(out, f"{name}: mean").split("var")
        assert numbers(mean) == pytest.approx(r.stat_mean[i].tolist(), rel=1e-6, abs=1e-7)
        assert numbers(var) == pytest.approx(r.stat_var[i].tolist(), rel=1e-6, abs=1e-7)


def check_curves(p: CurvesParams, r: A.CurvesResult, out: str) -> None:
    for i, variant in enumerate(r.variants):
        for step in A.curve_report_steps(p.steps):
            printed = numbers(after(out, f"{variant} step {step} held-out loss"))
            assert printed == pytest.approx([r.eval_loss[i, step]], rel=1e-5, nan_ok=True)
        accuracy, updates = numbers(after(out, f"{variant} accuracy").replace("updates", ""))
        assert (accuracy, updates) == (r.accuracy[i], r.updates[i])


@dataclass(frozen=True)
class Case:
    run_fn: Callable[[Any, Any], Any]
    code_fn: Callable[[Any], str]
    check: Callable[[Any, Any, str], None]
    params: Params


SCRIPT_CASES = [
    Case(A.run_equiv, A.code_equiv, check_equiv, EquivParams()),
    Case(
        A.run_equiv,
        A.code_equiv,
        check_equiv,
        EquivParams(model="cnn", batch=10, accum_steps=4, width=8, dtype="float64", seed=3),
    ),
    Case(A.run_equiv, A.code_equiv, check_equiv, EquivParams(batch=5, accum_steps=1, depth=1, width=16)),
    Case(A.run_norm, A.code_norm, check_norm, NormParams()),
    Case(A.run_norm, A.code_norm, check_norm, NormParams(model="cnn", batch=8, width=8, k_max=4, show_k=3, dtype="float64")),
    Case(A.run_norm, A.code_norm, check_norm, NormParams(batch=3, k_max=4, show_k=3, width=8, depth=1, seed=4)),
    Case(A.run_curves, A.code_curves, check_curves, CurvesParams(steps=20)),
    Case(
        A.run_curves,
        A.code_curves,
        check_curves,
        CurvesParams(
            model="cnn", batch=10, accum_steps=3, steps=10, lr=0.2, width=8, depth=1, variants=("small_lr", "accum"), seed=1
        ),
    ),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every case's script on its own; return name -> what it did."""
    folder = tmp_path_factory.mktemp("accumulation_snippets")  # no core/ here: the scripts must stand alone
    sources = {query_id(case.params): case.code_fn(case.params) for case in SCRIPT_CASES}
    return run_scripts(sources, folder, timeout=180, warm_up=True)


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[query_id(c.params) for c in SCRIPT_CASES])
def test_script_runs_and_prints_the_result(case: Case, ran: dict[str, Ran]) -> None:
    done = ran[query_id(case.params)]
    assert done.rc == 0, done.err
    case.check(case.params, run(case.run_fn, case.params), done.out)


@pytest.mark.skipif(torch.get_num_threads() != 1, reason="the scripts run on one thread; the runner here does not")
def test_script_numbers_match_exactly_when_run_alike(ran: dict[str, Ran]) -> None:
    # Same operations in the same order on one thread: the scripts reproduce the run bit for bit.
    p = SCRIPT_CASES[0].params
    r = run(A.run_equiv, p)
    out = ran[query_id(p)].out
    for i, variant in enumerate(r.variants):
        max_abs, rel, scale = numbers(after(out, f"{variant}: max abs diff").replace("relative error", "").replace("scale", ""))
        assert (max_abs, rel, scale) == (r.overall_max_abs[i], r.overall_rel[i], r.scale[i])
