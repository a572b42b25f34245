"""Autograd pitfalls run live: backward() on a non-scalar, and in-place changes to a leaf that requires grad.

Each case is a few statements (`core.lessons.tensors.pitfalls.Step`); the page shows what torch
printed, warned or raised for each, and the script runs the same statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.autograd.common import backward
from core.lessons.tensors.pitfalls import Namespace, PitfallResult, Step, outcome_lines, run_steps, script_steps
from core.params import Params, bounds, choices

GRAD_PITFALLS = ("nonscalar_backward", "leaf_inplace")


@dataclass(frozen=True)
class GradPitfallParams(Params):
    case: str = field(default="nonscalar_backward", metadata=choices(*GRAD_PITFALLS))
    n: int = field(default=3, metadata=bounds(1, 6))  # x (or w) holds 1, 2, ..., n

    def estimate_work(self) -> float:
        """Return the element operations: a handful of statements on at most 6 elements."""
        return 1_000.0


def _y(ns: Namespace) -> torch.Tensor:
    """Return y = x * x on a fresh graph, with x.grad cleared (each step starts afresh)."""
    x: torch.Tensor = ns["x"]
    x.grad = None
    y = x * x
    ns["y"] = y
    return y


def _backward_of(ns: Namespace, y: torch.Tensor, gradient: torch.Tensor | None = None) -> tuple[Any, ...]:
    """Run y.backward(gradient) and return x.grad."""
    torch.autograd.backward(y, gradient)
    return (ns["x"].grad,)


def _nonscalar_steps() -> list[Step]:
    """Return the non-scalar backward steps: the error (unless y has one element), then the two fixes."""
    return [
        Step("make_y", "y = x * x", "y", lambda ns: (_y(ns),)),
        Step("backward_plain", "y.backward()", "x.grad", lambda ns: _backward_of(ns, ns["y"])),
        Step(
            "backward_ones",
            "x.grad = None  # start afresh\ny = x * x\ny.backward(torch.ones_like(y))",
            "x.grad",
            lambda ns: (lambda y: _backward_of(ns, y, torch.ones_like(y)))(_y(ns)),
        ),
        Step(
            "backward_sum",
            "x.grad = None\ny = x * x\ny.sum().backward()",
            "x.grad",
            lambda ns: _backward_of(ns, _y(ns).sum()),
        ),
    ]


def _add_one_without_grad(ns: Namespace) -> tuple[Any, ...]:
    """Run `with torch.no_grad(): w.add_(1)` and return w and whether it is still a leaf."""
    with torch.no_grad():
        ns["w"].add_(1)
    return ns["w"], ns["w"].is_leaf


def _rebind(ns: Namespace) -> tuple[Any, ...]:
    """Run `w = w + 1` and return whether the new w is a leaf, and its grad_fn's name."""
    ns["w"] = ns["w"] + 1
    return ns["w"].is_leaf, type(ns["w"].grad_fn).__name__


def _backward_through_rebound(ns: Namespace) -> tuple[Any, ...]:
    """Run `(w * w).sum().backward()` on the rebound w and return w.grad (None: w is not a leaf)."""
    w = ns["w"]
    backward((w * w).sum())
    return (w.grad,)


def _leaf_steps() -> list[Step]:
    """Return the in-place-on-a-leaf steps: two refusals, the no_grad fix, and rebinding, which leaves a non-leaf."""

    def setitem(ns: Namespace) -> tuple[Any, ...]:
        ns["w"][0] = 0
        return (ns["w"],)

    return [
        Step("add_leaf", "w.add_(1)", "w", lambda ns: (ns["w"].add_(1),)),
        Step("setitem_leaf", "w[0] = 0", "w", setitem),
        Step("no_grad", "with torch.no_grad():\n    w.add_(1)", "w, w.is_leaf", _add_one_without_grad),
        Step("rebind", "w = w + 1", "w.is_leaf, type(w.grad_fn).__name__", _rebind),
        Step("rebound_grad", "(w * w).sum().backward()", "w.grad", _backward_through_rebound),
    ]


def grad_setup(p: GradPitfallParams) -> str:
    """Return the statement every step of the case starts from."""
    name = "x" if p.case == "nonscalar_backward" else "w"
    return f"{name} = torch.arange(1.0, {p.n + 1}.0, requires_grad=True)"


def run_grad_pitfall(p: GradPitfallParams, ctx: RunContext) -> PitfallResult:
    """Run the chosen case's statements on the CPU, as the script does (the errors are the same on any device)."""
    leaf = torch.arange(1.0, p.n + 1.0, requires_grad=True)
    if p.case == "nonscalar_backward":
        return PitfallResult(grad_setup(p), run_steps(_nonscalar_steps(), {"x": leaf}))
    return PitfallResult(grad_setup(p), run_steps(_leaf_steps(), {"w": leaf}))


def context(p: GradPitfallParams, device_type: str) -> Mapping[str, Any]:
    """Return what grad_pitfalls.py.j2 reads: the setup line and each step's code and printed expression."""
    steps = _nonscalar_steps() if p.case == "nonscalar_backward" else _leaf_steps()
    return {"setup": [grad_setup(p)], "steps": script_steps(steps)}


def shown(r: PitfallResult) -> list[float | str]:
    """Return every output, warning and error the page shows."""
    return outcome_lines(r.steps)


GRAD_PITFALL = Experiment(
    "grad_pitfalls",
    GradPitfallParams,
    run_grad_pitfall,
    script="grad_pitfalls.py.j2",
    context=context,
    shown=shown,
    examples=(GradPitfallParams(case="leaf_inplace"), GradPitfallParams(n=1), GradPitfallParams(case="leaf_inplace", n=6)),
)


def _one_element(r: PitfallResult) -> str:
    """Return whether y.backward() without a gradient raised ("error") or ran ("runs")."""
    plain = next(s for s in r.steps if s.key == "backward_plain")
    return "error" if plain.error else "runs"


# y = x * x with one element: numel 1 counts as a scalar, so the implicit gradient 1 is created.
ONE_ELEMENT = Prediction(
    "grad_one_element",
    GRAD_PITFALL,
    GradPitfallParams(n=1),
    options=("error", "runs"),
    answer=_one_element,
    question="grad_pitfalls.predict_q",
    why="grad_pitfalls.predict_why",
)
