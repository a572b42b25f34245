"""The Speed-and-memory lesson: FLOP counts, bookkeeping and structure against torch or a computation here.

Timings are never compared: the machines are shared and noisy. What is checked is what the numbers are
made of (FLOPs by torch's own FlopCounterMode, TFLOP/s from the arrays, the crossover and the peak
table's lookup), what memory is kept (saved-tensor counts against the checkpointing formula, derived
here from torch's splitting, and recomputations counted in backward), sharing against numpy, exact
gradients under checkpointing, and on CUDA (gpu marker) that the synchronised clock reads at least the naive one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential
from torch.utils.flop_counter import FlopCounterMode

from core import speed as S
from core.params import InvalidParams, Params
from core.runner import ExperimentError, execute
from core.speed import CudnnParams, MemParams, ScalingParams, TimingParams, TransferParams
from tests.params_strategies import any_params, check_runs_or_refused
from tests.scripts import Ran, after, numbers, run_scripts

CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


def run(run_fn: Callable[[Any, Any], Any], params: Params, device: torch.device = CPU) -> Any:
    """Run an experiment through the runner alone on its device, as the page does."""
    return execute(run_fn, params, device=device, exclusive=True)


def refusal(p: Params) -> InvalidParams:
    """Return the InvalidParams that p.validate() raises."""
    with pytest.raises(InvalidParams) as caught:
        p.validate()
    return caught.value


def counted_flops(fn: Callable[[], object]) -> int:
    """Return the FLOPs torch's FlopCounterMode counts for fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# FLOP counts


@pytest.mark.parametrize(
    ("op", "size"), [("matmul", 8), ("matmul", 100), ("matmul", 8192), ("conv2d", 8), ("conv2d", 37), ("conv2d", 4096)]
)
def test_flops_equal_torchs_flop_counter(op: str, size: int) -> None:
    meta = torch.device("meta")  # shapes only: the counter needs no numbers
    if op == "matmul":
        a, b = torch.empty(size, size, device=meta), torch.empty(size, size, device=meta)
    else:  # the docstring's family: one image, 64 -> 64 channels, 3x3
        a, b = torch.empty(1, 64, size, size, device=meta), torch.empty(64, 64, 3, 3, device=meta)
    assert S.flops(op, size) == counted_flops(S._op(op, a, b))
    assert S._op(op, a, b)().shape == a.shape  # conv2d's padding keeps the side
    # and the run draws operands of these shapes
    small = 8
    real = S._operands(op, small, torch.float32, CPU, torch.Generator().manual_seed(0))
    assert S.flops(op, small) == counted_flops(S._op(op, *real))
    expected = [(small, small), (small, small)] if op == "matmul" else [(1, 64, small, small), (64, 64, 3, 3)]
    assert [tuple(t.shape) for t in real] == expected


def test_stack_flops_equal_torchs_flop_counter() -> None:
    x = torch.randn(2, 3, 20, 20)
    weights = [torch.randn(32, 3, 3, 3), torch.randn(32, 32, 3, 3), torch.randn(32, 32, 3, 3)]

    def forward() -> None:
        h = x
        for w in weights:
            h = F.relu(F.conv2d(h, w, padding=1))

    assert S.stack_flops(2, 20) == counted_flops(forward)


@pytest.mark.parametrize("op", S.OPS)
@pytest.mark.parametrize("limit", [1e6, 2.5e11 / 8, S.CPU_MAX_FLOPS])
def test_largest_size_is_the_last_size_within_the_limit(op: str, limit: float) -> None:
    n = S.largest_size(op, limit)
    assert S.flops(op, n) <= limit < S.flops(op, n + 1)


def test_the_cpu_work_limit_is_quartered_for_16_bit_types() -> None:
    assert S.cpu_max_flops("float32") == S.cpu_max_flops("tf32") == 2 * 2048**3
    assert S.cpu_max_flops("bfloat16") == S.cpu_max_flops("float16") == 2 * 2048**3 / 4
    assert S.largest_size("matmul", S.cpu_max_flops("float32")) == 2048


# --------------------------------------------------------------------------------------------
# 1. timing


@pytest.mark.parametrize("p", [TimingParams(size=64, iters=6), TimingParams(op="conv2d", size=16, iters=5, seed=3)])
def test_timing_on_the_cpu_reads_every_call_and_has_no_events(p: TimingParams) -> None:
    benchmark_flag = torch.backends.cudnn.benchmark
    r = run(S.run_timing, p)
    assert torch.backends.cudnn.benchmark == benchmark_flag
    assert (r.op, r.size, r.flops, r.device) == (p.op, p.size, S.flops(p.op, p.size), "cpu")
    assert r.naive.shape == r.sync.shape == (p.iters,) and np.all(r.naive > 0)
    assert r.sync_is_naive and np.array_equal(r.sync, r.naive)  # nothing to wait for on a CPU
    assert r.events is None and r.events_median is None and r.gpu_only == ("events",)
    assert r.naive_median == np.median(r.naive) and r.sync_median == np.median(r.sync)
    assert r.bench_calls >= len(r.bench_times) >= 1
    assert r.bench_times.min() <= r.bench_median <= r.bench_times.max()
    assert not r.cudnn_benchmark


