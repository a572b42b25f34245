"""Every torch.nn.init scheme on a real Linear or Conv2d weight: its histogram against the theory.

torch's `sparse_` draws its zero positions from the *global* RNG even when given a generator (it
calls torch.randperm without it), so this experiment runs torch's own algorithm with the generator
passed to every draw (`sparse_`); every other scheme is torch.nn.init's own function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, RunContext, to_numpy
from core.lessons.init.common import BINS, LAYERS, NONLINEARITIES, FanMode, Nonlinearity
from core.lessons.init.dist_theory import fit, scheme_theory, trunc_acceptance
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

DIST_SCHEMES = (
    "uniform",
    "normal",
    "constant",
    "ones",
    "zeros",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "trunc_normal",
    "orthogonal",
    "sparse",
)
POINT_SCHEMES = frozenset({"constant", "ones", "zeros", "eye", "dirac"})  # every value is one of a few
RANDOM_SCHEMES = frozenset(DIST_SCHEMES) - POINT_SCHEMES
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
ELEMENT_WORK = 30  # operations per weight element: fill, float64 copy, moments, histogram, point masses


@dataclass(frozen=True)
class DistParams(Params):
    scheme: str = field(default="kaiming_normal", metadata=choices(*DIST_SCHEMES))
    layer: str = field(default="linear", metadata=choices(*LAYERS))
    in_features: int = field(default=256, metadata=ladder(1, 2048))
    out_features: int = field(default=128, metadata=ladder(1, 2048))
    in_channels: int = field(default=16, metadata=ladder(1, 256))
    out_channels: int = field(default=32, metadata=ladder(1, 256))
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
    seed: int = seed_field()

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

    def trunc_rounds(self) -> float:
        """Return how many times trunc_normal_ draws the whole tensor until every value is accepted."""
        acceptance = trunc_acceptance(self.mean, self.std, self.a, self.b)
        return 1 + math.log(math.prod(self.shape()) + 1) / -math.log1p(-min(acceptance, 1 - 1e-12))

    def validate(self) -> None:
        """Refuse what torch would refuse or warn about, and trunc_normal settings that would take seconds."""
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
            if math.prod(self.shape()) * self.trunc_rounds() > TRUNC_MAX_WORK:
                acceptance = trunc_acceptance(self.mean, self.std, self.a, self.b)
                raise InvalidParams("b", "trunc_slow", acceptance=round(acceptance, 4))

    def estimate_bytes(self) -> int:
        numel = math.prod(self.shape())
        rows, cols = self.shape()[0], numel // self.shape()[0]
        # The weight, its float32 and float64 copies, trunc_normal's buffers or orthogonal's QR, the
        # Gram matrix of the smaller side.
        return numel * 40 + min(rows, cols) ** 2 * 8

    def estimate_work(self) -> float:
        numel = math.prod(self.shape())
        rows, cols = self.shape()[0], numel // self.shape()[0]
        work = float(ELEMENT_WORK * numel)
        if self.scheme == "trunc_normal":
            work += 4 * numel * self.trunc_rounds()
        elif self.scheme == "orthogonal":
            # QR of the weight and its explicit Q (each m n^2 - n^3 / 3, m the long side), the Gram matrix
            # (m n^2), and the sphere law's CDF on a 20001-point grid at every bin edge.
            m, n = max(rows, cols), min(rows, cols)
            work += 3 * m * n**2 - 2 * n**3 / 3 + 20001 * (BINS + 1)
        elif self.scheme == "sparse":  # one randperm per column, each a Python loop turn (~1000 operations)
            work += numel + 1000 * cols
        return work


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


def sparse_(w: torch.Tensor, sparsity: float, std: float, g: torch.Generator, ctx: RunContext) -> None:
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


def apply_scheme(p: DistParams, w: torch.Tensor, ctx: RunContext) -> None:
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
        "sparse": lambda: sparse_(w, p.sparsity, p.std, g, ctx),
    }
    fills[p.scheme]()


def run(p: DistParams, ctx: RunContext) -> DistResult:
    """Initialize a real weight of the layer's shape, then compare its values with the theory."""
    w = torch.empty(p.shape(), device=ctx.device)
    apply_scheme(p, w, ctx)
    ctx.check_deadline()
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    theory = scheme_theory(p, fan_in, fan_out)
    x = w.double()
    mean, std = x.mean().item(), x.std(correction=0).item()
    lo_v, hi_v = x.min().item(), x.max().item()
    values = w.detach().cpu().numpy().ravel()  # float32
    counted = fit(values, theory, BINS)
    col_zero, zero_frac = np.zeros(0), None
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
        scheme=p.scheme,
        layer=p.layer,
        shape=tuple(w.shape),
        numel=values.size,
        fan_in=fan_in,
        fan_out=fan_out,
        gain=theory.gain,
        **asdict(counted),
        mean=mean,
        std=std,
        min=lo_v,
        max=hi_v,
        theory_mean=theory.mean,
        theory_std=theory.std,
        theory_lo=theory.lo,
        theory_hi=theory.hi,
        formula=theory.formula,
        col_zero_fraction=col_zero,
        theory_zero_fraction=zero_frac,
        gram_max_dev=gram_dev,
        preview=to_numpy(preview[:PREVIEW, :PREVIEW], float64=True),
    )


def context(p: DistParams, device_type: str) -> dict[str, Any]:
    """Return what init_distribution.py.j2 reads: the settings themselves (the script runs on the CPU)."""
    return asdict(p)


def shown(r: DistResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: shape, fans, moments, theory std, gain, Gram error, counts."""
    out: list[float | str] = [str(r.shape), r.fan_in, r.fan_out, r.mean, r.std, r.min, r.max]
    if r.scheme.startswith(("xavier", "kaiming", "uniform", "orthogonal")):
        out.append(r.theory_std)
    if r.scheme.startswith("kaiming") and r.gain is not None:
        out.append(r.gain)
    if r.gram_max_dev is not None:
        out.append(r.gram_max_dev)
    if r.scheme in ("eye", "dirac"):
        out += [float(c) for c in r.point_counts]
    return out


DIST = Experiment(
    "dist",
    DistParams,
    run,
    script="init_distribution.py.j2",
    context=context,
    shown=shown,
    examples=(
        DistParams(scheme="trunc_normal", mean=0.5, std=2.0, a=-1.0, b=4.0, seed=3),
        DistParams(scheme="orthogonal", layer="conv2d", in_channels=8, out_channels=64, gain=1.5),
        DistParams(scheme="sparse", in_features=40, out_features=30, sparsity=0.3, std=0.05, seed=6),
        DistParams(scheme="dirac", layer="conv2d", kernel=5),
    ),
)
