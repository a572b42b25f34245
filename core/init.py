"""Experiments of the "Weight initialization" lesson: each is Params, Result, run_* and code_*.

1. dist   - every torch.nn.init scheme on a real Linear or Conv2d weight: histogram vs theory.
2. fans   - fan_in / fan_out by the lesson's formula and by torch; the calculate_gain table.
3. signal - two deep MLPs side by side: std of activations and gradients at every layer.
4. train  - a small MLP trained on two spirals once per init: the loss curves.

Results hold numpy arrays and plain Python values only, so they can be cached and shared. All
randomness comes from ctx.generator; every torch.nn.init function used here takes `generator=`
in torch 2.x, except that `sparse_` draws its zero positions from the *global* RNG even when
given a generator (it calls torch.randperm without it), so `dist` runs torch's own algorithm
with the generator passed to every draw (see `_sparse_`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.params import InvalidParams, Params, bounds, choices
from core.runner import RunContext
from core.tensors import Experiment

BINS = 40
NONLINEARITIES = (
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "sigmoid", "tanh", "relu", "leaky_relu", "selu",
)  # fmt: skip  # every name torch.nn.init.calculate_gain accepts
GAIN_FORMULAS = {
    **{name: "1" for name in NONLINEARITIES[:8]},
    "tanh": "5/3",
    "relu": "sqrt(2)",
    "leaky_relu": "sqrt(2 / (1 + slope^2))",
    "selu": "3/4",
}
Nonlinearity = Literal[
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "sigmoid", "tanh", "relu", "leaky_relu", "selu",
]  # fmt: skip
FanMode = Literal["fan_in", "fan_out"]


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def _numpy(t: torch.Tensor) -> np.ndarray:
    """Return a CPU float64 numpy copy of t."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


def _gain(nonlinearity: str, param: float | None = None) -> float:
    """Return torch.nn.init.calculate_gain(nonlinearity, param) (typed: the name is a Literal there)."""
    return float(nn.init.calculate_gain(cast(Nonlinearity, nonlinearity), param))