def test_timing_refuses_too_much_work_with_the_largest_allowed_value() -> None:
    e = refusal(TimingParams(op="conv2d", size=1024))
    assert (e.field, e.key) == ("size", "too_large")
    TimingParams(op="conv2d", size=e.info["max"], iters=5).validate()
    assert refusal(TimingParams(op="conv2d", size=e.info["max"] + 1, iters=5)).key == "too_large"
    e = refusal(TimingParams(size=2048, iters=20))
    assert (e.field, e.key) == ("iters", "too_much_work")
    TimingParams(size=2048, iters=e.info["max"]).validate()
    assert refusal(TimingParams(size=2048, iters=e.info["max"] + 1)).key == "too_much_work"
    for op, size in S.TIMING_DEFAULT_SIZE.items():
        TimingParams(op=op, size=size, iters=100).validate()
        assert TimingParams.for_op(op) == TimingParams(op=op, size=size)


@pytest.mark.parametrize("op", S.OPS)
def test_each_ops_defaults_are_valid_and_within_the_budget(op: str) -> None:
    for p in (TimingParams.for_op(op), ScalingParams.for_op(op)):
        p.validate()
        assert p.estimate_bytes() <= 512 * 2**20  # the runner's default budget
    assert ScalingParams.for_op(op).sizes == S.SCALING_SIZES[op]


# --------------------------------------------------------------------------------------------
# 2. scaling


def test_scaling_on_the_cpu_computes_tflops_from_its_arrays_and_skips_past_the_limit() -> None:
    r = run(S.run_scaling, ScalingParams(sizes=(8, 24, 4096), min_run_time=0.01))
    assert r.sizes.tolist() == [8, 24, 4096] and r.flops.tolist() == [2 * n**3 for n in (8, 24, 4096)]
    assert r.cpu_skipped == (4096,) and r.cpu_max_flops == S.CPU_MAX_FLOPS
    assert np.isnan(r.cpu_seconds[2]) and np.all(r.cpu_seconds[:2] > 0)
    np.testing.assert_array_equal(r.cpu_tflops, r.flops / r.cpu_seconds / 1e12)
    assert r.cpu_peak_tflops == np.nanmax(r.cpu_tflops)  # the CPU's "peak" is measured, not a spec
    np.testing.assert_array_equal(r.cpu_fraction, r.cpu_tflops / r.cpu_peak_tflops)
    assert r.gpu_name is r.gpu_seconds is r.gpu_tflops is r.gpu_fraction is r.gpu_peak_tflops is r.crossover is None
    assert r.gpu_only == ("gpu", "crossover", "gpu_peak") and not r.tf32_active


def test_scaling_in_16_bit_skips_earlier_on_the_cpu() -> None:
    r = run(S.run_scaling, ScalingParams(op="conv2d", dtype="bfloat16", sizes=(8, 256), min_run_time=0.01))
    assert r.cpu_skipped == (256,) and S.flops("conv2d", 256) <= S.CPU_MAX_FLOPS  # float32 would time it
    assert np.isfinite(r.cpu_seconds[0]) and r.flops.tolist() == [S.flops("conv2d", 8), S.flops("conv2d", 256)]


@pytest.mark.parametrize(
    ("sizes", "cpu", "gpu", "expected"),
    [
        ([16, 32, 64, 128], [1, 2, 4, 8], [5, 5, 3, 1], 64),
        ([16, 32, 64, 128], [1, 2, 4, 8], [5, 5, 5, 9], None),  # never
        ([16, 32, 64, 128], [1, 2, 4, 8], [0.5, 5, 3, 1], 16),  # the first win counts, even if not kept
        ([16, 32, 64, 128], [1, 2, math.nan, math.nan], [5, 5, 1, 1], None),  # skipped sizes cannot be compared
        ([64, 16, 32], [4, 1, 2], [1, 0.5, 1], 16),  # the smallest size, in whatever order they come
        ([16, 32], [1, 2], [1, 2], None),  # a tie is no win
    ],
)
def test_crossover_is_the_smallest_size_where_the_gpu_is_faster(
    sizes: list[int], cpu: list[float], gpu: list[float], expected: int | None
) -> None:
    assert S.crossover(np.array(sizes), np.array(cpu, dtype=float), np.array(gpu, dtype=float)) == expected
    assert S.crossover(np.array(sizes), np.array(cpu, dtype=float), None) is None


