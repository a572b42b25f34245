"""retain_graph: a second backward through the same graph fails unless the first kept its saved tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.experiment import Experiment, RunContext, first_line
from core.lessons.autograd.common import backward, grad_of, leaves, seeds_y, value_field
from core.params import Params

OPS = 20  # element operations: one forward and two backward passes of the seeds' expression


@dataclass(frozen=True)
class RetainParams(Params):
    """Whether the first backward keeps the graph, and the inputs x and w."""

    retain_graph: bool = False
    x: float = value_field(2.0)
    w: float = value_field(1.0)

    def estimate_work(self) -> float:
        """Return the element operations of one forward and two backward passes on scalars."""
        return float(OPS)


@dataclass(frozen=True)
class RetainResult:
    """The gradients after each of two backward calls on one graph, or torch's error for the second."""

    y: float
    x_grad_first: float  # after the first backward
    w_grad_first: float
    x_grad_second: float | None  # after the second backward (None when it failed)
    w_grad_second: float | None
    torch_error: str | None  # the second backward's error without retain_graph


def run(p: RetainParams, ctx: RunContext) -> RetainResult:
    """Return the gradients after two backward calls on one graph, or the error of the second."""
    x, w = leaves(p.x, p.w, ctx.device)
    y = seeds_y(x, w)
    backward(y, retain_graph=p.retain_graph)
    first_x, first_w = grad_of(x), grad_of(w)
    try:
        backward(y)
    except RuntimeError as e:
        return RetainResult(float(y.item()), first_x, first_w, None, None, first_line(e))
    return RetainResult(float(y.item()), first_x, first_w, grad_of(x), grad_of(w), None)


def context(p: RetainParams, device_type: str) -> dict[str, Any]:
    """Return the values of retain_graph.py.j2 (the script runs on the CPU: scalars gain nothing from a GPU)."""
    return {"retain_graph": p.retain_graph, "x": p.x, "w": p.w}


def shown(r: RetainResult) -> list[float | str]:
    """Return the gradients the two metrics show, or torch's error the page shows for the second call."""
    second: list[float | str] = [r.torch_error] if r.torch_error is not None else []
    if r.x_grad_second is not None and r.w_grad_second is not None:
        second = [r.x_grad_second, r.w_grad_second]
    return [r.x_grad_first, r.w_grad_first, *second]


RETAIN = Experiment(
    "retain",
    RetainParams,
    run,
    script="retain_graph.py.j2",
    context=context,
    shown=shown,
    examples=(RetainParams(retain_graph=True, x=3.0, w=-2.0),),
)