def _ndtr(x: np.ndarray) -> np.ndarray:
    """Return the standard normal CDF at x (float64)."""
    return np.asarray(torch.special.ndtr(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy())


def _phi(x: float) -> float:
    """Return the standard normal density at x."""
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


# --------------------------------------------------------------------------------------------
# 1. Every init scheme: histogram against the theoretical distribution


DIST_SCHEMES = (
    "uniform", "normal", "constant", "ones", "zeros", "eye", "dirac", "xavier_uniform", "xavier_normal",
    "kaiming_uniform", "kaiming_normal", "trunc_normal", "orthogonal", "sparse",
)  # fmt: skip
POINT_SCHEMES = frozenset({"constant", "ones", "zeros", "eye", "dirac"})  # every value is one of a few
RANDOM_SCHEMES = frozenset(DIST_SCHEMES) - POINT_SCHEMES
LAYERS = ("linear", "conv2d")
# Which scheme arguments each scheme reads, and the role (widget label key) of each.
DIST_ROLES: dict[str, dict[str, str]] = {
    "uniform": {"a": "low", "b": "high"},
    "normal": {"mean": "mean", "std": "std"},
    "constant": {"val": "val"},
    "xavier_uniform": {"gain": "gain"},
    "xavier_normal": {"gain": "gain"},
    "kaiming_uniform": {"mode": "mode", "nonlinearity": "nonlinearity"},
    "kaiming_normal": {"mode": "mode", "nonlinearity": "nonlinearity"},
    "trunc_normal": {"mean": "mean", "std": "std", "a": "min_cutoff", "b": "max_cutoff"},
    "orthogonal": {"gain": "gain"},
    "sparse": {"sparsity": "sparsity", "std": "std"},
}
# trunc_normal_'s rejection sampler redraws the whole tensor until every value is accepted; refuse
# settings whose expected work (elements x rounds) would take seconds.
TRUNC_MAX_WORK = 1.5e8
PREVIEW = 32  # rows and columns of the weight kept for a heat map
MIN_GAP = 1e-3  # b - a at least: a narrower interval has no histogram (or truncated moments) to speak of


@dataclass(frozen=True)
class DistParams(Params):
    scheme: str = field(default="kaiming_normal", metadata=choices(*DIST_SCHEMES))
    layer: str = field(default="linear", metadata=choices(*LAYERS))
    in_features: int = field(default=256, metadata=bounds(1, 2048))
    out_features: int = field(default=128, metadata=bounds(1, 2048))
    in_channels: int = field(default=16, metadata=bounds(1, 256))
    out_channels: int = field(default=32, metadata=bounds(1, 256))
    kernel: int = field(default=3, metadata=bounds(1, 7))
    a: float = field(default=-1.0, metadata=bounds(-10, 10, 0.1))
    b: float = field(default=1.0, metadata=bounds(-10, 10, 0.1))
    mean: float = field(default=0.0, metadata=bounds(-10, 10, 0.1))
    std: float = field(default=1.0, metadata=bounds(0.01, 10, 0.01))  # > 0 wherever it is used
    val: float = field(default=0.5, metadata=bounds(-10, 10, 0.1))
    gain: float = field(default=1.0, metadata=bounds(0.01, 5, 0.01))
    neg_slope: float = field(default=0.0, metadata=bounds(0, 3, 0.01))  # kaiming's `a`
    mode: str = field(default="fan_in", metadata=choices("fan_in", "fan_out"))
    nonlinearity: str = field(default="relu", metadata=choices(*NONLINEARITIES))
    sparsity: float = field(default=0.5, metadata=bounds(0, 0.99, 0.01))
    seed: int = _seed()

    def roles(self) -> dict[str, str]:
        """Return the fields this scheme and layer read, each with its role (low, gain, ...)."""
        roles = {"scheme": "scheme", "layer": "layer"}
        if self.layer == "linear":
            roles |= {"in_features": "in_features", "out_features": "out_features"}
        else:
            roles |= {"in_channels": "in_channels", "out_channels": "out_channels", "kernel": "kernel"}
        roles |= DIST_ROLES.get(self.scheme, {})
        if self.scheme.startswith("kaiming") and self.nonlinearity == "leaky_relu":
            roles["neg_slope"] = "neg_slope"
        if self.scheme in RANDOM_SCHEMES:
            roles["seed"] = "seed"
        return roles

    def shape(self) -> tuple[int, ...]:
        """Return the weight's shape: (out, in) for Linear, (out, in, k, k) for Conv2d."""
        if self.layer == "linear":
            return (self.out_features, self.in_features)
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    def validate(self) -> None:
        super().validate()
        s = self.scheme
        if s in ("uniform", "trunc_normal") and not self.b - self.a >= MIN_GAP:
            raise InvalidParams("b", "must_exceed", other=self.a, gap=MIN_GAP)
        if s in ("eye", "sparse") and self.layer != "linear":
            raise InvalidParams("scheme", "needs_linear")
        if s == "dirac" and self.layer != "conv2d":
            raise InvalidParams("scheme", "needs_conv")
        if s == "trunc_normal":
            # torch warns that values may be wrong when the mean lies more than 2 std outside [a, b].
            if self.mean < self.a - 2 * self.std or self.mean > self.b + 2 * self.std:
                raise InvalidParams("mean", "trunc_mean_far", lo=self.a - 2 * self.std, hi=self.b + 2 * self.std)
            acceptance = trunc_acceptance(self.mean, self.std, self.a, self.b)
            numel = math.prod(self.shape())
            rounds = 1 + math.log(numel + 1) / -math.log1p(-min(acceptance, 1 - 1e-12))
            if numel * rounds > TRUNC_MAX_WORK:
                raise InvalidParams("b", "trunc_slow", acceptance=round(acceptance, 4))

    def estimate_bytes(self) -> int:
        numel = math.prod(self.shape())
        rows, cols = self.shape()[0], numel // self.shape()[0]
        # The weight, its float32 and float64 copies, trunc_normal's buffers or orthogonal's QR, the
        # Gram matrix of the smaller side.
        return numel * 40 + min(rows, cols) ** 2 * 8


@dataclass(frozen=True)
class DistResult:
    scheme: str
    layer: str
    shape: tuple[int, ...]
    numel: int
    fan_in: int  # torch.nn.init._calculate_fan_in_and_fan_out on the weight
    fan_out: int
    gain: float | None  # the gain the scheme applied (xavier, kaiming, orthogonal)
    # Histogram of the values that are not point masses (all of them for continuous schemes,
    # the non-zeros for sparse, none for constant/ones/zeros/eye/dirac).
    bin_x: np.ndarray  # bin centres
    bin_width: float
    counts: np.ndarray
    expected: np.ndarray  # expected count per bin under the theoretical distribution
    outside: int  # values of the continuous part beyond the histogram's range
    expected_outside: float
    # Point masses: the values that occur with positive probability, their counts and expected counts.
    point_x: np.ndarray
    point_counts: np.ndarray
    point_expected: np.ndarray
    mean: float  # measured over every value (float64)
    std: float  # population std (correction=0)
    min: float
    max: float
    theory_mean: float
    theory_std: float
    theory_lo: float | None  # hard bounds of the distribution's support; None when unbounded
    theory_hi: float | None
    formula: str  # how theory_std (or the bound) follows from fans and gain, with the numbers
    col_zero_fraction: np.ndarray  # sparse: measured fraction of zeros in each column; else empty
    theory_zero_fraction: float | None  # sparse: ceil(sparsity * rows) / rows
    gram_max_dev: float | None  # orthogonal: max |W W^T - gain^2 I| over the smaller side
    preview: np.ndarray  # the top-left PREVIEW x PREVIEW of the weight (conv: its centre tap)


def trunc_acceptance(mean: float, std: float, a: float, b: float) -> float:
    """Return the chance that one draw of trunc_normal_'s sampler is accepted (1 - rejected).

    torch 2.13 redraws N(mean, std) until inside [a, b] when [a, b] holds more than 0.3 of the
    normal's mass, else it proposes uniformly on [a, b] and accepts by the density's ratio to its peak.
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    mass = float(_ndtr(np.array([beta]))[0] - _ndtr(np.array([alpha]))[0])
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
    z = float(_ndtr(np.array([beta]))[0] - _ndtr(np.array([alpha]))[0])
    pa, pb = _phi(alpha), _phi(beta)
    shift = (pa - pb) / z
    var = std**2 * (1 + (alpha * pa - beta * pb) / z - shift**2)
    return mean + std * shift, math.sqrt(max(var, 0.0))


def _sphere_coordinate_cdf(u: np.ndarray, m: int) -> np.ndarray:
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


def _sparse_(w: torch.Tensor, sparsity: float, std: float, g: torch.Generator, ctx: RunContext) -> None:
    """Fill w as torch.nn.init.sparse_ does, but drawing the zero positions from g too.

    torch's sparse_ (2.13) takes `generator=` for the normal values only; its per-column
    torch.randperm uses the global RNG, so two students with one seed would get different zeros.
    """
    rows, cols = w.shape
    num_zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        w.normal_(0, std, generator=g)
        for col in range(cols):
            if col % 64 == 0:
                ctx.check_deadline()
            zero_rows = torch.randperm(rows, generator=g, device=w.device)[:num_zeros]
            w[zero_rows, col] = 0


def _apply_scheme(p: DistParams, w: torch.Tensor, ctx: RunContext) -> None:
    """Fill w in place with the chosen torch.nn.init scheme, every draw from ctx.generator."""
    g, init = ctx.generator, nn.init
    mode, nonlinearity = cast(FanMode, p.mode), cast(Nonlinearity, p.nonlinearity)
    fills: dict[str, Callable[[], object]] = {
        "uniform": lambda: init.uniform_(w, a=p.a, b=p.b, generator=g),
        "normal": lambda: init.normal_(w, mean=p.mean, std=p.std, generator=g),
        "constant": lambda: init.constant_(w, p.val),
        "ones": lambda: init.ones_(w),
        "zeros": lambda: init.zeros_(w),
        "eye": lambda: init.eye_(w),
        "dirac": lambda: init.dirac_(w),
        "xavier_uniform": lambda: init.xavier_uniform_(w, gain=p.gain, generator=g),
        "xavier_normal": lambda: init.xavier_normal_(w, gain=p.gain, generator=g),
        "kaiming_uniform": lambda: init.kaiming_uniform_(w, a=p.neg_slope, mode=mode, nonlinearity=nonlinearity, generator=g),
        "kaiming_normal": lambda: init.kaiming_normal_(w, a=p.neg_slope, mode=mode, nonlinearity=nonlinearity, generator=g),
        "trunc_normal": lambda: init.trunc_normal_(w, mean=p.mean, std=p.std, a=p.a, b=p.b, generator=g),
        "orthogonal": lambda: init.orthogonal_(w, gain=p.gain, generator=g),
        "sparse": lambda: _sparse_(w, p.sparsity, p.std, g, ctx),
    }
    fills[p.scheme]()


@dataclass(frozen=True)
class _Theory:
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


def _uniform_theory(lo: float, hi: float, formula: str, gain: float | None = None) -> _Theory:
    return _Theory((lo + hi) / 2, (hi - lo) / math.sqrt(12), lo, hi, formula, gain,
                   cdf=lambda e: np.clip((e - lo) / (hi - lo), 0.0, 1.0), range=(lo, hi))  # fmt: skip


def _normal_theory(mean: float, std: float, formula: str, gain: float | None = None) -> _Theory:
    return _Theory(mean, std, None, None, formula, gain,
                   cdf=lambda e: _ndtr((e - mean) / std), range=(mean - 4 * std, mean + 4 * std))  # fmt: skip


def _two_points(n: int, ones: int, formula: str) -> _Theory:
    """Return the theory of a weight with `ones` entries equal to 1 and the rest 0 (eye, dirac)."""
    q = Fraction(ones, n)
    return _Theory(float(q), math.sqrt(q * (1 - q)), 0.0, 1.0, formula, points=(0.0, 1.0), point_probs=(1 - q, q))


def _dist_theory(p: DistParams, fan_in: int, fan_out: int) -> _Theory:
    """Return the distribution the scheme draws from, with its documented formulas."""
    shape = p.shape()
    n, rows = math.prod(shape), shape[0]
    cols = n // rows
    s = p.scheme
    if s == "uniform":
        return _uniform_theory(p.a, p.b, f"U(a, b): std = (b - a)/sqrt(12) = ({p.b} - {p.a})/sqrt(12)")
    if s == "normal":
        return _normal_theory(p.mean, p.std, f"N(mean, std^2) = N({p.mean}, {p.std}^2)")
    if s in ("constant", "ones", "zeros"):
        val = {"constant": p.val, "ones": 1.0, "zeros": 0.0}[s]
        return _Theory(val, 0.0, val, val, f"every value = {val}", points=(val,), point_probs=(Fraction(1),))
    if s == "eye":
        k = min(shape)
        return _two_points(n, k, f"min(rows, cols) = {k} ones on the diagonal, {n - k} zeros")
    if s == "dirac":
        k = min(shape[0], shape[1])
        return _two_points(n, k, f"min(out, in) = {k} ones at the kernel centre, {n - k} zeros")
    if s.startswith("xavier"):
        std = p.gain * math.sqrt(2 / (fan_in + fan_out))
        if s == "xavier_uniform":
            bound = p.gain * math.sqrt(6 / (fan_in + fan_out))
            text = f"bound = gain*sqrt(6/(fan_in+fan_out)) = {p.gain}*sqrt(6/({fan_in}+{fan_out})) = {bound:.6g}"
            return _uniform_theory(-bound, bound, text, p.gain)
        text = f"std = gain*sqrt(2/(fan_in+fan_out)) = {p.gain}*sqrt(2/({fan_in}+{fan_out})) = {std:.6g}"
        return _normal_theory(0.0, std, text, p.gain)
    if s.startswith("kaiming"):
        gain = _gain(p.nonlinearity, p.neg_slope)
        fan = fan_in if p.mode == "fan_in" else fan_out
        g_text = f"gain = calculate_gain({p.nonlinearity!r}, {p.neg_slope}) = {gain:.6g}"
        if s == "kaiming_uniform":
            bound = gain * math.sqrt(3 / fan)
            text = f"{g_text}; bound = gain*sqrt(3/{p.mode}) = {gain:.6g}*sqrt(3/{fan}) = {bound:.6g}"
            return _uniform_theory(-bound, bound, text, gain)
        std = gain / math.sqrt(fan)
        return _normal_theory(0.0, std, f"{g_text}; std = gain/sqrt({p.mode}) = {gain:.6g}/sqrt({fan}) = {std:.6g}", gain)
    if s == "trunc_normal":
        mean, std = trunc_moments(p.mean, p.std, p.a, p.b)
        alpha = _ndtr(np.array([(p.a - p.mean) / p.std]))[0]
        mass = _ndtr(np.array([(p.b - p.mean) / p.std]))[0] - alpha
        mode = max(p.a, min(p.mean, p.b))
        lo, hi = max(p.a, mode - 6 * p.std), min(p.b, mode + 6 * p.std)
        text = f"N({p.mean}, {p.std}^2) kept inside [{p.a}, {p.b}]: mean {mean:.6g}, std {std:.6g}"
        return _Theory(mean, std, p.a, p.b, text,
                       cdf=lambda e: np.clip((_ndtr((e - p.mean) / p.std) - alpha) / mass, 0.0, 1.0),
                       range=(lo, hi))  # fmt: skip
    if s == "orthogonal":
        m = max(rows, cols)
        rms = p.gain / math.sqrt(m)
        side = "W W^T" if rows <= cols else "W^T W"
        text = (f"{side} = gain^2 I, so mean(w^2) = gain^2/max(rows, cols) exactly: "
                f"std = {p.gain}/sqrt({m}) = {rms:.6g}; each entry = gain * one coordinate of a "
                f"uniform point on the unit sphere in R^{m}")  # fmt: skip
        if m == 1:  # a 1x1 orthogonal matrix is +1 or -1
            half = Fraction(1, 2)
            return _Theory(0.0, p.gain, -p.gain, p.gain, text, p.gain, points=(-p.gain, p.gain), point_probs=(half, half))
        reach = min(p.gain, 5 * rms)
        return _Theory(0.0, rms, -p.gain, p.gain, text, p.gain,
                       cdf=lambda e: _sphere_coordinate_cdf(e / p.gain, m), range=(-reach, reach))  # fmt: skip
    # sparse
    zeros = math.ceil(p.sparsity * rows)
    frac = zeros / rows
    text = f"ceil({p.sparsity}*{rows}) = {zeros} zeros per column; the rest N(0, {p.std}^2): std = std*sqrt(1 - {zeros}/{rows})"
    return _Theory(0.0, p.std * math.sqrt(1 - frac), None, None, text, points=(0.0,), point_probs=(Fraction(zeros, rows),),
                   cdf=lambda e: _ndtr(e / p.std), range=(-4 * p.std, 4 * p.std))  # fmt: skip


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """Return [lo, hi] widened by a few float32 steps: float32 values at a bound must land inside."""
    margin = 4 * float(np.spacing(np.float32(max(abs(lo), abs(hi), 1e-30))))
    return lo - margin, hi + margin


def run_dist(p: DistParams, ctx: RunContext) -> DistResult:
    """Initialize a real weight of the layer's shape, then compare its values with the theory."""
    w = torch.empty(p.shape(), device=ctx.device)
    _apply_scheme(p, w, ctx)
    ctx.check_deadline()
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    theory = _dist_theory(p, fan_in, fan_out)
    x = w.double()
    mean, std = x.mean().item(), x.std(correction=0).item()
    lo_v, hi_v = x.min().item(), x.max().item()
    values = w.detach().cpu().numpy().ravel()  # float32
    n = values.size
    # Point masses: exact float32 values.
    point_x = np.array(theory.points, dtype=np.float64)
    is_point = np.zeros(n, dtype=bool)
    point_counts = []
    for v in theory.points:
        hit = values == np.float32(v)
        is_point |= hit
        point_counts.append(int(hit.sum()))
    point_expected = np.array([float(n * q) for q in theory.point_probs], dtype=np.float64)
    empty = np.zeros(0)
    bin_x, width, counts, expected, outside, expected_outside = empty, 0.0, empty, empty, 0, 0.0
    if theory.cdf is not None:
        cont = values[~is_point] if theory.points else values
        n_cont = float(n * (1 - sum(theory.point_probs)))
        edges = np.linspace(*_widen(*theory.range), BINS + 1)
        hist, _ = np.histogram(cont, bins=edges)
        cdf = theory.cdf(edges)
        bin_x, width = (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])
        counts, expected = hist.astype(np.float64), n_cont * np.diff(cdf)
        outside = int(cont.size - hist.sum())
        expected_outside = float(max(n_cont * (1 - (cdf[-1] - cdf[0])), 0.0))
    col_zero, zero_frac = empty, None
    if p.scheme == "sparse":
        col_zero = (values.reshape(p.shape()) == 0).mean(axis=0).astype(np.float64)
        zero_frac = float(theory.point_probs[0])
    gram_dev = None
    if p.scheme == "orthogonal":
        flat = w.reshape(w.shape[0], -1)
        gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
        gram_dev = (gram - p.gain**2 * torch.eye(gram.shape[0], device=gram.device)).abs().max().item()
    preview = w if w.dim() == 2 else w[:, :, p.kernel // 2, p.kernel // 2]
    return DistResult(
        p.scheme, p.layer, tuple(w.shape), n, fan_in, fan_out, theory.gain, bin_x, width, counts, expected,
        outside, expected_outside, point_x, np.array(point_counts, dtype=np.float64), point_expected,
        mean, std, lo_v, hi_v, theory.mean, theory.std, theory.lo, theory.hi, theory.formula, col_zero, zero_frac,
        gram_dev, _numpy(preview[:PREVIEW, :PREVIEW]),
    )  # fmt: skip


def _dist_call(p: DistParams) -> str:
    g = "generator=g"
    return {
        "uniform": f"nn.init.uniform_(w, a={p.a!r}, b={p.b!r}, {g})  # a is the LOWER bound, b the upper",
        "normal": f"nn.init.normal_(w, mean={p.mean!r}, std={p.std!r}, {g})",
        "constant": f"nn.init.constant_(w, {p.val!r})",
        "ones": "nn.init.ones_(w)",
        "zeros": "nn.init.zeros_(w)",
        "eye": "nn.init.eye_(w)",
        "dirac": "nn.init.dirac_(w)",
        "xavier_uniform": f"nn.init.xavier_uniform_(w, gain={p.gain!r}, {g})",
        "xavier_normal": f"nn.init.xavier_normal_(w, gain={p.gain!r}, {g})",
        "kaiming_uniform": f"nn.init.kaiming_uniform_(w, a={p.neg_slope!r}, mode={p.mode!r}, "
        f"nonlinearity={p.nonlinearity!r}, {g})",
        "kaiming_normal": f"nn.init.kaiming_normal_(w, a={p.neg_slope!r}, mode={p.mode!r}, "
        f"nonlinearity={p.nonlinearity!r}, {g})",
        "trunc_normal": f"nn.init.trunc_normal_(w, mean={p.mean!r}, std={p.std!r}, a={p.a!r}, b={p.b!r}, {g})",
        "orthogonal": f"nn.init.orthogonal_(w, gain={p.gain!r}, {g})",
    }[p.scheme]


def code_dist(p: DistParams) -> str:
    """Return a script that initializes the same weight and prints its fans and statistics."""
    if p.layer == "linear":
        make = (f"w = torch.empty({p.out_features}, {p.in_features})"
                f"  # the shape of nn.Linear({p.in_features}, {p.out_features}).weight")  # fmt: skip
    else:
        make = (f"w = torch.empty({p.out_channels}, {p.in_channels}, {p.kernel}, {p.kernel})"
                f"  # the shape of nn.Conv2d({p.in_channels}, {p.out_channels}, {p.kernel}).weight")  # fmt: skip
    if p.scheme == "sparse":
        fill = f"""# nn.init.sparse_(w, {p.sparsity!r}, std={p.std!r}, generator=g) picks each column's zeros with
# torch.randperm from the GLOBAL random generator, ignoring g; the same algorithm with g throughout:
rows, cols = w.shape
num_zeros = math.ceil({p.sparsity!r} * rows)
with torch.no_grad():
    w.normal_(0, {p.std!r}, generator=g)
    for col in range(cols):
        w[torch.randperm(rows, generator=g)[:num_zeros], col] = 0"""
    else:
        fill = _dist_call(p)
    lines = [
        "import math",
        "",
        "import torch",
        "from torch import nn",
        "",
        f"g = torch.Generator().manual_seed({p.seed})",
        make,
        fill,
        "fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)",
        'print("shape", tuple(w.shape), "fan_in", fan_in, "fan_out", fan_out)',
        "x = w.double()",
        'print("mean", x.mean().item(), "std", x.std(correction=0).item())',
        'print("min", x.min().item(), "max", x.max().item())',
    ]
    s = p.scheme
    if s.startswith("xavier"):
        lines.append('print("theory std", ' + f"{p.gain!r} * math.sqrt(2 / (fan_in + fan_out)))")
    elif s.startswith("kaiming"):
        fan = "fan_in" if p.mode == "fan_in" else "fan_out"
        lines += [
            f"gain = nn.init.calculate_gain({p.nonlinearity!r}, {p.neg_slope!r})",
            f'print("gain", gain, "theory std", gain / math.sqrt({fan}))',
        ]
    elif s == "uniform":
        lines.append(f'print("theory std", ({p.b!r} - {p.a!r}) / math.sqrt(12))')
    elif s == "orthogonal":
        lines += [
            "flat = w.reshape(w.shape[0], -1)",
            "gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat",
            f'print("max |gram - gain^2 I|", (gram - {p.gain!r} ** 2 * torch.eye(gram.shape[0])).abs().max().item())',
            f'print("theory std", {p.gain!r} / math.sqrt(max(flat.shape)))',
        ]
    elif s == "sparse":
        lines.append('print("zeros per column", (w == 0).sum(dim=0).tolist()[:8], "theory", num_zeros)')
    elif s in ("eye", "dirac"):
        lines.append('print("ones", int((w == 1).sum()), "zeros", int((w == 0).sum()))')
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# 2. Fans and gains


@dataclass(frozen=True)
class FansParams(Params):
    layer: str = field(default="conv2d", metadata=choices(*LAYERS))
    in_features: int = field(default=3, metadata=bounds(1, 2048))
    out_features: int = field(default=5, metadata=bounds(1, 2048))
    in_channels: int = field(default=2, metadata=bounds(1, 256))
    out_channels: int = field(default=10, metadata=bounds(1, 256))
    kernel_h: int = field(default=3, metadata=bounds(1, 7))
    kernel_w: int = field(default=5, metadata=bounds(1, 7))
    slope: float = field(default=0.01, metadata=bounds(0, 1, 0.01))  # leaky_relu's negative slope

    def roles(self) -> dict[str, str]:
        """Return the fields this layer reads."""
        names = (("in_features", "out_features") if self.layer == "linear"
                 else ("in_channels", "out_channels", "kernel_h", "kernel_w"))  # fmt: skip
        return {n: n for n in ("layer", *names, "slope")}

    def estimate_bytes(self) -> int:
        if self.layer == "linear":
            return self.in_features * self.out_features * 4
        return self.in_channels * self.out_channels * self.kernel_h * self.kernel_w * 4


@dataclass(frozen=True)
class FansResult:
    layer: str
    weight_shape: tuple[int, ...]  # of the real layer's weight: (out, in) or (out, in, kh, kw)
    receptive_field: int  # kh * kw (1 for Linear)
    fan_in: int  # the lesson's formula: in * kh * kw
    fan_out: int  # out * kh * kw
    torch_fan_in: int  # torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
    torch_fan_out: int
    nonlinearities: tuple[str, ...]  # every name calculate_gain accepts
    gains: np.ndarray  # calculate_gain(name, slope) for each
    gain_formulas: tuple[str, ...]
    slope: float


def run_fans(p: FansParams, ctx: RunContext) -> FansResult:
    """Return fan_in/fan_out by formula and by torch on a real layer, and the gain table."""
    # Built on the meta device, then given real memory: no draw from the global RNG.
    if p.layer == "linear":
        linear = nn.Linear(p.in_features, p.out_features, bias=False, device="meta").to_empty(device=ctx.device)
        weight, n_in, n_out, field_size = linear.weight, p.in_features, p.out_features, 1
    else:
        conv = nn.Conv2d(p.in_channels, p.out_channels, (p.kernel_h, p.kernel_w), bias=False, device="meta")
        weight = conv.to_empty(device=ctx.device).weight
        n_in, n_out, field_size = p.in_channels, p.out_channels, p.kernel_h * p.kernel_w
    torch_in, torch_out = nn.init._calculate_fan_in_and_fan_out(weight)
    gains = np.array([_gain(name, p.slope) for name in NONLINEARITIES])
    return FansResult(p.layer, tuple(weight.shape), field_size, n_in * field_size, n_out * field_size,
                      torch_in, torch_out, NONLINEARITIES, gains,
                      tuple(GAIN_FORMULAS[n] for n in NONLINEARITIES), p.slope)  # fmt: skip


def code_fans(p: FansParams) -> str:
    """Return a script that prints the layer's fans both ways and the calculate_gain table."""
    if p.layer == "linear":
        layer, n_in, n_out, rf = f"nn.Linear({p.in_features}, {p.out_features})", p.in_features, p.out_features, "1"
    else:
        layer = f"nn.Conv2d({p.in_channels}, {p.out_channels}, kernel_size=({p.kernel_h}, {p.kernel_w}))"
        n_in, n_out, rf = p.in_channels, p.out_channels, f"{p.kernel_h} * {p.kernel_w}"
    return f"""from torch import nn

layer = {layer}
print("weight shape", tuple(layer.weight.shape))
receptive_field = {rf}
print("formula: fan_in", {n_in} * receptive_field, "fan_out", {n_out} * receptive_field)
fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
print("torch:   fan_in", fan_in, "fan_out", fan_out)
print("kaiming fan for mode='fan_in':", nn.init._calculate_correct_fan(layer.weight, "fan_in"),
      "mode='fan_out':", nn.init._calculate_correct_fan(layer.weight, "fan_out"))
for name in {list(NONLINEARITIES)!r}:
    print(f"gain {{name:18}} {{nn.init.calculate_gain(name, {p.slope!r})}}")
"""


# --------------------------------------------------------------------------------------------
# 3. Signal flow through a deep MLP


ACTIVATIONS = ("linear", "tanh", "relu", "leaky_relu", "sigmoid", "selu", "gelu")
SIGNAL_SCHEMES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal_0.01", "normal_1")
LEAKY_SLOPE = 0.01  # F.leaky_relu's default
# The nonlinearity kaiming_* is told about for each activation (calculate_gain has no gelu: relu's).
KAIMING_FOR = {"linear": "linear", "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu",
               "sigmoid": "sigmoid", "selu": "selu", "gelu": "relu"}  # fmt: skip
ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, LEAKY_SLOPE),
    "sigmoid": torch.sigmoid,
    "selu": F.selu,
    "gelu": F.gelu,
}
ACTIVATION_CODE = {
    "linear": "lambda z: z",
    "tanh": "torch.tanh",
    "relu": "torch.relu",
    "leaky_relu": f"lambda z: F.leaky_relu(z, {LEAKY_SLOPE})",
    "sigmoid": "torch.sigmoid",
    "selu": "F.selu",
    "gelu": "F.gelu",
}
# E[act(z)^2] / Var(z) for z ~ N(0, v), where the theory is exact: the rest have none.
SECOND_MOMENT = {"linear": 1.0, "relu": 0.5, "leaky_relu": (1 + LEAKY_SLOPE**2) / 2}


