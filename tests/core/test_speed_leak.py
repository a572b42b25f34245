"""Memory that does not come back (speed lesson, `leak`): the bytes graphs hold and the nodes they chain, against theory.

One step's graph saves X, both ReLU outputs, the output and the target: counted here a second way, with
core.measure.saved_activation_bytes on one forward pass. `total_loss += loss` holds k of them after k steps
in a loop without backward, none with backward (backward frees them); loss.item() and loss.detach() hold only
the step whose `loss` is still named. The nodes reachable from the total are counted by torch's own graph
(every node's next_functions) against the count of the ops of one step. On CUDA (gpu marker) the allocator's
counters follow: allocated grows by at least one step's graph per step, and empty_cache gives reserved back.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.experiment import RunContext
from core.lessons.speed import leak
from core.lessons.speed.leak import LeakParams, LeakResult
from core.measure import saved_activation_bytes
from core.runner import execute

CPU = torch.device("cpu")
TENSOR, ITEM, DETACH = (leak.WAYS.index(way) for way in ("tensor", "item", "detach"))


def run_on(p: LeakParams, device: torch.device = CPU) -> LeakResult:
    return execute(leak.run, p, device=device)


@pytest.mark.parametrize("width, batch", [(16, 8), (256, 64), (512, 256)])
def test_one_steps_graph_saves_what_the_formula_says(width: int, batch: int) -> None:
    p = LeakParams(width=width, batch=batch)
    ctx = RunContext(CPU, torch.Generator().manual_seed(0), float("inf"), 1 << 30)
    net = leak.mlp(p, ctx)
    X, y = torch.randn(batch, width), torch.randn(batch, 1)
    counted = saved_activation_bytes(lambda: F.mse_loss(net(X), y), net.parameters())
    assert counted == p.step_bytes() == (3 * batch * width + 2 * batch) * 4


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_without_backward_the_tensor_total_holds_every_step_and_the_others_one(steps: int) -> None:
    r = run_on(LeakParams(steps=steps, width=64, batch=16))
    k = np.arange(1, steps + 1)
    assert r.kept_bytes[TENSOR].tolist() == (k * r.step_bytes).tolist()
    assert r.kept_bytes[ITEM].tolist() == r.kept_bytes[DETACH].tolist() == [r.step_bytes] * steps
    assert r.after_del_bytes.tolist() == [0, 0, 0]  # del loss, total_loss: every graph goes at once
    assert leak.last_step_answer(r) == "all"


def test_backward_frees_the_saved_tensors_whichever_way_the_loss_is_added() -> None:
    r = run_on(LeakParams(steps=6, width=32, batch=8, phase="training"))
    assert not r.kept_bytes.any() and not r.after_del_bytes.any()
    assert leak.last_step_answer(r) == "none"


@pytest.mark.parametrize("phase", leak.PHASES)
def test_the_tensor_total_chains_every_steps_nodes_and_the_others_none(phase: str) -> None:
    r = run_on(LeakParams(steps=7, width=16, batch=8, phase=phase))
    assert r.graph_nodes[TENSOR].tolist() == [leak.predicted_nodes(k) for k in range(1, 8)]
    assert not r.graph_nodes[ITEM].any() and not r.graph_nodes[DETACH].any()
    assert r.total_requires_grad == (True, False, False)


def test_the_node_count_is_one_steps_ops_plus_one_accumulator_per_parameter() -> None:
    # Built here by hand: the ops of one step, named, and the AccumulateGrad of each of the six parameters.
    p = LeakParams(width=8, batch=4)
    ctx = RunContext(CPU, torch.Generator().manual_seed(0), float("inf"), 1 << 30)
    net = leak.mlp(p, ctx)
    total: object = 0.0
    for _ in range(3):
        total = total + F.mse_loss(net(torch.randn(4, 8)), torch.randn(4, 1))
    names: dict[str, int] = {}
    seen: set[object] = set()
    stack = [total.grad_fn]  # type: ignore[attr-defined]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names[type(node).__name__] = names.get(type(node).__name__, 0) + 1
        stack.extend(n for n, _ in node.next_functions)
    assert names == {
        "AddBackward0": 3,
        "MseLossBackward0": 3,
        "AddmmBackward0": 9,
        "TBackward0": 9,
        "ReluBackward0": 6,
        "AccumulateGrad": 6,
    }
    assert len(seen) == leak.predicted_nodes(3) == leak.graph_nodes(total)


def test_the_three_totals_are_the_same_number_from_the_same_batches_and_weights() -> None:
    for phase in leak.PHASES:
        r = run_on(LeakParams(steps=5, width=32, batch=16, phase=phase))
        assert np.allclose(r.total_loss, r.total_loss[0], rtol=1e-5), r.total_loss


def test_the_prediction_asks_about_the_training_loop_the_page_does_not_show_by_default() -> None:
    assert LeakParams().phase == "validation" and leak.TRAINING_HOLDS.params.phase == "training"
    r = run_on(dataclasses.replace(leak.TRAINING_HOLDS.params, seed=5))
    assert leak.TRAINING_HOLDS.answer(r) == "none"


def test_the_largest_settings_fit_the_default_budgets() -> None:
    biggest = LeakParams(steps=50, width=512, batch=256)
    assert biggest.estimate_bytes() < 512 * 2**20 and biggest.estimate_work() / 1e9 < 150


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_allocated_grows_with_the_graphs_and_empty_cache_returns_reserved() -> None:
    r = run_on(LeakParams(steps=10, width=512, batch=256), torch.device("cuda"))
    assert r.cuda_allocated is not None and r.cuda_reserved is not None
    assert r.cuda_after_del is not None and r.cuda_after_empty_cache is not None
    growth = np.diff(r.cuda_allocated[TENSOR])
    assert (growth >= r.step_bytes).all(), growth  # block rounding can only add
    assert r.cuda_allocated[ITEM].max() < 2 * r.step_bytes + 2**20
    assert (r.cuda_reserved >= r.cuda_allocated).all()
    assert r.cuda_after_del[TENSOR, 0] <= 0 < r.cuda_after_del[TENSOR, 1]  # freed, but still reserved
    assert r.cuda_after_empty_cache[TENSOR, 1] <= 0
    assert r.gpu_only == ()