@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "H200"), ("NVIDIA GH200 480GB", None), ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA A10", "A10"), ("NVIDIA A10G", None), ("NVIDIA L4", "L4"), ("NVIDIA L40S", None), ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"), ("Tesla V100-PCIE-32GB", "V100 PCIe"), ("Tesla V100S-PCIE-32GB", "V100S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("NVIDIA GeForce RTX 4090 D", None), ("NVIDIA GeForce RTX 3090", None),
    ],
)  # fmt: skip
def test_gpu_names_find_their_datasheet_row(name: str, row: str | None) -> None:
    assert S.gpu_row(name) == row
    for dtype in S.DTYPES:
        assert S.gpu_peak_tflops(name, dtype) == (None if row is None else S.PEAK_TFLOPS[row][dtype])


def test_peak_table_is_complete_and_tensor_cores_beat_plain_fp32() -> None:
    assert set(S.PEAK_TFLOPS) == {row for _, row in S.GPU_PATTERNS if row is not None}
    for row, peaks in S.PEAK_TFLOPS.items():
        assert set(peaks) == set(S.DTYPES), row
        fp32 = peaks["float32"]
        assert fp32 is not None and 0 < fp32 <= (peaks["tf32"] or 0), row
        assert (peaks["float16"] or 0) >= (peaks["tf32"] or 0), row
        assert peaks["bfloat16"] in (None, peaks["float16"]), row  # the same tensor-core rate where it exists
    assert S.PEAK_TFLOPS["H100 SXM"] == {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5}
    assert S.PEAK_TFLOPS["A100"] == {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0}


def fake_sweep(sizes: list[int], cpu: list[float], gpu: list[float] | None, name: str | None) -> S.ScalingResult:
    """Return a ScalingResult built from made-up times, as a GPU server would measure them."""
    k = len(sizes)
    return S._scaling_result(
        "matmul", "float32", np.array(sizes, dtype=np.int64), "cpu", np.array(cpu), np.zeros(k), name,
        None if gpu is None else np.array(gpu), None if gpu is None else np.zeros(k), False,
    )  # fmt: skip


def test_a_sweep_on_a_known_gpu_gives_fractions_of_its_datasheet_peak() -> None:
    r = fake_sweep([512, 1024, 4096], [1e-2, 8e-2, math.nan], [1e-3, 1e-4, 5e-3], "NVIDIA H100 80GB HBM3")
    flops = np.array([2 * n**3 for n in (512, 1024, 4096)], dtype=np.int64)
    np.testing.assert_array_equal(r.flops, flops)
    assert r.cpu_skipped == (4096,)
    assert r.gpu_tflops is not None and r.gpu_fraction is not None
    np.testing.assert_allclose(r.gpu_tflops, flops / np.array([1e-3, 1e-4, 5e-3]) / 1e12, rtol=1e-15)
    assert r.gpu_peak_tflops == 67.0
    np.testing.assert_allclose(r.gpu_fraction, r.gpu_tflops / 67.0, rtol=1e-15)
    assert r.crossover == 512 and r.gpu_only == ()
    unknown = fake_sweep([512], [1e-2], [1e-3], "Some Future GPU")
    assert unknown.gpu_peak_tflops is None and unknown.gpu_fraction is None and unknown.gpu_tflops is not None


