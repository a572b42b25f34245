"""Gradients accumulate: each backward() adds into .grad until something sets it back to None.

y = (x + w) * (w + 1), so one call gives dy/dx = w + 1 and dy/dw = x + 2w + 1; k calls without
zeroing give k times that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.autograd.common import backward, grad_of, leaves, seeds_y, value_field
from core.params import Params, bounds

OPS_PER_CALL = 10  # element operations of one forward and backward of the seeds' expression


@dataclass(frozen=True)
class AccumulateParams(Params):
    """How many backward calls, whether .grad is reset between them, and the inputs x and w."""

    k: int = field(default=4, metadata=bounds(1, 20))
    zero_grad: bool = False
    x: float = value_field(2.0)
    w: float = value_field(1.0)

    def estimate_work(self) -> float:
        """Return the element operations of k + 1 forward and backward passes on scalars."""
        return float((self.k + 1) * OPS_PER_CALL)


@dataclass(frozen=True)
class AccumulateResult:
    """x.grad and w.grad after each call, the gradient of a single call, and what theory predicts."""

    calls: np.ndarray  # 1..k
    x_grad: np.ndarray  # x.grad measured after each call
    w_grad: np.ndarray
    x_grad_once: float  # the gradient of a single call: dy/dx = w + 1
    w_grad_once: float  # dy/dw = x + 2w + 1
    x_grad_expected: np.ndarray  # i * once without zero_grad, once with it
    w_grad_expected: np.ndarray
    y: float


def run(p: AccumulateParams, ctx: RunContext) -> AccumulateResult:
    """Return x.grad and w.grad after each of k backward calls, with or without zeroing between them."""
    x, w = leaves(p.x, p.w, ctx.device)
    x_grads, w_grads = [], []
    for _ in range(p.k):
        ctx.check_deadline()
        if p.zero_grad:
            x.grad, w.grad = None, None
        y = seeds_y(x, w)  # a new graph each call: the old one was freed by backward
        backward(y)
        x_grads.append(grad_of(x))
        w_grads.append(grad_of(w))
    x1, w1 = leaves(p.x, p.w, ctx.device)
    y = seeds_y(x1, w1)
    backward(y)
    once_x, once_w = grad_of(x1), grad_of(w1)
    calls = np.arange(1, p.k + 1)
    factor = np.ones(p.k) if p.zero_grad else calls.astype(np.float64)
    return AccumulateResult(
        calls, np.array(x_grads), np.array(w_grads), once_x, once_w, factor * once_x, factor * once_w, float(y.item())
    )


def context(p: AccumulateParams, device_type: str) -> dict[str, Any]:
    """Return the values of accumulate.py.j2 (the script runs on the CPU: scalars gain nothing from a GPU)."""
    return {"k": p.k, "zero_grad": p.zero_grad, "x": p.x, "w": p.w}


def shown(r: AccumulateResult) -> list[float | str]:
    """Return the gradients the figure and its caption show: after each call, and of one call alone."""
    return [*r.x_grad, *r.w_grad, r.x_grad_once, r.w_grad_once]


ACCUMULATE = Experiment(
    "accumulate",
    AccumulateParams,
    run,
    script="accumulate.py.j2",
    context=context,
    shown=shown,
    examples=(AccumulateParams(k=7, x=-3.5, w=2.5), AccumulateParams(k=6, zero_grad=True, x=-1.5, w=0.5)),
)


def _x_grad_after_calls(r: AccumulateResult) -> str:
    """Return x.grad after the last call, as the options write it ("6" after three calls at x = 2, w = 1)."""
    return f"{r.x_grad[-1]:g}"


THREE_CALLS = Prediction(
    "accumulate",
    ACCUMULATE,
    AccumulateParams(k=3),
    options=("2", "4", "6", "8"),
    answer=_x_grad_after_calls,
    question="accumulate.predict_q",
    why="accumulate.predict_why",
)
