"""Logistic regression on two Gaussian clusters: the decision boundary moving, loss and accuracy per step.

The notes' set-up: class 0 ~ N(+offset, spread²) + bias and class 1 ~ N(−offset, spread²) + bias in
both coordinates, 100 points each, one nn.Linear(2, 1), SGD lr 0.01 momentum 0.9, seed 10. We use
`binary_cross_entropy_with_logits` (the stable form of sigmoid + BCELoss) and initialize the Linear
exactly as PyTorch's default does, but from the run's own generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.params import Params, bounds, ladder, seed_field

TARGET = 0.99  # the accuracy the notes train towards
STEP_WORK = 15_000  # a step's cost per point, in multiply-adds: Python and autograd overhead dominate (bench.work)


@dataclass(frozen=True)
class LogregParams(Params):
    offset: float = field(default=1.7, metadata=bounds(0.0, 3.0, 0.1))
    spread: float = field(default=1.0, metadata=bounds(0.2, 3.0, 0.1))
    bias: float = field(default=1.0, metadata=bounds(-3.0, 3.0, 0.5))
    n: int = field(default=100, metadata=bounds(10, 500))  # points per class
    lr: float = field(default=0.01, metadata=ladder(0.001, 1.0, "125"))
    momentum: float = field(default=0.9, metadata=bounds(0.0, 0.99, 0.01))
    max_steps: int = field(default=1000, metadata=bounds(10, 2000))
    stop_early: bool = True  # stop at the first step whose accuracy reaches TARGET, as the notes do
    seed: int = seed_field(10)

    def estimate_bytes(self) -> int:
        return 8 * 6 * self.n + 8 * 5 * (self.max_steps + 1) + (1 << 14)

    def estimate_work(self) -> float:
        return float(self.max_steps * STEP_WORK * 2 * self.n)


@dataclass(frozen=True)
class LogregResult:
    X: np.ndarray  # (2n, 2) class 0 first
    y: np.ndarray  # (2n,) 0.0 or 1.0
    weight: np.ndarray  # (steps + 1, 2) the Linear's weight before each step (last: where it stopped)
    bias: np.ndarray  # (steps + 1,)
    loss: np.ndarray  # (steps + 1,) binary cross-entropy at those weights
    accuracy: np.ndarray  # (steps + 1,) accuracy at those weights (threshold: logit 0, probability 0.5)
    reached: int  # the first step whose accuracy is >= TARGET, -1 if none

    @property
    def steps(self) -> int:
        """Return the number of updates taken."""
        return len(self.loss) - 1


def make_data(p: LogregParams, g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return X (2n, 2), two Gaussian clusters drawn in the notes' order, and their classes y."""
    ones = torch.ones(p.n, 2, device=device)
    x0 = torch.normal(p.offset * ones, p.spread, generator=g) + p.bias
    x1 = torch.normal(-p.offset * ones, p.spread, generator=g) + p.bias
    return torch.cat([x0, x1]), torch.cat([torch.zeros(p.n, device=device), torch.ones(p.n, device=device)])


def default_linear(g: torch.Generator, device: torch.device) -> nn.Linear:
    """Return nn.Linear(2, 1) initialized as PyTorch's default, with ctx's generator instead of the global one."""
    net = nn.Linear(2, 1, device="meta").to_empty(device=device)
    with torch.no_grad():
        nn.init.kaiming_uniform_(net.weight, a=math.sqrt(5), generator=g)  # = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        nn.init.uniform_(net.bias, -1 / math.sqrt(2), 1 / math.sqrt(2), generator=g)
    return net


def run(p: LogregParams, ctx: RunContext) -> LogregResult:
    """Train the logistic regression with SGD; return its weights, loss and accuracy at every step."""
    X, y = make_data(p, ctx.generator, ctx.device)
    net = default_linear(ctx.generator, ctx.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum)
    # Columns: weight 0, weight 1, bias, loss, accuracy; kept on the device, copied once at the end.
    trace = torch.empty(p.max_steps + 1, 5, device=ctx.device, dtype=torch.float64)
    reached = -1
    for step in range(p.max_steps + 1):
        ctx.check_deadline()
        y_hat = net(X).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(y_hat, y)
        accuracy = ((y_hat > 0).float() == y).float().mean()
        trace[step] = torch.cat([net.weight.detach()[0], net.bias.detach(), loss.detach()[None], accuracy[None]]).double()
        if reached < 0 and accuracy.item() >= TARGET:
            reached = step
            if p.stop_early:
                break
        if step == p.max_steps or ctx.stop_requested():  # Stop pressed: the steps so far are the result
            break
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        if step % 50 == 0:
            ctx.progress(step, p.max_steps)
    kept = to_numpy(trace[: step + 1])
    return LogregResult(
        to_numpy(X, float64=True), to_numpy(y, float64=True), kept[:, :2], kept[:, 2], kept[:, 3], kept[:, 4], reached
    )


def context(p: LogregParams, device_type: str) -> dict[str, Any]:
    """Return what logistic_regression.py.j2 reads."""
    names = ("offset", "spread", "bias", "n", "lr", "momentum", "max_steps", "stop_early", "seed")
    return {"device": device_type, "target": TARGET, **{name: getattr(p, name) for name in names}}


def shown(r: LogregResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the step that reached the target, final weights, loss, accuracy."""
    return [
        float(r.reached),
        float(r.steps),
        *map(float, r.weight[-1]),
        float(r.bias[-1]),
        float(r.loss[-1]),
        float(r.accuracy[-1]),
    ]


LOGREG = Experiment(
    "train_logreg",
    LogregParams,
    run,
    script="logistic_regression.py.j2",
    context=context,
    shown=shown,
    examples=(
        LogregParams(offset=0.5, spread=1.5, n=50, max_steps=200, stop_early=False, seed=1),
        LogregParams(lr=0.1, momentum=0.0, max_steps=300),
    ),
    stoppable=True,
)


def _when_99(r: LogregResult) -> str:
    """Return when the accuracy first reached TARGET: 'under_100' steps, 'later', or 'never' within the run."""
    if r.reached < 0:
        return "never"
    return "under_100" if r.reached < 100 else "later"


WIDE_CLUSTERS = Prediction(
    "train_wide_clusters",
    LOGREG,
    LogregParams(spread=2.0, max_steps=300),
    options=("under_100", "later", "never"),
    answer=_when_99,
    question="train_logreg.predict_q",
    why="train_logreg.predict_why",
)
