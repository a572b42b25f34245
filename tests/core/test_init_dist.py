"""The init lesson's `dist` against theory, torch itself, or a computation written here, in the test."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from core.lessons.init import dist as init_dist
from core.lessons.init.common import BINS
from core.lessons.init.dist import DIST_SCHEMES, DistParams, DistResult
from core.lessons.init.dist_theory import sphere_coordinate_cdf, trunc_acceptance
from core.params import InvalidParams
from tests.params_strategies import query_id, run_cpu

K = 5.0  # tolerance in standard deviations of the estimator


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
    r = run_cpu(init_dist.run, p)
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


@pytest.mark.parametrize(("std", "a", "b", "shrink"), [(1.0, -1.0, 1.0, 0.54), (0.02, -2.0, 2.0, 1.0)])
def test_trunc_normal_narrows_only_where_the_bounds_cut(std: float, a: float, b: float, shrink: float) -> None:
    # The prose: cut at one std each side, the spread is about 0.54 std; bounds far out leave it as is.
    assert truncated_moments(0.0, std, a, b)[1] == pytest.approx(shrink * std, rel=0.01)
    r = run_cpu(init_dist.run, DistParams(scheme="trunc_normal", mean=0.0, std=std, a=a, b=b))
    assert r.theory_std == pytest.approx(shrink * std, rel=0.01)


def assert_histogram_fits(r: DistResult) -> None:
    """Every bin's count is within K binomial standard deviations of its expected count."""
    total = r.counts.sum() + r.outside
    assert total == pytest.approx(r.expected.sum() + r.expected_outside, rel=1e-6, abs=1e-6)
    prob = r.expected / total
    assert np.all(np.abs(r.counts - r.expected) <= K * np.sqrt(total * prob * (1 - prob)) + 1)
    assert abs(r.outside - r.expected_outside) <= K * math.sqrt(r.expected_outside) + 1


@pytest.mark.parametrize("p", CONTINUOUS_CASES, ids=query_id)
def test_histogram_matches_the_theoretical_density(p: DistParams) -> None:
    r = run_cpu(init_dist.run, p)
    assert r.bin_x.shape == r.counts.shape == r.expected.shape == (BINS,)
    assert r.point_x.size == 0
    assert_histogram_fits(r)


def test_kaiming_with_a_sqrt5_is_nn_linears_default_bound() -> None:
    r = run_cpu(
        init_dist.run, DistParams(scheme="kaiming_uniform", nonlinearity="leaky_relu", neg_slope=math.sqrt(5), in_features=400)
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
    r = run_cpu(init_dist.run, p)
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
            assert sphere_coordinate_cdf(np.array([q]), m)[0] == pytest.approx(empirical, abs=0.008)


SPARSE_CASES = [
    DistParams(scheme="sparse", in_features=256, out_features=128, sparsity=0.5, std=0.01),
    DistParams(scheme="sparse", in_features=64, out_features=100, sparsity=0.29, std=2.0, seed=9),  # ceil(28.999...) = 29
    DistParams(scheme="sparse", in_features=512, out_features=7, sparsity=0.8, std=1.0),  # 6 of 7 rows zero
    DistParams(scheme="sparse", in_features=100, out_features=300, sparsity=0.0, std=0.5),
]


@pytest.mark.parametrize("p", SPARSE_CASES, ids=query_id)
def test_sparse_zeros_per_column_and_nonzero_std(p: DistParams) -> None:
    r = run_cpu(init_dist.run, p)
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
    a = run_cpu(init_dist.run, SPARSE_CASES[0])
    with torch.random.fork_rng():
        torch.manual_seed(12345)
        b = run_cpu(init_dist.run, SPARSE_CASES[0])
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
    r = run_cpu(init_dist.run, p)
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
        (
            DistParams(scheme="trunc_normal", mean=0.0, std=0.01, a=0.015, b=10.0, in_features=2048, out_features=2048),
            "b",
            "trunc_slow",
        ),
    ]
    for p, field_name, key in refusals:
        with pytest.raises(InvalidParams) as e:
            run_cpu(init_dist.run, p)
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
        assert trunc_acceptance(mean, std, a, b) == pytest.approx(expected, abs=0.005)


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
    for scheme in DIST_SCHEMES:  # every role names a real field
        assert set(DistParams(scheme=scheme).roles()) <= {f.name for f in dataclasses.fields(DistParams)}
