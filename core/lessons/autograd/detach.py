"""detach() vs .data: both share the tensor's memory, but only detach() shares its version counter.

sigmoid saves its output for backward. Zeroing that output in place through .data goes unnoticed
and the gradient comes out silently wrong; through detach() autograd sees the version move and
refuses, with an error that is part of the lesson (`torch_error`).

The seeds' `out = a ** 2` is the other case: pow saves its input a, not its output, so zeroing the
output (through either way) changes nothing backward needs: no error, and the gradient 2a is right.
Two cases the page does not show by default are for the student to predict. `out = a.sin()`: its
derivative cos(a) cannot be recovered from sin(a) (the sign is lost), so sin must save its input, as pow does.
`out = a.exp()`: its derivative is exp(a), out itself, so exp saves its output, as sigmoid does.
What each op saved is read from its grad_fn (`_saved_*`), not written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, first_line, to_numpy
from core.lessons.autograd.common import backward
from core.params import Params, bounds, choices

DETACH_WAYS = ("data", "detach")
# saves its output / its input (the seeds' y = x ** 2) / its input / its output
DETACH_OPS = ("sigmoid", "pow", "sin", "exp")
OP_CODE = {"sigmoid": "a.sigmoid()", "pow": "a ** 2", "sin": "a.sin()", "exp": "a.exp()"}
DETACH_VALUES = ("arange", "linspace")  # 1, 2, ..., n as in the seeds, or n points in [-2, 2]
VALUES_CODE = {"arange": "torch.arange(1, {n} + 1, dtype=torch.float32)", "linspace": "torch.linspace(-2, 2, {n})"}
OPS_PER_VALUE = 30  # element operations per value of a: two ways' forward and backward, and the true gradient


@dataclass(frozen=True)
class DetachParams(Params):
    """The op whose output is zeroed, which way the code panel shows first, the values of a and how many."""

    op: str = field(default="sigmoid", metadata=choices(*DETACH_OPS))
    way: str = field(default="data", metadata=choices(*DETACH_WAYS))
    values: str = field(default="arange", metadata=choices(*DETACH_VALUES))
    n: int = field(default=3, metadata=bounds(1, 8))

    def estimate_work(self) -> float:
        """Return the element operations of both ways on n values."""
        return float(OPS_PER_VALUE * self.n)


@dataclass(frozen=True)
class DetachWay:
    """What happened when c = out.data (or out.detach()) was zeroed in place before backward."""

    way: str
    out_after: np.ndarray  # out's values after c.zero_(): zeros both ways, the memory is shared
    out_version_before: int  # out._version before c.zero_()
    out_version_after: int  # .data: unchanged (own counter); detach: +1 (shared counter)
    c_version_after: int
    grad: np.ndarray | None  # a.grad after out.sum().backward(); None when backward raised
    torch_error: str | None


@dataclass(frozen=True)
class DetachResult:
    """Both ways side by side, with a, op(a), what op saved for backward and the true gradient computed without autograd."""

    a: np.ndarray
    out: np.ndarray  # op(a) before anything was zeroed
    true_grad: np.ndarray  # sigmoid(a) * (1 - sigmoid(a)), 2a, cos(a) or exp(a), computed without autograd
    data: DetachWay
    detach: DetachWay
    torch_error: str | None  # the chosen way's error (None for .data: it is silently wrong)
    op: str = "sigmoid"
    saved: tuple[str, ...] = ()  # what out.grad_fn saved, as "result = out", "self = a", "exponent = 2"

    def chosen(self, way: str) -> DetachWay:
        """Return the outcome of one way, "data" or "detach"."""
        return self.data if way == "data" else self.detach


def _inputs(p: DetachParams, device: torch.device) -> torch.Tensor:
    """Return the values of a: 1, 2, ..., n (the seeds' example) or n points in [-2, 2]."""
    if p.values == "arange":
        return torch.arange(1, p.n + 1, dtype=torch.float32, device=device)
    return torch.linspace(-2, 2, p.n, device=device)


def _apply(op: str, a: torch.Tensor) -> torch.Tensor:
    """Return op(a); backward reuses the output of sigmoid (out * (1 - out)) and exp (out), the input of pow and sin."""
    if op == "sigmoid":
        return a.sigmoid()
    if op == "exp":
        return a.exp()
    return a.sin() if op == "sin" else a**2


def true_gradient(op: str, a: np.ndarray) -> np.ndarray:
    """Return d op(a) / da for each value of a (float64), computed without autograd."""
    if op == "sigmoid":
        sig = 1 / (1 + np.exp(-a))
        return np.asarray(sig * (1 - sig))
    if op == "exp":
        return np.asarray(np.exp(a))
    return np.cos(a) if op == "sin" else 2 * a


def saved_for_backward(out: torch.Tensor, names: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Return what out.grad_fn saved, read from its `_saved_*` attributes: a saved tensor by the name it has here."""
    fn = out.grad_fn
    found = []
    for attr in sorted(a for a in dir(fn) if a.startswith("_saved_")):
        value = getattr(fn, attr)
        if isinstance(value, torch.Tensor):
            ptr = value.untyped_storage().data_ptr()
            shown = next((n for n, t in names.items() if t.untyped_storage().data_ptr() == ptr), "a tensor")
        else:
            shown = repr(value)
        found.append(f"{attr.removeprefix('_saved_')} = {shown}")
    return tuple(found)


def _try_way(way: str, values: torch.Tensor, op: str = "sigmoid") -> DetachWay:
    """Return what zeroing out.data / out.detach() in place does to the gradient of op(a)."""
    a = values.clone().requires_grad_()
    out = _apply(op, a)
    before = out._version
    c = out.data if way == "data" else out.detach()
    c.zero_()
    after, out_after = out._version, to_numpy(out)
    try:
        backward(out.sum())
    except RuntimeError as e:
        return DetachWay(way, out_after, before, after, c._version, None, first_line(e))
    assert a.grad is not None
    return DetachWay(way, out_after, before, after, c._version, to_numpy(a.grad), None)


def run(p: DetachParams, ctx: RunContext) -> DetachResult:
    """Return both ways side by side: for sigmoid and exp .data silently wrong and detach raising; pow and sin both right."""
    a = _inputs(p, ctx.device)
    true_grad = true_gradient(p.op, to_numpy(a, float64=True))
    data, detach = _try_way("data", a, p.op), _try_way("detach", a, p.op)
    chosen = data if p.way == "data" else detach
    leaf = a.clone().requires_grad_()
    out = _apply(p.op, leaf)
    saved = saved_for_backward(out, {"out": out, "a": leaf})
    return DetachResult(to_numpy(a), to_numpy(out), true_grad, data, detach, chosen.torch_error, p.op, saved)


def context(p: DetachParams, device_type: str) -> dict[str, Any]:
    """Return the values of detach_vs_data.py.j2: the chosen way first, then the other, then the true gradient."""
    values = VALUES_CODE[p.values].format(n=p.n)
    order = ["data", "detach"] if p.way == "data" else ["detach", "data"]
    take = {"data": "out.data", "detach": "out.detach()"}
    return {
        "values": values,
        "op": p.op,
        "out": OP_CODE[p.op],
        "ways": [{"name": way, "take": take[way]} for way in order],
    }


def shown(r: DetachResult) -> list[float | str]:
    """Return what op saved, and for each way the version counters, a.grad and torch's error, as the page shows them."""
    out: list[float | str] = [f"saved for backward: {', '.join(r.saved)}"]
    for way in (r.data, r.detach):
        out.append(f"{way.way}: out._version {way.out_version_before} -> {way.out_version_after}")
        out += [] if way.grad is None else list(way.grad)
        out += [] if way.torch_error is None else [way.torch_error]
    return out


DETACH = Experiment(
    "detach",
    DetachParams,
    run,
    script="detach_vs_data.py.j2",
    context=context,
    shown=shown,
    examples=(
        DetachParams(way="detach", values="linspace", n=8),
        DetachParams(op="pow", way="detach", n=4),
        DetachParams(op="sin", values="linspace", n=5),
        DetachParams(op="exp", way="detach", values="linspace", n=6),
    ),
)


def _which_raises(r: DetachResult) -> str:
    """Return the way whose backward raised (".detach()" for an op that saved its output), or "both_or_neither"."""
    raised = (r.data.torch_error is not None, r.detach.torch_error is not None)
    return {(True, False): ".data", (False, True): ".detach()"}.get(raised, "both_or_neither")


# The page shows sigmoid by default (and the prose explains sigmoid and pow): the question asks about sin,
# where the answer from sigmoid's pattern (".detach()") is wrong.
WHICH_RAISES = Prediction(
    "detach_sin",
    DETACH,
    DetachParams(op="sin"),
    options=(".data", ".detach()", "both_or_neither"),
    answer=_which_raises,
    question="detach.predict_q",
    why="detach.predict_why",
)


def detach_outcome(r: DetachResult) -> str:
    """Return what backward gives after out.detach().zero_(): "error", "right" (the true gradient) or "wrong"."""
    way = r.detach
    if way.torch_error is not None or way.grad is None:
        return "error"
    return "right" if np.allclose(way.grad, r.true_grad) else "wrong"


# The page shows sigmoid by default, and the prose works through sigmoid (an error) and the seeds' a ** 2 (the right
# gradient, stated there). The question asks about exp, which the page does not show by default: its derivative
# exp(a) is its own output, so, like sigmoid, it saves out, and zeroing out through detach() makes backward refuse.
EXP_DETACH = Prediction(
    "detach_exp",
    DETACH,
    DetachParams(op="exp", way="detach"),
    options=("error", "right", "wrong"),
    answer=detach_outcome,
    question="detach.predict_exp_q",
    why="detach.predict_exp_why",
)