def test_merging_one_point_runs_recomputes_the_crossover_and_peaks() -> None:
    points = [
        fake_sweep([128], [1e-4], [2e-4], "NVIDIA A100-SXM4-40GB"),
        fake_sweep([32], [1e-6], [1e-5], "NVIDIA A100-SXM4-40GB"),
        fake_sweep([512], [1e-2], [1e-3], "NVIDIA A100-SXM4-40GB"),
        fake_sweep([8192], [math.nan], [1e-1], "NVIDIA A100-SXM4-40GB"),
    ]
    assert [p.crossover for p in points] == [None, None, 512, None]
    merged = S.merge_scaling(points)
    whole = fake_sweep([32, 128, 512, 8192], [1e-6, 1e-4, 1e-2, math.nan], [1e-5, 2e-4, 1e-3, 1e-1], "NVIDIA A100-SXM4-40GB")
    assert merged.crossover == 512 and merged.cpu_skipped == (8192,)
    for f in dataclasses.fields(whole):
        a, b = getattr(merged, f.name), getattr(whole, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name
    assert merged.cpu_peak_tflops == np.nanmax(merged.cpu_tflops)
    with pytest.raises(ValueError, match="differ"):
        S.merge_scaling([points[0], fake_sweep([64], [1e-5], None, None)])


def test_merging_real_one_point_runs_gives_the_sweeps_structure() -> None:
    p = ScalingParams(op="conv2d", sizes=(8, 16, 512), min_run_time=0.01)
    whole = run(S.run_scaling, p)
    merged = S.merge_scaling([run(S.run_scaling, dataclasses.replace(p, sizes=(n,))) for n in (16, 512, 8)])
    for f in dataclasses.fields(whole):
        a, b = getattr(merged, f.name), getattr(whole, f.name)
        if isinstance(a, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype, f.name
        elif f.name not in ("cpu_peak_tflops",):
            assert a == b, f.name
    np.testing.assert_array_equal(merged.flops, whole.flops)
    assert merged.cpu_skipped == whole.cpu_skipped == (512,)


def test_scaling_refuses_a_sweep_out_of_order() -> None:
    assert refusal(ScalingParams(sizes=(64, 32))).key == "not_increasing"
    assert refusal(ScalingParams(sizes=(64, 64))).key == "not_increasing"
    ScalingParams(sizes=S.SCALING_SIZES["conv2d"], op="conv2d").validate()


# --------------------------------------------------------------------------------------------
# 3. cudnn


def test_cudnn_on_the_cpu_times_every_iteration_of_both_modes() -> None:
    benchmark_flag = torch.backends.cudnn.benchmark
    p = CudnnParams(batch=1, iters=5)
    r = run(S.run_cudnn, p)
    assert torch.backends.cudnn.benchmark == benchmark_flag
    assert r.shapes == ("fixed", "varying") and r.benchmark == (False, True)
    assert r.sides.tolist() == [[64] * 5, list(S.VARYING_SIDES[:5])]
    assert len(set(r.sides[1].tolist())) == 5  # a new shape every iteration
    assert r.flops.tolist() == [[S.stack_flops(1, int(s)) for s in row] for row in r.sides]
    assert r.seconds.shape == (2, 2, 5) and np.all(r.seconds > 0)
    np.testing.assert_array_equal(r.median, np.median(r.seconds, axis=2))
    np.testing.assert_array_equal(r.total, r.seconds.sum(axis=2))
    assert not r.flag_has_effect and r.cudnn_version is None and r.gpu_only == ("cudnn",)
    one = run(S.run_cudnn, dataclasses.replace(p, shapes=("varying",)))
    assert one.seconds.shape == (1, 2, 5) and one.sides.tolist() == r.sides[1:].tolist()


def test_varying_sides_cycle_past_the_list() -> None:
    n = len(S.VARYING_SIDES)
    sides = S.iteration_sides("varying", n + 3)
    assert sides[:n] == S.VARYING_SIDES and sides[n:] == S.VARYING_SIDES[:3]
    assert S.FIXED_SIDE not in (S.WARM_UP_SIDE,) and S.WARM_UP_SIDE not in S.VARYING_SIDES


def test_cudnn_refuses_too_many_images() -> None:
    e = refusal(CudnnParams(batch=64, iters=50))
    assert (e.field, e.key) == ("iters", "too_much_work")
    CudnnParams(batch=64, iters=e.info["max"]).validate()
    assert refusal(CudnnParams(shapes=())).key == "empty"


# --------------------------------------------------------------------------------------------
# 4. memory


def saved_by_checkpointing(depth: int, segments: int) -> int:
    """Return the activations kept for backward, following torch's checkpoint_sequential block by block.

    Each block (Linear + ReLU) keeps one tensor when run plainly: its ReLU's output, which the next Linear
    also saves as its input. A checkpointed segment keeps only its input. The network's input X is kept
    by whichever runs first.
    """
    size = depth // segments
    kept = {"X"}
    start = 0
    for _ in range(segments - 1):  # checkpointed segments: their input only
        kept.add("X" if start == 0 else f"h{start}")
        start += size
    kept.add("X" if start == 0 else f"h{start}")  # the last segment runs plainly: its input...
    kept.update(f"h{i}" for i in range(start + 1, depth + 1))  # ...and every block's output
    return len(kept)


@pytest.mark.parametrize("depth", [1, 2, 5, 8, 9])
def test_checkpoint_formula_follows_torchs_split(depth: int) -> None:
    for s in range(1, depth + 1):
        assert S.checkpoint_saved_activations(depth, s) == saved_by_checkpointing(depth, s)
    assert S.checkpoint_saved_activations(depth, 1) == depth + 1


@pytest.fixture(scope="module")
def memory() -> tuple[MemParams, S.MemResult]:
    p = MemParams(width=64, depth=6, batch=16, min_run_time=0.01, seed=4)
    return p, run(S.run_memory, p)


def test_no_grad_and_inference_mode_keep_nothing_for_backward(memory: tuple[MemParams, S.MemResult]) -> None:
    p, r = memory
    act = p.batch * p.width * 4
    assert r.activation_bytes == act and r.modes == S.GRAD_MODES and r.relus == S.RELUS
    assert r.saved_bytes[1:].tolist() == [[0, 0], [0, 0]]
    # with grad: X and each block's ReLU output (the next Linear's input); the Linear outputs are not kept
    assert r.saved_bytes[0].tolist() == [(p.depth + 1) * act] * 2


def test_in_place_relu_allocates_half_the_new_outputs(memory: tuple[MemParams, S.MemResult]) -> None:
    p, r = memory
    act = p.batch * p.width * 4
    assert r.new_tensors.tolist() == [[2 * p.depth, p.depth]] * 3
    assert r.new_bytes.tolist() == [[2 * p.depth * act, p.depth * act]] * 3
    assert np.all(r.new_bytes[:, 1] < r.new_bytes[:, 0])
    assert r.cuda_peak_bytes is None and r.ckpt_cuda_peak_bytes is None and r.gpu_only == ("cuda_peak",)


def test_checkpointing_keeps_what_the_formula_says_and_changes_no_gradient(memory: tuple[MemParams, S.MemResult]) -> None:
    p, r = memory
    act = p.batch * p.width * 4
    assert r.segments.tolist() == list(range(1, p.depth + 1))  # () means every value
    assert r.ckpt_saved_bytes.tolist() == [saved_by_checkpointing(p.depth, s) * act for s in range(1, p.depth + 1)]
    np.testing.assert_array_equal(r.ckpt_theory_bytes, r.ckpt_saved_bytes)
    assert r.ckpt_saved_bytes.min() < r.ckpt_saved_bytes[0]  # some split saves memory
    assert r.ckpt_grad_max_diff.tolist() == [0.0] * p.depth  # recomputation is exact on the CPU
    assert r.ckpt_step_seconds.shape == r.ckpt_step_iqr.shape == (p.depth,) and np.all(r.ckpt_step_seconds > 0)


def mlp(depth: int, width: int) -> nn.Sequential:
    """Return depth blocks of Linear + ReLU with the global RNG's default init (a test's own network)."""
    return nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)])


