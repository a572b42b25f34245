"""The Weight-initialization lesson against theory, torch itself, or a computation written here, in the test."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from core import init as I
from core.init import DistParams, FansParams, SignalParams, TrainParams
from core.params import InvalidParams, Params
from core.runner import ExperimentError, execute
from tests.params_strategies import any_params, assert_same, assert_same_from_threads, check_runs_or_refused, query_id
from tests.scripts import Ran, after, numbers, run_scripts

CPU = torch.device("cpu")  # the seeded comparisons use CPU generators
K = 5.0  # tolerance in standard deviations of the estimator


def run(run_fn: Callable[[Any, Any], Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(run_fn, params, device=CPU)


# --------------------------------------------------------------------------------------------
# 1. dist: every scheme against its documented distribution


def fans_of(p: DistParams) -> tuple[int, int]:
    """Return (fan_in, fan_out) of a real nn.Linear / nn.Conv2d of these sizes, as torch computes them."""
    layer: nn.Module
    if p.layer == "linear":
        layer = nn.Linear(p.in_features, p.out_features, device="meta")
    else:
        layer = nn.Conv2d(p.in_channels, p.out_channels, p.kernel, device="meta")
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return nn.init._calculate_fan_in_and_fan_out(weight)


def truncated_moments(mean: float, std: float, a: float, b: float) -> tuple[float, float, float]:
    """Return mean, std and kurtosis of N(mean, std^2) cut to [a, b], by numerical integration."""
    x = np.linspace(a, b, 400_001)
    density = np.exp(-0.5 * ((x - mean) / std) ** 2)
    total = np.trapezoid(density, x)
    m = np.trapezoid(x * density, x) / total
    var = np.trapezoid((x - m) ** 2 * density, x) / total
    mu4 = np.trapezoid((x - m) ** 4 * density, x) / total
    return float(m), float(math.sqrt(var)), float(mu4 / var**2)


@dataclass(frozen=True)
class Law:
    """What the test itself expects of a scheme: mean, std, kurtosis and hard bounds."""

    mean: float
    std: float
    kurtosis: float  # E[(w - mean)^4] / std^4: 3 normal, 9/5 uniform
    lo: float | None = None
    hi: float | None = None


def expected_law(p: DistParams) -> Law:
    """Return the distribution the documented formulas give, computed here from torch's fans."""
    fan_in, fan_out = fans_of(p)
    s = p.scheme
    if s == "uniform":
        return Law((p.a + p.b) / 2, (p.b - p.a) / math.sqrt(12), 1.8, p.a, p.b)
    if s == "normal":
        return Law(p.mean, p.std, 3.0)
    if s == "xavier_uniform":
        bound = p.gain * math.sqrt(6 / (fan_in + fan_out))
        return Law(0.0, bound / math.sqrt(3), 1.8, -bound, bound)
    if s == "xavier_normal":
        return Law(0.0, p.gain * math.sqrt(2 / (fan_in + fan_out)), 3.0)
    if s.startswith("kaiming"):
        gain = nn.init.calculate_gain(p.nonlinearity, p.neg_slope)  # type: ignore[arg-type]
        fan = fan_in if p.mode == "fan_in" else fan_out
        if s == "kaiming_uniform":
            bound = gain * math.sqrt(3 / fan)
            return Law(0.0, bound / math.sqrt(3), 1.8, -bound, bound)
        return Law(0.0, gain / math.sqrt(fan), 3.0)
    if s == "trunc_normal":
        m, sd, kurt = truncated_moments(p.mean, p.std, p.a, p.b)
        return Law(m, sd, kurt, p.a, p.b)
    raise AssertionError(s)


def reproduce(p: DistParams) -> torch.Tensor:
    """Return the weight made here with torch.nn.init and a generator seeded as the run's."""
    g = torch.Generator().manual_seed(p.seed)
    w = torch.empty(p.shape())
    init = nn.init
    calls: dict[str, Callable[[], object]] = {
        "uniform": lambda: init.uniform_(w, p.a, p.b, generator=g),
        "normal": lambda: init.normal_(w, p.mean, p.std, generator=g),
        "xavier_uniform": lambda: init.xavier_uniform_(w, p.gain, generator=g),
        "xavier_normal": lambda: init.xavier_normal_(w, p.gain, generator=g),
        "kaiming_uniform": lambda: init.kaiming_uniform_(w, p.neg_slope, p.mode, p.nonlinearity, generator=g),  # type: ignore[arg-type]
        "kaiming_normal": lambda: init.kaiming_normal_(w, p.neg_slope, p.mode, p.nonlinearity, generator=g),  # type: ignore[arg-type]
        "trunc_normal": lambda: init.trunc_normal_(w, p.mean, p.std, p.a, p.b, generator=g),
        "orthogonal": lambda: init.orthogonal_(w, p.gain, generator=g),
    }
    calls[p.scheme]()
    return w


