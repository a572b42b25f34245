"""The modules lesson's `mod_modes`: Dropout against its definition, BatchNorm's running statistics against the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.lessons.modules import modes as modules_modes
from core.lessons.modules.modes import ModesParams
from tests.params_strategies import query_id, run_cpu

CASES = [ModesParams(), *modules_modes.MODES.examples, ModesParams(momentum=1.0, steps=3, batch=256, summary_passes=2)]


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_running_statistics_follow_the_momentum_formula(p: ModesParams) -> None:
    r = run_cpu(modules_modes.run, p)
    mean, var = 0.0, 1.0
    for t in range(p.steps):
        mean = (1 - p.momentum) * mean + p.momentum * r.batch_means[t]
        var = (1 - p.momentum) * var + p.momentum * r.batch_vars[t]
        assert math.isclose(r.running_means[t + 1], mean, rel_tol=1e-5, abs_tol=1e-5)
        assert math.isclose(r.running_vars[t + 1], var, rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_train_uses_the_batch_and_eval_the_running_statistics(p: ModesParams) -> None:
    r = run_cpu(modules_modes.run, p)
    assert abs(r.train_out_mean) < 1e-5  # normalized by its own mean
    assert r.eval_formula_error < 1e-5
    assert modules_modes.EVAL_STATS.answer(r) == "running_stats"


def test_a_summary_pass_moves_running_mean_by_the_formula() -> None:
    p = ModesParams(summary_passes=3)
    r = run_cpu(modules_modes.run, p)
    # Replay: the summary batches are the next draws of the same generator after the training data.
    g = torch.Generator().manual_seed(p.seed)
    torch.bernoulli(torch.full((p.features,), 1 - p.p), generator=g)
    for _ in range(p.steps + 1):
        torch.randn(p.batch, 1, generator=g)
    running = r.summary_running_means[0]
    for i in range(p.summary_passes):
        batch = torch.randn(modules_modes.SUMMARY_BATCH, 1, generator=g)
        running = (1 - p.momentum) * running + p.momentum * batch.mean().item()
        assert math.isclose(r.summary_running_means[i + 1], running, rel_tol=1e-5, abs_tol=1e-6)
    assert r.summary_running_means[0] == pytest.approx(r.running_means[-1])


def test_momentum_zero_never_moves_the_running_statistics() -> None:
    r = run_cpu(modules_modes.run, ModesParams(momentum=0.0, summary_passes=4))
    assert np.all(r.running_means == 0.0) and np.all(r.running_vars == 1.0)
    assert np.all(r.summary_running_means == 0.0)


@pytest.mark.parametrize("p_drop", [0.0, 0.1, 0.5, 0.9])
def test_dropout_zeroes_about_p_and_scales_by_its_inverse(p_drop: float) -> None:
    p = ModesParams(p=p_drop, features=4096)
    r = run_cpu(modules_modes.run, p)
    spread = 4 * math.sqrt(p_drop * (1 - p_drop) / p.features)  # four binomial standard deviations
    assert abs(r.zeroed_fraction - p_drop) <= spread + 1e-12
    assert r.kept_scale == pytest.approx(1 / (1 - p_drop))
    assert r.eval_max_change == 0.0 and r.real_dropout_ok
    assert set(np.unique(r.strip_train)) <= {0.0, np.float32(1 / (1 - p_drop))}
    assert np.all(r.strip_eval == 1.0)


def test_real_dropout_behaves_as_the_page_says() -> None:
    X = torch.ones(100_000)
    dropout = nn.Dropout(0.3)
    y = dropout.train()(X)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    assert torch.equal(dropout.eval()(X), X)