def weight_std(scheme: str, activation: str, fan_in: int, fan_out: int) -> float:
    """Return the std of the weights a scheme draws, from the documented formulas."""
    if scheme.startswith("xavier"):
        return math.sqrt(2 / (fan_in + fan_out))
    if scheme.startswith("kaiming"):
        return kaiming_gain(activation) / math.sqrt(fan_in)
    return 0.01 if scheme == "normal_0.01" else 1.0


def kaiming_gain(activation: str) -> float:
    """Return the gain kaiming_* uses for this activation (leaky_relu with slope 0.01)."""
    name = KAIMING_FOR[activation]
    return _gain(name, LEAKY_SLOPE if name == "leaky_relu" else 0)


def _init_code(scheme: str, activation: str) -> str:
    """Return the torch.nn.init call (as text, on `w`) for a scheme in an MLP with this activation."""
    if scheme.startswith("xavier"):
        return f"nn.init.{scheme}_(w, generator=g)"
    if scheme.startswith("kaiming"):
        name = KAIMING_FOR[activation]
        slope = f"a={LEAKY_SLOPE}, " if name == "leaky_relu" else ""
        return f'nn.init.{scheme}_(w, {slope}mode="fan_in", nonlinearity="{name}", generator=g)'
    return f"nn.init.normal_(w, 0.0, {'0.01' if scheme == 'normal_0.01' else '1.0'}, generator=g)"


