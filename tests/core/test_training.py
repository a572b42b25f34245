"""The training lesson against theory, closed forms, or an independent torch run written here with the same seed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from core.lessons.training import freeze as train_freeze
from core.lessons.training import linreg as train_linreg
from core.lessons.training import logreg as train_logreg
from core.lessons.training import optim as train_optim
from core.lessons.training import repro as train_repro
from core.lessons.training import sched as train_sched
from core.lessons.training.freeze import FreezeParams
from core.lessons.training.linreg import LinregParams
from core.lessons.training.logreg import LogregParams
from core.lessons.training.optim import OptimParams
from core.lessons.training.repro import ReproParams
from core.lessons.training.sched import SCHEDULERS, SchedParams
from core.lessons.training.surfaces import BOWL_CENTER, value
from core.params import InvalidParams
from tests.params_strategies import run_cpu

# --------------------------------------------------------------------------------------------
# Linear regression by hand


def notes_linreg(p: LinregParams) -> tuple[list[float], list[float], list[float]]:
    """The notes' loop, written out here: w, b and the loss before each update until the loss is below the threshold."""
    g = torch.Generator().manual_seed(p.seed)
    x = torch.rand(p.n, 1, generator=g) * 10
    y = 2 * x + (5 + torch.randn(p.n, 1, generator=g))
    w = torch.randn(1, generator=g).requires_grad_(True)
    b = torch.zeros(1, requires_grad=True)
    ws, bs, losses = [], [], []
    for it in range(p.max_iters + 1):
        loss = (0.5 * (y - (w * x + b)) ** 2).mean()
        ws.append(w.item())
        bs.append(b.item())
        losses.append(loss.item())
        if loss.item() < p.threshold or it == p.max_iters or not math.isfinite(loss.item()):
            break
        loss.backward()
        with torch.no_grad():
            w -= p.lr * w.grad
            b -= p.lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return ws, bs, losses


@pytest.mark.parametrize("p", [LinregParams(), LinregParams(lr=0.01, n=40, seed=3), LinregParams(lr=0.1, max_iters=40)])
def test_linreg_path_equals_the_notes_loop(p: LinregParams) -> None:
    r = run_cpu(train_linreg.run, p)
    ws, bs, losses = notes_linreg(p)
    np.testing.assert_array_equal(r.w, np.array(ws, dtype=np.float32).astype(np.float64))
    np.testing.assert_array_equal(r.b, np.array(bs, dtype=np.float32).astype(np.float64))
    np.testing.assert_array_equal(r.loss, np.array(losses, dtype=np.float32).astype(np.float64))
    assert r.stopped == (losses[-1] < p.threshold)


def test_linreg_learning_rate_stability_bound_is_two_over_the_largest_curvature() -> None:
    r = run_cpu(train_linreg.run, LinregParams())
    hessian = np.array([[np.mean(r.x**2), np.mean(r.x)], [np.mean(r.x), 1.0]])  # of ½·mean((y − wx − b)²)
    bound = 2 / np.linalg.eigvalsh(hessian).max()
    assert 0.05 < bound < 0.1
    assert r.stopped and run_cpu(train_linreg.run, LinregParams(lr=0.1)).loss[-1] > r.loss[0]  # beyond the bound: diverges


def test_linreg_gradient_step_reaches_least_squares_but_the_data_step_never_does() -> None:
    # A threshold below the least-squares loss is never met: both run max_iters updates.
    p = LinregParams(threshold=0.1, max_iters=2000)
    r = run_cpu(train_linreg.run, p)
    X = np.stack([r.x, np.ones_like(r.x)], axis=1)
    best = np.linalg.solve(X.T @ X, X.T @ r.y)  # the normal equations, independently of the engine's lstsq
    assert abs(r.w[-1] - best[0]) < 1e-3 and abs(r.b[-1] - best[1]) < 1e-2
    # The notes' step: w_k = w_0·(1 − lr)^k exactly in theory, b stays 0: it converges to the line y = 0.
    k = np.arange(len(r.pitfall_w))
    np.testing.assert_allclose(r.pitfall_w, r.pitfall_w[0] * (1 - p.lr) ** k, rtol=1e-4, atol=1e-30)
    assert np.all(r.pitfall_b == 0.0)
    assert abs(r.pitfall_w[-1]) < 1e-10 and r.pitfall_loss[-1] > 50 * r.loss[-1]


def test_linreg_surface_is_the_loss_at_its_grid_points() -> None:
    r = run_cpu(train_linreg.run, LinregParams())
    i, j = 7, 41
    expected = 0.5 * np.mean((r.y - (r.grid_w[j] * r.x + r.grid_b[i])) ** 2)
    assert r.surface[i, j] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Logistic regression