@pytest.mark.parametrize("segments", [2, 3, 5])
def test_checkpoint_recomputes_the_dropped_blocks_and_gives_the_same_gradients(segments: int) -> None:
    torch.manual_seed(0)
    depth, net = 5, mlp(5, 12)
    X, R = torch.randn(7, 12), torch.randn(7, 12)
    calls = []
    for i, block in enumerate(net):
        block.register_forward_pre_hook(lambda *_, i=i: calls.append(i))  # pre: recomputation may stop early inside
    (net(X) * R).sum().backward()
    plain = [q.grad.clone() for q in net.parameters() if q.grad is not None]
    net.zero_grad()
    calls.clear()
    out = checkpoint_sequential(net, segments, X, use_reentrant=False)
    forward_calls = len(calls)
    (out * R).sum().backward()
    size = depth // segments
    assert forward_calls == depth and len(calls) - forward_calls == (segments - 1) * size  # dropped, then recomputed
    for q, g in zip(net.parameters(), plain, strict=True):
        assert q.grad is not None and torch.equal(q.grad, g)


def test_one_segments_value_runs_alone_and_counts_the_same(memory: tuple[MemParams, S.MemResult]) -> None:
    p, r = memory
    one = run(S.run_memory, dataclasses.replace(p, segments=(3,)))
    assert one.segments.tolist() == [3] and one.ckpt_saved_bytes.tolist() == [r.ckpt_saved_bytes[2]]
    for name in ("saved_bytes", "new_bytes", "new_tensors"):
        np.testing.assert_array_equal(getattr(one, name), getattr(r, name))


def test_memory_refuses_segments_past_the_depth_and_too_much_work() -> None:
    e = refusal(MemParams(depth=4, segments=(2, 5)))
    assert (e.field, e.key, e.info) == ("segments", "more_than_depth", {"max": 4})
    assert refusal(MemParams(segments=(3, 2))).key == "not_increasing"
    e = refusal(MemParams(width=2048, depth=16, batch=1024))
    assert (e.field, e.key) == ("batch", "too_large")
    MemParams(width=2048, depth=16, batch=e.info["max"]).validate()
    assert refusal(MemParams(width=2048, depth=16, batch=e.info["max"] + 1)).key == "too_large"
    e = refusal(MemParams(width=2048, depth=32, batch=1))  # one sample is too much: the width is
    assert (e.field, e.key) == ("width", "too_large")
    MemParams(width=e.info["max"], depth=32, batch=1).validate()
    assert refusal(MemParams(width=e.info["max"] + 1, depth=32, batch=1)).field == "width"
    with pytest.raises(ExperimentError) as caught:  # valid, but over the default budget
        run(S.run_memory, MemParams(width=e.info["max"], depth=32, batch=1))
    assert caught.value.key == "budget"


# --------------------------------------------------------------------------------------------
# 5. transfer


