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
from torch import nn

from core.lessons.accumulation import common, curves, equiv, model, norm
from core.lessons.accumulation.curves import CurvesParams
from core.lessons.accumulation.equiv import EquivParams
from core.lessons.accumulation.model import ModelSpec
from core.lessons.accumulation.norm import NormParams
from core.params import InvalidParams, Params, ladder_values
from core.runner import execute
from tests.params_strategies import query_id
from tests.scripts import after, numbers, run_scripts
from tests.timing import least_seconds

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
    teacher = model.make_teacher(g, CPU)
    X, y = model.make_batch(spec, p.batch, teacher, g, CPU, dtype)
    X2, y2 = model.make_batch(spec, p.batch, teacher, g, CPU, dtype)
    return EquivSetup(model.build_model(spec, g, CPU, dtype), X, y, X2, y2)


EVEN_CASES = [
    EquivParams(),
    EquivParams(dtype="float64", seed=4),
    EquivParams(model="cnn", batch=12, accum_steps=3, width=16, seed=1),
    EquivParams(model="cnn", batch=16, accum_steps=8, width=8, depth=3, dtype="float64"),
    EquivParams(batch=64, accum_steps=64, width=32, depth=4, dtype="float64", seed=2),
]


@pytest.mark.parametrize("p", EVEN_CASES, ids=query_id)
def test_dividing_by_k_gives_the_full_batch_gradient_and_the_mistakes_scale_it(p: EquivParams) -> None:
    r = run(equiv.run, p)
    k = p.accum_steps
    divide, weighted, no_divide, seeds, _ = range(5)
    assert r.variants == equiv.VARIANTS and r.even and r.micro_sizes == (p.batch // k,) * k
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
    r = run(equiv.run, p)
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
    assert r.preview_ref[0] == pytest.approx(g_full[np.linspace(0, g_full.numel() - 1, equiv.PREVIEW).astype(np.int64)].numpy())


def test_an_uneven_split_breaks_divide_by_k_but_not_the_n_i_over_B_weighting() -> None:
    p = EquivParams(batch=10, accum_steps=4, width=16, dtype="float64", seed=3)
    r = run(equiv.run, p)
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
    r = run(equiv.run, p)
    # Computed here: the first batch's gradient, one SGD step, the second batch's gradient at the new weights.
    s = equiv_setup(p)
    g_prev = torch.autograd.grad(F.cross_entropy(s.net(s.X), s.y), list(s.net.parameters()))
    with torch.no_grad():
        for w, d in zip(s.net.parameters(), g_prev, strict=True):
            w.sub_(equiv.STALE_LR * d)
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
    assert (e.value.field, e.value.key, e.value.info["hi"]) == ("accum_steps", "out_of_range", 8)
    EquivParams(batch=8, accum_steps=8).validate()
    p = EquivParams(model="cnn", batch=512, accum_steps=4, width=256, depth=6)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("batch", "too_much_work")
    largest = e.value.info["max"]
    assert (
        dataclasses.replace(p, batch=largest).estimate_work()
        <= common.MAX_WORK
        < dataclasses.replace(p, batch=largest + 1).estimate_work()
    )
    # With 64 micro-batches the batch cannot drop below 64: the width has to give instead.
    p = dataclasses.replace(p, accum_steps=64)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("width", "too_much_work")
    dataclasses.replace(p, width=e.value.info["max"]).validate()


# --------------------------------------------------------------------------------------------
# 2. norm


def line_index(line: str) -> int:
    return norm.LINES.index(line)


@pytest.mark.parametrize(
    "p",
    [NormParams(), NormParams(dtype="float64", seed=2), NormParams(model="cnn", batch=8, width=8, k_max=8, dtype="float64")],
    ids=query_id,
)
def test_batchnorm_breaks_the_equality_and_the_other_norms_keep_it(p: NormParams) -> None:
    r = run(norm.run, p)
    assert r.ks.tolist() == [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= min(p.k_max, p.batch)]
    assert r.rel.shape == r.max_abs.shape == (len(norm.LINES), len(r.ks)) and r.skipped == ()
    bn = r.rel[line_index("batchnorm")]
    assert bn[0] < EXACT[p.dtype]  # k = 1 is the full batch itself
    assert np.all(bn[1:] > 1e-3), bn  # each micro-batch normalised with its own mean and variance
    for line in ("none", "batchnorm_eval", "groupnorm", "layernorm"):
        assert np.all(r.rel[line_index(line)] < EXACT[p.dtype]), (line, r.rel[line_index(line)])
    assert np.all(np.isfinite(r.loss)) and np.all(r.grad_norm > 0)


def test_first_batchnorm_input_statistics_are_those_computed_here() -> None:
    for p in (NormParams(batch=20, show_k=3, width=16, seed=6), NormParams(model="cnn", batch=6, width=8, show_k=4)):
        r = run(norm.run, p)
        g = torch.Generator().manual_seed(p.seed)
        spec = ModelSpec(p.model, p.width, p.depth, "batchnorm")
        teacher = model.make_teacher(g, CPU)
        X, _ = model.make_batch(spec, p.batch, teacher, g, CPU)
        net = model.build_model(spec, g, CPU)
        C = min(norm.STAT_CHANNELS, p.width)
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
    r = run(norm.run, NormParams(batch=2, k_max=64, show_k=2, width=8))
    assert r.ks.tolist() == [1, 2] and r.skipped == (2,)
    assert np.isnan(r.rel[line_index("batchnorm"), 1]) and np.isnan(r.max_abs[line_index("batchnorm"), 1])
    assert r.rel[line_index("batchnorm"), 0] == 0.0
    assert np.all(np.isfinite(np.delete(r.rel, line_index("batchnorm"), axis=0)))
    assert r.show_skipped and np.isnan(r.running_mean_micro).all() and np.isnan(r.running_var_full).all()
    assert np.all(r.stat_var[1:] == 0)  # one sample has no spread
    cnn = run(norm.run, NormParams(model="cnn", batch=2, k_max=2, show_k=2, width=8))
    assert cnn.skipped == () and cnn.rel[line_index("batchnorm"), 1] > 1e-3 and not cnn.show_skipped


def test_norm_refusals() -> None:
    with pytest.raises(InvalidParams) as e:
        NormParams(batch=4, show_k=5).validate()
    assert (e.value.field, e.value.key, e.value.info["hi"]) == ("show_k", "out_of_range", 4)
    with pytest.raises(InvalidParams) as e:
        NormParams(width=10).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("width", "not_a_multiple", {"of": model.GROUPS})
    p = NormParams(model="cnn", batch=512, width=128, depth=4, k_max=64)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("batch", "too_much_work")
    assert dataclasses.replace(p, batch=e.value.info["max"]).estimate_work() <= common.MAX_WORK


# --------------------------------------------------------------------------------------------
# 3. curves


@pytest.fixture(scope="module")
def trained() -> curves.CurvesResult:
    result: curves.CurvesResult = run(curves.run, CurvesParams())
    return result


def test_accumulation_trains_as_the_big_batch_and_small_batches_take_k_times_more_steps(trained: curves.CurvesResult) -> None:
    p = CurvesParams()
    r = trained
    big, accum, small, small_lr = range(4)
    assert r.variants == curves.CURVE_VARIANTS and r.steps.tolist() == list(range(p.steps + 1))
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


def test_curves_start_from_the_loss_computed_here(trained: curves.CurvesResult) -> None:
    p = CurvesParams()
    g = torch.Generator().manual_seed(p.seed)
    spec = ModelSpec(p.model, p.width, p.depth)
    teacher = model.make_teacher(g, CPU)
    X_train, y_train = model.make_batch(spec, curves.DATASET, teacher, g, CPU)
    X_test, y_test = model.make_batch(spec, curves.HELDOUT, teacher, g, CPU)
    first = torch.randperm(curves.DATASET, generator=g)[: p.batch]  # the first epoch's first batch
    net = model.build_model(spec, g, CPU)
    with torch.no_grad():
        assert trained.eval_loss[0, 0] == pytest.approx(F.cross_entropy(net(X_test), y_test).item(), rel=1e-6)
        assert trained.train_loss[0, 0] == pytest.approx(F.cross_entropy(net(X_train[first]), y_train[first]).item(), rel=1e-6)


def test_one_variant_alone_gives_the_same_curve(trained: curves.CurvesResult) -> None:
    p = CurvesParams()
    for i, variant in enumerate(p.variants):
        alone = run(curves.run, dataclasses.replace(p, variants=(variant,)))
        np.testing.assert_array_equal(alone.eval_loss[0], trained.eval_loss[i])
        np.testing.assert_array_equal(alone.train_loss[0], trained.train_loss[i])
        assert alone.accuracy[0] == trained.accuracy[i] and alone.updates[0] == trained.updates[i]


def test_the_sample_stream_is_a_fresh_permutation_each_epoch() -> None:
    order = curves.sample_order(1000, 9, torch.Generator().manual_seed(1), CPU)  # 4 batches per epoch, 96 samples dropped
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
    assert (e.value.field, e.value.key, e.value.info["hi"]) == ("accum_steps", "out_of_range", 8)
    p = CurvesParams(steps=500, width=256, depth=4, batch=512)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("steps", "too_much_work")
    largest = e.value.info["max"]
    assert (
        dataclasses.replace(p, steps=largest).estimate_work()
        <= common.MAX_WORK
        < dataclasses.replace(p, steps=largest + 1).estimate_work()
    )
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


@pytest.mark.parametrize(
    ("run_fn", "small", "large"),
    [
        (equiv.run, EquivParams(batch=16, width=256, depth=4), EquivParams(batch=512, width=256, depth=4)),
        (curves.run, CurvesParams(steps=10, variants=("small",)), CurvesParams(steps=80, variants=("small",))),
    ],
    ids=["equivalence", "curves"],
)
def test_the_work_estimate_grows_with_the_run_time(run_fn: Callable[[Any, Any], Any], small: Params, large: Params) -> None:
    # The refusals rest on estimate_work growing at least as fast as the real cost (it is meant to be
    # pessimistic: large batches run BLAS more efficiently than small ones). Wall-clock limits do not
    # belong in tests on a shared machine, so compare ratios within one run: the larger run's time
    # over the smaller's is more than 1.5 and at most 2.5 times the estimates' ratio. (Seconds per
    # unit of work, i.e. what MAX_WORK means in seconds here, are printed by `python -m bench.work`.)
    estimated = large.estimate_work() / small.estimate_work()
    measured = least_seconds(lambda: run(run_fn, large)) / least_seconds(lambda: run(run_fn, small))
    assert 1.5 < measured < estimated * 2.5, (estimated, measured)


@pytest.mark.parametrize("cls", [EquivParams, NormParams, CurvesParams], ids=lambda c: c.__name__)
def test_memory_estimate_covers_the_parameters_and_activations(cls: type[Params]) -> None:
    p = cls()
    spec = ModelSpec(getattr(p, "model"), getattr(p, "width"), getattr(p, "depth"))  # noqa: B009
    itemsize = 4
    assert p.estimate_bytes() >= itemsize * (2 * spec.parameter_count() + getattr(p, "batch") * spec.activations_per_sample())  # noqa: B009
    assert p.estimate_bytes() < 64 * 2**20


def test_the_seed_changes_the_results() -> None:
    a = run(equiv.run, EquivParams(seed=1))
    b = run(equiv.run, EquivParams(seed=2))
    assert a.loss != b.loss and a.scale[4] != b.scale[4]


# --------------------------------------------------------------------------------------------
# Sliders: how many micro-batches a batch allows, and the ladders' stops


@pytest.mark.parametrize(
    ("cls", "field"), [(EquivParams, "accum_steps"), (CurvesParams, "accum_steps"), (NormParams, "show_k")]
)
def test_micro_batches_stop_at_the_batch_size(cls: type[Params], field: str) -> None:
    spec = next(s for s in cls.specs() if s.name == field)
    p = cls(batch=6)
    assert p.upper_bound(spec) == 6  # the slider stops at B: every micro-batch needs a sample
    assert cls(batch=512).upper_bound(spec) == 64
    # A link asking for more micro-batches than samples gets as many as there are samples, and says so.
    prefix = "x"
    p, rejected = cls.from_query({f"{prefix}.batch": "6", f"{prefix}.{field}": "20"}, prefix)
    assert getattr(p, field) == 6 and p.batch == 6
    assert [(r.field, r.key) for r in rejected] == [(field, "out_of_range")]


def test_width_ladders_offer_only_widths_every_experiment_accepts() -> None:
    for cls in (EquivParams, NormParams, CurvesParams):
        stops = next(s for s in cls.specs() if s.name == "width").meta["ladder"]
        assert stops[0] == 8 and all(w % 8 == 0 for w in stops), stops  # multiples of GroupNorm's 4 groups too
        for width in stops:
            cls(width=width).validate()
    assert ladder_values(8, 128) == (8, 16, 32, 64, 128)
    # Widths between the stops stay valid: a link may carry one, and a refusal may name one.
    NormParams(width=24).validate()
    assert "ladder" in next(s for s in CurvesParams.specs() if s.name == "lr").meta
    assert CurvesParams().lr in ladder_values(0.001, 1.0, "125")
    assert NormParams().k_max in ladder_values(1, 64)


# --------------------------------------------------------------------------------------------
# Predictions: each answer is the theory's


def test_the_notes_line_gives_k_plus_one_times_the_gradient() -> None:
    r = run(equiv.run, equiv.SEEDS.params)
    assert r.scale[equiv.VARIANTS.index("seeds")] == pytest.approx(equiv.SEEDS.params.accum_steps + 1, rel=1e-5)
    assert equiv.SEEDS.answer(r) == "9" and equiv.SEEDS.params.accum_steps != EquivParams().accum_steps


def test_dividing_an_uneven_split_by_k_is_visibly_off() -> None:
    r = run(equiv.run, equiv.UNEVEN.params)
    assert r.micro_sizes == (8, 8, 7, 7) and not r.even
    assert equiv.UNEVEN.answer(r) == "off"


def test_micro_batches_of_one_sample_are_refused_by_batchnorm() -> None:
    p = norm.BATCH_OF_ONE.params
    assert norm.BATCH_OF_ONE.answer(run(norm.run, p)) == "refused"
    # torch's own refusal, independently of the engine's rule
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(4).train()(torch.randn(1, 4))
    # a CNN's BatchNorm2d normalises over the pixels too, so one sample is accepted there
    assert norm.BATCH_OF_ONE.answer(run(norm.run, dataclasses.replace(p, model="cnn", width=8, depth=1))) == "off"


# --------------------------------------------------------------------------------------------
# The script adds the same numbers in the same order as the engine: on one thread, the same bits


@pytest.mark.skipif(torch.get_num_threads() != 1, reason="the scripts run on one thread; the runner here does not")
def test_script_numbers_match_exactly_when_run_alike(tmp_path: Any) -> None:
    p = EquivParams()
    r = run(equiv.run, p)
    done = run_scripts({"equiv": equiv.EQUIV.write_script(p)}, tmp_path, workers=1, warm_up=True)["equiv"]
    assert done.rc == 0, done.err
    for i, variant in enumerate(r.variants):
        max_abs, rel, scale = numbers(
            after(done.out, f"{variant}: max abs diff").replace("relative error", "").replace("scale", "")
        )
        assert (max_abs, rel, scale) == (r.overall_max_abs[i], r.overall_rel[i], r.scale[i])