CONTINUOUS_CASES = [
    DistParams(),
    DistParams(scheme="uniform", a=-0.5, b=2.0, in_features=300, out_features=200),
    DistParams(scheme="uniform", a=3.0, b=3.1, layer="conv2d", seed=4),
    DistParams(scheme="normal", mean=-2.0, std=0.3, seed=1),
    DistParams(scheme="xavier_uniform", in_features=512, out_features=64, gain=2.0),
    DistParams(scheme="xavier_uniform", layer="conv2d", in_channels=64, out_channels=32, kernel=5),
    DistParams(scheme="xavier_normal", layer="conv2d", in_channels=8, out_channels=128, kernel=7, gain=5 / 3),
    DistParams(
        scheme="kaiming_uniform", nonlinearity="leaky_relu", neg_slope=math.sqrt(5), in_features=400
    ),  # nn.Linear's default
    DistParams(scheme="kaiming_uniform", layer="conv2d", mode="fan_out", nonlinearity="tanh", in_channels=3, out_channels=96),
    DistParams(scheme="kaiming_normal", mode="fan_out", nonlinearity="selu", out_features=1000, seed=7),
    DistParams(scheme="kaiming_normal", layer="conv2d", nonlinearity="leaky_relu", neg_slope=0.2, kernel=1, in_channels=256),
    DistParams(scheme="trunc_normal"),
    DistParams(scheme="trunc_normal", mean=0.5, std=2.0, a=-1.0, b=4.0, seed=2),
    DistParams(scheme="trunc_normal", mean=0.0, std=1.0, a=1.5, b=3.0),  # torch's second sampler (mass <= 0.3)
    DistParams(scheme="trunc_normal", mean=0.0, std=0.02, a=-2.0, b=2.0, layer="conv2d"),  # a, b are absolute, not in stds
]


@pytest.mark.parametrize("p", CONTINUOUS_CASES, ids=query_id)
def test_measured_mean_std_and_bounds_match_the_formulas(p: DistParams) -> None:
    r = run(I.run_dist, p)
    law = expected_law(p)
    n = r.numel
    assert n == math.prod(p.shape()) and r.shape == p.shape()
    assert abs(r.mean - law.mean) <= K * law.std / math.sqrt(n)
    assert abs(r.std - law.std) <= K * law.std * math.sqrt((law.kurtosis - 1) / (4 * n))
    # What the page shows as theory is the formula's value.
    assert r.theory_mean == pytest.approx(law.mean, rel=1e-6, abs=1e-9)
    assert r.theory_std == pytest.approx(law.std, rel=1e-6)
    if law.lo is not None and law.hi is not None:
        assert (r.theory_lo, r.theory_hi) == pytest.approx((law.lo, law.hi))
        slack = 1e-6 * max(abs(law.lo), abs(law.hi))  # float32 rounding at the bound
        assert law.lo - slack <= r.min and r.max <= law.hi + slack
        if p.scheme != "trunc_normal":  # a uniform sample of this size reaches within 5% of both ends
            assert r.min <= law.lo + 0.05 * (law.hi - law.lo) and r.max >= law.hi - 0.05 * (law.hi - law.lo)
    else:
        assert r.theory_lo is None and r.theory_hi is None
    # The same numbers as torch.nn.init itself with the same seed.
    w = reproduce(p).double()
    assert (r.mean, r.std, r.min, r.max) == (w.mean().item(), w.std(correction=0).item(), w.min().item(), w.max().item())


def assert_histogram_fits(r: I.DistResult) -> None:
    """Every bin's count is within K binomial standard deviations of its expected count."""
    total = r.counts.sum() + r.outside
    assert total == pytest.approx(r.expected.sum() + r.expected_outside, rel=1e-6, abs=1e-6)
    prob = r.expected / total
    assert np.all(np.abs(r.counts - r.expected) <= K * np.sqrt(total * prob * (1 - prob)) + 1)
    assert abs(r.outside - r.expected_outside) <= K * math.sqrt(r.expected_outside) + 1


@pytest.mark.parametrize("p", CONTINUOUS_CASES, ids=query_id)
def test_histogram_matches_the_theoretical_density(p: DistParams) -> None:
    r = run(I.run_dist, p)
    assert r.bin_x.shape == r.counts.shape == r.expected.shape == (I.BINS,)
    assert r.point_x.size == 0
    assert_histogram_fits(r)


def test_kaiming_with_a_sqrt5_is_nn_linears_default_bound() -> None:
    r = run(
        I.run_dist, DistParams(scheme="kaiming_uniform", nonlinearity="leaky_relu", neg_slope=math.sqrt(5), in_features=400)
    )
    assert r.theory_hi == pytest.approx(1 / math.sqrt(400))
    assert r.gain == pytest.approx(math.sqrt(1 / 3))


ORTHOGONAL_CASES = [
    DistParams(scheme="orthogonal", in_features=256, out_features=64, gain=1.0),  # rows < cols
    DistParams(scheme="orthogonal", in_features=32, out_features=512, gain=2.0, seed=3),  # rows > cols
    DistParams(scheme="orthogonal", in_features=12, out_features=12, gain=0.5),  # square, entries far from normal
    DistParams(scheme="orthogonal", in_features=2, out_features=1),  # m = 2: arcsine law
    DistParams(scheme="orthogonal", in_features=1, out_features=1, gain=1.5),  # +-gain
    DistParams(scheme="orthogonal", layer="conv2d", in_channels=16, out_channels=64, kernel=3),
]


