"""The profiler's table of one training step (speed lesson, `profiler`): op counts against the model's structure.

Times are not compared (noisy); the counts are fixed by the model: per Linear one aten::addmm in forward;
in backward one aten::mm per weight gradient and per input gradient, except the first layer's input (the
batch needs no gradient), so 2 * layers - 1; per block one aten::relu and one aten::threshold_backward.
The self-time bookkeeping is checked against torch's own totals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.lessons.speed import profiler
from core.lessons.speed.profiler import ProfilerParams
from core.runner import execute

CPU = torch.device("cpu")


@pytest.mark.parametrize("depth", [1, 3])
def test_the_step_makes_the_calls_the_model_says(depth: int) -> None:
    r = execute(profiler.run, ProfilerParams(width=32, depth=depth, batch=8, rows=25), device=CPU)
    counts = dict(zip(r.counted, r.counted_calls.tolist(), strict=True))
    layers = depth + 1
    assert r.layers == layers
    assert counts == {"aten::addmm": layers, "aten::mm": 2 * layers - 1, "aten::relu": depth, "aten::threshold_backward": depth}


def test_the_table_is_the_top_ops_by_self_cpu_time_and_the_shares_add_up() -> None:
    p = ProfilerParams(width=64, depth=2, batch=16, rows=8)
    r = execute(profiler.run, p, device=CPU)
    assert len(r.names) == len(set(r.names)) == p.rows
    assert (np.diff(r.self_cpu_us) <= 0).all()  # highest first
    assert (r.cpu_total_us >= r.self_cpu_us - 1e-6).all()  # total time includes the op's own
    assert r.self_cpu_us.sum() <= r.total_self_cpu_us + 1e-6
    assert 0 < r.matmul_share <= 1
    assert r.self_cuda_us is None and r.gpu_only == ("cuda_time",)


def test_the_shown_counts_are_what_the_script_prints_and_the_budget_holds() -> None:
    r = execute(profiler.run, ProfilerParams(width=32, depth=1, batch=8, rows=5), device=CPU)
    assert profiler.shown(r) == [
        "aten::addmm calls 2",
        "aten::mm calls 3",
        "aten::relu calls 1",
        "aten::threshold_backward calls 1",
    ]
    biggest = ProfilerParams(width=2048, depth=8, batch=512)
    assert biggest.estimate_work() / 1e9 < 150 and biggest.estimate_bytes() < 512 * 2**20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_table_has_cuda_times_and_the_same_counts() -> None:
    r = execute(profiler.run, ProfilerParams(depth=2), device=torch.device("cuda"))
    assert r.self_cuda_us is not None and r.total_self_cuda_us is not None and r.total_self_cuda_us > 0
    counts = dict(zip(r.counted, r.counted_calls.tolist(), strict=True))
    assert counts["aten::mm"] == 2 * r.layers - 1 and counts["aten::addmm"] == r.layers
