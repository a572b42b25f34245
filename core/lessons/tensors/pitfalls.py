"""Pitfalls run live: each case is a few statements, and the page shows what torch printed, warned or raised.

A case is a list of `Step`s. Each step's `code` is the Python the page and the script show, and
its `fn` does exactly that to a namespace of tensors and returns what the script prints (`show`).
Nothing is typed in: the output, the warning and the error text all come from running torch here,
and the contract tests check that the script (written from the same `code` and `show`) prints them.
The autograd lesson's pitfalls use the same `Step` and `run_steps`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, RunContext, first_line
from core.params import Params, bounds, choices

Namespace = dict[str, Any]

# catch_warnings swaps process-wide state: two runs at once (two students) must not interleave it,
# or one run's warning goes to the other's record, or nowhere.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Step:
    """One statement of a pitfall: its code, what the script prints after it, and the function that runs it."""

    key: str  # names the step's explanation in the strings table
    code: str
    show: str | None  # the expression the script prints after the code (None: nothing to print)
    fn: Callable[[Namespace], tuple[Any, ...] | None] = field(compare=False)


@dataclass(frozen=True)
class StepOutcome:
    """What running one step did: printed `output`, or raised `error`; `warning` is what torch warned on the way."""

    key: str
    code: str
    show: str | None
    output: str | None
    warning: str | None
    error: str | None


def _warning_text(message: Warning | str) -> str:
    """Return a warning's message without the C++ source location torch appends ("(Triggered internally at ...)")."""
    lines = str(message).strip().splitlines() or [""]
    return lines[0].split(" (Triggered internally at")[0]


def run_steps(steps: Sequence[Step], ns: Namespace) -> tuple[StepOutcome, ...]:
    """Run the steps in order in one namespace; an error ends that step only (as in the script's try/except)."""
    out = []
    for step in steps:
        output = error = None
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                printed = step.fn(ns)
            except RuntimeError as e:
                error = f"{type(e).__name__}: {first_line(e)}"
            else:
                output = None if printed is None else " ".join(str(v) for v in printed)
        warned = next((_warning_text(w.message) for w in caught if issubclass(w.category, UserWarning)), None)
        out.append(StepOutcome(step.key, step.code, step.show, output, warned, error))
    return tuple(out)


def outcome_lines(outcomes: Sequence[StepOutcome]) -> list[float | str]:
    """Return the texts the page shows for these outcomes, each of which the script prints verbatim."""
    lines: list[float | str] = []
    for o in outcomes:
        lines += [text for text in (o.output, o.warning, o.error) if text]
    return lines