def init_weight(w: torch.Tensor, scheme: str, activation: str, g: torch.Generator) -> torch.Tensor:
    """Fill w in place as _init_code says: xavier with gain 1, kaiming fan_in with the activation's gain."""
    if scheme == "xavier_uniform":
        return nn.init.xavier_uniform_(w, generator=g)
    if scheme == "xavier_normal":
        return nn.init.xavier_normal_(w, generator=g)
    if scheme.startswith("kaiming"):
        name = cast(Nonlinearity, KAIMING_FOR[activation])
        a = LEAKY_SLOPE if name == "leaky_relu" else 0
        fill = nn.init.kaiming_uniform_ if scheme == "kaiming_uniform" else nn.init.kaiming_normal_
        return fill(w, a=a, mode="fan_in", nonlinearity=name, generator=g)
    return nn.init.normal_(w, 0.0, 0.01 if scheme == "normal_0.01" else 1.0, generator=g)


@dataclass(frozen=True)
class SignalParams(Params):
    depth: int = field(default=20, metadata=bounds(1, 100))
    width: int = field(default=256, metadata=bounds(8, 2048))
    batch: int = field(default=128, metadata=bounds(1, 2048))  # 128 x 256 values per layer: std to ~0.4%
    activation: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    scheme: str = field(default="xavier_normal", metadata=choices(*SIGNAL_SCHEMES))
    activation2: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    scheme2: str = field(default="kaiming_normal", metadata=choices(*SIGNAL_SCHEMES))
    seed: int = _seed()

    def estimate_bytes(self) -> int:
        # One configuration at a time: weights and their gradients, then per layer the saved input
        # and output, the kept pre-activation and its gradient; the input batch and float64 copies.
        d, w, b = self.depth, self.width, self.batch
        return 8 * d * w * w + 16 * d * b * w + 24 * b * w


