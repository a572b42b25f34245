"""The modules lesson's `mod_hooks` against hooks recorded here on a network built independently."""

from __future__ import annotations

import itertools
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from core.lessons.modules import hooks as modules_hooks
from core.lessons.modules.hooks import HOOK_KINDS, LAYERS, HooksParams
from core.params import InvalidParams
from tests.params_strategies import query_id, run_cpu


def recorded(p: HooksParams) -> list[tuple[int, str, str, str]]:
    """Return (step, kind, layer, shape text) of every hook call, from hooks written here on a fresh network."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[p.activation]
    net = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(8, p.width), act1=act(), fc2=nn.Linear(p.width, p.width), act2=act(), fc3=nn.Linear(p.width, 2)
        )
    )
    X, y = torch.randn(p.batch, 8), torch.randn(p.batch, 2)
    calls: list[tuple[int, str, str, str]] = []
    step = [1]

    def text(x: Any) -> str:
        return "None" if x is None else str(tuple(x.shape))

    handles: dict[str, list[Any]] = {}
    for layer in [name for name in LAYERS if name in p.layers]:
        m = net.get_submodule(layer)
        handles[layer] = []
        for kind in [k for k in HOOK_KINDS if k in p.kinds]:
            if kind == "forward_pre":
                h = m.register_forward_pre_hook(lambda mod, a, L=layer: calls.append((step[0], "forward_pre", L, text(a[0]))))
            elif kind == "forward":
                h = m.register_forward_hook(lambda mod, a, out, L=layer: calls.append((step[0], "forward", L, text(out))))
            else:
                h = m.register_full_backward_hook(
                    lambda mod, gi, go, L=layer: calls.append((step[0], "backward", L, text(gi[0])))
                )
            handles[layer].append(h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ((net(X) - y) ** 2).mean().backward()
        for h in handles.get(p.remove, []):
            h.remove()
        step[0] = 2
        ((net(X) - y) ** 2).mean().backward()
    return calls


CASES = [
    HooksParams(),
    *modules_hooks.HOOKS.examples,
    HooksParams(layers=("act2", "fc2"), kinds=("backward", "forward"), remove="act2", width=256, batch=3),
]


@pytest.mark.parametrize("p", CASES, ids=query_id)
def test_the_calls_match_a_recorded_real_run(p: HooksParams) -> None:
    r = run_cpu(modules_hooks.run, p)
    expected = recorded(p)
    assert list(zip(r.runs, r.kinds, r.layers, strict=True)) == [(s, k, layer) for s, k, layer, _ in expected]
    for seen, (_, kind, _, shape) in zip(r.seen, expected, strict=True):
        if kind == "forward":
            assert seen.endswith(f"out {shape}")
        elif kind == "backward":
            assert seen.startswith(f"grad_input ({shape},)")
        else:
            assert seen == f"in ({shape},)"


def test_removed_hooks_do_not_fire_in_step_2() -> None:
    for remove in LAYERS:
        r = run_cpu(modules_hooks.run, HooksParams(layers=LAYERS, remove=remove, width=4, batch=2))
        step2 = {layer for s, layer in zip(r.runs, r.layers, strict=True) if s == 2}
        assert remove not in step2 and step2 == set(LAYERS) - {remove}
        assert r.removed == len(HOOK_KINDS)


def test_the_forward_hooks_capture_the_real_activations() -> None:
    r = run_cpu(modules_hooks.run, HooksParams(layers=LAYERS, kinds=("forward",), batch=256, width=64))
    assert r.hist_layers == LAYERS
    for layer, counts in zip(r.hist_layers, r.hist_counts, strict=True):
        assert counts.sum() == 256 * (2 if layer == "fc3" else 64)
    relu_edges = r.hist_edges[LAYERS.index("act1")]
    assert relu_edges[0] == 0.0  # ReLU's outputs: nothing below 0, a pile at 0
    assert r.hist_counts[LAYERS.index("act1")][0] > np.median(r.hist_counts[LAYERS.index("act1")])


def test_backward_goes_from_the_last_layer_first() -> None:
    for layers in itertools.permutations(("fc1", "fc2", "fc3")):
        r = run_cpu(modules_hooks.run, HooksParams(layers=layers, kinds=("backward",), width=4, batch=2))
        assert [layer for s, layer in zip(r.runs, r.layers, strict=True) if s == 1] == ["fc3", "fc2", "fc1"]


def test_an_empty_choice_is_refused() -> None:
    with pytest.raises(InvalidParams):
        HooksParams(layers=()).validate()
    with pytest.raises(InvalidParams):
        HooksParams(kinds=()).validate()


def test_the_prediction_counts_the_calls_left_after_the_removal() -> None:
    r = run_cpu(modules_hooks.run, modules_hooks.STEP2_CALLS.params)
    expected = [(s, k, layer) for s, k, layer, _ in recorded(modules_hooks.STEP2_CALLS.params) if s == 2]
    assert modules_hooks.STEP2_CALLS.answer(r) == str(len(expected)) == "3"
