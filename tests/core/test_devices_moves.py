"""What .to/.cuda/.cpu return on a module and on a tensor, the device-mismatch error, and CUDA_VISIBLE_DEVICES.

Identities are checked against torch directly here (a second computation, not the run's own), the
renumbering rule against the cases CUDA documents, and the child process against the parent's own view
(on a GPU, gpu marker: its device count and names follow the rule).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.lessons.devices import moves, visible
from core.lessons.devices.moves import MovesParams
from core.lessons.devices.visible import VisibleParams
from core.runner import execute

CPU = torch.device("cpu")


@pytest.mark.parametrize("dtype", moves.DTYPES)
def test_a_module_moves_itself_and_a_tensor_gives_a_new_one_unless_nothing_changes(dtype: str) -> None:
    r = execute(moves.run_moves, MovesParams(dtype=dtype), device=CPU)
    m, t, target = nn.Linear(4, 2), torch.randn(3), moves.TORCH_DTYPES[dtype]
    w = m.weight
    assert r.module_same is (m.to(target) is m) is True
    assert r.param_same is (w is m.weight) is True and r.param_dtype == dtype == str(w.dtype).removeprefix("torch.")
    assert r.tensor_same is (t.to(target) is t) is (dtype == "float32")
    assert r.tensor_dtype == "float32" and r.new_dtype == dtype
    assert r.tensor_copy_same is False and r.tensor_cpu_same is True and r.module_cpu_same is True


def test_the_mismatch_error_names_both_devices_and_the_fix_runs() -> None:
    r = execute(moves.run_moves, MovesParams(), device=CPU)
    assert r.mismatch_devices == ("meta", "cpu")
    assert "meta" in r.mismatch_error and "cpu" in r.mismatch_error
    assert r.fixed_shape == (3, 2)
    assert r.gpu_only == ("module_cuda",) and r.module_cuda_same is None


def test_writing_into_the_result_of_to_changes_t_only_when_to_returned_t() -> None:
    for dtype in moves.DTYPES:
        r = execute(moves.run_moves, MovesParams(dtype=dtype), device=CPU)
        # The same writes, done here: t changes exactly when .to had nothing to convert.
        t = torch.randn(3)
        before = t.clone()
        t.to(moves.TORCH_DTYPES[dtype]).add_(1)
        assert r.t_written is (not torch.equal(t, before)) is (dtype == "float32") is r.tensor_same


def test_the_prediction_asks_what_follows_from_the_rule_at_a_dtype_the_page_does_not_show_by_default() -> None:
    prediction = moves.WRITE_AFTER_TO
    assert MovesParams().dtype != prediction.params.dtype == "float32"  # the question says "t is a float32 tensor"
    assert prediction.name == "write_after_to_float32"
    assert prediction.answer(execute(moves.run_moves, prediction.params, device=CPU)) == "t_changes"
    assert prediction.answer(execute(moves.run_moves, MovesParams(), device=CPU)) == "t_unchanged"  # the default table
    assert set(prediction.options) == {"t_changes", "t_unchanged"}


@pytest.mark.parametrize(
    "setting, physical, order",
    [
        ("unset", 4, (0, 1, 2, 3)),
        ("none", 4, ()),
        ("1", 4, (1,)),
        ("1,0", 4, (1, 0)),
        ("0,1", 1, (0,)),  # index 1 does not exist on a one-GPU server: it and what follows are hidden
        ("1,0", 1, ()),  # the first index is invalid: nothing is visible
        ("1", 1, ()),
    ],
)
def test_visible_order_follows_cudas_rule(setting: str, physical: int, order: tuple[int, ...]) -> None:
    assert visible.visible_order(setting, physical) == order


@pytest.mark.parametrize("setting", ["1", "none"])
def test_the_child_reports_what_the_rule_says_for_this_server(setting: str) -> None:
    r = execute(visible.run_visible, VisibleParams(visible=setting), device=CPU)
    assert r.env_value == ("" if setting == "none" else setting)
    # A CPU run: the server's process counts no GPU; the child sees what the rule leaves of the real GPUs.
    real = torch.cuda.device_count()
    assert r.child_count == len(visible.visible_order(setting, real))
    assert r.child_current is None if r.child_count == 0 else r.child_current == 0
    assert r.model_order == visible.visible_order(setting, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_module_and_tensor_rules_hold_and_the_child_is_renumbered() -> None:
    cuda = torch.device("cuda")
    r = execute(moves.run_moves, MovesParams(), device=cuda)
    assert r.module_cuda_same is True and r.weight_device is not None and r.weight_device.startswith("cuda")
    assert r.tensor_cuda_same is False and r.tensor_device == "cpu" and r.cuda_tensor_cuda_same is True
    assert r.mismatch_devices[0].startswith("cuda") and "cuda" in r.mismatch_error
    for setting in ("unset", "0", "1"):
        v = execute(visible.run_visible, VisibleParams(visible=setting), device=cuda)
        assert v.child_count == len(v.child_order)
        assert v.child_names == tuple(v.parent_names[j] for j in v.child_order)
        assert v.child_current == (0 if v.child_count else None)