def test_logreg_equals_an_independent_run_and_the_notes_settings_reach_99_percent() -> None:
    p = LogregParams()
    r = run_cpu(train_logreg.run, p)
    g = torch.Generator().manual_seed(10)
    x0 = torch.normal(1.7 * torch.ones(100, 2), 1.0, generator=g) + 1
    x1 = torch.normal(-1.7 * torch.ones(100, 2), 1.0, generator=g) + 1
    X, y = torch.cat([x0, x1]), torch.cat([torch.zeros(100), torch.ones(100)])
    bound = 1 / math.sqrt(2)  # nn.Linear(2, 1)'s default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    weight = torch.empty(1, 2).uniform_(-bound, bound, generator=g).requires_grad_(True)
    bias = torch.empty(1).uniform_(-bound, bound, generator=g).requires_grad_(True)
    optimizer = torch.optim.SGD([weight, bias], lr=0.01, momentum=0.9)
    for step in range(r.steps + 1):
        logits = (X @ weight.T + bias).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        accuracy = ((logits > 0).float() == y).float().mean().item()
        assert r.weight[step].tolist() == pytest.approx(weight[0].tolist(), abs=1e-6)
        assert r.bias[step] == pytest.approx(bias.item(), abs=1e-6)
        assert r.loss[step] == pytest.approx(loss.item(), rel=1e-5)
        assert r.accuracy[step] == accuracy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert r.reached == r.steps and r.accuracy[r.reached] >= 0.99
    assert all(a < 0.99 for a in r.accuracy[: r.reached])
    assert 100 <= r.reached <= 500
    # The boundary separates: 99% of the points lie on their class's side of w·x + b = 0.
    side = (r.X @ r.weight[-1] + r.bias[-1] > 0).astype(float)
    assert np.mean(side == r.y) >= 0.99


def test_logreg_clusters_that_overlap_cannot_reach_99_percent() -> None:
    r = run_cpu(train_logreg.run, LogregParams(offset=0.3, spread=2.0, max_steps=300))
    assert r.reached == -1 and r.steps == 300 and r.accuracy.max() < 0.9


# --------------------------------------------------------------------------------------------
# Optimizers on surfaces


def test_surfaces_have_their_known_minima_and_saddle() -> None:
    assert value("rosenbrock", 1.0, 1.0) == 0.0
    assert value("himmelblau", 3.0, 2.0) == 0.0
    assert value("saddle", 0.0, math.sqrt(2)) == pytest.approx(-1.0)
    assert value("saddle", 0.0, 0.0) == 0.0 and value("saddle", 0.1, 0.0) > 0 > value("saddle", 0.0, 0.1)
    for rotate in (False, True):
        assert value("bowl", *BOWL_CENTER, 50.0, rotate) == 0.0


def test_sgd_on_the_bowl_follows_the_closed_form_iteration() -> None:
    p = OptimParams(optimizers=("sgd",), lr=0.02, steps=50, condition=20.0)
    r = run_cpu(train_optim.run, p)
    s = 1 / math.sqrt(2)
    R = np.array([[s, s], [s, -s]])
    H = R.T @ np.diag([1.0, 20.0]) @ R  # Hessian of the rotated bowl
    theta, c = np.array([p.start_x, p.start_y]), np.array(BOWL_CENTER)
    for step in range(p.steps + 1):
        np.testing.assert_allclose(r.path[0, step], theta, atol=1e-5)
        theta = theta - p.lr * H @ (theta - c)


@pytest.mark.parametrize("name", train_optim.OPTIMIZERS)
def test_a_sweep_as_parameter_groups_equals_separate_runs(name: str) -> None:
    p = OptimParams(
        surface="rosenbrock", start_x=-1.5, start_y=2.0, optimizers=(name,), mode="best", steps=25, noise=0.3, seed=5
    )
    r = run_cpu(train_optim.run, p)
    best = list(train_optim.SWEEP_LRS).index(r.lr[0])
    g = torch.Generator().manual_seed(5)
    point = torch.tensor([-1.5, 2.0], requires_grad=True)
    optimizer = train_optim.BUILDERS[name]([point], train_optim.SWEEP_LRS[best], 0.0)
    for step in range(p.steps + 1):
        if np.isnan(r.path[0, step]).any():
            break
        assert r.path[0, step].tolist() == point.detach().double().tolist()  # bit for bit
        if step == p.steps:
            break
        optimizer.zero_grad()
        value("rosenbrock", point[0], point[1]).backward()
        point.grad.add_(0.3 * torch.randn(2, generator=g))
        optimizer.step()
    finite = np.isfinite(r.sweep_score[0])
    assert r.sweep_score[0, best] == r.sweep_score[0, finite].min()