def test_transfer_sharing_flags_agree_with_numpy() -> None:
    p = TransferParams(sizes=(1024, 4096, 65536), min_run_time=0.01)
    r = run(S.run_transfer, p)
    assert r.sizes.tolist() == list(p.sizes) and r.numpy_methods == S.NUMPY_METHODS
    makers = {"tensor": torch.tensor, "as_tensor": torch.as_tensor, "from_numpy": torch.from_numpy}
    for m, name in enumerate(r.numpy_methods):
        for i, size in enumerate(p.sizes):
            array = np.zeros(size, dtype=np.uint8)
            t = makers[name](array)
            assert r.shares_memory[m, i] == np.shares_memory(array, t.numpy()) == (name != "tensor")
            assert r.same_data_ptr[m, i] == (t.data_ptr() == array.ctypes.data)
            if name != "tensor":  # shared: a write through the tensor shows in the array
                t[0] = 7
                assert array[0] == 7
    assert r.numpy_seconds.shape == (3, 3) and np.all(r.numpy_seconds > 0)
    np.testing.assert_array_equal(r.tensor_gbps, r.sizes / r.numpy_seconds[0] / 1e9)
    assert r.device_name is r.gpu_seconds is r.gpu_gbps is r.pin_seconds is r.return_seconds is None
    assert r.gpu_only == ("host_device",) and r.gpu_methods == S.GPU_METHODS


def test_transfer_bounds_its_total_and_its_order() -> None:
    e = refusal(TransferParams(sizes=tuple(2**28 - 1024 * k for k in range(4, -1, -1))))
    assert (e.field, e.key, e.info) == ("sizes", "too_much_data", {"max_mb": 1024})
    assert refusal(TransferParams(sizes=(4096, 1024))).key == "not_increasing"
    assert S.TRANSFER_SIZES == (4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


# --------------------------------------------------------------------------------------------
# Registry, structure of one-point runs, and run-or-refuse over every Params class


def test_registry() -> None:
    assert list(S.EXPERIMENTS) == ["timing", "scaling", "cudnn", "footprint", "transfer"]
    for exp in S.EXPERIMENTS.values():
        exp.params().validate()
        assert "import torch" in exp.code(exp.params())


PARAMS_CLASSES = [TimingParams, ScalingParams, CudnnParams, MemParams, TransferParams]
RESULT_TYPES = {
    TimingParams: S.TimingResult, ScalingParams: S.ScalingResult, CudnnParams: S.CudnnResult,
    MemParams: S.MemResult, TransferParams: S.TransferResult,
}  # fmt: skip


def rising(lo: int, hi: int, max_size: int, min_size: int = 1) -> st.SearchStrategy[tuple[int, ...]]:
    """Rising tuples of distinct ints in [lo, hi]."""
    return st.lists(st.integers(lo, hi), min_size=min_size, max_size=max_size, unique=True).map(lambda v: tuple(sorted(v)))


# Small sizes keep valid runs quick; the just()s reach the work limits, the skip limit and the budget.
SMALL: dict[str, st.SearchStrategy[Any]] = {
    "TimingParams.size": st.one_of(st.integers(8, 48), st.just(4096)),
    "TimingParams.iters": st.one_of(st.integers(5, 8), st.just(100)),
    "ScalingParams.sizes": st.one_of(rising(8, 40, 3), st.just((8, 8192)), st.just((64, 32))),
    "ScalingParams.min_run_time": st.just(0.01),
    "CudnnParams.batch": st.integers(1, 2),
    "CudnnParams.iters": st.integers(5, 6),
    "CudnnParams.shapes": st.sampled_from([("fixed",), ("varying",), ("varying", "fixed"), S.SHAPES, ()]),
    "MemParams.width": st.integers(16, 32),  # the budget's refusal: test_memory_refuses_...
    "MemParams.depth": st.one_of(st.integers(1, 4), st.just(32)),
    "MemParams.batch": st.one_of(st.integers(1, 8), st.just(1024)),
    "MemParams.segments": rising(1, 5, 2),  # () (every value up to depth): the memory fixture
    "MemParams.min_run_time": st.just(0.01),
    "TransferParams.sizes": st.one_of(rising(1024, 65536, 2), st.just((2**28,))),
    "TransferParams.min_run_time": st.just(0.01),
}


def test_every_params_class_is_covered() -> None:
    assert {e.params for e in S.EXPERIMENTS.values()} == set(PARAMS_CLASSES) == set(RESULT_TYPES)


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(cls: type[Params], data: st.DataObject) -> None:
    run_fn = S.EXPERIMENTS[next(k for k, e in S.EXPERIMENTS.items() if e.params is cls)].run
    check_runs_or_refused(run_fn, data.draw(any_params(cls, overrides=SMALL)), RESULT_TYPES[cls], "needed_mb")


def test_transfer_one_size_has_the_sweeps_structure() -> None:
    p = TransferParams(sizes=(1024, 2048), min_run_time=0.01)
    whole, one = run(S.run_transfer, p), run(S.run_transfer, dataclasses.replace(p, sizes=(2048,)))
    for f in dataclasses.fields(whole):
        a, b = getattr(whole, f.name), getattr(one, f.name)
        if isinstance(a, np.ndarray):
            assert a.shape[:-1] == b.shape[:-1] and b.shape[-1] == 1 and a.dtype == b.dtype, f.name
    np.testing.assert_array_equal(one.shares_memory[:, 0], whole.shares_memory[:, 1])


# --------------------------------------------------------------------------------------------
# Every generated script runs on its own and prints what the result holds (times are not compared)


def check_timing(p: TimingParams, r: S.TimingResult, out: str) -> None:
    assert numbers(after(out, f"op {p.op} size {p.size} flops"))[0] == r.flops
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("call ")] == [
        f"call {i}" for i in range(p.iters)
    ]
    assert numbers(after(out, "median naive")) and numbers(after(out, "benchmark median"))


