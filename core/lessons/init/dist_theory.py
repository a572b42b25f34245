"""The distribution each torch.nn.init scheme draws from, from its documented formulas (for `dist`).

`scheme_theory` says what a weight of the given shape and fans should look like: mean, std, hard
bounds, the values that occur with positive probability and the CDF of the continuous part, so
that the histogram can show an expected count for every bin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from core.lessons.init.common import gain, ndtr, phi

if TYPE_CHECKING:
    from core.lessons.init.dist import DistParams


@dataclass(frozen=True)
class Theory:
    """The theoretical distribution of one scheme, as the histogram needs it."""

    mean: float
    std: float
    lo: float | None
    hi: float | None
    formula: str
    gain: float | None = None
    points: tuple[float, ...] = ()  # values with positive probability
    point_probs: tuple[Fraction, ...] = ()  # exact, so that n * probability is a whole count
    cdf: Callable[[np.ndarray], np.ndarray] | None = None  # of the continuous part
    range: tuple[float, float] = (0.0, 0.0)  # histogram range of the continuous part


def trunc_acceptance(mean: float, std: float, a: float, b: float) -> float:
    """Return the chance that one draw of trunc_normal_'s sampler is accepted (1 - rejected).

    torch 2.13 redraws N(mean, std) until inside [a, b] when [a, b] holds more than 0.3 of the
    normal's mass, else it proposes uniformly on [a, b] and accepts by the density's ratio to its peak.
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    mass = float(ndtr(np.array([beta]))[0] - ndtr(np.array([alpha]))[0])
    if mass > 0.3:
        return mass
    mode = max(alpha, min(0.0, beta))  # the standardized point of [alpha, beta] nearest the mean
    return mass * math.sqrt(2 * math.pi) / ((beta - alpha) * math.exp(-0.5 * mode * mode))


