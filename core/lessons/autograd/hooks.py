"""Hooks and torch.autograd.grad: a tensor hook rewrites a gradient, a module forward hook reads an activation.

y = (linear(x) ** 2).sum(). A hook on x scales the gradient on its way into x.grad; a forward hook
on the Linear captures its output; torch.autograd.grad returns the gradient without storing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, RunContext, to_numpy
from core.lessons.autograd.common import backward, empty_linear
from core.params import Params, bounds, seed_field

HOOK_IN, HOOK_OUT = 4, 6  # x has 4 values; the Linear maps them to 6
PASSES = 3  # forward and backward without the hook, with it, and through autograd.grad


@dataclass(frozen=True)
class HooksParams(Params):
    """The factor the tensor hook multiplies x's gradient by, and the seed of x and the Linear's weights."""

    scale: float = field(default=2.0, metadata=bounds(-5, 5, 0.5))
    seed: int = seed_field()

    def estimate_work(self) -> float:
        """Return the multiply-adds of three forward and backward passes through Linear(4, 6)."""
        return float(PASSES * 3 * HOOK_IN * HOOK_OUT)


@dataclass(frozen=True)
class HooksResult:
    """x's gradient without and with the hook and by autograd.grad, and what the forward hook captured."""

    x: np.ndarray  # the input, HOOK_IN values
    weight: np.ndarray  # the Linear's weight (HOOK_OUT, HOOK_IN) and bias, for an independent check
    bias: np.ndarray
    y: float  # y = (linear(x) ** 2).sum()
    grad_plain: np.ndarray  # x.grad after y.backward(), no hook
    grad_hooked: np.ndarray  # x.grad with the tensor hook scaling the incoming gradient
    activation: np.ndarray  # what the forward hook captured: linear(x)
    activation_shape: tuple[int, ...]
    activation_mean: float
    activation_std: float  # torch's default std (correction=1)
    autograd_grad: np.ndarray  # torch.autograd.grad(y, x)
    x_grad_none_after_autograd_grad: bool  # autograd.grad left x.grad untouched (None)


def _model(ctx: RunContext) -> tuple[torch.Tensor, nn.Linear]:
    """Return x and a Linear(HOOK_IN, HOOK_OUT), all drawn from ctx.generator."""
    g, d = ctx.generator, ctx.device
    x = torch.randn(HOOK_IN, generator=g, device=d)
    linear = empty_linear(HOOK_IN, HOOK_OUT, d)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(HOOK_OUT, HOOK_IN, generator=g, device=d) / math.sqrt(HOOK_IN))
        linear.bias.copy_(torch.randn(HOOK_OUT, generator=g, device=d) / math.sqrt(HOOK_IN))
    return x, linear


def _x_grad(x0: torch.Tensor, linear: nn.Linear, scale: float | None) -> tuple[np.ndarray, float]:
    """Return x.grad after y.backward() (with a hook scaling x's gradient when scale is given), and y."""
    x = x0.clone().requires_grad_()
    # Tensor.register_hook carries no type hints.
    handle = x.register_hook(lambda grad: grad * scale) if scale is not None else None  # type: ignore[no-untyped-call]
    y = (linear(x) ** 2).sum()
    backward(y)
    if handle is not None:
        handle.remove()
    assert x.grad is not None
    return to_numpy(x.grad), float(y.item())


def run(p: HooksParams, ctx: RunContext) -> HooksResult:
    """Return x's gradient without and with a scaling hook, a forward hook's capture, and autograd.grad."""
    x0, linear = _model(ctx)
    grad_plain, y = _x_grad(x0, linear, None)
    captured: list[torch.Tensor] = []
    handle = linear.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().clone()))
    grad_hooked, _ = _x_grad(x0, linear, p.scale)
    handle.remove()
    activation = captured[0]
    x = x0.clone().requires_grad_()
    (by_grad,) = torch.autograd.grad((linear(x) ** 2).sum(), x)
    return HooksResult(
        to_numpy(x0),
        to_numpy(linear.weight),
        to_numpy(linear.bias),
        y,
        grad_plain,
        grad_hooked,
        to_numpy(activation),
        tuple(activation.shape),
        float(activation.mean().item()),
        float(activation.std().item()),
        to_numpy(by_grad),
        x.grad is None,
    )


def context(p: HooksParams, device_type: str) -> dict[str, Any]:
    """Return the values of hooks.py.j2: the same x and weights, drawn in the same order from the seed."""
    return {"seed": p.seed, "scale": p.scale, "n_in": HOOK_IN, "n_out": HOOK_OUT}


def shown(r: HooksResult) -> list[float | str]:
    """Return the gradients of the table and the forward hook's capture (shape, mean, std) the page states."""
    grads = [*r.grad_plain, *r.grad_hooked, *r.autograd_grad]
    return [*grads, *r.activation_shape, r.activation_mean, r.activation_std]


HOOKS = Experiment(
    "hooks",
    HooksParams,
    run,
    script="hooks.py.j2",
    context=context,
    shown=shown,
    examples=(HooksParams(scale=-1.5, seed=7), HooksParams(scale=0.0, seed=1)),
)
