"""A custom torch.autograd.Function, z = w * x + b, with a hand-written backward checked by gradcheck.

A backward with a bug (x and w swapped) is offered too: gradcheck's message is part of the lesson.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

from core.experiment import Experiment, RunContext, first_line
from core.lessons.autograd.common import backward, grad_of, value_field
from core.params import Params, seed_field

GRADCHECK_SIZE = 3  # values per random gradcheck input
# gradcheck: two forward passes per input value for the numerical Jacobian, one backward per output
# value for the analytical one, on three inputs of GRADCHECK_SIZE values; twice when it fails.
GRADCHECK_OPS = 2 * (2 * 3 * GRADCHECK_SIZE + GRADCHECK_SIZE) * 3 * GRADCHECK_SIZE


class MultiplyAdd(torch.autograd.Function):
    """z = w * x + b with a hand-written backward (the seeds' example)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, x)
        return w * x + b

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, x = ctx.saved_tensors
        return grad_output * x, grad_output * w, grad_output


class BrokenMultiplyAdd(MultiplyAdd):
    """MultiplyAdd whose backward swaps x and w: the kind of slip gradcheck is there to catch."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, x = ctx.saved_tensors
        return grad_output * w, grad_output * x, grad_output  # wrong: dz/dw is x, not w


@dataclass(frozen=True)
class CustomParams(Params):
    """The inputs w, x and b, whether the backward has the bug, and the seed of gradcheck's random inputs."""

    w: float = value_field(2.0)
    x: float = value_field(3.0)
    b: float = value_field(1.0)
    broken: bool = False
    seed: int = seed_field()

    def estimate_work(self) -> float:
        """Return the element operations of the two scalar backward passes and gradcheck."""
        return float(GRADCHECK_OPS + 20)


@dataclass(frozen=True)
class CustomResult:
    """The custom backward's gradients next to plain torch's, and gradcheck's verdict."""

    z: float  # w * x + b
    custom_grads: np.ndarray  # (dz/dw, dz/dx, dz/db) from the custom backward
    torch_grads: np.ndarray  # the same from plain torch ops
    gradcheck_ok: bool  # gradcheck on random float64 inputs
    torch_error: str | None  # gradcheck's message, first line, when it fails


def _three_grads(fn: Callable[..., Any], w: float, x: float, b: float, device: torch.device) -> tuple[float, np.ndarray]:
    """Return fn(w, x, b) and the gradients with respect to w, x and b."""
    inputs = [torch.tensor(v, requires_grad=True, device=device) for v in (w, x, b)]
    z = cast(torch.Tensor, fn(*inputs))
    backward(z)
    return float(z.item()), np.array([grad_of(t) for t in inputs])


def _gradcheck(fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...]) -> tuple[bool, str | None]:
    """Return gradcheck's verdict and, when it fails, the first line of its message."""
    ok = bool(torch.autograd.gradcheck(fn, inputs, raise_exception=False))
    if ok:
        return True, None
    try:
        torch.autograd.gradcheck(fn, inputs)
    except GradcheckError as e:
        return False, first_line(e)
    return False, None


def run(p: CustomParams, ctx: RunContext) -> CustomResult:
    """Return the custom Function's forward value and gradients, plain torch's, and gradcheck's verdict."""
    fn = BrokenMultiplyAdd if p.broken else MultiplyAdd
    z, custom = _three_grads(fn.apply, p.w, p.x, p.b, ctx.device)
    _, plain = _three_grads(lambda w, x, b: w * x + b, p.w, p.x, p.b, ctx.device)
    inputs = tuple(
        torch.randn(GRADCHECK_SIZE, generator=ctx.generator, dtype=torch.float64, device=ctx.device).requires_grad_()
        for _ in range(3)
    )
    ok, error = _gradcheck(fn.apply, inputs)
    return CustomResult(z, custom, plain, ok, error)


def context(p: CustomParams, device_type: str) -> dict[str, Any]:
    """Return the values of multiply_add.py.j2: the inputs, which backward, and gradcheck's seed."""
    return {"w": p.w, "x": p.x, "b": p.b, "broken": p.broken, "seed": p.seed, "size": GRADCHECK_SIZE}


def shown(r: CustomResult) -> list[float | str]:
    """Return the table's gradients and gradcheck's verdict (its message when it caught the bug)."""
    verdict = "gradcheck: True" if r.gradcheck_ok else (r.torch_error or "gradcheck failed:")
    return [*r.custom_grads, *r.torch_grads, verdict]


CUSTOM = Experiment(
    "custom",
    CustomParams,
    run,
    script="multiply_add.py.j2",
    context=context,
    shown=shown,
    examples=(CustomParams(broken=True, w=-1.0, x=0.5, b=2.0, seed=3), CustomParams(w=-1.5, x=4.0, b=-2.0, seed=5)),
)
