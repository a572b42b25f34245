"""Checkpoints: the "module." prefix and map_location, as torch itself reports them."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from core.lessons.devices import checkpoint as devices_checkpoint
from core.lessons.devices.checkpoint import CHECKPOINT, STRIPS, CkptParams, CkptResult
from core.params import InvalidParams
from core.runner import execute
from tests.params_strategies import query_id

CPU = torch.device("cpu")
CUDA_AVAILABLE = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs CUDA")

VALID_CKPT = [
    CkptParams(wrap=wrap, strip=strip, map_location=where)
    for wrap in (True, False)
    for strip in STRIPS
    for where in ("cpu", "same")
    if wrap or strip != "save_module"
]


def run(p: CkptParams, device: torch.device = CPU) -> CkptResult:
    """Run the experiment through the runner (on the CPU unless told)."""
    return execute(CHECKPOINT.run, p, device=device)


def torch_report(saved_prefixed: bool, receiver_wrapped: bool) -> tuple[list[str], list[str], list[str]]:
    """Return (keys given, missing, unexpected) of loading such a state_dict, asked of torch here."""

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    source = model()
    state = (nn.DataParallel(source) if saved_prefixed else source).state_dict()
    receiver = nn.DataParallel(model()) if receiver_wrapped else model()
    report = receiver.load_state_dict(state, strict=False)
    return list(state), report.missing_keys, report.unexpected_keys


@pytest.mark.parametrize("p", VALID_CKPT, ids=query_id)
def test_checkpoint_keys_and_load_report_are_torchs(p: CkptParams) -> None:
    r = run(p)
    saved_prefixed = p.wrap and p.strip != "save_module"
    given_prefixed = saved_prefixed and p.strip != "consume_prefix"
    receiver_wrapped = p.strip == "load_into_module"
    saved_keys, _, _ = torch_report(saved_prefixed, False)
    given_keys, missing, unexpected = torch_report(given_prefixed, receiver_wrapped)
    assert list(r.saved_keys) == saved_keys and list(r.fixed_keys) == given_keys
    assert (list(r.missing_keys), list(r.unexpected_keys)) == (missing, unexpected)
    assert r.model_keys == tuple(k.removeprefix("module.") for k in saved_keys)
    assert r.target_keys == tuple(("module." if receiver_wrapped else "") + k for k in r.model_keys)
    clean = given_prefixed == receiver_wrapped
    assert (r.strict_error is None) == clean and r.all_equal == clean and all(r.equal_per_key) == clean
    if not clean:
        assert r.strict_error is not None and "Missing key(s) in state_dict" in r.strict_error
        # What the load did not reach keeps the new model's own random values.
        assert not any(r.equal_per_key)
    assert r.saved_call == ("model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()")
    assert r.saved_shapes == ((8, 6), (8,), (8,), (8,), (8,), (8,), (), (3, 8), (3,))
    if not CUDA_AVAILABLE:
        assert set(r.saved_devices) == set(r.loaded_devices) == {"cpu"}
        assert r.dp_device_ids == ()
    assert r.wrapper_matches is (True if p.wrap else None)


def test_the_predictions_ask_about_cases_the_page_does_not_show_by_default() -> None:
    plain_load, non_strict = devices_checkpoint.PLAIN_LOAD, devices_checkpoint.NON_STRICT
    default = run(CkptParams())  # a wrapped checkpoint into a plain model: an error, and nothing loaded
    assert (plain_load.answer(default), non_strict.answer(default)) == ("keys", "none")
    # A plain checkpoint into a wrapper: the wrapper expects every key prefixed and none is, so strict=True raises.
    assert plain_load.params == CkptParams(wrap=False, strip="load_into_module")
    r = run(plain_load.params)
    assert all(k.startswith("module.") for k in r.target_keys) and not any(k.startswith("module.") for k in r.fixed_keys)
    assert plain_load.answer(r) == "keys" and not r.all_equal
    # A wrapped checkpoint into a wrapper, map_location=None, strict=False: every key matches, everything loads.
    assert non_strict.params == CkptParams(wrap=True, map_location="same", strip="load_into_module")
    r = run(non_strict.params)
    assert r.missing_keys == r.unexpected_keys == () and r.strict_error is None
    assert non_strict.answer(r) == "all" and r.all_equal


def test_batchnorm_does_not_report_its_missing_counter() -> None:
    # torch fills in a missing num_batches_tracked (old checkpoints lack it), so it is never "missing".
    r = run(CkptParams())
    assert "1.num_batches_tracked" not in r.missing_keys and "module.1.num_batches_tracked" in r.unexpected_keys
    assert len(r.missing_keys) == len(r.unexpected_keys) - 1


def test_checkpoint_file_size_is_torch_saves() -> None:
    for wrap in (True, False):
        source: nn.Module = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        buffer = io.BytesIO()
        torch.save((nn.DataParallel(source) if wrap else source).state_dict(), buffer)
        r = run(CkptParams(wrap=wrap))
        if not CUDA_AVAILABLE:
            assert r.file_bytes == buffer.getbuffer().nbytes
        assert r.file_bytes > 4 * (8 * 6 + 8 * 5 + 3 * 8 + 3)  # more than the float32 numbers: names, pickle, zip


def test_save_module_needs_a_wrapped_model() -> None:
    with pytest.raises(InvalidParams) as e:
        CkptParams(wrap=False, strip="save_module").validate()
    assert (e.value.field, e.value.key) == ("strip", "needs_wrap")


def test_the_seed_does_not_change_what_load_state_dict_says() -> None:
    assert run(CkptParams(seed=1)).strict_error == run(CkptParams(seed=2)).strict_error


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("where", ["cpu", "same"])
def test_saved_on_the_gpu_loaded_where_map_location_says(where: str) -> None:
    r = run(CkptParams(map_location=where, strip="consume_prefix"), torch.device("cuda"))
    assert all(d.startswith("cuda") for d in r.saved_devices)
    assert all(d == "cpu" for d in r.loaded_devices) if where == "cpu" else r.loaded_devices == r.saved_devices
    assert r.all_equal and r.wrapper_matches