def test_each_optimizer_alone_equals_its_part_of_a_race() -> None:
    together = run_cpu(train_optim.run, OptimParams(optimizers=("sgd", "adam", "rmsprop"), noise=1.0, steps=40))
    alone = run_cpu(train_optim.run, OptimParams(optimizers=("adam",), noise=1.0, steps=40))
    np.testing.assert_array_equal(together.path[1], alone.path[0])


def test_adam_and_adamw_differ_only_with_weight_decay() -> None:
    plain = run_cpu(train_optim.run, OptimParams(optimizers=("adam", "adamw"), lr=0.1, steps=200))
    np.testing.assert_array_equal(plain.path[0], plain.path[1])
    decayed = run_cpu(train_optim.run, OptimParams(optimizers=("adam", "adamw"), lr=0.1, steps=200, weight_decay=0.5))
    assert np.abs(decayed.path[0, -1] - decayed.path[1, -1]).max() > 0.1
    # AdamW's decoupled decay pulls towards 0 harder than L2 inside Adam's normalized step.
    assert np.linalg.norm(decayed.path[1, -1]) < np.linalg.norm(decayed.path[0, -1])


def test_a_divergent_rate_is_marked_and_never_chosen() -> None:
    r = run_cpu(train_optim.run, OptimParams(optimizers=("sgd",), lr=0.2, condition=20.0, steps=60))
    assert r.diverged[0] and np.isnan(r.path[0, -1]).all()  # 0.2 > 2 / 20: every step overshoots further
    best = run_cpu(train_optim.run, OptimParams(optimizers=("sgd",), mode="best", condition=20.0, steps=60))
    assert not best.diverged[0] and best.lr[0] < 2 / 20


# --------------------------------------------------------------------------------------------
# Schedules


