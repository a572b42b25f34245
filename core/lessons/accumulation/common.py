"""What equiv, norm and curves share: the work limit's model of a pass, and accumulated gradients compared.

A unit of work is about one multiply-add on one CPU core; a run may do at most MAX_WORK of them.
When it would do more, the refusal names the first field that, lowered alone, makes it fit.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import RunContext
from core.lessons.accumulation.model import CHANNELS, CLASSES, IN_FEATURES, SIDE, ModelSpec
from core.params import InvalidParams, Params

# About 6 s at the 1e10 units per second a core sustains here (the runner stops a run at 20 s).
MAX_WORK = 6e10
BLOCK_OVERHEAD = 8e5  # a block's fixed cost in one forward pass (Python, dispatch, autograd), in work units
ELEMENTWISE = 4  # the cost of one activation value (norm, ReLU and their gradients), in work units
CONV_MAC = 0.6  # a convolution's multiply-add costs less than a small matmul's (bigger, better blocked kernels)
PIXEL_OVERHEAD = 400  # a convolution's cost per output pixel beyond its multiply-adds (im2col), in work units
FLOAT64_COST = 2  # float64 runs at about half float32's speed on a CPU

P = TypeVar("P", bound=Params)


def macs_per_sample(spec: ModelSpec) -> int:
    """Return the multiply-adds of one sample's forward pass through the network's Linear / Conv2d layers."""
    if spec.model == "mlp":
        return IN_FEATURES * spec.width + (spec.depth - 1) * spec.width**2 + spec.width * CLASSES
    convs = CHANNELS * 9 * spec.width + (spec.depth - 1) * 9 * spec.width**2
    return SIDE * SIDE * convs + spec.width * CLASSES


def pass_work(spec: ModelSpec, samples: int, passes: int = 1, backward: bool = True) -> float:
    """Return the work of `passes` forward (and backward) passes over `samples` samples in all."""
    per_sample = float(ELEMENTWISE * spec.activations_per_sample())
    if spec.model == "mlp":
        per_sample += macs_per_sample(spec)
    else:
        per_sample += CONV_MAC * macs_per_sample(spec) + PIXEL_OVERHEAD * SIDE * SIDE * spec.depth
    return (3 if backward else 1) * (samples * per_sample + passes * BLOCK_OVERHEAD * (spec.depth + 1))


def _largest_fitting(p: P, work: Callable[[P], float], name: str, lo: int) -> int | None:
    """Return the largest value of field `name`, from lo up to (not including) p's own, whose run fits MAX_WORK."""
    step = int(next(s for s in p.specs() if s.name == name).meta.get("step") or 1)
    values = range(lo, int(getattr(p, name)), step)
    # The work grows with every size field, so the values that fit come first.
    fits = bisect.bisect_right(values, MAX_WORK, key=lambda v: work(dataclasses.replace(p, **{name: v})))
    return values[fits - 1] if fits else None


def too_much_work(p: P, work: Callable[[P], float], fields: tuple[tuple[str, int], ...]) -> InvalidParams:
    """Return the refusal naming the first field that, lowered alone (not below its lo), fits, with its largest such value.

    When no field can do it alone, name the first at its lo: once it is lowered, the next refusal names another.
    """
    for name, lo in fields:
        value = _largest_fitting(p, work, name, lo)
        if value is not None:
            return InvalidParams(name, "too_much_work", max=value)
    name, lo = fields[0]
    return InvalidParams(name, "too_much_work", max=lo)


def _grads(net: nn.Module) -> list[torch.Tensor]:
    """Return a copy of every parameter's .grad: what the backward passes so far have added up."""
    grads = []
    for w in net.parameters():
        assert w.grad is not None
        grads.append(w.grad.detach().clone())
    return grads


def full_batch_grad(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """Return the gradient of the batch's mean cross-entropy for every parameter (.grad untouched), and the loss."""
    loss = F.cross_entropy(net(X), y)
    return list(torch.autograd.grad(loss, list(net.parameters()))), float(loss.item())


def accumulate(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, accum_steps: int, variant: str, ctx: RunContext
) -> list[torch.Tensor]:
    """Run backward once per micro-batch (torch.tensor_split), each loss scaled the variant's way; return .grad.

    "divide" scales by 1/k, "weighted" by n_i / B, "seeds" by 1 + 1/k (the notes' `loss += loss / k`),
    "no_divide" not at all. backward adds into .grad, so what is returned also holds what .grad held before.
    """
    B = X.shape[0]
    for X_i, y_i in zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps), strict=True):
        ctx.check_deadline()
        loss = F.cross_entropy(net(X_i), y_i)
        if variant == "divide":
            loss = loss / accum_steps
        elif variant == "weighted":
            loss = loss * (len(y_i) / B)
        elif variant == "seeds":
            loss += loss / accum_steps  # the notes' line, as written
        torch.autograd.backward(loss)
    return _grads(net)


@dataclass(frozen=True)
class Comparison:
    """How far a gradient is from a reference, per parameter tensor and over all of them (float64)."""

    max_abs: np.ndarray  # (P,) max |g - ref| per tensor
    rel: np.ndarray  # (P,) ||g - ref|| / ||ref|| per tensor
    overall_max_abs: float
    overall_rel: float
    scale: float  # <g, ref> / <ref, ref>: the factor g is of ref, along ref
    ref_norm: float


def flat(ts: list[torch.Tensor]) -> torch.Tensor:
    """Return every tensor flattened and concatenated, in float64."""
    return torch.cat([t.double().flatten() for t in ts])


def compare(grads: list[torch.Tensor], ref: list[torch.Tensor]) -> Comparison:
    """Return how far grads are from ref (the scripts print the overall figures computed the same way)."""
    diffs = [a.double() - b.double() for a, b in zip(grads, ref, strict=True)]
    d = torch.cat([t.flatten() for t in diffs])
    r = flat(ref)
    v = flat(grads)
    return Comparison(
        np.array([t.abs().max().item() for t in diffs]),
        np.array([(t.norm() / b.double().norm()).item() for t, b in zip(diffs, ref, strict=True)]),
        d.abs().max().item(),
        (d.norm() / r.norm()).item(),
        (v @ r / (r @ r)).item(),
        r.norm().item(),
    )


def micro_sizes(batch: int, accum_steps: int) -> tuple[int, ...]:
    """Return the sizes torch.tensor_split gives: the first batch % k micro-batches one sample larger."""
    return tuple(len(t) for t in torch.tensor_split(torch.empty(batch, device="meta"), accum_steps))
