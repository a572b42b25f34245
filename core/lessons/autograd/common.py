"""Helpers the autograd lesson's experiments share: scalar fields, fresh leaves, the seeds' expression, typed backward."""

from __future__ import annotations

from dataclasses import field
from typing import Any

import torch
from torch import nn

from core.params import bounds


def value_field(default: float) -> Any:
    """Return the dataclass field of a scalar input such as x or w: a slider from -10 to 10 in steps of 0.5."""
    return field(default=default, metadata=bounds(-10.0, 10.0, 0.5))


def grad_of(t: torch.Tensor) -> float:
    """Return t.grad as a float (t must have a gradient)."""
    assert t.grad is not None
    return float(t.grad.item())


def leaves(x: float, w: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return fresh leaf tensors x and w that require grad."""
    return torch.tensor(x, requires_grad=True, device=device), torch.tensor(w, requires_grad=True, device=device)


def seeds_y(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Return the seeds' expression y = (x + w) * (w + 1)."""
    return (x + w) * (w + 1)


def backward(y: torch.Tensor, retain_graph: bool = False) -> None:
    """Call y.backward() (the typed spelling: Tensor.backward carries no type hints)."""
    torch.autograd.backward(y, retain_graph=retain_graph)


def empty_linear(n_in: int, n_out: int, device: torch.device) -> nn.Linear:
    """Return an nn.Linear with uninitialised weights (what nn.utils.skip_init does).

    Built on the meta device first: nn.Linear would otherwise draw its weights from the global
    RNG, which the run does not own; the caller fills them from ctx.generator.
    """
    return nn.Linear(n_in, n_out, device="meta").to_empty(device=device)
