"""Creation: build a tensor with one of torch's constructors; compare random ones with their distribution."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, RunContext, first_line
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

CREATE_FNS = (
    "arange",
    "linspace",
    "logspace",
    "eye",
    "zeros",
    "ones",
    "full",
    "empty",
    "rand",
    "randn",
    "normal",
    "randint",
    "randperm",
    "bernoulli",
)
RANDOM_FNS = frozenset({"rand", "randn", "normal", "randint", "randperm", "bernoulli"})
# Which of a/b/step/p each function reads, and under which name (the widget label's key).
CREATE_ROLES: dict[str, dict[str, str]] = {
    "arange": {"a": "start", "b": "end", "step": "step"},
    "linspace": {"a": "start", "b": "end", "n": "steps"},
    "logspace": {"a": "start_exp", "b": "end_exp", "n": "steps"},
    "eye": {"n": "rows"},
    "full": {"n": "n", "a": "fill"},
    "normal": {"n": "n", "a": "mean", "b": "std"},
    "randint": {"n": "n", "a": "low", "b": "high"},
    "bernoulli": {"n": "n", "p": "p"},
}
PREVIEW = 2000  # values kept for the value plot
FIRST = 8  # values the script prints


@dataclass(frozen=True)
class CreateParams(Params):
    fn: str = field(default="randn", metadata=choices(*CREATE_FNS))
    n: int = field(default=10_000, metadata=ladder(1, 1_000_000, "125"))
    a: float = field(default=0.0, metadata=bounds(-100, 100, 0.5))
    b: float = field(default=1.0, metadata=bounds(-100, 100, 0.5))
    step: float = field(default=1.0, metadata=ladder(0.01, 100, "125"))
    p: float = field(default=0.5, metadata=bounds(0.0, 1.0, 0.01))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields this function reads, each with its role (start, mean, ...)."""
        roles = {"fn": "fn", **CREATE_ROLES.get(self.fn, {"n": "n"})}
        if self.fn in RANDOM_FNS:
            roles["seed"] = "seed"
        return roles

    def validate(self) -> None:
        """Check the bounds, then that normal's std is positive and randint's range is not empty."""
        super().validate()
        if self.fn == "normal" and self.b <= 0:
            raise InvalidParams("b", "must_be_positive")
        if self.fn == "randint" and int(self.b) <= int(self.a):
            raise InvalidParams("b", "must_exceed", other=int(self.a))

    def numel(self) -> int:
        """Return how many elements the created tensor has."""
        if self.fn == "arange":
            return max(0, math.ceil((self.b - self.a) / self.step))
        if self.fn == "eye":
            return self.n * self.n
        return self.n

    def estimate_bytes(self) -> int:
        """Return the tensor (up to 8 bytes/element), its float64 copy, the finite mask and finite copy."""
        return self.numel() * 25

    def estimate_work(self) -> float:
        """Return the element operations: creating, copying to float64, histogram, mean and std."""
        return 10.0 * self.numel()


@dataclass(frozen=True)
class CreateResult:
    fn: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    values: np.ndarray  # the first PREVIEW values, float64; empty for torch.empty
    random: bool
    discrete: bool
    bin_x: np.ndarray  # bin centres, or the integer values of a discrete distribution
    bin_width: float
    counts: np.ndarray
    expected: np.ndarray  # expected count per bin under the true distribution
    mean: float  # of the finite values
    std: float
    theory_mean: float | None
    theory_std: float | None
    torch_error: str | None
    all_finite: bool = True  # every value is finite (else mean and std leave out inf and nan)


