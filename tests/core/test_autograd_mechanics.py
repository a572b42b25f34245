"""The Autograd lesson's mechanics against theory or an independent computation written here, in the test."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from core.lessons.autograd import accumulate as autograd_accumulate
from core.lessons.autograd import custom as autograd_custom
from core.lessons.autograd import detach as autograd_detach
from core.lessons.autograd import higher as autograd_higher
from core.lessons.autograd import hooks as autograd_hooks
from core.lessons.autograd import nograd as autograd_nograd
from core.lessons.autograd import retain as autograd_retain
from core.lessons.autograd.accumulate import AccumulateParams
from core.lessons.autograd.custom import CustomParams
from core.lessons.autograd.detach import DetachParams
from core.lessons.autograd.higher import HIGHER_FNS, HigherParams
from core.lessons.autograd.hooks import HOOK_IN, HOOK_OUT, HooksParams
from core.lessons.autograd.nograd import GRAD_MODES, NogradParams
from core.lessons.autograd.retain import RetainParams
from core.params import InvalidParams, Params, ladder_values
from core.runner import execute

CPU = torch.device("cpu")  # the independent computations use CPU generators


def run(run_fn: Callable[[Any, Any], Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(run_fn, params, device=CPU)


def query_id(p: Params) -> str:
    return f"{type(p).__name__}-" + "&".join(f"{k[2:]}={v}" for k, v in p.to_query("p").items())


# --------------------------------------------------------------------------------------------
# 1. Gradients accumulate: y = (x + w)(w + 1), so dy/dx = w + 1 and dy/dw = x + 2w + 1


ACCUMULATE_CASES = [
    AccumulateParams(),
    AccumulateParams(k=7, x=-3.5, w=2.5),
    AccumulateParams(k=5, zero_grad=True, x=0.5, w=-4.0),
    AccumulateParams(k=1, x=10.0, w=-10.0),
    AccumulateParams(k=20, zero_grad=True),
]


def test_accumulate_default_matches_the_curriculum() -> None:
    result = run(autograd_accumulate.run, AccumulateParams(k=1))
    assert (result.x_grad_once, result.w_grad_once) == (2.0, 5.0)
    assert result.y == 6.0


@pytest.mark.parametrize("p", ACCUMULATE_CASES, ids=query_id)
def test_accumulated_gradients_grow_by_one_gradient_per_call(p: AccumulateParams) -> None:
    result = run(autograd_accumulate.run, p)
    dx, dw = p.w + 1, p.x + 2 * p.w + 1
    calls = np.arange(1, p.k + 1)
    times = np.ones(p.k) if p.zero_grad else calls
    np.testing.assert_array_equal(result.calls, calls)
    np.testing.assert_allclose(result.x_grad, times * dx, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(result.w_grad, times * dw, rtol=1e-6, atol=1e-5)
    assert result.x_grad_once == pytest.approx(dx, rel=1e-6, abs=1e-6)
    assert result.w_grad_once == pytest.approx(dw, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(result.x_grad_expected, result.x_grad, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(result.w_grad_expected, result.w_grad, rtol=1e-6, atol=1e-5)
    assert result.y == pytest.approx((p.x + p.w) * (p.w + 1), rel=1e-6, abs=1e-5)


# --------------------------------------------------------------------------------------------
# 2. retain_graph


SECOND_TIME = "backward through the graph a second time"


@pytest.mark.parametrize(("x", "w"), [(2.0, 1.0), (-3.0, 4.5)])
def test_second_backward_without_retain_graph_raises_torchs_error(x: float, w: float) -> None:
    result = run(autograd_retain.run, RetainParams(retain_graph=False, x=x, w=w))
    assert result.torch_error is not None and SECOND_TIME in result.torch_error
    assert result.x_grad_second is None and result.w_grad_second is None
    assert (result.x_grad_first, result.w_grad_first) == pytest.approx((w + 1, x + 2 * w + 1))
    # The same error, raised here by a graph built differently (autograd.grad frees it too).
    leaf = torch.tensor(x, requires_grad=True)
    z = (leaf + w) * (leaf * 0 + w + 1)
    torch.autograd.grad(z, leaf)
    with pytest.raises(RuntimeError, match=SECOND_TIME):
        torch.autograd.grad(z, leaf)


@pytest.mark.parametrize(("x", "w"), [(2.0, 1.0), (-3.0, 4.5), (0.0, -1.0)])
def test_retained_graph_gives_twice_the_gradient(x: float, w: float) -> None:
    result = run(autograd_retain.run, RetainParams(retain_graph=True, x=x, w=w))
    assert result.torch_error is None
    assert (result.x_grad_first, result.w_grad_first) == pytest.approx((w + 1, x + 2 * w + 1))
    assert result.x_grad_second == pytest.approx(2 * result.x_grad_first)
    assert result.w_grad_second == pytest.approx(2 * result.w_grad_first)


# --------------------------------------------------------------------------------------------
# 3. detach vs .data


DETACH_CASES = [
    DetachParams(),
    DetachParams(way="detach"),
    DetachParams(values="linspace", n=8),
    DetachParams(way="detach", values="linspace", n=1),
    DetachParams(values="arange", n=8),
]


def true_sigmoid_grad(a: np.ndarray) -> np.ndarray:
    """Return d/da sum(sigmoid(a)), by autograd on an untouched graph."""
    leaf = torch.from_numpy(a.astype(np.float64)).requires_grad_()  # float32 would lose 1 - s for large a
    leaf.sigmoid().sum().backward()
    assert leaf.grad is not None
    return leaf.grad.numpy()


@pytest.mark.parametrize("p", DETACH_CASES, ids=query_id)
def test_data_is_silently_wrong_and_detach_raises(p: DetachParams) -> None:
    result = run(autograd_detach.run, p)
    expected_a = np.arange(1, p.n + 1) if p.values == "arange" else np.linspace(-2, 2, p.n)
    np.testing.assert_allclose(result.a, expected_a, atol=1e-6)
    np.testing.assert_allclose(result.out, 1 / (1 + np.exp(-expected_a)), rtol=1e-6)
    np.testing.assert_allclose(result.true_grad, true_sigmoid_grad(result.a), rtol=1e-6)
    # .data: no error, all-zero gradient, which is wrong (sigmoid' > 0 everywhere).
    assert result.data.torch_error is None and result.data.grad is not None
    np.testing.assert_array_equal(result.data.grad, np.zeros(p.n))
    assert np.all(result.true_grad > 0) and not np.allclose(result.data.grad, result.true_grad)
    # detach: autograd notices the in-place change and refuses.
    assert result.detach.grad is None
    assert result.detach.torch_error is not None and "inplace" in result.detach.torch_error
    # Both ways wrote zeros into out's memory; only detach's c shares out's version counter.
    for way in (result.data, result.detach):
        np.testing.assert_array_equal(way.out_after, np.zeros(p.n))
        assert way.out_version_before == 0 and way.c_version_after == 1
    assert result.data.out_version_after == 0
    assert result.detach.out_version_after == 1
    assert result.torch_error == result.chosen(p.way).torch_error
    assert result.chosen("data") is result.data and result.chosen("detach") is result.detach
    assert result.op == "sigmoid" and result.saved == ("result = out",)  # sigmoid saved its output


POW_CASES = [DetachParams(op="pow"), DetachParams(op="pow", way="detach", values="linspace", n=8)]


@pytest.mark.parametrize("p", POW_CASES, ids=query_id)
def test_pow_saves_its_input_so_zeroing_its_output_is_harmless_both_ways(p: DetachParams) -> None:
    result = run(autograd_detach.run, p)
    a = result.a.astype(np.float64)
    np.testing.assert_allclose(result.out, a**2, rtol=1e-6)
    # The true gradient by autograd on an untouched float64 graph: d/da sum(a ** 2) = 2a.
    leaf = torch.from_numpy(a).requires_grad_()
    (leaf**2).sum().backward()
    assert leaf.grad is not None
    np.testing.assert_allclose(result.true_grad, leaf.grad.numpy(), rtol=1e-12)
    # What pow's grad_fn saved, as torch reports it: its input and the exponent, not its output.
    assert result.saved == ("exponent = 2", "self = a")
    for way in (result.data, result.detach):
        assert way.torch_error is None and way.grad is not None
        np.testing.assert_allclose(way.grad, 2 * a, rtol=1e-6)  # the right gradient, although out is all zeros
        np.testing.assert_array_equal(way.out_after, np.zeros(p.n))
    # detach() still moved out's version counter: the check is skipped because out was not saved.
    assert result.data.out_version_after == 0 and result.detach.out_version_after == 1
    assert result.torch_error is None


SIN_CASES = [DetachParams(op="sin"), DetachParams(op="sin", way="detach", values="linspace", n=8)]


@pytest.mark.parametrize("p", SIN_CASES, ids=query_id)
def test_sin_saves_its_input_so_zeroing_its_output_is_harmless_both_ways(p: DetachParams) -> None:
    result = run(autograd_detach.run, p)
    a = result.a.astype(np.float64)
    np.testing.assert_allclose(result.out, np.sin(a), rtol=1e-6, atol=1e-7)
    # The true gradient by autograd on an untouched float64 graph: d/da sum(sin(a)) = cos(a).
    leaf = torch.from_numpy(a).requires_grad_()
    leaf.sin().sum().backward()
    assert leaf.grad is not None
    np.testing.assert_allclose(result.true_grad, leaf.grad.numpy(), rtol=1e-12)
    assert result.saved == ("self = a",)  # cos(a) cannot be had from sin(a): sin keeps its input
    for way in (result.data, result.detach):
        assert way.torch_error is None and way.grad is not None
        np.testing.assert_allclose(way.grad, np.cos(a), rtol=1e-5, atol=1e-6)  # right, although out is all zeros
        np.testing.assert_array_equal(way.out_after, np.zeros(p.n))
    assert result.data.out_version_after == 0 and result.detach.out_version_after == 1
    assert result.torch_error is None


EXP_CASES = [DetachParams(op="exp"), DetachParams(op="exp", way="detach", values="linspace", n=8)]


@pytest.mark.parametrize("p", EXP_CASES, ids=query_id)
def test_exp_saves_its_output_so_data_is_silently_wrong_and_detach_raises(p: DetachParams) -> None:
    result = run(autograd_detach.run, p)
    a = result.a.astype(np.float64)
    np.testing.assert_allclose(result.out, np.exp(a), rtol=1e-6)
    # The true gradient by autograd on an untouched float64 graph: d/da sum(exp(a)) = exp(a).
    leaf = torch.from_numpy(a).requires_grad_()
    leaf.exp().sum().backward()
    assert leaf.grad is not None
    np.testing.assert_allclose(result.true_grad, leaf.grad.numpy(), rtol=1e-12)
    assert result.saved == ("result = out",)  # exp(a) is out itself: exp keeps its output, as sigmoid does
    # .data: grad_out * saved out = 1 * 0 everywhere, silently; detach(): the shared version counter moved.
    assert result.data.torch_error is None and result.data.grad is not None
    np.testing.assert_array_equal(result.data.grad, np.zeros(p.n))
    assert result.detach.grad is None
    assert result.detach.torch_error is not None and "inplace" in result.detach.torch_error
    assert result.data.out_version_after == 0 and result.detach.out_version_after == 1
    assert result.torch_error == result.chosen(p.way).torch_error


def test_saved_for_backward_names_what_grad_fn_keeps() -> None:
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0, 4.0], requires_grad=True)
    out = a * b  # MulBackward0 saves both inputs
    assert autograd_detach.saved_for_backward(out, {"out": out, "a": a, "b": b}) == ("other = b", "self = a")
    out = a.exp()  # ExpBackward0 saves its result
    assert autograd_detach.saved_for_backward(out, {"out": out, "a": a}) == ("result = out",)


# --------------------------------------------------------------------------------------------
# 4. no_grad, inference_mode, requires_grad_(False)


NOGRAD_CASES = [
    NogradParams(),
    NogradParams(width=8, depth=1, batch=1, seed=3),
    NogradParams(width=40, depth=5, batch=7, seed=11),
    NogradParams(width=128, depth=8, batch=512, seed=2),
]


def saved_storages(output: torch.Tensor) -> dict[int, int]:
    """Return {storage pointer: bytes} of every tensor the graph saved, read from the nodes' _saved_* attributes."""
    storages: dict[int, int] = {}
    seen: list[Any] = []
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or any(node is other for other in seen):
            continue
        seen.append(node)
        for name in dir(node):
            value = getattr(node, name) if name.startswith("_saved_") else None
            if isinstance(value, torch.Tensor):
                storages[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
        stack.extend(child for child, _ in node.next_functions)
    return storages


def functional_mlp(p: NogradParams) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Return the experiment's weights and input, drawn here in the same order from a fresh generator."""
    g = torch.Generator().manual_seed(p.seed)
    bound = p.width**-0.5
    layers = []
    for _ in range(p.depth):
        weight = torch.rand(p.width, p.width, generator=g) * (2 * bound) - bound
        bias = torch.rand(p.width, generator=g) * (2 * bound) - bound
        layers.append((weight, bias))
    return layers, torch.randn(p.batch, p.width, generator=g)


@pytest.mark.parametrize("p", NOGRAD_CASES, ids=query_id)
def test_only_grad_mode_builds_a_graph_and_saves_tensors(p: NogradParams) -> None:
    result = run(autograd_nograd.run, p)
    assert result.modes == GRAD_MODES == ("grad", "no_grad", "inference_mode", "frozen")
    # Per layer: AddmmBackward0, TBackward0, ReluBackward0 and AccumulateGrad for weight and bias.
    np.testing.assert_array_equal(result.graph_nodes, [5 * p.depth, 0, 0, 0])
    np.testing.assert_array_equal(result.requires_grad, [True, False, False, False])
    np.testing.assert_array_equal(result.saved_bytes[1:], [0, 0, 0])
    np.testing.assert_array_equal(result.saved_tensors[1:], [0, 0, 0])
    assert result.saved_bytes[0] > 0
    # Each saved activation (the input, every ReLU output) once; a weight is saved (as W.t()) only where
    # its input needs a gradient, i.e. every layer but the first, and that is parameter memory.
    activations = 4 * (p.depth + 1) * p.batch * p.width
    weights = 4 * (p.depth - 1) * p.width * p.width
    assert result.saved_bytes[0] == activations + weights
    assert result.saved_weight_bytes[0] == weights
    # What the chart shows: only the activations are new memory; a saved weight is the parameter itself.
    np.testing.assert_array_equal(result.kept_bytes, [activations, 0, 0, 0])
    # ReLU saves its output, addmm its input (and W.t() from layer 2 on): 2 + 3 * (depth - 1) tensors.
    assert result.saved_tensors[0] == 2 + 3 * (p.depth - 1)
    assert result.weight_bytes == 4 * p.depth * (p.width * p.width + p.width)
    assert result.activation_bytes == 4 * p.batch * p.width
    np.testing.assert_array_equal(result.max_abs_diff, np.zeros(len(GRAD_MODES)))


@pytest.mark.parametrize("p", NOGRAD_CASES[:3], ids=query_id)
def test_saved_bytes_equal_what_the_graph_holds(p: NogradParams) -> None:
    result = run(autograd_nograd.run, p)
    layers, X = functional_mlp(p)
    h = X
    params = []
    for weight, bias in layers:
        weight.requires_grad_()
        bias.requires_grad_()
        params += [weight, bias]
        h = torch.relu(torch.nn.functional.linear(h, weight, bias))
    storages = saved_storages(h)
    param_ptrs = {q.untyped_storage().data_ptr() for q in params}
    assert result.saved_bytes[0] == sum(storages.values())
    assert result.saved_weight_bytes[0] == sum(n for ptr, n in storages.items() if ptr in param_ptrs)
    assert result.output_sum == pytest.approx(h.detach().sum().item(), rel=1e-5)


def test_graph_nodes_count_shared_nodes_once() -> None:
    x = torch.tensor(1.0, requires_grad=True)
    u = x * 2  # used twice below: one MulBackward0, reached along two paths
    y = u * u + u
    # AddBackward0, MulBackward0 (u * u), MulBackward0 (x * 2), AccumulateGrad(x)
    assert autograd_nograd.count_graph_nodes(y) == 4
    assert autograd_nograd.count_graph_nodes(x) == 0 and autograd_nograd.count_graph_nodes(x.detach()) == 0


# --------------------------------------------------------------------------------------------
# 5. Hooks and autograd.grad


HOOKS_CASES = [HooksParams(), HooksParams(scale=-1.5, seed=7), HooksParams(scale=0.0, seed=1), HooksParams(scale=5.0, seed=99)]


@pytest.mark.parametrize("p", HOOKS_CASES, ids=query_id)
def test_hooks_scale_capture_and_autograd_grad(p: HooksParams) -> None:
    result = run(autograd_hooks.run, p)
    x, W, b = (v.astype(np.float64) for v in (result.x, result.weight, result.bias))
    assert W.shape == (HOOK_OUT, HOOK_IN) and x.shape == (HOOK_IN,)
    h = W @ x + b
    # y = sum((Wx + b)^2)  =>  dy/dx = 2 W^T (Wx + b)
    np.testing.assert_allclose(result.grad_plain, 2 * W.T @ h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.grad_hooked, p.scale * result.grad_plain, rtol=1e-6, atol=1e-6)
    assert result.y == pytest.approx(float(h @ h), rel=1e-5)
    np.testing.assert_allclose(result.activation, h, rtol=1e-5, atol=1e-6)
    assert result.activation_shape == (HOOK_OUT,)
    assert result.activation_mean == pytest.approx(h.mean(), rel=1e-5, abs=1e-6)
    assert result.activation_std == pytest.approx(h.std(ddof=1), rel=1e-5)
    np.testing.assert_allclose(result.autograd_grad, result.grad_plain, rtol=1e-6, atol=1e-7)
    assert result.x_grad_none_after_autograd_grad is True


# --------------------------------------------------------------------------------------------
# 6. Higher derivatives


def analytic(fn: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return f, f', f'' written differently from the module (cosh, sinh, polynomials in s)."""
    if fn == "sin":
        return np.sin(x), np.sin(x + np.pi / 2), np.sin(x + np.pi)
    if fn == "tanh":
        return np.tanh(x), 1 / np.cosh(x) ** 2, -2 * np.sinh(x) / np.cosh(x) ** 3
    if fn == "sigmoid":
        s = np.exp(-np.logaddexp(0, -x))
        return s, s - s**2, s - 3 * s**2 + 2 * s**3
    if fn == "cube":
        return x * x * x, 3 * x * x, 6 * x
    g = np.exp(-x * x)
    return g, -2 * x * g, 4 * x * x * g - 2 * g


HIGHER_CASES = [
    *[HigherParams(fn=fn) for fn in HIGHER_FNS],
    HigherParams(fn="cube", lo=-10.0, hi=10.0, points=400),
    HigherParams(fn="sigmoid", lo=-10.0, hi=-9.5, points=8),
    HigherParams(fn="gauss", lo=0.5, hi=3.0, points=17),
    HigherParams(fn="tanh", lo=-10.0, hi=10.0, points=57),
]


@pytest.mark.parametrize("p", HIGHER_CASES, ids=query_id)
def test_second_derivatives_match_the_analytic_ones(p: HigherParams) -> None:
    result = run(autograd_higher.run, p)
    x = np.linspace(p.lo, p.hi, p.points)
    np.testing.assert_allclose(result.x, x, atol=1e-12)
    f, d1, d2 = analytic(p.fn, result.x)
    np.testing.assert_allclose(result.f, f, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.d1, d1, atol=1e-5)
    np.testing.assert_allclose(result.d2, d2, atol=1e-5)
    np.testing.assert_allclose(result.d1_exact, d1, atol=1e-9)
    np.testing.assert_allclose(result.d2_exact, d2, atol=1e-9)
    assert result.d1_max_error == pytest.approx(float(np.abs(result.d1 - result.d1_exact).max()), abs=0)
    assert result.d2_max_error == pytest.approx(float(np.abs(result.d2 - result.d2_exact).max()), abs=0)
    assert result.d1_max_error < 1e-9 and result.d2_max_error < 1e-9


@pytest.mark.parametrize("fn", HIGHER_FNS)
def test_first_derivative_agrees_with_finite_differences(fn: str) -> None:
    result = run(autograd_higher.run, HigherParams(fn=fn, lo=-2.0, hi=2.0, points=41))
    h = 1e-5
    f_plus, _, _ = analytic(fn, result.x + h)
    f_minus, _, _ = analytic(fn, result.x - h)
    np.testing.assert_allclose(result.d1, (f_plus - f_minus) / (2 * h), atol=1e-6)


@pytest.mark.parametrize(("lo", "hi"), [(1.0, 1.0), (4.0, -4.0), (10.0, -10.0)])
def test_higher_refuses_an_empty_range(lo: float, hi: float) -> None:
    with pytest.raises(InvalidParams) as e:
        run(autograd_higher.run, HigherParams(lo=lo, hi=hi))
    assert (e.value.field, e.value.key, e.value.info) == ("hi", "must_exceed", {"other": lo})


# --------------------------------------------------------------------------------------------
# 7. Custom autograd.Function


CUSTOM_CASES = [CustomParams(), CustomParams(w=-1.5, x=4.0, b=-2.0, seed=5), CustomParams(w=0.0, x=0.0, b=0.0, seed=9)]


@pytest.mark.parametrize("p", CUSTOM_CASES, ids=query_id)
def test_multiply_add_matches_plain_torch_and_passes_gradcheck(p: CustomParams) -> None:
    result = run(autograd_custom.run, p)
    assert result.z == pytest.approx(p.w * p.x + p.b, abs=1e-6)
    np.testing.assert_allclose(result.torch_grads, [p.x, p.w, 1.0], atol=1e-6)
    np.testing.assert_allclose(result.custom_grads, result.torch_grads, atol=1e-6)
    assert result.gradcheck_ok is True and result.torch_error is None


@pytest.mark.parametrize("p", [CustomParams(broken=True), CustomParams(broken=True, w=1.0, x=1.0, seed=4)], ids=query_id)
def test_gradcheck_catches_the_broken_backward(p: CustomParams) -> None:
    result = run(autograd_custom.run, p)
    assert result.gradcheck_ok is False
    assert result.torch_error is not None and "Jacobian mismatch" in result.torch_error
    np.testing.assert_allclose(result.torch_grads, [p.x, p.w, 1.0], atol=1e-6)
    np.testing.assert_allclose(result.custom_grads, [p.w, p.x, 1.0], atol=1e-6)  # x and w swapped
    # With x == w the swap is invisible on the student's numbers: only gradcheck's random inputs show it.
    assert np.array_equal(result.custom_grads, result.torch_grads) == (p.x == p.w)


def test_gradcheck_verdicts_hold_on_other_inputs() -> None:
    g = torch.Generator().manual_seed(123)
    inputs = tuple(torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    assert torch.autograd.gradcheck(autograd_custom.MultiplyAdd.apply, inputs)
    assert not torch.autograd.gradcheck(autograd_custom.BrokenMultiplyAdd.apply, inputs, raise_exception=False)


# --------------------------------------------------------------------------------------------
# The seed, the sliders' ladders, and the predictions


def test_the_seed_changes_the_random_experiments() -> None:
    assert (
        run(autograd_nograd.run, NogradParams(seed=1)).output_sum != run(autograd_nograd.run, NogradParams(seed=2)).output_sum
    )
    assert not np.array_equal(run(autograd_hooks.run, HooksParams(seed=1)).x, run(autograd_hooks.run, HooksParams(seed=2)).x)


@pytest.mark.parametrize(("name", "lo", "hi", "default"), [("width", 8, 1024, 256), ("batch", 1, 512, 64)])
def test_nograd_sizes_are_power_of_two_sliders_that_still_take_any_size(name: str, lo: int, hi: int, default: int) -> None:
    spec = next(s for s in NogradParams.specs() if s.name == name)
    stops = spec.meta["ladder"]
    assert stops == ladder_values(lo, hi) and stops[0] == lo and stops[-1] == hi
    assert all(b == 2 * a for a, b in itertools.pairwise(stops))
    assert default in stops and getattr(NogradParams(), name) == default
    # A link made before the ladder (width=300) still works; out-of-range values are still refused.
    p, rejected = NogradParams.from_query({f"nograd.{name}": "300" if hi > 300 else "100"}, "nograd")
    assert rejected == [] and getattr(p, name) in (300, 100)
    for bad in (lo - 1, hi + 1):
        with pytest.raises(InvalidParams):
            NogradParams(**{name: bad}).validate()  # type: ignore[arg-type]


def test_three_calls_prediction_is_six() -> None:
    # Each call adds dy/dx = w + 1 = 2 into x.grad: 2 + 2 + 2.
    prediction = autograd_accumulate.THREE_CALLS
    assert prediction.params == AccumulateParams(k=3)
    assert prediction.answer(run(autograd_accumulate.run, prediction.params)) == "6"


def test_detach_prediction_asks_about_exp_which_the_page_does_not_show_by_default() -> None:
    # exp saves its output, as the default sigmoid does, so detach() raises; the prose's a ** 2 saves its input and does not.
    prediction = autograd_detach.EXP_DETACH
    assert prediction.params.op == "exp" != DetachParams().op and prediction.params.way == "detach"
    assert prediction.name == "detach_exp"
    assert prediction.answer(run(autograd_detach.run, prediction.params)) == "error"
    assert prediction.answer(run(autograd_detach.run, DetachParams(op="pow", way="detach"))) == "right"
    assert set(prediction.options) == {"error", "right", "wrong"}


def test_detach_outcome_would_say_wrong_for_a_gradient_that_is_not_the_true_one() -> None:
    r = run(autograd_detach.run, DetachParams(op="exp", way="detach"))
    silently_wrong = dataclasses.replace(r, detach=r.data)  # .data's all-zero gradient, no error
    assert autograd_detach.detach_outcome(silently_wrong) == "wrong"


def test_which_raises_prediction_asks_about_sin_which_the_page_does_not_show_by_default() -> None:
    # sin saves its input, so neither way raises; at the page's default (sigmoid, which saves its output) detach() does.
    prediction = autograd_detach.WHICH_RAISES
    assert prediction.params.op == "sin" != DetachParams().op
    assert prediction.answer(run(autograd_detach.run, prediction.params)) == "both_or_neither"
    assert prediction.answer(run(autograd_detach.run, DetachParams())) == ".detach()"
    assert set(prediction.options) == {".data", ".detach()", "both_or_neither"}