def script_steps(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Return the steps as the templates read them: each statement, as code and as a string literal, and what it prints."""
    return [{"code": s.code, "literal": repr(s.code), "show": s.show} for s in steps]


# --------------------------------------------------------------------------------------------
# The tensors lesson's cases

TENSOR_PITFALLS = ("uint8_mask", "tensor_ctor")


@dataclass(frozen=True)
class TensorPitfallParams(Params):
    case: str = field(default="uint8_mask", metadata=choices(*TENSOR_PITFALLS))
    threshold: int = field(default=2, metadata=bounds(-1, 6))  # the mask is x > threshold, x = 0..5
    rows: int = field(default=2, metadata=bounds(1, 6))
    cols: int = field(default=3, metadata=bounds(1, 6))

    def estimate_work(self) -> float:
        """Return the element operations: a handful of statements on at most 36 elements."""
        return 1_000.0

    def roles(self) -> dict[str, str]:
        """Return the fields the chosen case reads."""
        if self.case == "uint8_mask":
            return {"case": "case", "threshold": "threshold"}
        return {"case": "case", "rows": "rows", "cols": "cols"}


@dataclass(frozen=True)
class PitfallResult:
    setup: str  # the statements that make the tensors every step uses
    steps: tuple[StepOutcome, ...]


def _assign_zero(ns: Namespace) -> tuple[Any, ...]:
    """Run `x[m] = 0` and return x."""
    ns["x"][ns["m"]] = 0
    return (ns["x"],)


def _keep(ns: Namespace, t: torch.Tensor, *shown: Any) -> tuple[Any, ...]:
    """Keep t as ns["t"] and return what the step prints about it."""
    ns["t"] = t
    return shown


def _mask_steps(threshold: int) -> list[Step]:
    """Return the uint8-mask steps: indexing warns, assigning and masked_select refuse, a bool mask works."""
    return [
        Step("index_uint8", "y = x[m]", "y", lambda ns: (ns["x"][ns["m"]],)),
        Step("assign_uint8", "x[m] = 0", "x", _assign_zero),
        Step("select_uint8", "y = x.masked_select(m)", "y", lambda ns: (ns["x"].masked_select(ns["m"]),)),
        Step("index_bool", "y = x[m.bool()]", "y", lambda ns: (ns["x"][ns["m"].bool()],)),
        Step("compare", f"y = x[x > {threshold}]", "y", lambda ns: (ns["x"][ns["x"] > threshold],)),
    ]


def _ctor_steps(rows: int, cols: int) -> list[Step]:
    """Return the legacy-constructor steps: sizes give an uninitialised tensor, a tuple gives data."""
    return [
        Step(
            "ctor_sizes",
            f"t = torch.Tensor({rows}, {cols})",
            "t.shape, t.dtype, t.untyped_storage().nbytes()",
            lambda ns: _show_shape(ns, torch.Tensor(rows, cols)),
        ),
        Step(
            "ctor_tuple",
            f"t = torch.Tensor(({rows}, {cols}))",
            "t, t.shape",
            lambda ns: (lambda t: _keep(ns, t, t, t.shape))(torch.Tensor((rows, cols))),
        ),
        Step(
            "empty",
            f"t = torch.empty({rows}, {cols})",
            "t.shape, t.dtype, t.untyped_storage().nbytes()",
            lambda ns: _show_shape(ns, torch.empty(rows, cols)),
        ),
        Step(
            "tensor_data",
            f"t = torch.tensor(({rows}, {cols}))",
            "t, t.dtype",
            lambda ns: (lambda t: _keep(ns, t, t, t.dtype))(torch.tensor((rows, cols))),
        ),
    ]


def _show_shape(ns: Namespace, t: torch.Tensor) -> tuple[Any, ...]:
    """Keep t and return its shape, dtype and bytes (its values are whatever the memory held: not shown)."""
    return _keep(ns, t, t.shape, t.dtype, t.untyped_storage().nbytes())


def tensor_setup(p: TensorPitfallParams) -> str:
    """Return the statements every step of the case starts from."""
    if p.case == "uint8_mask":
        mask = f"m = (x > {p.threshold}).to(torch.uint8)  # a byte mask, as old code made them"
        return f"x = torch.arange(6.0).reshape(2, 3)\n{mask}"
    return ""


def run_tensor_pitfall(p: TensorPitfallParams, ctx: RunContext) -> PitfallResult:
    """Run the chosen case's statements on the CPU (the pitfalls are about dtypes and constructors, not devices)."""
    if p.case == "uint8_mask":
        x = torch.arange(6.0).reshape(2, 3)
        ns: Namespace = {"x": x, "m": (x > p.threshold).to(torch.uint8)}
        return PitfallResult(tensor_setup(p), run_steps(_mask_steps(p.threshold), ns))
    return PitfallResult(tensor_setup(p), run_steps(_ctor_steps(p.rows, p.cols), {}))


def context(p: TensorPitfallParams, device_type: str) -> Mapping[str, Any]:
    """Return what tensor_pitfalls.py.j2 reads: the setup lines and each step's code and printed expression."""
    steps = _mask_steps(p.threshold) if p.case == "uint8_mask" else _ctor_steps(p.rows, p.cols)
    return {"setup": tensor_setup(p).splitlines(), "steps": script_steps(steps)}


def shown(r: PitfallResult) -> list[float | str]:
    """Return every output, warning and error the page shows."""
    return outcome_lines(r.steps)


TENSOR_PITFALL = Experiment(
    "tensor_pitfalls",
    TensorPitfallParams,
    run_tensor_pitfall,
    script="tensor_pitfalls.py.j2",
    context=context,
    shown=shown,
    examples=(
        TensorPitfallParams(case="tensor_ctor"),
        TensorPitfallParams(threshold=-1),
        TensorPitfallParams(case="tensor_ctor", rows=1, cols=6),
    ),
)