@pytest.mark.parametrize("p", ORTHOGONAL_CASES, ids=query_id)
def test_orthogonal_is_orthogonal_with_the_derived_std(p: DistParams) -> None:
    r = run(I.run_dist, p)
    flat = reproduce(p).double().reshape(p.shape()[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    assert (gram - p.gain**2 * torch.eye(min(rows, cols), dtype=torch.float64)).abs().max().item() <= 1e-5 * p.gain**2
    assert r.gram_max_dev is not None and r.gram_max_dev <= 1e-5 * p.gain**2
    # trace(gram) = gain^2 min(rows, cols), so mean(w^2) = gain^2 / max(rows, cols) exactly.
    assert math.sqrt(r.std**2 + r.mean**2) == pytest.approx(p.gain / math.sqrt(max(rows, cols)), rel=1e-5)
    assert r.theory_std == pytest.approx(p.gain / math.sqrt(max(rows, cols)))
    assert -p.gain * (1 + 1e-6) <= r.min and r.max <= p.gain * (1 + 1e-6)
    assert abs(r.mean) <= K * r.theory_std / math.sqrt(r.numel) + 1e-7
    if max(rows, cols) == 1:
        assert r.point_counts.sum() == 1 and list(r.point_x) == [-p.gain, p.gain]
    else:
        assert_histogram_fits(r)


def test_sphere_coordinate_law_against_sampling_here() -> None:
    # One coordinate of a uniform point on the sphere in R^m: sample it directly (normalised Gaussians).
    g = torch.Generator().manual_seed(0)
    for m in (2, 3, 10, 100):
        x = torch.randn(100_000, m, generator=g, dtype=torch.float64)
        u = (x[:, 0] / x.norm(dim=1)).numpy()
        for q in (-0.9, -0.3, 0.0, 0.2, 0.7):
            empirical = float((u <= q).mean())
            assert I._sphere_coordinate_cdf(np.array([q]), m)[0] == pytest.approx(empirical, abs=0.008)


SPARSE_CASES = [
    DistParams(scheme="sparse", in_features=256, out_features=128, sparsity=0.5, std=0.01),
    DistParams(scheme="sparse", in_features=64, out_features=100, sparsity=0.29, std=2.0, seed=9),  # ceil(28.999...) = 29
    DistParams(scheme="sparse", in_features=512, out_features=7, sparsity=0.8, std=1.0),  # 6 of 7 rows zero
    DistParams(scheme="sparse", in_features=100, out_features=300, sparsity=0.0, std=0.5),
]


@pytest.mark.parametrize("p", SPARSE_CASES, ids=query_id)
def test_sparse_zeros_per_column_and_nonzero_std(p: DistParams) -> None:
    r = run(I.run_dist, p)
    rows, cols = p.out_features, p.in_features
    zeros = math.ceil(p.sparsity * rows)
    np.testing.assert_array_equal(r.col_zero_fraction, np.full(cols, zeros / rows))
    assert r.theory_zero_fraction == zeros / rows
    assert list(r.point_x) == [0.0] and r.point_counts[0] == zeros * cols == r.point_expected[0]
    keep = 1 - zeros / rows  # w = 0 with chance 1 - keep, else N(0, std^2): E[w^2] = keep std^2, E[w^4] = 3 keep std^4
    assert keep > 0
    std = p.std * math.sqrt(keep)
    assert r.theory_std == pytest.approx(std)
    assert abs(r.std - std) <= K * std * math.sqrt((3 / keep - 1) / (4 * r.numel)) + std / math.sqrt(r.numel)
    assert_histogram_fits(r)
    # torch's own sparse_ (global RNG for the zeros) makes the same structure.
    with torch.random.fork_rng():
        torch.manual_seed(p.seed)
        w = nn.init.sparse_(torch.empty(rows, cols), p.sparsity, std=p.std)
    assert ((w == 0).sum(dim=0) == zeros).all()


def test_torch_sparse_ignores_the_generator_for_its_zeros() -> None:
    """Why dist does not call nn.init.sparse_: its zero positions come from the global RNG."""
    masks = []
    for global_seed in (1, 2):
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            w = nn.init.sparse_(torch.empty(32, 16), 0.5, generator=torch.Generator().manual_seed(0))
        masks.append(w == 0)
    assert not torch.equal(masks[0], masks[1])
    a = run(I.run_dist, SPARSE_CASES[0])
    with torch.random.fork_rng():
        torch.manual_seed(12345)
        b = run(I.run_dist, SPARSE_CASES[0])
    np.testing.assert_array_equal(a.preview, b.preview)


POINT_CASES = [
    (DistParams(scheme="constant", val=-2.5), [-2.5], lambda n, k: [n]),
    (DistParams(scheme="constant", val=0.1, layer="conv2d"), [0.1], lambda n, k: [n]),
    (DistParams(scheme="ones", in_features=3, out_features=5), [1.0], lambda n, k: [n]),
    (DistParams(scheme="zeros"), [0.0], lambda n, k: [n]),
    (DistParams(scheme="eye", in_features=300, out_features=200), [0.0, 1.0], lambda n, k: [n - k, k]),
    (DistParams(scheme="eye", in_features=1, out_features=1), [0.0, 1.0], lambda n, k: [n - k, k]),
    (DistParams(scheme="dirac", layer="conv2d", in_channels=8, out_channels=16, kernel=5), [0.0, 1.0], lambda n, k: [n - k, k]),
    (DistParams(scheme="dirac", layer="conv2d", in_channels=64, out_channels=3, kernel=4), [0.0, 1.0], lambda n, k: [n - k, k]),
]


@pytest.mark.parametrize(("p", "points", "counts"), POINT_CASES, ids=[query_id(c[0]) for c in POINT_CASES])
def test_point_mass_schemes_are_exact(p: DistParams, points: list[float], counts: Callable[[int, int], list[int]]) -> None:
    r = run(I.run_dist, p)
    shape = p.shape()
    n, k = math.prod(shape), min(shape[0], shape[1])  # eye: min(rows, cols); dirac: min(out, in)
    assert list(r.point_x) == points
    assert list(r.point_counts) == counts(n, k) == list(r.point_expected)
    assert r.counts.size == 0 and r.expected.size == 0
    values = np.repeat(points, counts(n, k)).astype(np.float32).astype(np.float64)
    assert r.mean == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
    assert r.theory_mean == pytest.approx(np.mean(np.repeat(points, counts(n, k))), rel=1e-12, abs=1e-15)
    assert r.theory_std == pytest.approx(np.std(np.repeat(points, counts(n, k))), rel=1e-9, abs=1e-12)
    if p.scheme == "dirac":  # the ones sit at the kernel centre, input channel i -> output channel i
        assert np.array_equal(r.preview[:k, :k], np.eye(k))


def test_dist_refuses_what_torch_would_refuse_or_warn_about() -> None:
    refusals = [
        (DistParams(scheme="uniform", a=1.0, b=1.0), "b", "must_exceed"),
        (DistParams(scheme="uniform", a=2.0, b=-2.0), "b", "must_exceed"),
        (DistParams(scheme="trunc_normal", a=0.5, b=0.5), "b", "must_exceed"),
        (DistParams(scheme="uniform", a=1.0, b=1.0005), "b", "must_exceed"),
        (DistParams(scheme="normal", std=0.0), "std", "out_of_range"),
        (DistParams(scheme="sparse", std=-1.0), "std", "out_of_range"),
        (DistParams(scheme="eye", layer="conv2d"), "scheme", "needs_linear"),
        (DistParams(scheme="sparse", layer="conv2d"), "scheme", "needs_linear"),
        (DistParams(scheme="dirac"), "scheme", "needs_conv"),
        (DistParams(scheme="trunc_normal", mean=5.0, std=1.0, a=-1.0, b=1.0), "mean", "trunc_mean_far"),
        (DistParams(scheme="trunc_normal", mean=0.0, std=0.01, a=0.015, b=10.0, in_features=2048, out_features=2048),
         "b", "trunc_slow"),
    ]  # fmt: skip
    for p, field_name, key in refusals:
        with pytest.raises(InvalidParams) as e:
            run(I.run_dist, p)
        assert (e.value.field, e.value.key) == (field_name, key), p
    assert DistParams(scheme="dirac", layer="conv2d").roles()["kernel"] == "kernel"


def test_trunc_acceptance_is_the_samplers_acceptance() -> None:
    # Simulate torch's second sampler here: uniform proposals on [a, b], accepted by density / peak.
    g = torch.Generator().manual_seed(0)
    for mean, std, a, b in ((0.0, 1.0, 1.5, 3.0), (0.0, 1.0, -0.2, 0.2), (1.0, 0.5, -1.0, 0.2)):
        x = a + (b - a) * torch.rand(400_000, generator=g, dtype=torch.float64)
        peak = max(a, min(mean, b))
        ratio = torch.exp(-0.5 * ((x - mean) / std) ** 2 + 0.5 * ((peak - mean) / std) ** 2)
        accepted = (torch.rand(400_000, generator=g, dtype=torch.float64) < ratio).double().mean().item()
        mass = 0.5 * (math.erf((b - mean) / std / math.sqrt(2)) - math.erf((a - mean) / std / math.sqrt(2)))
        expected = mass if mass > 0.3 else accepted
        assert I.trunc_acceptance(mean, std, a, b) == pytest.approx(expected, abs=0.005)


def test_dist_roles_show_only_what_the_scheme_reads() -> None:
    linear = {"scheme": "scheme", "layer": "layer", "in_features": "in_features", "out_features": "out_features"}
    assert DistParams(scheme="uniform").roles() == linear | {"a": "low", "b": "high", "seed": "seed"}
    assert "neg_slope" not in DistParams(scheme="kaiming_normal", nonlinearity="relu").roles()
    assert DistParams(scheme="kaiming_normal", nonlinearity="leaky_relu").roles()["neg_slope"] == "neg_slope"
    assert set(DistParams(scheme="ones", layer="conv2d").roles()) == {
        "scheme",
        "layer",
        "in_channels",
        "out_channels",
        "kernel",
    }
    roles = DistParams(scheme="trunc_normal").roles()
    assert (roles["a"], roles["b"], roles["mean"], roles["std"]) == ("min_cutoff", "max_cutoff", "mean", "std")
    for scheme in I.DIST_SCHEMES:  # every role names a real field
        assert set(DistParams(scheme=scheme).roles()) <= {f.name for f in dataclasses.fields(DistParams)}


# --------------------------------------------------------------------------------------------
# 2. fans and gains


FANS_CASES = [
    FansParams(),  # the seeds' Conv2d(2, 10, kernel_size=(3, 5)): fans 30 and 150
    FansParams(layer="linear"),  # the seeds' Linear(3, 5): fans 3 and 5
    FansParams(layer="linear", in_features=2048, out_features=1, slope=0.2),
    FansParams(in_channels=256, out_channels=1, kernel_h=7, kernel_w=1, slope=1.0),
    FansParams(in_channels=1, out_channels=256, kernel_h=1, kernel_w=1, slope=0.0),
]


@pytest.mark.parametrize("p", FANS_CASES, ids=query_id)
def test_fans_by_formula_equal_torchs(p: FansParams) -> None:
    r = run(I.run_fans, p)
    layer: nn.Module = (nn.Linear(p.in_features, p.out_features) if p.layer == "linear"
                        else nn.Conv2d(p.in_channels, p.out_channels, (p.kernel_h, p.kernel_w)))  # fmt: skip
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    assert r.weight_shape == tuple(weight.shape)
    torch_fans = nn.init._calculate_fan_in_and_fan_out(weight)
    assert (r.fan_in, r.fan_out) == (r.torch_fan_in, r.torch_fan_out) == torch_fans
    if p.layer == "linear":
        assert (r.fan_in, r.fan_out, r.receptive_field) == (p.in_features, p.out_features, 1)
    else:
        kk = p.kernel_h * p.kernel_w
        assert (r.fan_in, r.fan_out, r.receptive_field) == (p.in_channels * kk, p.out_channels * kk, kk)
    if p == FansParams():
        assert (r.fan_in, r.fan_out) == (30, 150)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_gain_table_equals_calculate_gain_and_the_formulas(slope: float) -> None:
    r = run(I.run_fans, FansParams(slope=slope))
    assert set(r.nonlinearities) == {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                                     "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"}  # fmt: skip
    by_hand = {"tanh": 5 / 3, "relu": math.sqrt(2), "leaky_relu": math.sqrt(2 / (1 + slope**2)), "selu": 3 / 4}
    for name, gain, formula in zip(r.nonlinearities, r.gains, r.gain_formulas, strict=True):
        assert gain == nn.init.calculate_gain(name, slope)
        assert gain == pytest.approx(by_hand.get(name, 1.0), rel=1e-15)
        formulas = {"1": 1.0, "5/3": 5 / 3, "sqrt(2)": math.sqrt(2), "sqrt(2 / (1 + slope^2))": math.sqrt(2 / (1 + slope**2)),
                    "3/4": 0.75}  # fmt: skip
        assert formulas[formula] == pytest.approx(gain, rel=1e-15)


# --------------------------------------------------------------------------------------------
# 3. signal: variance ratios per layer


def var_ratios(std: np.ndarray) -> np.ndarray:
    return np.asarray((std[1:] / std[:-1]) ** 2)


@pytest.mark.parametrize(
    ("activation", "scheme", "ratio"),
    [("relu", "xavier_normal", 0.5), ("relu", "xavier_uniform", 0.5), ("relu", "kaiming_normal", 1.0),
     ("relu", "kaiming_uniform", 1.0), ("linear", "xavier_uniform", 1.0), ("linear", "xavier_normal", 1.0),
     ("leaky_relu", "kaiming_normal", 1.0), ("linear", "normal_0.01", 256 * 1e-4), ("relu", "normal_1", 128.0)],
)  # fmt: skip
def test_variance_ratio_per_layer_matches_theory(activation: str, scheme: str, ratio: float) -> None:
    # Width 256 fixed (fan_in = fan_out): Xavier's Var(w) = 1/256, so ReLU halves Var(z) per layer.
    for seed in (0, 1):
        p = SignalParams(depth=12, width=256, batch=256, activation=activation, scheme=scheme, activation2="linear",
                         scheme2="xavier_normal", seed=seed)  # fmt: skip
        run_ = run(I.run_signal, p).runs[0]
        assert run_.theory is not None and run_.theory.ratio == pytest.approx(ratio)
        forward, backward = var_ratios(run_.pre_std), var_ratios(run_.delta_std[::-1])
        # Finite width: each layer's ratio scatters by about sqrt(2/width); the average over 11 layers is tight.
        assert forward.mean() == pytest.approx(ratio, rel=0.08)
        assert backward.mean() == pytest.approx(ratio, rel=0.08)
        assert run_.forward_ratio == pytest.approx(np.exp(np.log(forward).mean()), rel=1e-9)
        assert run_.backward_ratio == pytest.approx(np.exp(np.log(backward).mean()), rel=1e-9)


def test_signal_theory_curves_against_the_derivation_written_here() -> None:
    depth, width, batch = 9, 128, 64
    for activation, c, mean in (("relu", 0.5, 1 / math.sqrt(2 * math.pi)), ("linear", 1.0, 0.0),
                                ("leaky_relu", (1 + 0.01**2) / 2, 0.99 / math.sqrt(2 * math.pi))):  # fmt: skip
        for scheme in I.SIGNAL_SCHEMES:
            gain = {"relu": math.sqrt(2), "linear": 1.0, "leaky_relu": math.sqrt(2 / (1 + 0.01**2))}[activation]
            var_w = {"xavier": 1 / width, "kaiming": gain**2 / width}.get(scheme.split("_")[0])
            var_w = var_w if var_w is not None else (1e-4 if scheme == "normal_0.01" else 1.0)
            t = I.signal_theory(activation, scheme, depth, width, batch)
            assert t is not None
            v, d2 = 1.0, c  # E[h_0^2] = E[x^2] = 1; E[delta_L^2] = E[R^2 act'^2] = c
            for layer in range(1, depth + 1):
                var_z = width * var_w * v
                assert t.pre_std[layer - 1] == pytest.approx(math.sqrt(var_z), rel=1e-12)
                assert t.act_std[layer - 1] == pytest.approx(math.sqrt(var_z * (c - mean**2)), rel=1e-12)
                v = c * var_z
            for layer in range(depth, 0, -1):
                assert t.delta_std[layer - 1] == pytest.approx(math.sqrt(d2), rel=1e-12)
                d2 *= width * var_w * c
    assert I.signal_theory("tanh", "xavier_normal", depth, width, batch) is None


def test_signal_measurements_against_theory_layer_by_layer() -> None:
    p = SignalParams(depth=8, width=512, batch=256, activation="relu", scheme="kaiming_normal",
                     activation2="linear", scheme2="xavier_uniform", seed=3)  # fmt: skip
    steps = np.arange(1, p.depth + 1)
    for run_ in run(I.run_signal, p).runs:
        t = run_.theory
        assert t is not None
        # The scale drifts like a random walk, about sqrt(2/width) per layer: forward from the input,
        # backward from the output.
        forward_tol, backward_tol = 0.03 + 0.05 * np.sqrt(steps), 0.03 + 0.05 * np.sqrt(steps[::-1])
        assert np.all(np.abs(np.log(run_.pre_std / t.pre_std)) <= forward_tol), (run_.pre_std, t.pre_std)
        assert np.all(np.abs(np.log(run_.act_std / t.act_std)) <= forward_tol), (run_.act_std, t.act_std)
        assert np.all(np.abs(np.log(run_.delta_std / t.delta_std)) <= backward_tol), (run_.delta_std, t.delta_std)
        assert np.all(np.abs(np.log(run_.grad_std / t.grad_std)) <= 0.3)  # the same at every layer


def test_xavier_relu_vanishes_and_normal_1_explodes() -> None:
    r = run(I.run_signal, SignalParams(depth=20, activation="relu", scheme="xavier_normal", scheme2="normal_1", seed=5))
    vanish, explode = r.runs
    assert vanish.act_std[-1] < 1e-2 * vanish.act_std[0]
    assert explode.act_std[-1] > 1e18 * explode.act_std[0]  # sqrt(128)^19 = 1e20
    assert r.hist_layers.tolist() == [1, 5, 10, 15, 20]
    for run_ in r.runs:
        assert run_.hist_counts.shape == (5, I.BINS)
        np.testing.assert_array_equal(run_.hist_counts.sum(axis=1) + run_.hist_outside, np.full(5, 128 * 256))


def test_signal_histogram_layers() -> None:
    assert I.hist_layers(1) == [1]
    assert I.hist_layers(2) == [1, 2]
    assert I.hist_layers(100) == [1, 25, 50, 75, 100]


def test_the_widest_deepest_network_is_refused_by_the_budget() -> None:
    p = SignalParams(depth=100, width=2048, batch=512)
    with pytest.raises(ExperimentError) as e:
        run(I.run_signal, p)
    assert e.value.key == "budget" and e.value.info["max_mb"] == 512
    weights = 100 * 2048 * 2048 * 4
    assert e.value.info["needed_mb"] >= 2 * weights / 2**20  # the weights and their gradients, at least
    assert e.value.info["needed_mb"] == round(p.estimate_bytes() / 2**20, 1)


# --------------------------------------------------------------------------------------------
# 4. train


def test_training_curves_show_the_inits_consequence() -> None:
    r = run(I.run_train, TrainParams())
    assert r.schemes == ("normal_0.01", "xavier_uniform", "kaiming_normal")
    assert r.loss.shape == (3, 300) and r.steps.tolist() == list(range(1, 301))
    assert r.X.shape == (I.TRAIN_POINTS, 2) and sorted(set(r.y.tolist())) == [0.0, 1.0]
    tiny, xavier, kaiming = r.loss
    # Tiny weights: every logit is about 0, so the loss starts at ln 2 (and the signal vanishes: it stays there).
    assert tiny[0] == pytest.approx(math.log(2), abs=1e-4)
    assert tiny[-1] == pytest.approx(math.log(2), abs=0.01)
    # Kaiming keeps relu's signal: it learns the spirals about 50 steps before Xavier, which halves it per layer.
    first_below = [int(np.argmax(curve < 0.1)) if (curve < 0.1).any() else len(curve) for curve in r.loss]
    assert first_below[0] == 300 and first_below[2] + 30 < first_below[1] < 300
    assert kaiming[-1] < xavier[-1] < 0.01
    assert r.accuracy[2] == 1.0 and not r.diverged.any()


def test_initial_loss_is_the_cross_entropy_of_the_initial_net_computed_here() -> None:
    p = TrainParams(depth=2, width=16, steps=50, schemes=("normal_1",), activation="tanh", seed=4)
    r = run(I.run_train, p)
    g = torch.Generator().manual_seed(p.seed)
    X, y = I.spirals(I.TRAIN_POINTS, g, CPU)
    h = X
    weights = [torch.randn(16, 2, generator=g), torch.randn(16, 16, generator=g), torch.randn(1, 16, generator=g)]
    for i, w in enumerate(weights):
        h = h @ w.T
        if i < 2:
            h = torch.tanh(h)
    logits = h.squeeze(1).double()
    bce = (torch.clamp(logits, min=0) - logits * y.double() + torch.log1p(torch.exp(-logits.abs()))).mean().item()
    assert r.loss[0, 0] == pytest.approx(bce, rel=1e-5)


def test_each_init_starts_from_the_same_random_numbers() -> None:
    # Training: one scheme alone gives the same curve as in company (the page runs them one by one).
    p = TrainParams(depth=2, width=16, steps=50, schemes=("xavier_normal", "normal_1", "kaiming_uniform"), seed=3)
    together = run(I.run_train, p)
    for k, scheme in enumerate(p.schemes):
        alone = run(I.run_train, dataclasses.replace(p, schemes=(scheme,)))
        np.testing.assert_array_equal(alone.loss[0], together.loss[k])
        np.testing.assert_array_equal(alone.X, together.X)
    # Signal: Kaiming's weights are Xavier's times sqrt(2) (width fixed), and relu(c z) = c relu(z),
    # so every activation is exactly sqrt(2)^layer larger.
    s = run(I.run_signal, SignalParams(depth=10, width=64, batch=32, scheme="xavier_normal", scheme2="kaiming_normal"))
    xavier, kaiming = s.runs
    np.testing.assert_allclose(kaiming.act_std / xavier.act_std, math.sqrt(2) ** s.layers, rtol=1e-5)


def test_train_refuses_too_much_work() -> None:
    p = TrainParams(depth=10, width=256, steps=2000, schemes=I.SIGNAL_SCHEMES)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("steps", "too_much_work")
    assert dataclasses.replace(p, steps=e.value.info["max"]).work() <= I.TRAIN_MAX_WORK
    with pytest.raises(InvalidParams) as e:
        TrainParams(schemes=()).validate()
    assert e.value.key == "empty"
    assert "momentum" not in TrainParams(optimizer="adam").roles() and "momentum" in TrainParams().roles()


# --------------------------------------------------------------------------------------------
# Registry and determinism


def test_registry_names_every_experiment() -> None:
    assert list(I.EXPERIMENTS) == ["dist", "fans", "signal", "train"]
    for exp in I.EXPERIMENTS.values():
        exp.params().validate()
        assert "import torch" in exp.code(exp.params()) or "from torch import nn" in exp.code(exp.params())


DETERMINISM_CASES: list[tuple[Callable[[Any, Any], Any], Params]] = [
    (I.run_dist, DistParams(scheme="trunc_normal", seed=3)),
    (I.run_dist, DistParams(scheme="sparse", in_features=64, out_features=32, seed=8)),
    (I.run_dist, DistParams(scheme="orthogonal", in_features=64, out_features=96, seed=2)),
    (I.run_fans, FansParams(layer="linear", in_features=20)),
    (I.run_signal, SignalParams(depth=6, width=64, batch=32, activation="tanh", scheme2="normal_1", seed=11)),
    (I.run_train, TrainParams(depth=2, width=16, steps=60, schemes=("normal_1", "xavier_normal"), optimizer="adam", lr=0.01)),
]


@pytest.mark.parametrize(("run_fn", "p"), DETERMINISM_CASES, ids=[query_id(p) for _, p in DETERMINISM_CASES])
def test_same_params_same_result(run_fn: Callable[[Any, Any], Any], p: Params) -> None:
    assert_same(run(run_fn, p), run(run_fn, p))


def test_same_results_from_eight_threads_at_once() -> None:
    assert_same_from_threads(DETERMINISM_CASES)


def test_the_seed_changes_the_random_experiments() -> None:
    assert run(I.run_dist, DistParams(seed=1)).mean != run(I.run_dist, DistParams(seed=2)).mean
    a = run(I.run_signal, SignalParams(depth=3, width=16, batch=8, seed=1))
    b = run(I.run_signal, SignalParams(depth=3, width=16, batch=8, seed=2))
    assert not np.array_equal(a.runs[0].pre_std, b.runs[0].pre_std)


# --------------------------------------------------------------------------------------------
# Property: every input runs or is refused cleanly


PARAMS_CLASSES = [DistParams, FansParams, SignalParams, TrainParams]
RESULT_TYPES = {DistParams: I.DistResult, FansParams: I.FansResult, SignalParams: I.SignalResult, TrainParams: I.TrainResult}
# Sizes whose valid runs take seconds are drawn small, plus upper bounds that the budget or the work
# limit refuses (signal's widest layers are checked by the budget test below).
SMALL: dict[str, st.SearchStrategy[Any]] = {
    "SignalParams.depth": st.one_of(st.integers(1, 12), st.just(100)),
    "SignalParams.width": st.integers(8, 64),
    "SignalParams.batch": st.one_of(st.integers(1, 64), st.just(2048)),
    "TrainParams.steps": st.one_of(st.integers(50, 60), st.just(2000)),
    "TrainParams.width": st.one_of(st.integers(16, 32), st.just(256)),
    "TrainParams.depth": st.integers(1, 3),
    "TrainParams.schemes": st.lists(st.sampled_from(I.SIGNAL_SCHEMES), max_size=3, unique=True).map(tuple),
}


def test_every_params_class_is_covered() -> None:
    assert {e.params for e in I.EXPERIMENTS.values()} == set(PARAMS_CLASSES) == set(RESULT_TYPES)


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(cls: type[Params], data: st.DataObject) -> None:
    run_fn = I.EXPERIMENTS[next(k for k, e in I.EXPERIMENTS.items() if e.params is cls)].run
    check_runs_or_refused(run_fn, data.draw(any_params(cls, overrides=SMALL)), RESULT_TYPES[cls], "needed_mb")


# --------------------------------------------------------------------------------------------
# Every generated script runs on its own and prints what the result holds


def check_dist(p: DistParams, r: I.DistResult, out: str) -> None:
    shape, rest = after(out, "shape").split(")", 1)
    assert tuple(int(v) for v in shape.strip("( ").split(",") if v.strip()) == r.shape
    assert numbers(rest) == [r.fan_in, r.fan_out]
    assert numbers(after(out, "mean")) == pytest.approx([r.mean, r.std], rel=1e-12, abs=1e-15)
    assert numbers(after(out, "min")) == [r.min, r.max]
    if p.scheme.startswith(("xavier", "kaiming", "uniform", "orthogonal")):
        assert numbers(out[out.index("theory std") :].splitlines()[0])[0] == pytest.approx(r.theory_std, rel=1e-12)
    if p.scheme.startswith("kaiming"):
        assert numbers(after(out, "gain"))[0] == r.gain
    if p.scheme == "orthogonal":
        assert numbers(after(out, "max |gram - gain^2 I|")) == [r.gram_max_dev]
    if p.scheme == "sparse":
        printed = numbers(after(out, "zeros per column"))
        assert printed == [r.col_zero_fraction[0] * p.out_features] * min(8, p.in_features) + [
            r.point_counts[0] / p.in_features
        ]
    if p.scheme in ("eye", "dirac"):
        assert numbers(after(out, "ones")) == [r.point_counts[1], r.point_counts[0]]


def check_fans(p: FansParams, r: I.FansResult, out: str) -> None:
    assert numbers(after(out, "weight shape")) == list(r.weight_shape)
    assert numbers(after(out, "formula:")) == [r.fan_in, r.fan_out]
    assert numbers(after(out, "torch:")) == [r.torch_fan_in, r.torch_fan_out]
    assert numbers(after(out, "kaiming fan for mode='fan_in':").replace("mode='fan_out':", "")) == [r.fan_in, r.fan_out]
    for name, gain in zip(r.nonlinearities, r.gains, strict=True):
        assert float(after(out, f"gain {name:18}")) == gain


def check_signal(p: SignalParams, r: I.SignalResult, out: str) -> None:
    for run_ in r.runs:
        name = f"{run_.activation} + {run_.scheme}"
        for layer in range(1, p.depth + 1):
            line = after(out, f"{name} layer {layer}:")
            printed = numbers(line.split(":", 1)[1] if ":" in line else line)
            i = layer - 1
            expected = [run_.pre_std[i], run_.act_std[i], run_.delta_std[i], run_.grad_std[i]]
            assert printed == pytest.approx(expected, rel=1e-6, nan_ok=True)
        assert f"{name} layer {p.depth + 1}:" not in out


def check_train(p: TrainParams, r: I.TrainResult, out: str) -> None:
    for k, scheme in enumerate(r.schemes):
        for step in I.report_steps(p.steps):
            printed = numbers(after(out, f"{scheme} step {step} loss"))
            assert printed == pytest.approx([r.loss[k, step - 1]], rel=1e-5, nan_ok=True)
        assert numbers(after(out, f"{scheme} accuracy")) == [r.accuracy[k]]


@dataclass(frozen=True)
class Case:
    run_fn: Callable[[Any, Any], Any]
    code_fn: Callable[[Any], str]
    check: Callable[[Any, Any, str], None]
    params: Params


def dist_case(p: DistParams) -> Case:
    return Case(I.run_dist, I.code_dist, check_dist, p)


SCRIPT_CASES = [
    dist_case(DistParams()),
    dist_case(DistParams(scheme="uniform", a=-0.5, b=2.0, seed=3)),
    dist_case(DistParams(scheme="xavier_uniform", layer="conv2d", gain=2.0)),
    dist_case(DistParams(scheme="kaiming_uniform", nonlinearity="leaky_relu", neg_slope=0.2, mode="fan_out")),
    dist_case(DistParams(scheme="trunc_normal", mean=0.5, std=2.0, a=-1.0, b=4.0)),
    dist_case(DistParams(scheme="orthogonal", layer="conv2d", in_channels=8, out_channels=64, gain=1.5)),
    dist_case(DistParams(scheme="sparse", in_features=40, out_features=30, sparsity=0.3, std=0.05, seed=6)),
    dist_case(DistParams(scheme="eye", in_features=7, out_features=5)),
    dist_case(DistParams(scheme="dirac", layer="conv2d", kernel=5)),
    dist_case(DistParams(scheme="constant", val=-1.5)),
    Case(I.run_fans, I.code_fans, check_fans, FansParams()),
    Case(I.run_fans, I.code_fans, check_fans, FansParams(layer="linear", in_features=300, out_features=7, slope=0.3)),
    Case(I.run_signal, I.code_signal, check_signal, SignalParams()),
    Case(
        I.run_signal,
        I.code_signal,
        check_signal,
        SignalParams(
            depth=3,
            width=16,
            batch=8,
            activation="tanh",
            scheme="normal_1",
            activation2="leaky_relu",
            scheme2="kaiming_uniform",
            seed=2,
        ),
    ),
    Case(
        I.run_signal,
        I.code_signal,
        check_signal,
        SignalParams(
            depth=30, width=32, batch=4, activation="relu", scheme="normal_1", activation2="gelu", scheme2="xavier_uniform"
        ),
    ),
    Case(I.run_train, I.code_train, check_train, TrainParams()),
    Case(
        I.run_train,
        I.code_train,
        check_train,
        TrainParams(
            depth=2,
            width=16,
            activation="tanh",
            schemes=("normal_1", "xavier_normal"),
            optimizer="adam",
            lr=0.01,
            steps=60,
            seed=5,
        ),
    ),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every case's script on its own; return name -> what it did."""
    folder = tmp_path_factory.mktemp("init_snippets")  # no core/ here: the scripts must stand alone
    sources = {query_id(case.params): case.code_fn(case.params) for case in SCRIPT_CASES}
    return run_scripts(sources, folder, timeout=180)


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[query_id(c.params) for c in SCRIPT_CASES])
def test_script_runs_and_prints_the_result(case: Case, ran: dict[str, Ran]) -> None:
    done = ran[query_id(case.params)]
    assert done.rc == 0, done.err
    case.check(case.params, run(case.run_fn, case.params), done.out)
