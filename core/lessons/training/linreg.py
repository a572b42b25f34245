"""Linear regression by hand: 20 points on y = 2x + 5 + noise, a hand-written SGD step on w.grad, and the notes' pitfall.

The notes' set-up: x = 10·U(0, 1), y = 2x + 5 + N(0, 1), w ~ N(0, 1), b = 0, loss = mean(½(y − ŷ)²),
stop when the loss falls below a threshold. The right step is `w -= lr * w.grad`; the notes'
`f.data.sub_(f.data * lr)` multiplies the weight by (1 − lr) every step: it decays it towards 0
whatever the data say, so it never reaches the line. Both are run from the same start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.params import Params, bounds, ladder, seed_field

TRUE_W, TRUE_B = 2.0, 5.0
STEP_WORK = 20_000  # a step's cost per point, in multiply-adds: Python and autograd overhead dominate (bench.work)
GRID = 60  # the loss surface is drawn on GRID x GRID points


@dataclass(frozen=True)
class LinregParams(Params):
    n: int = field(default=20, metadata=bounds(5, 200))
    lr: float = field(default=0.05, metadata=ladder(0.001, 0.1, "125"))
    threshold: float = field(default=1.0, metadata=bounds(0.1, 5.0, 0.1))
    max_iters: int = field(default=1000, metadata=bounds(10, 2000))
    seed: int = seed_field(10)

    def estimate_bytes(self) -> int:
        # Two runs' paths and losses in float64, the points, and the surface grid.
        return 2 * 8 * 3 * (self.max_iters + 1) + 16 * self.n + 8 * GRID * GRID + (1 << 14)

    def estimate_work(self) -> float:
        return float(2 * self.max_iters * STEP_WORK * self.n + GRID * GRID * self.n * 4)


@dataclass(frozen=True)
class LinregResult:
    x: np.ndarray  # (n,) inputs in [0, 10)
    y: np.ndarray  # (n,) targets
    w: np.ndarray  # (iters + 1,) w before each step (the last entry is where it stopped)
    b: np.ndarray  # (iters + 1,)
    loss: np.ndarray  # (iters + 1,) the loss at each of those points
    stopped: bool  # the loss fell below the threshold
    pitfall_w: np.ndarray  # the notes' `f.data * lr` step from the same start, as many steps as the right one took
    pitfall_b: np.ndarray
    pitfall_loss: np.ndarray
    best_w: float  # the least-squares line of these points (numpy's lstsq: independent of the run)
    best_b: float
    grid_w: np.ndarray  # (GRID,) the surface's axes
    grid_b: np.ndarray
    surface: np.ndarray  # (GRID, GRID) loss at (grid_b[i], grid_w[j])

    @property
    def iters(self) -> int:
        """Return the number of updates the right step took."""
        return len(self.w) - 1


def make_data(n: int, g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return x (n, 1), y = 2x + 5 + noise (n, 1) and the start w ~ N(0, 1), drawn in the notes' order."""
    x = torch.rand(n, 1, generator=g, device=device) * 10
    y = TRUE_W * x + (TRUE_B + torch.randn(n, 1, generator=g, device=device))
    w0 = torch.randn(1, generator=g, device=device)
    return x, y, w0


