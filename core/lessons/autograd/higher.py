"""Higher derivatives with create_graph=True: differentiate f' again to get f'', next to the analytic ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, RunContext, to_numpy
from core.params import InvalidParams, Params, bounds, choices

HIGHER_FNS = ("sin", "tanh", "sigmoid", "cube", "gauss")
TORCH_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "cube": lambda x: x**3,
    "gauss": lambda x: torch.exp(-(x**2)),
}
FN_TEXT = {
    "sin": "torch.sin(x)",
    "tanh": "torch.tanh(x)",
    "sigmoid": "torch.sigmoid(x)",
    "cube": "x ** 3",
    "gauss": "torch.exp(-x ** 2)",
}
OPS_PER_POINT = 50  # element operations per grid point: f, f' with its graph, f'', the exact curves


def exact_derivatives(fn: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return f'(x) and f''(x), written by hand."""
    if fn == "sin":
        return np.cos(x), -np.sin(x)
    if fn == "tanh":
        t = np.tanh(x)
        return 1 - t**2, -2 * t * (1 - t**2)
    if fn == "sigmoid":
        s = 1 / (1 + np.exp(-x))
        return s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if fn == "cube":
        return 3 * x**2, 6 * x
    e = np.exp(-(x**2))
    return -2 * x * e, (4 * x**2 - 2) * e


@dataclass(frozen=True)
class HigherParams(Params):
    """The function and the grid it is drawn on: from lo to hi in `points` points."""

    fn: str = field(default="sin", metadata=choices(*HIGHER_FNS))
    lo: float = field(default=-4.0, metadata=bounds(-10, 10, 0.5))
    hi: float = field(default=4.0, metadata=bounds(-10, 10, 0.5))
    points: int = field(default=101, metadata=bounds(8, 400))

    def validate(self) -> None:
        """Raise InvalidParams for a bad field or an empty range (hi must exceed lo)."""
        super().validate()
        if self.hi <= self.lo:
            raise InvalidParams("hi", "must_exceed", other=self.lo)

    def estimate_work(self) -> float:
        """Return the element operations of f, f' and f'' on the grid."""
        return float(OPS_PER_POINT * self.points)


@dataclass(frozen=True)
class HigherResult:
    """f, f' and f'' on the grid from autograd, the exact derivatives, and the largest differences."""

    x: np.ndarray  # the grid, float64
    f: np.ndarray
    d1: np.ndarray  # f' by autograd.grad(..., create_graph=True)
    d2: np.ndarray  # f'' by differentiating f' again
    d1_exact: np.ndarray
    d2_exact: np.ndarray
    d1_max_error: float
    d2_max_error: float


def run(p: HigherParams, ctx: RunContext) -> HigherResult:
    """Return f, f' and f'' on a grid, by autograd with create_graph, next to the exact ones."""
    x = torch.linspace(p.lo, p.hi, p.points, dtype=torch.float64, device=ctx.device, requires_grad=True)
    f = TORCH_FNS[p.fn](x)
    # create_graph records the backward pass itself, so f' can be differentiated again.
    (d1,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)  # each f'(x_i) depends on x_i only, so the sum is exact
    x_np = to_numpy(x)
    d1_exact, d2_exact = exact_derivatives(p.fn, x_np)
    d1_np, d2_np = to_numpy(d1), to_numpy(d2)
    d1_error, d2_error = float(np.abs(d1_np - d1_exact).max()), float(np.abs(d2_np - d2_exact).max())
    return HigherResult(x_np, to_numpy(f), d1_np, d2_np, d1_exact, d2_exact, d1_error, d2_error)


def context(p: HigherParams, device_type: str) -> dict[str, Any]:
    """Return the values of second_derivative.py.j2: the grid and the function as torch code."""
    return {"lo": p.lo, "hi": p.hi, "points": p.points, "f": FN_TEXT[p.fn]}


def shown(r: HigherResult) -> list[float | str]:
    """Return the curves' values at both ends of the grid: x, f, f' and f''."""
    return [r.x[0], r.f[0], r.d1[0], r.d2[0], r.x[-1], r.f[-1], r.d1[-1], r.d2[-1]]


HIGHER = Experiment(
    "higher",
    HigherParams,
    run,
    script="second_derivative.py.j2",
    context=context,
    shown=shown,
    examples=(
        HigherParams(fn="gauss", lo=-2.0, hi=3.0, points=8),
        HigherParams(fn="sigmoid", lo=-10.0, hi=9.5, points=400),
        HigherParams(fn="cube", lo=-10.0, hi=10.0, points=57),
    ),
)