def reference_rates(p: SchedParams, losses: np.ndarray) -> list[float]:
    """Step a fresh torch scheduler as the engine should, with the engine's losses for ReduceLROnPlateau; the rates used."""
    point = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([point], lr=p.lr, momentum=0.9)
    scheduler = train_sched.make_scheduler(p, optimizer)
    rates = []
    for epoch in range(p.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(float(losses[epoch + 1]))
        else:
            scheduler.step()
    return rates


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_schedule_equals_stepping_the_real_scheduler(scheduler: str) -> None:
    p = SchedParams(scheduler=scheduler, epochs=30, decay=20, gamma=0.6, lr=0.02)
    r = run_cpu(train_sched.run, p)
    assert r.lr[0].tolist() == reference_rates(p, r.loss)
    assert r.warning == ""


def test_schedules_match_their_closed_forms() -> None:
    e = np.arange(40)
    step = run_cpu(train_sched.run, SchedParams(scheduler="step", step_size=10, gamma=0.5))
    np.testing.assert_allclose(step.lr[0], 0.05 * 0.5 ** (e // 10))
    cosine = run_cpu(train_sched.run, SchedParams(scheduler="cosine"))
    np.testing.assert_allclose(cosine.lr[0], 0.05 * (1 + np.cos(np.pi * e / 40)) / 2, atol=1e-12)
    notes = run_cpu(train_sched.run, SchedParams(scheduler="linear_notes", decay=30))
    np.testing.assert_allclose(notes.lr[0], 0.05 * (1 - e / 30))  # the always-true condition: negative past 30
    assert (notes.lr[0, 31:] < 0).all()
    fixed = run_cpu(train_sched.run, SchedParams(scheduler="linear", decay=30))
    np.testing.assert_allclose(fixed.lr[0], 0.05 * np.maximum(0, 1 - e / 30))


def test_wrong_order_skips_the_first_value_and_torch_warns() -> None:
    right = run_cpu(train_sched.run, SchedParams(scheduler="exponential", gamma=0.9))
    wrong = run_cpu(train_sched.run, SchedParams(scheduler="exponential", gamma=0.9, wrong_order=True))
    np.testing.assert_allclose(wrong.lr[0, :-1], right.lr[0, 1:])
    assert "lr_scheduler.step()" in wrong.warning and "optimizer.step()" in wrong.warning


def test_the_baseline_is_the_same_run_at_a_constant_rate() -> None:
    r = run_cpu(train_sched.run, SchedParams(scheduler="step", step_size=10))
    np.testing.assert_array_equal(r.loss[:11], r.baseline[:11])  # the rate is the same until the first decay
    assert r.loss[12] != r.baseline[12]


def test_the_notes_parameter_groups() -> None:
    r = run_cpu(train_sched.run, SchedParams(groups=True, lr=0.01, scheduler="step", step_size=5, gamma=0.1))
    assert r.group_names == ("fc1", "fc2")
    assert r.group_lr.tolist() == pytest.approx([0.001, 0.01]) and r.group_momentum.tolist() == [0.99, 0.9]
    np.testing.assert_allclose(r.lr[:, 5], [0.0001, 0.001])  # the scheduler scales every group


@pytest.mark.parametrize("language, words", [("en", "all layers"), ("zh", "全部层")])
def test_one_group_is_named_in_the_pages_language(language: str, words: str) -> None:
    from core.lessons.training import charts_runs as runs_charts
    from ui.panels import charts_text_in

    tr = charts_text_in(language, "train_sched")
    r = run_cpu(train_sched.run, SchedParams(groups=False, epochs=10))
    legend = [trace["name"] for trace in runs_charts.sched_figure(r, tr).to_dict()["data"]]
    assert legend[0] == f"lr ({words})"
    assert runs_charts.sched_groups(r, tr)[tr("layers")].tolist() == [words]
    split = run_cpu(train_sched.run, SchedParams(groups=True, epochs=10))
    assert runs_charts.sched_groups(split, tr)[tr("layers")].tolist() == ["fc1", "fc2"]  # layer names are code


# --------------------------------------------------------------------------------------------
# Freezing


def rows(r: train_freeze.FreezeResult, frozen: bool, buffers: bool = False) -> np.ndarray:
    return np.array([f == frozen and b == buffers for f, b in zip(r.frozen, r.is_buffer, strict=True)])


@pytest.mark.parametrize("method", ["requires_grad", "not_in_optimizer"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_frozen_parameters_stay_bit_identical(method: str, optimizer: str) -> None:
    r = run_cpu(train_freeze.run, FreezeParams(frozen=("fc1", "fc2"), method=method, optimizer=optimizer))
    assert (r.max_change[rows(r, True)] == 0.0).all()
    assert (r.norm_before[rows(r, True)] == r.norm_after[rows(r, True)]).all()
    assert (r.max_change[rows(r, False)] > 0).all()
    if method == "requires_grad":
        assert r.grad_none[rows(r, True)].all() and not r.requires_grad[rows(r, True)].any()
    else:  # autograd still computes (and accumulates) the left-out parameters' gradients
        assert not r.grad_none[rows(r, True)].any() and (r.grad_norm[rows(r, True)] > 0).all()


@pytest.mark.parametrize("method", train_freeze.METHODS)
def test_freezing_every_layer_is_refused_only_where_nothing_would_train(method: str) -> None:
    # requires_grad: backward finds no tensor that requires grad; not_in_optimizer: an empty parameter list.
    p = FreezeParams(frozen=train_freeze.LAYERS, method=method, warm_steps=0, steps=2)
    if method in ("requires_grad", "not_in_optimizer"):
        with pytest.raises(InvalidParams) as refused:
            p.validate()
        assert (refused.value.field, refused.value.key) == ("frozen", "all_frozen")
    else:
        assert len(run_cpu(train_freeze.run, p).loss) == 2  # eval and zero_grad still run


def test_eval_freezes_only_batchnorm_statistics() -> None:
    train_mode = run_cpu(train_freeze.run, FreezeParams(frozen=("bn",), method="requires_grad"))
    evaluated = run_cpu(train_freeze.run, FreezeParams(frozen=("bn",), method="eval"))
    assert (train_mode.max_change[rows(train_mode, True, buffers=True)] > 0).all()  # requires_grad leaves the statistics moving
    assert (evaluated.max_change[rows(evaluated, True, buffers=True)] == 0).all()
    assert (evaluated.max_change[~evaluated.is_buffer] > 0).all()  # every weight, bn's included, still learns


def test_a_zero_gradient_still_moves_through_weight_decay_and_momentum() -> None:
    frozen = ("fc1",)
    both = run_cpu(train_freeze.run, FreezeParams(frozen=frozen, method="zero_grad", momentum=0.9, weight_decay=0.01))
    decay = run_cpu(train_freeze.run, FreezeParams(frozen=frozen, method="zero_grad", momentum=0.0, weight_decay=0.01))
    momentum = run_cpu(train_freeze.run, FreezeParams(frozen=frozen, method="zero_grad", momentum=0.9, weight_decay=0.0))
    still = run_cpu(train_freeze.run, FreezeParams(frozen=frozen, method="zero_grad", momentum=0.0, weight_decay=0.0))
    k = both.names.index("fc1.weight")
    assert both.max_change[k] > 0 and decay.max_change[k] > 0 and momentum.max_change[k] > 0
    assert still.max_change[k] == 0.0
    # Weight decay alone, plain SGD: w ← w·(1 − lr·wd) at every step, exactly in theory.
    assert decay.norm_after[k] == pytest.approx(decay.norm_before[k] * (1 - 0.1 * 0.01) ** 10, rel=1e-5)


# --------------------------------------------------------------------------------------------
# Reproducibility


def test_same_seed_is_bit_identical_other_seeds_differ_and_flags_are_restored() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    for mode in train_repro.MODES:
        r = run_cpu(train_repro.run, ReproParams(mode=mode, steps=8, n_seeds=3))
        assert r.identical and r.max_diff == 0.0
        assert len({row[-1] for row in r.band}) == 3 and r.loss_a[-1] not in r.band[:, -1]
        assert r.seconds_default > 0 and r.seconds_mode > 0
    assert before == (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )


def test_repro_band_seed_equals_a_fresh_run_from_that_seed() -> None:
    p = ReproParams(steps=6, n_seeds=2, seed=11)
    r = run_cpu(train_repro.run, p)
    net, X, y = train_repro.setup(13, torch.device("cpu"))
    optimizer = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=0.9)
    losses = []
    for _ in range(p.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert r.seeds.tolist() == [12, 13]
    np.testing.assert_array_equal(r.band[1], np.array(losses, dtype=np.float32).astype(np.float64))
    assert isinstance(net[0], nn.Conv2d)


# --------------------------------------------------------------------------------------------
# Charts: every figure has a title and labelled axes, for the defaults and every example


def axis_title(layout: dict[str, Any], axis: str) -> str | None:
    """Return the title text of one axis in a sent layout (None when it has none)."""
    text: str | None = layout.get(axis, {}).get("title", {}).get("text")
    return text


def test_every_chart_has_a_title_and_axis_titles() -> None:
    from core.lessons.training import EXPERIMENTS
    from core.lessons.training import charts as train_charts
    from core.lessons.training import charts_runs as runs_charts

    def tr(key: str) -> str:
        return f"<{key}>"

    figures = []
    for p in (LinregParams(), *train_linreg.LINREG.examples):
        r = run_cpu(train_linreg.run, p)
        figures += [
            train_charts.linreg_fit(r, 3, tr),
            train_charts.linreg_loss(r, p.threshold, tr),
            train_charts.linreg_surface(r, tr),
        ]
    r_log = run_cpu(train_logreg.run, LogregParams(max_steps=40))
    figures += [train_charts.logreg_boundary(r_log, 20, tr), train_charts.logreg_curves(r_log, tr)]
    races = [run_cpu(train_optim.run, OptimParams(optimizers=(name,), mode="best", steps=20)) for name in ("sgd", "adam")]
    figures += [train_charts.optim_paths(tr, *races), train_charts.optim_loss(tr, *races), train_charts.optim_sweep(tr, *races)]
    assert len(train_charts.optim_table(tr, *races)) == 2
    r_sched = run_cpu(train_sched.run, SchedParams(groups=True, epochs=12))
    figures.append(runs_charts.sched_figure(r_sched, tr))
    assert len(runs_charts.sched_groups(r_sched, tr)) == 2
    r_freeze = run_cpu(train_freeze.run, FreezeParams(steps=2))
    figures.append(runs_charts.freeze_figure(r_freeze, tr))
    assert len(runs_charts.freeze_table(r_freeze, tr)) == len(r_freeze.names)
    figures.append(runs_charts.repro_figure(run_cpu(train_repro.run, ReproParams(steps=5, n_seeds=2)), tr))
    for fig in figures:
        layout = fig.to_dict()["layout"]  # as it is sent (titles written out as {"text": ...})
        title = layout["title"]["text"]
        assert title, layout
        x_title = axis_title(layout, "xaxis") or axis_title(layout, "xaxis2")
        assert x_title and axis_title(layout, "yaxis"), title  # a shared x axis is titled at the bottom
    assert len(EXPERIMENTS) == 6
    animated = [
        train_charts.linreg_surface(run_cpu(train_linreg.run, LinregParams()), tr),
        train_charts.optim_paths(tr, *races),
    ]
    for spec in (fig.to_dict() for fig in animated):
        assert spec["frames"] and spec["layout"]["updatemenus"] and spec["layout"]["sliders"]
