"""The tensors lesson's live pitfalls: what torch really does, and that the shown code is the code that ran."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from core.lessons.tensors import pitfalls as tensors_pitfalls
from core.lessons.tensors.pitfalls import PitfallResult, Step, StepOutcome, TensorPitfallParams, run_steps
from tests.params_strategies import query_id, run_cpu

CASES = [TensorPitfallParams(), *tensors_pitfalls.TENSOR_PITFALL.examples, TensorPitfallParams(threshold=6)]


def by_key(r: PitfallResult) -> dict[str, StepOutcome]:
    return {s.key: s for s in r.steps}


def replay(setup: str, steps: tuple[StepOutcome, ...]) -> list[tuple[str | None, str | None, str | None]]:
    """Run the page's code text itself, statement by statement (our own constant text, not user input)."""
    ns: dict[str, Any] = {"torch": torch}
    exec(setup, ns)
    out = []
    for step in steps:
        output = error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                exec(step.code, ns)
                if step.show:
                    output = " ".join(str(v) for v in eval(f"({step.show},)", ns))
            except RuntimeError as e:
                error = f"RuntimeError: {str(e).splitlines()[0]}"
        warned = next((str(w.message).split(" (Triggered internally at")[0] for w in caught), None)
        out.append((output, warned, error))
    return out


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_every_step_is_what_its_code_does(p: TensorPitfallParams) -> None:
    r = run_cpu(tensors_pitfalls.run_tensor_pitfall, p)
    assert [(s.output, s.warning, s.error) for s in r.steps] == replay(r.setup, r.steps)


@pytest.mark.parametrize("threshold", [-1, 2, 6])
def test_a_byte_mask_reads_with_a_warning_and_is_refused_for_writing_and_masked_select(threshold: int) -> None:
    steps = by_key(run_cpu(tensors_pitfalls.run_tensor_pitfall, TensorPitfallParams(threshold=threshold)))
    x = torch.arange(6.0).reshape(2, 3)
    expected = str(x[x > threshold])
    read = steps["index_uint8"]
    assert read.output == expected and read.error is None
    assert read.warning is not None and "uint8" in read.warning and "deprecated" in read.warning
    assert steps["assign_uint8"].output is None and "bool" in (steps["assign_uint8"].error or "")
    assert steps["select_uint8"].output is None and "BoolTensor" in (steps["select_uint8"].error or "")
    for key in ("index_bool", "compare"):
        assert steps[key].output == expected and steps[key].warning is None and steps[key].error is None


@pytest.mark.parametrize(("rows", "cols"), [(2, 3), (1, 6), (6, 6)])
def test_integers_are_sizes_and_a_tuple_is_data(rows: int, cols: int) -> None:
    p = TensorPitfallParams(case="tensor_ctor", rows=rows, cols=cols)
    steps = by_key(run_cpu(tensors_pitfalls.run_tensor_pitfall, p))
    uninitialised = f"torch.Size([{rows}, {cols}]) torch.float32 {4 * rows * cols}"  # allocated at once
    assert steps["ctor_sizes"].output == steps["empty"].output == uninitialised
    assert steps["ctor_tuple"].output == f"tensor([{rows}., {cols}.]) torch.Size([2])"
    assert steps["tensor_data"].output == f"tensor([{rows}, {cols}]) torch.int64"
    assert all(s.error is None and s.warning is None for s in steps.values())


def test_run_steps_keeps_going_after_an_error_and_records_warnings() -> None:
    def warn(ns: dict[str, Any]) -> tuple[Any, ...]:
        warnings.warn("careful (Triggered internally at somewhere.h:1.)", UserWarning, stacklevel=1)
        return (1,)

    def fail(ns: dict[str, Any]) -> tuple[Any, ...]:
        raise RuntimeError("no\nsecond line")

    steps = [Step("a", "a", "1", warn), Step("b", "b", "x", fail), Step("c", "c", None, lambda ns: None)]
    a, b, c = run_steps(steps, {})
    assert (a.output, a.warning, a.error) == ("1", "careful", None)
    assert (b.output, b.warning, b.error) == (None, None, "RuntimeError: no")
    assert (c.output, c.warning, c.error) == (None, None, None)


def test_only_the_chosen_cases_controls_are_shown() -> None:
    assert set(TensorPitfallParams().roles()) == {"case", "threshold"}
    assert set(TensorPitfallParams(case="tensor_ctor").roles()) == {"case", "rows", "cols"}
