"""The autograd lesson's live pitfalls: what torch really does, and that the shown code is the code that ran."""

from __future__ import annotations

import pytest
import torch

from core.lessons.autograd import pitfalls as autograd_pitfalls
from core.lessons.autograd.pitfalls import GradPitfallParams
from core.lessons.tensors.pitfalls import PitfallResult, StepOutcome
from tests.core.test_tensors_pitfalls import replay
from tests.params_strategies import query_id, run_cpu

CASES = [GradPitfallParams(), *autograd_pitfalls.GRAD_PITFALL.examples, GradPitfallParams(case="leaf_inplace", n=1)]


def by_key(r: PitfallResult) -> dict[str, StepOutcome]:
    return {s.key: s for s in r.steps}


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_every_step_is_what_its_code_does(p: GradPitfallParams) -> None:
    r = run_cpu(autograd_pitfalls.run_grad_pitfall, p)
    assert [(s.output, s.warning, s.error) for s in r.steps] == replay(r.setup, r.steps)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_backward_on_a_non_scalar_needs_a_gradient(n: int) -> None:
    steps = by_key(run_cpu(autograd_pitfalls.run_grad_pitfall, GradPitfallParams(n=n)))
    assert steps["backward_plain"].error == "RuntimeError: grad can be implicitly created only for scalar outputs"
    two_x = str(2 * torch.arange(1.0, n + 1.0))  # d(x^2)/dx = 2x
    assert steps["backward_ones"].output == steps["backward_sum"].output == two_x


def test_a_one_element_output_counts_as_a_scalar() -> None:
    steps = by_key(run_cpu(autograd_pitfalls.run_grad_pitfall, GradPitfallParams(n=1)))
    assert steps["backward_plain"].error is None and steps["backward_plain"].output == "tensor([2.])"
    assert (
        autograd_pitfalls.ONE_ELEMENT.answer(run_cpu(autograd_pitfalls.run_grad_pitfall, autograd_pitfalls.ONE_ELEMENT.params))
        == "runs"
    )
    assert autograd_pitfalls.ONE_ELEMENT.answer(run_cpu(autograd_pitfalls.run_grad_pitfall, GradPitfallParams())) == "error"


@pytest.mark.parametrize("n", [1, 3])
def test_in_place_on_a_leaf_is_refused_except_under_no_grad_and_rebinding_leaves_a_non_leaf(n: int) -> None:
    steps = by_key(run_cpu(autograd_pitfalls.run_grad_pitfall, GradPitfallParams(case="leaf_inplace", n=n)))
    assert "a leaf Variable that requires grad is being used in an in-place operation" in (steps["add_leaf"].error or "")
    assert "a view of a leaf Variable" in (steps["setitem_leaf"].error or "")
    # The refused statements changed nothing: no_grad's add_ starts from 1..n.
    assert steps["no_grad"].output == f"{torch.arange(2.0, n + 2.0, requires_grad=True)} True"
    assert steps["rebind"].output == "False AddBackward0"
    rebound = steps["rebound_grad"]
    assert rebound.output == "None" and rebound.error is None
    assert rebound.warning is not None and "not a leaf Tensor" in rebound.warning