@dataclass(frozen=True)
class SignalTheory:
    """The mean-field prediction for one configuration, per layer 1..depth (see signal_theory)."""

    pre_std: np.ndarray
    act_std: np.ndarray
    delta_std: np.ndarray
    grad_std: np.ndarray  # the same at every layer
    ratio: float  # Var(z_l) / Var(z_{l-1}) forward = E[delta_l^2] / E[delta_{l+1}^2] backward


@dataclass(frozen=True)
class SignalRun:
    """One configuration's measurements, per layer 1..depth."""

    activation: str
    scheme: str
    weight_std: float  # std of every weight (all layers are width x width: fan_in = fan_out = width)
    pre_std: np.ndarray  # std of z_l = h_{l-1} @ W_l.T  (forward)
    act_std: np.ndarray  # std of h_l = act(z_l)
    delta_std: np.ndarray  # std of dloss/dz_l  (the backward signal)
    grad_std: np.ndarray  # std of dloss/dW_l  (what the optimizer sees)
    theory: SignalTheory | None  # for linear, relu and leaky_relu; None for the others
    forward_ratio: float | None  # measured: geometric mean of Var(z_l) / Var(z_{l-1}) over layers 2..depth
    backward_ratio: float | None  # measured: geometric mean of E[delta_l^2] / E[delta_{l+1}^2]
    hist_counts: np.ndarray  # (len(hist_layers), BINS) counts of h_l over one common range
    hist_outside: np.ndarray  # values beyond that range (or not finite), per histogram layer
    bin_x: np.ndarray  # bin centres of the common range
    bin_width: float


