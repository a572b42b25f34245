"""The modules lesson's `mod_lenet` against the conv/pool size formula, LeNet-5's known counts and a real forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.lessons.modules import lenet as modules_lenet
from core.lessons.modules.lenet import LAYERS, LeNetParams
from tests.params_strategies import query_id, run_cpu


def conv_count(c_in: int, c_out: int, k: int) -> int:
    """Return the parameters of Conv2d(c_in, c_out, k): one k x k x c_in filter and one bias per output channel."""
    return c_out * (c_in * k * k + 1)


def linear_count(n_in: int, n_out: int) -> int:
    return n_out * (n_in + 1)


def test_lenet5_on_32_has_its_textbook_counts() -> None:
    r = run_cpu(modules_lenet.run, LeNetParams())
    counts = dict(zip(LAYERS, r.n_params, strict=True))
    expected = {
        "conv1": conv_count(1, 6, 5),
        "conv2": conv_count(6, 16, 5),
        "fc1": linear_count(16 * 5 * 5, 120),
        "fc2": linear_count(120, 84),
        "fc3": linear_count(84, 10),
    }
    assert expected == {"conv1": 156, "conv2": 2416, "fc1": 48120, "fc2": 10164, "fc3": 850}  # the formula itself
    assert {k: counts[k] for k in expected} == expected
    assert r.total == sum(expected.values()) == 61706
    assert r.error == "" and r.shapes[-1] == "(1, 10)"
    assert r.shapes[LAYERS.index("pool2")] == "(1, 16, 5, 5)"


def side(n: int, k: int, s: int = 1, p: int = 0) -> int:
    return (n + 2 * p - k) // s + 1


CASES = [
    LeNetParams(),
    LeNetParams(size=28),
    LeNetParams(size=28, padding=2),
    LeNetParams(in_channels=3, size=64, kernel=3, stride=2, pool="avg", fit_fc1=True),
    LeNetParams(size=47, kernel=4, padding=1, pool_size=3, fit_fc1=True),
    LeNetParams(size=8, kernel=7),
    LeNetParams(size=9, kernel=1, stride=3, pool_size=1),
]


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_shapes_follow_the_formula_and_a_forward_written_here(p: LeNetParams) -> None:
    r = run_cpu(modules_lenet.run, p)
    pool = nn.MaxPool2d(p.pool_size) if p.pool == "max" else nn.AvgPool2d(p.pool_size)
    reference = [
        nn.Conv2d(p.in_channels, 6, p.kernel, p.stride, p.padding),
        nn.ReLU(),
        pool,
        nn.Conv2d(6, 16, p.kernel, p.stride, p.padding),
        nn.ReLU(),
        pool,
        nn.Flatten(),
    ]
    y = torch.zeros(1, p.in_channels, p.size, p.size)
    n = p.size
    for i, layer in enumerate(reference):
        try:
            y = layer(y)
        except RuntimeError:
            assert r.failed_at == LAYERS[i] and r.shapes[i] == ""
            return
        assert r.shapes[i] == str(tuple(y.shape))
        if i in (0, 3):
            n = side(n, p.kernel, p.stride, p.padding)
        elif i in (2, 5):
            n = side(n, p.pool_size, p.pool_size)
        if i < 6:
            assert y.shape[-1] == n
    assert r.arriving == y.shape[1] == 16 * n * n
    fc1_in = 16 * n * n if p.fit_fc1 else 400
    assert r.fc1_in == fc1_in
    assert r.n_params[LAYERS.index("fc1")] == linear_count(fc1_in, 120)
    if fc1_in != y.shape[1]:
        assert r.failed_at == "fc1" and "cannot be multiplied" in r.error and f"1x{y.shape[1]}" in r.error
    else:
        assert r.error == "" and r.shapes[-1] == "(1, 10)"


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_every_size_said_to_fit_does_and_no_other(p: LeNetParams) -> None:
    r = run_cpu(modules_lenet.run, p)
    features = nn.Sequential(
        nn.Conv2d(p.in_channels, 6, p.kernel, p.stride, p.padding),
        nn.MaxPool2d(p.pool_size),
        nn.Conv2d(6, 16, p.kernel, p.stride, p.padding),
        nn.MaxPool2d(p.pool_size),
        nn.Flatten(),
    )
    fits = []
    with torch.no_grad():
        for size in range(1, 257):
            try:
                if features(torch.zeros(1, p.in_channels, size, size)).shape[1] == r.fc1_in:
                    fits.append(size)
            except RuntimeError:
                pass
    assert r.fitting_sizes == tuple(fits)


def test_the_counts_are_the_real_layers_numel() -> None:
    p = LeNetParams(in_channels=3, kernel=3, padding=1)
    r = run_cpu(modules_lenet.run, p)
    assert r.n_params[LAYERS.index("conv1")] == conv_count(3, 6, 3)
    assert r.n_params[LAYERS.index("conv2")] == conv_count(6, 16, 3)
    assert r.total == sum(r.n_params)


def test_predictions() -> None:
    at_28 = run_cpu(modules_lenet.run, modules_lenet.SHAPE_AT_28.params)
    assert modules_lenet.SHAPE_AT_28.answer(at_28) == "256"
    small_kernels = run_cpu(modules_lenet.run, modules_lenet.CONV2_PARAMS.params)
    assert modules_lenet.CONV2_PARAMS.answer(small_kernels) == str(conv_count(6, 16, 3)) == "880"