def check_scaling(p: ScalingParams, r: S.ScalingResult, out: str) -> None:
    for n, flops in zip(r.sizes.tolist(), r.flops.tolist(), strict=True):
        line = after(out, f"size {n} flops")
        assert int(line.split()[0]) == flops
        assert ("cpu skipped" in line) == (n in r.cpu_skipped)
    assert numbers(after(out, "cpu best measured"))


def check_cudnn(p: CudnnParams, r: S.CudnnResult, out: str) -> None:
    for mode, sides in zip(r.shapes, r.sides.tolist(), strict=True):
        assert after(out, f"{mode} sides") == str(sides)
        for flag in (False, True):
            assert numbers(after(out, f"{mode} benchmark={flag}:"))


def check_memory(p: MemParams, r: S.MemResult, out: str) -> None:
    assert numbers(after(out, "activation bytes")) == [r.activation_bytes]
    for i, mode in enumerate(r.modes):
        for j, relu in enumerate(r.relus):
            expected = [r.saved_bytes[i, j], r.new_tensors[i, j], r.new_bytes[i, j]]
            assert numbers(after(out, f"{mode} {relu}:")) == expected
    for k, s in enumerate(r.segments.tolist()):
        saved, diff, _ = numbers(after(out, f"segments {s}:"))
        assert saved == r.ckpt_saved_bytes[k] and diff <= 1e-5  # 0 on a CPU; a GPU may pick other kernels


def check_transfer(p: TransferParams, r: S.TransferResult, out: str) -> None:
    for i, size in enumerate(p.sizes):
        for m, name in enumerate(r.numpy_methods):
            words = after(out, f"size {size} {name}:").split()
            assert words[:2] == ["shares", str(bool(r.shares_memory[m, i]))]
            assert words[2:5] == ["same", "data_ptr", str(bool(r.same_data_ptr[m, i]))]


@dataclass(frozen=True)
class Case:
    run_fn: Callable[[Any, Any], Any]
    code_fn: Callable[[Any], str]
    check: Callable[[Any, Any, str], None]
    params: Params


SCRIPT_CASES = [
    Case(S.run_timing, S.code_timing, check_timing, TimingParams(size=48, iters=5)),
    Case(S.run_timing, S.code_timing, check_timing, TimingParams(op="conv2d", size=12, iters=6, seed=2)),
    Case(S.run_scaling, S.code_scaling, check_scaling, ScalingParams(sizes=(8, 16, 4096), min_run_time=0.01)),
    Case(
        S.run_scaling,
        S.code_scaling,
        check_scaling,
        ScalingParams(op="conv2d", dtype="bfloat16", sizes=(8, 256), min_run_time=0.01),
    ),
    Case(S.run_scaling, S.code_scaling, check_scaling, ScalingParams(dtype="tf32", sizes=(8,), min_run_time=0.01)),
    Case(S.run_cudnn, S.code_cudnn, check_cudnn, CudnnParams(batch=1, iters=5)),
    Case(S.run_memory, S.code_memory, check_memory, MemParams(width=32, depth=4, batch=8, min_run_time=0.01)),
    Case(S.run_memory, S.code_memory, check_memory, MemParams(width=16, depth=5, batch=4, segments=(2, 5), min_run_time=0.01)),
    Case(S.run_transfer, S.code_transfer, check_transfer, TransferParams(sizes=(1024, 65536), min_run_time=0.01)),
]


def case_id(case: Case) -> str:
    p = case.params
    defaults = type(p)()
    changed = [
        f"{f.name}={getattr(p, f.name)}" for f in dataclasses.fields(p) if getattr(p, f.name) != getattr(defaults, f.name)
    ]
    return f"{type(p).__name__}(" + ",".join(changed) + ")"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every case's script on its own; return id -> what it did."""
    folder: Path = tmp_path_factory.mktemp("speed_snippets")  # no core/ here: the scripts must stand alone
    return run_scripts({case_id(c): c.code_fn(c.params) for c in SCRIPT_CASES}, folder, timeout=180, warm_up=True)


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=case_id)
def test_script_runs_and_prints_the_result(case: Case, ran: dict[str, Ran]) -> None:
    done = ran[case_id(case)]
    assert done.rc == 0, done.err
    case.check(case.params, run(case.run_fn, case.params), done.out)


# --------------------------------------------------------------------------------------------
# CUDA only: the GPU parts exist, and the clocks relate as they must