@dataclass(frozen=True)
class SignalResult:
    layers: np.ndarray  # 1..depth
    hist_layers: np.ndarray  # the layers whose activations are histogrammed
    runs: tuple[SignalRun, SignalRun]  # (activation, scheme), (activation2, scheme2)


def hist_layers(depth: int) -> list[int]:
    """Return the layers shown as small multiples: 1, depth/4, depth/2, 3 depth/4, depth."""
    return sorted({max(1, round(depth * f)) for f in (0.0, 0.25, 0.5, 0.75, 1.0)})


def signal_theory(activation: str, scheme: str, depth: int, width: int, batch: int) -> SignalTheory | None:
    """Return the mean-field prediction for one configuration, or None where it has none.

    Forward: x ~ N(0, 1), so E[h_0^2] = 1. For z_l = h_{l-1} W_l^T with i.i.d. weights of variance
    s^2, Var(z_l) = width s^2 E[h_{l-1}^2] and E[h_l^2] = c Var(z_l), where c = 1 (linear), 1/2
    (relu cuts half of a symmetric z), (1 + slope^2)/2 (leaky_relu). So Var(z_l) grows by the
    ratio r = width s^2 c per layer: Kaiming fan_in (s^2 = 2/width) keeps relu's scale (r = 1),
    Xavier (s^2 = 2/(fan_in + fan_out) = 1/width) halves it (r = 1/2).
    Backward, loss = (h_L * R).sum() with R ~ N(0, 1): delta_L = R act'(z_L) has E[delta_L^2] = c
    (E[act'^2] = c too), and delta_{l-1} = (delta_l W_l) act'(z_{l-1}) gives E[delta_{l-1}^2] = r E[delta_l^2].
    Weight gradient: dloss/dW_l = delta_l^T h_{l-1} summed over the batch, so its variance is
    batch c r^(L-l) r^(l-1) = batch c r^(L-1): the same at every layer, forward and backward
    shrinkage compensate.
    """
    c = SECOND_MOMENT.get(activation)
    if c is None:
        return None
    var_w = weight_std(scheme, activation, width, width) ** 2
    r = width * var_w * c
    layer = np.arange(1, depth + 1, dtype=np.float64)
    pre_var = width * var_w * r ** (layer - 1)  # layer 1 sees x itself: E[x^2] = 1, no factor c
    slope = {"linear": 1.0, "relu": 0.0, "leaky_relu": LEAKY_SLOPE}[activation]
    mean = (1 - slope) / math.sqrt(2 * math.pi)  # E[act(z)] / std(z): relu's output is not centred
    return SignalTheory(
        np.sqrt(pre_var), np.sqrt(pre_var * (c - mean**2)), np.sqrt(c * r ** (depth - layer)),
        np.full(depth, math.sqrt(batch * c * r ** (depth - 1))), r,
    )  # fmt: skip


def _geometric_ratio(first: float, last: float, steps: int) -> float | None:
    """Return (last / first)^(2 / steps): the mean per-layer variance ratio, None if undefined."""
    if steps < 1 or not (0 < first < math.inf and 0 < last < math.inf):
        return None
    return float((last / first) ** (2 / steps))


def _std(t: torch.Tensor) -> float:
    """Return t's population std (float32 input: torch accumulates in float64 on the CPU)."""
    return float(t.detach().std(correction=0).item())