def create_tensor(p: CreateParams, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Return the tensor p's function creates, drawing from g when it is random."""
    n, d = p.n, device
    builders: dict[str, Callable[[], torch.Tensor]] = {
        "arange": lambda: torch.arange(p.a, p.b, p.step, device=d),
        "linspace": lambda: torch.linspace(p.a, p.b, n, device=d),
        "logspace": lambda: torch.logspace(p.a, p.b, n, device=d),
        "eye": lambda: torch.eye(n, device=d),
        "zeros": lambda: torch.zeros(n, device=d),
        "ones": lambda: torch.ones(n, device=d),
        "full": lambda: torch.full((n,), p.a, device=d),
        "empty": lambda: torch.empty(n, device=d),
        "rand": lambda: torch.rand(n, generator=g, device=d),
        "randn": lambda: torch.randn(n, generator=g, device=d),
        "normal": lambda: torch.normal(p.a, p.b, (n,), generator=g, device=d),
        "randint": lambda: torch.randint(int(p.a), int(p.b), (n,), generator=g, device=d),
        "randperm": lambda: torch.randperm(n, generator=g, device=d),
        "bernoulli": lambda: torch.bernoulli(torch.full((n,), p.p, device=d), generator=g),
    }
    return builders[p.fn]()


def _normal_cdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return np.asarray(0.5 * (1 + erf((x - mean) / (std * math.sqrt(2)))), dtype=np.float64)


def theory(p: CreateParams) -> tuple[float | None, float | None]:
    """Return the true mean and std of the distribution a random function samples (None, None otherwise)."""
    if p.fn == "rand":
        return 0.5, 1 / math.sqrt(12)
    if p.fn == "randn":
        return 0.0, 1.0
    if p.fn == "normal":
        return p.a, p.b
    if p.fn == "randint":
        lo, hi = int(p.a), int(p.b)
        return (lo + hi - 1) / 2, math.sqrt(((hi - lo) ** 2 - 1) / 12)
    if p.fn == "randperm":
        return (p.n - 1) / 2, math.sqrt((p.n**2 - 1) / 12)
    if p.fn == "bernoulli":
        return p.p, math.sqrt(p.p * (1 - p.p))
    return None, None


def histogram(p: CreateParams, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, bool]:
    """Return (bin x, bin width, observed counts, expected counts, discrete?) for a random fn."""
    n = x.size
    if p.fn in ("randint", "bernoulli"):
        lo, hi = (int(p.a), int(p.b)) if p.fn == "randint" else (0, 2)
        values = np.arange(lo, hi)
        counts = np.bincount((x - lo).astype(np.int64), minlength=hi - lo)[: hi - lo]
        pmf = np.full(hi - lo, 1 / (hi - lo)) if p.fn == "randint" else np.array([1 - p.p, p.p])
        return values.astype(np.float64), 1.0, counts.astype(np.float64), n * pmf, True
    if p.fn == "rand":
        edges = np.linspace(0.0, 1.0, 41)
        cdf = np.clip(edges, 0, 1)
    else:
        mean, std = (0.0, 1.0) if p.fn == "randn" else (p.a, p.b)
        edges = np.linspace(mean - 4 * std, mean + 4 * std, 41)
        cdf = _normal_cdf(edges, mean, std)
    counts, _ = np.histogram(x, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, float(edges[1] - edges[0]), counts.astype(np.float64), n * np.diff(cdf), False


def without_values(
    p: CreateParams, shape: tuple[int, ...] = (), dtype: str = "", nbytes: int = 0, torch_error: str | None = None
) -> CreateResult:
    """Return a result that shows no values: torch refused, or torch.empty left its memory uninitialised."""
    empty = np.zeros(0)
    return CreateResult(
        fn=p.fn,
        shape=shape,
        dtype=dtype,
        nbytes=nbytes,
        values=empty,
        random=p.fn in RANDOM_FNS,
        discrete=False,
        bin_x=empty,
        bin_width=0.0,
        counts=empty,
        expected=empty,
        mean=math.nan,
        std=math.nan,
        theory_mean=None,
        theory_std=None,
        torch_error=torch_error,
    )


def run(p: CreateParams, ctx: RunContext) -> CreateResult:
    """Create the tensor, then summarise it: preview, histogram vs the true distribution, stats."""
    try:
        t = create_tensor(p, ctx.generator, ctx.device)
    except RuntimeError as e:
        return without_values(p, torch_error=first_line(e))
    shape, dtype, nbytes = tuple(t.shape), str(t.dtype).removeprefix("torch."), t.untyped_storage().nbytes()
    if p.fn == "empty":
        return without_values(p, shape, dtype, nbytes)  # its contents are whatever was in that memory
    x = t.detach().to("cpu", torch.float64).flatten().numpy()
    theory_mean, theory_std = theory(p)
    empty = np.zeros(0)
    bin_x, width, counts, expected, discrete = empty, 0.0, empty, empty, False
    if p.fn in RANDOM_FNS and p.fn != "randperm":
        bin_x, width, counts, expected, discrete = histogram(p, x)
    finite = x[np.isfinite(x)]
    return CreateResult(
        fn=p.fn,
        shape=shape,
        dtype=dtype,
        nbytes=nbytes,
        values=x[:PREVIEW].copy(),
        random=p.fn in RANDOM_FNS,
        discrete=discrete,
        bin_x=bin_x,
        bin_width=width,
        counts=counts,
        expected=expected,
        mean=float(finite.mean()) if finite.size else math.nan,
        std=float(finite.std()) if finite.size else math.nan,
        theory_mean=theory_mean,
        theory_std=theory_std,
        torch_error=None,
        all_finite=finite.size == x.size,
    )


def shown(r: CreateResult) -> list[float | str]:
    """Return the shape, dtype and bytes the page shows, the first values, and the mean and std (the script's too)."""
    if r.torch_error is not None:
        return [r.torch_error]
    out: list[float | str] = [f"shape {r.shape} dtype torch.{r.dtype} bytes {r.nbytes}"]
    if r.fn != "empty":
        out += [float(v) for v in r.values[:FIRST]]
        if r.all_finite:  # the script's mean counts inf and nan too
            out += [r.mean, r.std]
    return out


def call(p: CreateParams) -> str:
    """Return the torch call that creates the tensor, as the script writes it."""
    g = "generator=g"
    return {
        "arange": f"torch.arange({p.a}, {p.b}, {p.step})",
        "linspace": f"torch.linspace({p.a}, {p.b}, steps={p.n})",
        "logspace": f"torch.logspace({p.a}, {p.b}, steps={p.n})",
        "eye": f"torch.eye({p.n})",
        "zeros": f"torch.zeros({p.n})",
        "ones": f"torch.ones({p.n})",
        "full": f"torch.full(({p.n},), {p.a})",
        "empty": f"torch.empty({p.n})  # allocated now, contents uninitialised",
        "rand": f"torch.rand({p.n}, {g})",
        "randn": f"torch.randn({p.n}, {g})",
        "normal": f"torch.normal({p.a}, {p.b}, size=({p.n},), {g})",
        "randint": f"torch.randint({int(p.a)}, {int(p.b)}, ({p.n},), {g})",
        "randperm": f"torch.randperm({p.n}, {g})",
        "bernoulli": f"torch.bernoulli(torch.full(({p.n},), {p.p}), {g})",
    }[p.fn]


def context(p: CreateParams, device_type: str) -> Mapping[str, Any]:
    """Return what create.py.j2 reads: the call, the seed when random, whether the values are shown."""
    return {"call": call(p), "random": p.fn in RANDOM_FNS, "seed": p.seed, "empty": p.fn == "empty", "first": FIRST}


CREATE = Experiment(
    "create",
    CreateParams,
    run,
    script="create.py.j2",
    context=context,
    shown=shown,
    examples=(
        CreateParams(fn="randint", n=50, a=-3.0, b=4.0, seed=7),
        CreateParams(fn="bernoulli", n=64, p=0.3, seed=2),
        CreateParams(fn="arange", a=5.0, b=0.0),  # a step of the wrong sign: torch refuses
        CreateParams(fn="empty", n=10),
    ),
)