CUDA = torch.device("cuda")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("p", [TimingParams(size=256, iters=8), TimingParams(op="conv2d", size=32, iters=8)])
def test_timing_on_cuda_synchronised_reads_at_least_the_naive_clock(p: TimingParams) -> None:
    flag = torch.backends.cudnn.benchmark
    r = run(S.run_timing, p, CUDA)
    assert torch.backends.cudnn.benchmark == flag  # restored
    assert r.device == "cuda" and r.device_name == torch.cuda.get_device_name(CUDA) and r.gpu_only == ()
    assert r.events is not None and r.events.shape == r.naive.shape == r.sync.shape == (p.iters,)
    assert np.all(r.sync >= r.naive) and np.all(r.events > 0) and not r.sync_is_naive
    assert r.events_median == np.median(r.events) and r.cudnn_benchmark == (p.op == "conv2d")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", S.DTYPES)
def test_scaling_on_cuda_times_every_size_and_looks_up_the_peak(dtype: str) -> None:
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    r = run(S.run_scaling, ScalingParams(dtype=dtype, sizes=(16, 256, 4096), min_run_time=0.01), CUDA)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert r.gpu_seconds is not None and r.gpu_tflops is not None and np.all(r.gpu_seconds > 0)  # 4096 too
    assert r.cpu_skipped == (4096,) and r.gpu_name == torch.cuda.get_device_name(CUDA)
    np.testing.assert_array_equal(r.gpu_tflops, r.flops / r.gpu_seconds / 1e12)
    assert r.crossover == S.crossover(r.sizes, r.cpu_seconds, r.gpu_seconds)
    assert r.gpu_peak_tflops == S.gpu_peak_tflops(r.gpu_name, dtype)
    assert (r.gpu_fraction is None) == (r.gpu_peak_tflops is None)
    assert r.tf32_active == (dtype == "tf32" and torch.cuda.get_device_capability(CUDA) >= (8, 0))
    assert r.gpu_only == ()


@pytest.mark.gpu
@gpu
def test_cudnn_on_cuda_restores_the_flag_and_reports_cudnn() -> None:
    flag = torch.backends.cudnn.benchmark
    r = run(S.run_cudnn, CudnnParams(batch=2, iters=5), CUDA)
    assert torch.backends.cudnn.benchmark == flag
    assert r.flag_has_effect == torch.backends.cudnn.is_available() and r.gpu_only == ()
    assert r.cudnn_version == torch.backends.cudnn.version()
    assert r.seconds.shape == (2, 2, 5) and np.all(r.seconds > 0)


@pytest.mark.gpu
@gpu
def test_memory_on_cuda_has_allocator_peaks_and_checkpoint_keeps_what_it_says() -> None:
    p = MemParams(width=64, depth=6, batch=8, min_run_time=0.01)
    r = run(S.run_memory, p, CUDA)
    act = p.batch * p.width * 4  # 2048 bytes: a multiple of the allocator's 512-byte blocks
    assert r.cuda_peak_bytes is not None and r.cuda_peak_bytes.shape == (3, 2) and np.all(r.cuda_peak_bytes > 0)
    assert r.ckpt_cuda_peak_bytes is not None and r.ckpt_cuda_peak_bytes.shape == (p.depth,)
    assert r.saved_bytes[1:].tolist() == [[0, 0], [0, 0]] and r.gpu_only == ()
    np.testing.assert_array_equal(r.ckpt_saved_bytes, r.ckpt_theory_bytes)
    assert np.all(r.ckpt_grad_max_diff <= 1e-5)
    # The allocator agrees with the hooks: what stays allocated after the forward pass is what was saved.
    torch.manual_seed(0)
    net = mlp(p.depth, p.width).to(CUDA)
    X = torch.randn(p.batch, p.width, device=CUDA)
    with torch.no_grad():
        net(X)  # cuBLAS takes its workspace from the caching allocator on the first matmul: not in the count
    for s in range(1, p.depth + 1):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(CUDA)
        out = checkpoint_sequential(net, s, X, use_reentrant=False)
        torch.cuda.synchronize()
        kept = torch.cuda.memory_allocated(CUDA) - before
        # X was allocated before (it is one of the saved activations); out is the last block's, saved by its ReLU
        assert abs(kept - (S.checkpoint_saved_activations(p.depth, s) - 1) * act) < act, s
        del out


@pytest.mark.gpu
@gpu
def test_transfer_on_cuda_times_every_copy() -> None:
    p = TransferParams(sizes=(4096, 1 << 20), min_run_time=0.01)
    r = run(S.run_transfer, p, CUDA)
    assert r.gpu_seconds is not None and r.gpu_gbps is not None and r.gpu_seconds.shape == (4, 2)
    np.testing.assert_array_equal(r.gpu_gbps, r.sizes / r.gpu_seconds / 1e9)
    assert r.pin_seconds is not None and np.all(r.pin_seconds > 0)
    assert r.return_seconds is not None and r.return_seconds.shape == (2, 2) and r.gpu_only == ()
    assert r.device_name == torch.cuda.get_device_name(CUDA)