def fit(
    x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, p: LinregParams, ctx: RunContext, pitfall: bool, iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Return w, b and the loss before each of at most `iters` steps and after the last; whether it fell below the threshold."""
    w = w0.clone().requires_grad_(True)
    b = torch.zeros(1, device=x.device, requires_grad=True)
    path = torch.empty(iters + 1, 3, device=x.device, dtype=torch.float64)
    stopped = False
    for it in range(iters + 1):
        ctx.check_deadline()
        loss = (0.5 * (y - (w * x + b)) ** 2).mean()
        path[it] = torch.stack([w.detach()[0], b.detach()[0], loss.detach()]).double()
        value = loss.item()
        if not pitfall and value < p.threshold:
            stopped = True
            break
        if it == iters or not np.isfinite(value):  # a diverged run has nothing more to show
            break
        if not pitfall and ctx.stop_requested():  # Stop pressed; the pitfall then takes as many steps
            break
        torch.autograd.backward(loss)
        assert w.grad is not None and b.grad is not None
        with torch.no_grad():
            if pitfall:  # the notes' step: it shrinks the weights and never reads the gradient
                w.sub_(w * p.lr)
                b.sub_(b * p.lr)
            else:
                w.sub_(p.lr * w.grad)
                b.sub_(p.lr * b.grad)
        w.grad.zero_()
        b.grad.zero_()
        if it % 50 == 0:
            ctx.progress(it, 2 * iters)
    kept = to_numpy(path[: it + 1])
    return kept[:, 0], kept[:, 1], kept[:, 2], stopped


def run(p: LinregParams, ctx: RunContext) -> LinregResult:
    """Fit the line with the gradient step and with the notes' pitfall step; return both paths and the loss surface."""
    x, y, w0 = make_data(p.n, ctx.generator, ctx.device)
    w, b, loss, stopped = fit(x, y, w0, p, ctx, pitfall=False, iters=p.max_iters)
    # The pitfall takes as many steps as the right update needed: side by side at the same iteration.
    pw, pb, ploss, _ = fit(x, y, w0, p, ctx, pitfall=True, iters=len(w) - 1)
    xs, ys = to_numpy(x[:, 0], float64=True), to_numpy(y[:, 0], float64=True)
    best_w, best_b = np.linalg.lstsq(np.stack([xs, np.ones_like(xs)], axis=1), ys, rcond=None)[0]
    finite = [v for v in (*w, *pw, best_w, TRUE_W) if np.isfinite(v) and abs(v) < 100]
    finite_b = [v for v in (*b, *pb, best_b, TRUE_B) if np.isfinite(v) and abs(v) < 100]
    grid_w = np.linspace(min(finite) - 0.5, max(finite) + 0.5, GRID)
    grid_b = np.linspace(min(finite_b) - 1.0, max(finite_b) + 1.0, GRID)
    residual = ys[None, None, :] - (grid_w[None, :, None] * xs[None, None, :] + grid_b[:, None, None])
    return LinregResult(
        xs,
        ys,
        w,
        b,
        loss,
        stopped,
        pw,
        pb,
        ploss,
        float(best_w),
        float(best_b),
        grid_w,
        grid_b,
        (0.5 * residual**2).mean(axis=2),
    )


def context(p: LinregParams, device_type: str) -> dict[str, Any]:
    """Return what linear_regression.py.j2 reads."""
    return {"device": device_type, "seed": p.seed, "n": p.n, "lr": p.lr, "threshold": p.threshold, "max_iters": p.max_iters}


def shown(r: LinregResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the updates taken, the final w, b and loss, and the pitfall's."""
    return [
        float(r.iters),
        float(r.w[-1]),
        float(r.b[-1]),
        float(r.loss[-1]),
        float(r.pitfall_w[-1]),
        float(r.pitfall_b[-1]),
        float(r.pitfall_loss[-1]),
    ]


LINREG = Experiment(
    "train_linreg",
    LinregParams,
    run,
    script="linear_regression.py.j2",
    context=context,
    shown=shown,
    examples=(LinregParams(lr=0.1, max_iters=60), LinregParams(n=50, lr=0.01, threshold=0.6, max_iters=300, seed=3)),
    stoppable=True,
)


def _lr_verdict(r: LinregResult) -> str:
    """Return 'converges' when the gradient step got below the threshold, 'diverges' when its loss blew up, else 'slow'."""
    if r.stopped:
        return "converges"
    return "diverges" if not np.isfinite(r.loss[-1]) or r.loss[-1] > r.loss[0] else "slow"


LR_TOO_BIG = Prediction(
    "train_lr_too_big",
    LINREG,
    LinregParams(lr=0.1),
    options=("converges", "slow", "diverges"),
    answer=_lr_verdict,
    question="train_linreg.predict_q",
    why="train_linreg.predict_why",
)