def _common_hist(hs: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Return counts (k, BINS) and outside counts of every h over one range, bin centres and width.

    The range spans mean +- 4 std of every shown layer, clipped to the values seen: a layer whose
    scale collapsed or exploded shows as a spike or as values outside, next to the others.
    """
    arrays = [h.detach().cpu().numpy().ravel().astype(np.float64) for h in hs]
    finite = [a[np.isfinite(a)] for a in arrays]
    lows = [max(f.min(), f.mean() - 4 * f.std()) for f in finite if f.size]
    highs = [min(f.max(), f.mean() + 4 * f.std()) for f in finite if f.size]
    lo, hi = (min(lows), max(highs)) if lows else (-1.0, 1.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = -1.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    counts = np.array([np.histogram(f, bins=edges)[0] for f in finite], dtype=np.float64)
    outside = np.array([a.size - c.sum() for a, c in zip(arrays, counts, strict=True)], dtype=np.float64)
    return counts, outside, (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])


def _signal_run(
    p: SignalParams, activation: str, scheme: str, X: torch.Tensor, R: torch.Tensor, state: torch.Tensor, ctx: RunContext
) -> SignalRun:
    """Forward X through depth layers (no biases), backward from (h_L * R).sum(); measure every layer."""
    act = ACTIVATION_FNS[activation]
    weights = []
    ctx.generator.set_state(state)  # both configurations start from the same random numbers
    for _ in range(p.depth):
        ctx.check_deadline()
        w = torch.empty(p.width, p.width, device=ctx.device)
        weights.append(init_weight(w, scheme, activation, ctx.generator).requires_grad_())
    h, zs, hs = X, [], []
    for w in weights:
        ctx.check_deadline()
        z = h @ w.T
        h = act(z)
        zs.append(z)
        hs.append(h)
    # A fixed random read-out: every output unit gets an upstream gradient R ~ N(0, 1), whatever the
    # forward scale. (With mean(h_L^2) the gradient would be 2 h_L: it would inherit the forward
    # scale and correlate with the weights, and the top layers would leave the theory.)
    loss = (h * R).sum()
    grads = torch.autograd.grad(loss, weights + zs)
    ctx.check_deadline()
    counts, outside, bin_x, width = _common_hist([hs[i - 1] for i in hist_layers(p.depth)])
    pre = np.array([_std(z) for z in zs])
    delta = np.array([_std(d) for d in grads[p.depth :]])
    return SignalRun(
        activation, scheme, weight_std(scheme, activation, p.width, p.width), pre,
        np.array([_std(h) for h in hs]), delta, np.array([_std(d) for d in grads[: p.depth]]),
        signal_theory(activation, scheme, p.depth, p.width, p.batch),
        _geometric_ratio(pre[0], pre[-1], p.depth - 1), _geometric_ratio(delta[-1], delta[0], p.depth - 1),
        counts, outside, bin_x, width,
    )  # fmt: skip


def run_signal(p: SignalParams, ctx: RunContext) -> SignalResult:
    """Return both configurations' per-layer statistics for one shared standard-normal input batch."""
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    R = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    state = ctx.generator.get_state()
    first = _signal_run(p, p.activation, p.scheme, X, R, state, ctx)
    second = _signal_run(p, p.activation2, p.scheme2, X, R, state, ctx)
    return SignalResult(np.arange(1, p.depth + 1), np.array(hist_layers(p.depth)), (first, second))


def code_signal(p: SignalParams) -> str:
    """Return a script that measures both configurations layer by layer and prints the stds."""
    configs = [(p.activation, p.scheme), (p.activation2, p.scheme2)]
    calls = "\n".join(f'measure("{a} + {s}", {ACTIVATION_CODE[a]}, lambda w: {_init_code(s, a)})' for a, s in configs)
    return f"""import torch
import torch.nn.functional as F
from torch import nn

depth, width, batch = {p.depth}, {p.width}, {p.batch}
g = torch.Generator().manual_seed({p.seed})
X = torch.randn(batch, width, generator=g)  # the same input for both configurations
R = torch.randn(batch, width, generator=g)  # and the same upstream gradient for the output
state = g.get_state()


def measure(name, act, init):
    g.set_state(state)  # both configurations start from the same random numbers
    Ws = [init(torch.empty(width, width)).requires_grad_() for _ in range(depth)]  # no biases
    h, zs, hs = X, [], []
    for W in Ws:
        z = h @ W.T  # what nn.Linear(width, width, bias=False) computes
        h = act(z)
        zs.append(z)
        hs.append(h)
    loss = (h * R).sum()  # a random read-out: dloss/dh = R at the output
    grads = torch.autograd.grad(loss, Ws + zs)  # dloss/dW for every layer, then dloss/dz
    for l in range(depth):
        print(f"{{name}} layer {{l + 1}}: pre std {{zs[l].detach().std(correction=0).item()}} "
              f"act std {{hs[l].detach().std(correction=0).item()}} "
              f"delta std {{grads[depth + l].std(correction=0).item()}} "
              f"weight grad std {{grads[l].std(correction=0).item()}}")


{calls}
"""


# --------------------------------------------------------------------------------------------
# 4. Training consequence: the same small MLP, one run per init


TRAIN_POINTS = 256  # two interleaved spirals, half of them per class
OPTIMIZERS = ("sgd", "adam")
ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}
MODULE_CODE = {
    "linear": "nn.Identity()", "tanh": "nn.Tanh()", "relu": "nn.ReLU()", "leaky_relu": f"nn.LeakyReLU({LEAKY_SLOPE})",
    "sigmoid": "nn.Sigmoid()", "selu": "nn.SELU()", "gelu": "nn.GELU()",
}  # fmt: skip
# The run refuses more work than this (see TrainParams.work): about 10 s on one CPU core.
TRAIN_MAX_WORK = 3.5e8
LAYER_OVERHEAD = 10_000  # a layer's fixed cost per step (Python, autograd, optimizer), in multiply-adds per point