def trunc_moments(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Return the mean and std of N(mean, std^2) truncated to [a, b] (the textbook formulas).

    With alpha = (a - mean)/std, beta = (b - mean)/std, Z = Phi(beta) - Phi(alpha):
    mean' = mean + std (phi(alpha) - phi(beta)) / Z,
    var'  = std^2 [1 + (alpha phi(alpha) - beta phi(beta)) / Z - ((phi(alpha) - phi(beta)) / Z)^2].
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    z = float(ndtr(np.array([beta]))[0] - ndtr(np.array([alpha]))[0])
    pa, pb = phi(alpha), phi(beta)
    shift = (pa - pb) / z
    var = std**2 * (1 + (alpha * pa - beta * pb) / z - shift**2)
    return mean + std * shift, math.sqrt(max(var, 0.0))


def sphere_coordinate_cdf(u: np.ndarray, m: int) -> np.ndarray:
    """Return P(U <= u) for U one coordinate of a point uniform on the unit sphere in R^m (m >= 2).

    U = cos(theta) where theta in [0, pi] has density proportional to sin(theta)^(m-2).
    """
    theta = np.linspace(0.0, math.pi, 20001)
    if m == 2:
        density = np.ones_like(theta)
    else:
        with np.errstate(divide="ignore"):
            log_density = (m - 2) * np.log(np.sin(theta))
        density = np.exp(log_density - log_density.max())
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cumulative /= cumulative[-1]
    # U <= u  <=>  theta >= arccos(u)
    return np.asarray(1.0 - np.interp(np.arccos(np.clip(u, -1.0, 1.0)), theta, cumulative))


def _uniform(lo: float, hi: float, formula: str, scheme_gain: float | None = None) -> Theory:
    """Return the theory of U(lo, hi)."""
    return Theory(
        (lo + hi) / 2,
        (hi - lo) / math.sqrt(12),
        lo,
        hi,
        formula,
        scheme_gain,
        cdf=lambda e: np.clip((e - lo) / (hi - lo), 0.0, 1.0),
        range=(lo, hi),
    )


def _normal(mean: float, std: float, formula: str, scheme_gain: float | None = None) -> Theory:
    """Return the theory of N(mean, std^2)."""
    return Theory(
        mean,
        std,
        None,
        None,
        formula,
        scheme_gain,
        cdf=lambda e: ndtr((e - mean) / std),
        range=(mean - 4 * std, mean + 4 * std),
    )


def _two_points(n: int, ones: int, formula: str) -> Theory:
    """Return the theory of a weight with `ones` entries equal to 1 and the rest 0 (eye, dirac)."""
    q = Fraction(ones, n)
    return Theory(float(q), math.sqrt(q * (1 - q)), 0.0, 1.0, formula, points=(0.0, 1.0), point_probs=(1 - q, q))


def scheme_theory(p: DistParams, fan_in: int, fan_out: int) -> Theory:
    """Return the distribution the scheme draws from, with its documented formulas."""
    shape = p.shape()
    n, rows = math.prod(shape), shape[0]
    cols = n // rows
    s = p.scheme
    if s == "uniform":
        return _uniform(p.a, p.b, f"U(a, b): std = (b - a)/sqrt(12) = ({p.b} - {p.a})/sqrt(12)")
    if s == "normal":
        return _normal(p.mean, p.std, f"N(mean, std^2) = N({p.mean}, {p.std}^2)")
    if s in ("constant", "ones", "zeros"):
        val = {"constant": p.val, "ones": 1.0, "zeros": 0.0}[s]
        return Theory(val, 0.0, val, val, f"every value = {val}", points=(val,), point_probs=(Fraction(1),))
    if s == "eye":
        k = min(shape)
        return _two_points(n, k, f"min(rows, cols) = {k} ones on the diagonal, {n - k} zeros")
    if s == "dirac":
        k = min(shape[0], shape[1])
        return _two_points(n, k, f"min(out, in) = {k} ones at the kernel centre, {n - k} zeros")
    if s.startswith("xavier"):
        return _xavier(p, fan_in, fan_out)
    if s.startswith("kaiming"):
        return _kaiming(p, fan_in, fan_out)
    if s == "trunc_normal":
        return _trunc_normal(p)
    if s == "orthogonal":
        return _orthogonal(p, max(rows, cols))
    # sparse
    zeros = math.ceil(p.sparsity * rows)
    text = f"ceil({p.sparsity}*{rows}) = {zeros} zeros per column; the rest N(0, {p.std}^2): std = std*sqrt(1 - {zeros}/{rows})"
    return Theory(
        0.0,
        p.std * math.sqrt(1 - zeros / rows),
        None,
        None,
        text,
        points=(0.0,),
        point_probs=(Fraction(zeros, rows),),
        cdf=lambda e: ndtr(e / p.std),
        range=(-4 * p.std, 4 * p.std),
    )


def _xavier(p: DistParams, fan_in: int, fan_out: int) -> Theory:
    """Return xavier_uniform's U(-bound, bound) or xavier_normal's N(0, std^2), both with p.gain."""
    if p.scheme == "xavier_uniform":
        bound = p.gain * math.sqrt(6 / (fan_in + fan_out))
        text = f"bound = gain*sqrt(6/(fan_in+fan_out)) = {p.gain}*sqrt(6/({fan_in}+{fan_out})) = {bound:.6g}"
        return _uniform(-bound, bound, text, p.gain)
    std = p.gain * math.sqrt(2 / (fan_in + fan_out))
    text = f"std = gain*sqrt(2/(fan_in+fan_out)) = {p.gain}*sqrt(2/({fan_in}+{fan_out})) = {std:.6g}"
    return _normal(0.0, std, text, p.gain)


def _kaiming(p: DistParams, fan_in: int, fan_out: int) -> Theory:
    """Return kaiming_uniform's or kaiming_normal's law: the gain of the nonlinearity over sqrt(fan of the mode)."""
    kaiming = gain(p.nonlinearity, p.neg_slope)
    fan = fan_in if p.mode == "fan_in" else fan_out
    g_text = f"gain = calculate_gain({p.nonlinearity!r}, {p.neg_slope}) = {kaiming:.6g}"
    if p.scheme == "kaiming_uniform":
        bound = kaiming * math.sqrt(3 / fan)
        text = f"{g_text}; bound = gain*sqrt(3/{p.mode}) = {kaiming:.6g}*sqrt(3/{fan}) = {bound:.6g}"
        return _uniform(-bound, bound, text, kaiming)
    std = kaiming / math.sqrt(fan)
    return _normal(0.0, std, f"{g_text}; std = gain/sqrt({p.mode}) = {kaiming:.6g}/sqrt({fan}) = {std:.6g}", kaiming)


def _trunc_normal(p: DistParams) -> Theory:
    """Return N(p.mean, p.std^2) kept inside [p.a, p.b]: its moments, bounds and CDF."""
    mean, std = trunc_moments(p.mean, p.std, p.a, p.b)
    alpha = ndtr(np.array([(p.a - p.mean) / p.std]))[0]
    mass = ndtr(np.array([(p.b - p.mean) / p.std]))[0] - alpha
    mode = max(p.a, min(p.mean, p.b))
    lo, hi = max(p.a, mode - 6 * p.std), min(p.b, mode + 6 * p.std)
    text = f"N({p.mean}, {p.std}^2) kept inside [{p.a}, {p.b}]: mean {mean:.6g}, std {std:.6g}"
    return Theory(
        mean,
        std,
        p.a,
        p.b,
        text,
        cdf=lambda e: np.clip((ndtr((e - p.mean) / p.std) - alpha) / mass, 0.0, 1.0),
        range=(lo, hi),
    )


def _orthogonal(p: DistParams, m: int) -> Theory:
    """Return the law of one entry of gain times an orthogonal matrix whose longer side is m."""
    rows = p.shape()[0]
    rms = p.gain / math.sqrt(m)
    side = "W W^T" if rows <= math.prod(p.shape()) // rows else "W^T W"
    text = (
        f"{side} = gain^2 I, so mean(w^2) = gain^2/max(rows, cols) exactly: "
        f"std = {p.gain}/sqrt({m}) = {rms:.6g}; each entry = gain * one coordinate of a "
        f"uniform point on the unit sphere in R^{m}"
    )
    if m == 1:  # a 1x1 orthogonal matrix is +1 or -1
        half = Fraction(1, 2)
        return Theory(0.0, p.gain, -p.gain, p.gain, text, p.gain, points=(-p.gain, p.gain), point_probs=(half, half))
    reach = min(p.gain, 5 * rms)
    return Theory(
        0.0,
        rms,
        -p.gain,
        p.gain,
        text,
        p.gain,
        cdf=lambda e: sphere_coordinate_cdf(e / p.gain, m),
        range=(-reach, reach),
    )


@dataclass(frozen=True)
class Fit:
    """A weight's values against its theory: the continuous part's histogram and the point masses' counts."""

    bin_x: np.ndarray  # bin centres (empty when the law has no continuous part)
    bin_width: float
    counts: np.ndarray
    expected: np.ndarray  # expected count per bin
    outside: int  # values of the continuous part beyond the histogram's range
    expected_outside: float
    point_x: np.ndarray  # the values that occur with positive probability
    point_counts: np.ndarray
    point_expected: np.ndarray


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """Return [lo, hi] widened by a few float32 steps: float32 values at a bound must land inside."""
    margin = 4 * float(np.spacing(np.float32(max(abs(lo), abs(hi), 1e-30))))
    return lo - margin, hi + margin


def fit(values: np.ndarray, theory: Theory, bins: int) -> Fit:
    """Return the counts of the float32 `values` next to what `theory` expects, per bin and per point mass."""
    n = values.size
    # Point masses: exact float32 values.
    is_point = np.zeros(n, dtype=bool)
    point_counts = []
    for v in theory.points:
        hit = values == np.float32(v)
        is_point |= hit
        point_counts.append(int(hit.sum()))
    empty = np.zeros(0)
    bin_x, width, counts, expected, outside, expected_outside = empty, 0.0, empty, empty, 0, 0.0
    if theory.cdf is not None:
        cont = values[~is_point] if theory.points else values
        n_cont = float(n * (1 - sum(theory.point_probs)))
        edges = np.linspace(*_widen(*theory.range), bins + 1)
        hist, _ = np.histogram(cont, bins=edges)
        cdf = theory.cdf(edges)
        bin_x, width = (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])
        counts, expected = hist.astype(np.float64), n_cont * np.diff(cdf)
        outside = int(cont.size - hist.sum())
        expected_outside = float(max(n_cont * (1 - (cdf[-1] - cdf[0])), 0.0))
    return Fit(
        bin_x,
        width,
        counts,
        expected,
        outside,
        expected_outside,
        np.array(theory.points, dtype=np.float64),
        np.array(point_counts, dtype=np.float64),
        np.array([float(n * q) for q in theory.point_probs], dtype=np.float64),
    )
