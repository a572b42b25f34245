"""The modules lesson's `mod_custom` against computations written here: functional forms, means, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.lessons.modules import custom as modules_custom
from core.lessons.modules.custom import CustomParams
from tests.params_strategies import query_id, run_cpu

CASES = [CustomParams(), *modules_custom.CUSTOM.examples]


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_module_and_functional_agree_and_centered_has_mean_zero(p: CustomParams) -> None:
    r = run_cpu(modules_custom.run, p)
    assert r.functional_max_diff == 0.0
    assert r.module_state == ("0.weight", "0.bias")
    assert abs(r.centered_out_mean) <= 1e-6 * max(1.0, abs(r.centered_in_mean))


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_the_data_version_computes_the_same_but_gets_no_gradient(p: CustomParams) -> None:
    r = run_cpu(modules_custom.run, p)
    assert r.same_forward_diff == 0.0
    assert r.data_grads == ("None", "None") and not r.data_changed
    assert r.right_changed and all(norm >= 0 for norm in r.right_grad_norms)
    assert modules_custom.DATA_GRAD.answer(r) == "None"


def test_the_right_gradients_match_autograd_on_a_copy_written_here() -> None:
    p = CustomParams(in_units=7, units=3, batch=5, seed=11)
    r = run_cpu(modules_custom.run, p)
    # Replay the draws: X, the Linear's weight and bias (uniform), then MyLinear's weight and bias (normal), then the head.
    g = torch.Generator().manual_seed(p.seed)
    X = torch.randn(p.batch, p.in_units, generator=g)
    bound = 1 / p.in_units**0.5
    torch.empty(p.units, p.in_units).uniform_(-bound, bound, generator=g)
    torch.empty(p.units).uniform_(-bound, bound, generator=g)
    W = torch.randn(p.in_units, p.units, generator=g).requires_grad_()
    b = torch.randn(p.units, generator=g).requires_grad_()
    head_bound = 1 / p.units**0.5
    head_w = torch.empty(1, p.units).uniform_(-head_bound, head_bound, generator=g)
    head_b = torch.empty(1).uniform_(-head_bound, head_bound, generator=g)
    F.linear(F.relu(X @ W + b), head_w, head_b).sum().backward()
    assert W.grad is not None and b.grad is not None
    assert r.right_grad_norms == pytest.approx((W.grad.norm().item(), b.grad.norm().item()), rel=1e-5)


def test_the_notes_slips_raise_torchs_attribute_errors() -> None:
    r = run_cpu(modules_custom.run, CustomParams())
    assert r.typo_error == "'Net' object has no attribute 'layer1'"
    assert r.buffers_error == "'Sequential' object has no attribute '_all_buffers'"
    assert not hasattr(nn.Module(), "_all_buffers")