@dataclass(frozen=True)
class TrainParams(Params):
    depth: int = field(default=5, metadata=bounds(1, 10))  # hidden layers
    width: int = field(default=64, metadata=bounds(16, 256))
    activation: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    schemes: tuple[str, ...] = field(default=("normal_0.01", "xavier_uniform", "kaiming_normal"),
                                     metadata=choices(*SIGNAL_SCHEMES))  # fmt: skip
    optimizer: str = field(default="sgd", metadata=choices(*OPTIMIZERS))
    lr: float = field(default=0.1, metadata=bounds(0.0001, 1.0))
    momentum: float = field(default=0.9, metadata=bounds(0, 0.99, 0.01))  # SGD only
    steps: int = field(default=300, metadata=bounds(50, 2000))
    seed: int = _seed()

    def roles(self) -> dict[str, str]:
        """Return the fields this optimizer reads (momentum is SGD's)."""
        names = [f.name for f in self.specs()]
        return {n: n for n in names if n != "momentum" or self.optimizer == "sgd"}

    def work(self) -> int:
        """Return the run's cost: multiply-adds per training point plus each layer's fixed cost, all steps."""
        per_step = self.depth * self.width**2 + 64 * self.width + LAYER_OVERHEAD * (self.depth + 1)
        return self.steps * len(self.schemes) * per_step

    def validate(self) -> None:
        super().validate()
        if not self.schemes:
            raise InvalidParams("schemes", "empty")
        if self.work() > TRAIN_MAX_WORK:
            per_step = self.work() // self.steps
            raise InvalidParams("steps", "too_much_work", max=max(1, int(TRAIN_MAX_WORK // per_step)))

    def estimate_bytes(self) -> int:
        params = self.depth * self.width * (self.width + 1) + 4 * self.width
        # Parameters, gradients and two optimizer states; per layer its input, output and their gradients.
        return len(self.schemes) * 16 * params + 16 * TRAIN_POINTS * self.width * (self.depth + 1) + (1 << 16)


@dataclass(frozen=True)
class TrainResult:
    X: np.ndarray  # (TRAIN_POINTS, 2) the spiral points
    y: np.ndarray  # their classes, 0.0 or 1.0
    schemes: tuple[str, ...]
    steps: np.ndarray  # 1..steps
    loss: np.ndarray  # (len(schemes), steps) binary cross-entropy before each step; nan once it diverged
    accuracy: np.ndarray  # (len(schemes),) after the last step
    diverged: np.ndarray  # (len(schemes),) bool: the loss became inf or nan


def spirals(n: int, g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return n points on two interleaved spirals (X: (n, 2) about [-1, 1]) and their classes y."""
    t = 0.5 + 3 * math.pi * torch.rand(n, generator=g, device=device)  # angle along the arm
    y = (torch.arange(n, device=device) % 2).float()
    angle = t + math.pi * y  # the second arm is the first turned by half a turn
    X = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
    return X + 0.03 * torch.randn(n, 2, generator=g, device=device), y


def _mlp(p: TrainParams, scheme: str, ctx: RunContext) -> nn.Sequential:
    """Return the MLP with every weight drawn by `scheme` from ctx.generator and zero biases."""
    layers: list[nn.Module] = []
    n_in = 2
    for _ in range(p.depth):
        layers += [nn.Linear(n_in, p.width, device="meta"), ACTIVATION_MODULES[p.activation]()]
        n_in = p.width
    layers.append(nn.Linear(n_in, 1, device="meta"))
    # Meta first: nn.Linear would draw its default weights from the global RNG, which the run does not own.
    net = nn.Sequential(*layers).to_empty(device=ctx.device)
    for module in net:
        if isinstance(module, nn.Linear):
            init_weight(module.weight, scheme, p.activation, ctx.generator)
            nn.init.zeros_(module.bias)
    return net


def run_train(p: TrainParams, ctx: RunContext) -> TrainResult:
    """Train one MLP per scheme, full batch on the same spirals; return every loss curve."""
    X, y = spirals(TRAIN_POINTS, ctx.generator, ctx.device)
    state = ctx.generator.get_state()
    curves, accuracy = [], []
    for scheme in p.schemes:
        # Every init starts from the same random numbers: a run of one scheme alone gives the same curve.
        ctx.generator.set_state(state)
        net = _mlp(p, scheme, ctx)
        optimizer: torch.optim.Optimizer = (
            torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum) if p.optimizer == "sgd"
            else torch.optim.Adam(net.parameters(), lr=p.lr)
        )  # fmt: skip
        curve = torch.empty(p.steps, device=ctx.device)
        for step in range(p.steps):
            ctx.check_deadline()
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(X).squeeze(1), y)
            torch.autograd.backward(loss)
            optimizer.step()
            curve[step] = loss.detach()  # no .item(): on a GPU that would wait for every step
        with torch.no_grad():
            accuracy.append(float(((net(X).squeeze(1) > 0).float() == y).float().mean().item()))
        curves.append(_numpy(curve))
    loss_curves = np.array(curves)
    return TrainResult(_numpy(X), _numpy(y), tuple(p.schemes), np.arange(1, p.steps + 1), loss_curves,
                       np.array(accuracy), ~np.isfinite(loss_curves).all(axis=1))  # fmt: skip


def report_steps(steps: int) -> list[int]:
    """Return the steps whose loss the generated script prints."""
    return sorted({1, steps // 4, steps // 2, 3 * steps // 4, steps} - {0})


def code_train(p: TrainParams) -> str:
    """Return a script that trains the same MLP once per init and prints the loss curves' milestones."""
    inits = "\n".join(f'    "{s}": lambda w: {_init_code(s, p.activation)},' for s in p.schemes)
    opt = (f"torch.optim.SGD(net.parameters(), lr={p.lr!r}, momentum={p.momentum!r})" if p.optimizer == "sgd"
           else f"torch.optim.Adam(net.parameters(), lr={p.lr!r})")  # fmt: skip
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn

g = torch.Generator().manual_seed({p.seed})
n = {TRAIN_POINTS}
t = 0.5 + 3 * math.pi * torch.rand(n, generator=g)  # two interleaved spirals
y = (torch.arange(n) % 2).float()
angle = t + math.pi * y
X = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
X = X + 0.03 * torch.randn(n, 2, generator=g)
state = g.get_state()

inits = {{
{inits}
}}
report = {report_steps(p.steps)}
for name, init in inits.items():
    g.set_state(state)  # every init starts from the same random numbers
    layers, n_in = [], 2
    for _ in range({p.depth}):
        layers += [nn.Linear(n_in, {p.width}), {MODULE_CODE[p.activation]}]
        n_in = {p.width}
    net = nn.Sequential(*layers, nn.Linear(n_in, 1))
    for m in net:
        if isinstance(m, nn.Linear):
            init(m.weight)
            nn.init.zeros_(m.bias)
    optimizer = {opt}
    for step in range(1, {p.steps} + 1):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(X).squeeze(1), y)
        loss.backward()
        optimizer.step()
        if step in report:
            print(f"{{name}} step {{step}} loss {{loss.item()}}")
    with torch.no_grad():
        accuracy = ((net(X).squeeze(1) > 0).float() == y).float().mean().item()
    print(f"{{name}} accuracy {{accuracy}}")
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "dist": Experiment(DistParams, run_dist, code_dist),
    "fans": Experiment(FansParams, run_fans, code_fans),
    "signal": Experiment(SignalParams, run_signal, code_signal),
    "train": Experiment(TrainParams, run_train, code_train),
}
