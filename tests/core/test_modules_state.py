"""The modules lesson's `mod_state` against load_state_dict and torch.load called here on nets built independently."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from core.lessons.modules import state as modules_state
from core.lessons.modules.state import CHANGES, PAYLOADS, StateParams
from tests.params_strategies import query_id, run_cpu


def net_of(names: list[str], widths: list[int]) -> nn.Sequential:
    """Return Linear layers named `names` with ReLUs between them, built here with add_module."""
    seq = nn.Sequential()
    for i, name in enumerate(names):
        if i:
            seq.add_module(f"act{i}", nn.ReLU())
        seq.add_module(name, nn.Linear(widths[i], widths[i + 1]))
    return seq


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("wrapped", [False, True])
def test_missing_and_unexpected_keys_are_torchs(change: str, wrapped: bool) -> None:
    p = StateParams(change=change, wrapped=wrapped, payload="state_dict")
    r = run_cpu(modules_state.run, p)
    source = net_of(["fc1", "fc2"], [4, p.hidden, 2]).state_dict()
    if wrapped:
        source = {f"module.{k}": v for k, v in source.items()}
    target = net_of(*modules_state.target_shape(p))
    assert r.saved_keys == tuple(source) and r.target_keys == tuple(target.state_dict())
    try:
        target.load_state_dict(source, strict=True)
        assert r.strict_error == ""
    except RuntimeError as e:
        assert r.strict_error and r.strict_error.startswith(str(e).splitlines()[0].strip())
    try:
        keys = target.load_state_dict(source, strict=False)
        assert (r.missing, r.unexpected) == (tuple(keys.missing_keys), tuple(keys.unexpected_keys))
        assert r.loose_error == ""
    except RuntimeError:
        assert r.loose_error and "size mismatch" in r.loose_error and not wrapped


@pytest.mark.parametrize("p", [StateParams(change=c) for c in CHANGES] + list(modules_state.STATE.examples), ids=query_id)
def test_the_round_trip_gives_equal_outputs_unless_the_prefix_is_in_the_way(p: StateParams) -> None:
    r = run_cpu(modules_state.run, p)
    if p.wrapped and not p.strip_prefix:
        assert "module.fc1.weight" in r.prefixed_error and r.roundtrip_max_diff != r.roundtrip_max_diff
    else:
        assert r.prefixed_error == "" and r.roundtrip_max_diff == 0.0


@pytest.mark.parametrize("payload", PAYLOADS)
def test_weights_only_refuses_exactly_what_torch_refuses(payload: str) -> None:
    r = run_cpu(modules_state.run, StateParams(payload=payload))
    net = net_of(["fc1", "fc2"], [4, 8, 2])
    obj = {
        "state_dict": net.state_dict(),
        "checkpoint": {"model": net.state_dict(), "epoch": 3},
        "whole_model": net,
        "numpy_array": {"mean": np.zeros(4)},
    }[payload]
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    refused = False
    try:
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    except pickle.UnpicklingError:
        refused = True
    assert bool(r.weights_only_error) == refused == (payload in ("whole_model", "numpy_array"))
    assert (
        r.loaded_type
        == {"state_dict": "OrderedDict", "checkpoint": "dict", "whole_model": "Sequential", "numpy_array": "dict"}[payload]
    )


def test_strict_false_does_not_forgive_a_shape_the_prediction() -> None:
    r = run_cpu(modules_state.run, modules_state.LOOSE_WIDER.params)
    assert modules_state.LOOSE_WIDER.answer(r) == "error"
    assert "size mismatch for fc1.weight" in r.loose_error


def test_stripping_the_prefix_gives_the_plain_keys() -> None:
    r = run_cpu(modules_state.run, StateParams(change="same", wrapped=True, strip_prefix=True))
    assert r.strict_error == "" and r.missing == () and r.unexpected == ()
