"""The Speed-and-memory lesson: FLOP counts, bookkeeping and structure against torch or a computation here.

Timings are never compared: the machines are shared and noisy. What is checked is what the numbers are
made of (FLOPs by torch's own FlopCounterMode, TFLOP/s from the arrays, the crossover and the peak
table's lookup), what memory is kept (saved-tensor counts against the checkpointing formula, derived
here from torch's splitting, and recomputations counted in backward), sharing against numpy, exact
gradients under checkpointing, and on CUDA (gpu marker) that the synchronised clock reads at least the naive one.
Also: links that set an op load its sizes, the sliders' ladders and stops, each prediction's answer, and
the scripts' own counts (a second implementation of saved bytes, new outputs and sharing) against the run's.
The contract every experiment keeps (run or refuse, determinism, scripts run) is tests/core/test_contract.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential
from torch.utils.flop_counter import FlopCounterMode

from core.experiment import Experiment
from core.lessons.speed import EXPERIMENTS, common, cudnn, footprint, peaks, scaling, timing, transfer
from core.lessons.speed.cudnn import CudnnParams
from core.lessons.speed.footprint import FootprintParams
from core.lessons.speed.scaling import ScalingParams
from core.lessons.speed.timing import TimingParams
from core.lessons.speed.transfer import TransferParams
from core.params import InvalidParams, Params
from core.runner import Config, ExperimentError, execute
from tests.scripts import Ran, numbers, run_scripts

CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
# The lesson's own limits keep a run to a few seconds of one CPU core; the runner's default work
# budget may be lower (see the report): the tests run under a budget that admits every setting here.
ROOMY = Config(max_gwork=1000)


def run(experiment: Experiment[Any, Any], params: Params, device: torch.device = CPU) -> Any:
    """Run an experiment through the runner alone on its device, as the page does."""
    return execute(experiment.run, params, device=device, exclusive=True, config=ROOMY)


def refusal(p: Params) -> InvalidParams:
    """Return the InvalidParams that p.validate() raises."""
    with pytest.raises(InvalidParams) as caught:
        p.validate()
    return caught.value


def spec(cls: type[Params], name: str) -> Any:
    """Return the FieldSpec of one field of a Params class."""
    return next(s for s in cls.specs() if s.name == name)


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
    assert common.flops(op, size) == counted_flops(common.op_call(op, a, b))
    assert common.op_call(op, a, b)().shape == a.shape  # conv2d's padding keeps the side
    # and the run draws operands of these shapes
    small = 8
    real = common.operands(op, small, torch.float32, CPU, torch.Generator().manual_seed(0))
    assert common.flops(op, small) == counted_flops(common.op_call(op, *real))
    expected = [(small, small), (small, small)] if op == "matmul" else [(1, 64, small, small), (64, 64, 3, 3)]
    assert [tuple(t.shape) for t in real] == expected


def test_stack_flops_equal_torchs_flop_counter() -> None:
    x = torch.randn(2, 3, 20, 20)
    weights = [torch.randn(32, 3, 3, 3), torch.randn(32, 32, 3, 3), torch.randn(32, 32, 3, 3)]

    def forward() -> None:
        h = x
        for w in weights:
            h = F.relu(F.conv2d(h, w, padding=1))

    assert cudnn.stack_flops(2, 20) == counted_flops(forward)


@pytest.mark.parametrize("op", common.OPS)
@pytest.mark.parametrize("limit", [1e6, 2.5e11 / 8, scaling.CPU_MAX_FLOPS])
def test_largest_size_is_the_last_size_within_the_limit(op: str, limit: float) -> None:
    n = common.largest_size(op, limit)
    assert common.flops(op, n) <= limit < common.flops(op, n + 1)


def test_the_cpu_work_limit_is_quartered_for_16_bit_types() -> None:
    assert scaling.cpu_max_flops("float32") == scaling.cpu_max_flops("tf32") == 2 * 2048**3
    assert scaling.cpu_max_flops("bfloat16") == scaling.cpu_max_flops("float16") == 2 * 2048**3 / 4
    assert common.largest_size("matmul", scaling.cpu_max_flops("float32")) == 2048


# --------------------------------------------------------------------------------------------
# 1. timing


@pytest.mark.parametrize("p", [TimingParams(size=64, iters=6), TimingParams(op="conv2d", size=16, iters=5, seed=3)])
def test_timing_on_the_cpu_reads_every_call_and_has_no_events(p: TimingParams) -> None:
    benchmark_flag = torch.backends.cudnn.benchmark
    r = run(timing.TIMING, p)
    assert torch.backends.cudnn.benchmark == benchmark_flag
    assert (r.op, r.size, r.flops, r.device) == (p.op, p.size, common.flops(p.op, p.size), "cpu")
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
    for op, size in timing.TIMING_DEFAULT_SIZE.items():
        TimingParams(op=op, size=size, iters=100).validate()
        assert TimingParams.for_op(op) == TimingParams(op=op, size=size)


@pytest.mark.parametrize("op", common.OPS)
def test_each_ops_defaults_are_valid_and_within_the_budget(op: str) -> None:
    for p in (TimingParams.for_op(op), ScalingParams.for_op(op)):
        p.validate()
        assert p.estimate_bytes() <= 512 * 2**20  # the runner's default budget
    assert ScalingParams.for_op(op).sizes == scaling.SCALING_SIZES[op]


# --------------------------------------------------------------------------------------------
# 2. scaling


def test_scaling_on_the_cpu_computes_tflops_from_its_arrays_and_skips_past_the_limit() -> None:
    r = run(scaling.SCALING, ScalingParams(sizes=(8, 24, 4096), min_run_time=0.01))
    assert r.sizes.tolist() == [8, 24, 4096] and r.flops.tolist() == [2 * n**3 for n in (8, 24, 4096)]
    assert r.cpu_skipped == (4096,) and r.cpu_max_flops == scaling.CPU_MAX_FLOPS
    assert np.isnan(r.cpu_seconds[2]) and np.all(r.cpu_seconds[:2] > 0)
    np.testing.assert_array_equal(r.cpu_tflops, r.flops / r.cpu_seconds / 1e12)
    assert r.cpu_peak_tflops == np.nanmax(r.cpu_tflops)  # the CPU's "peak" is measured, not a spec
    np.testing.assert_array_equal(r.cpu_fraction, r.cpu_tflops / r.cpu_peak_tflops)
    assert r.gpu_name is r.gpu_seconds is r.gpu_tflops is r.gpu_fraction is r.gpu_peak_tflops is r.crossover is None
    assert r.gpu_only == ("gpu", "crossover", "gpu_peak") and not r.tf32_active


def test_scaling_in_16_bit_skips_earlier_on_the_cpu() -> None:
    r = run(scaling.SCALING, ScalingParams(op="conv2d", dtype="bfloat16", sizes=(8, 256), min_run_time=0.01))
    assert r.cpu_skipped == (256,) and common.flops("conv2d", 256) <= scaling.CPU_MAX_FLOPS  # float32 would time it
    assert np.isfinite(r.cpu_seconds[0]) and r.flops.tolist() == [common.flops("conv2d", 8), common.flops("conv2d", 256)]


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
    assert scaling.crossover(np.array(sizes), np.array(cpu, dtype=float), np.array(gpu, dtype=float)) == expected
    assert scaling.crossover(np.array(sizes), np.array(cpu, dtype=float), None) is None


@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A10G", None),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", None),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "V100S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090 D", None),
        ("NVIDIA GeForce RTX 3090", None),
    ],
)
def test_gpu_names_find_their_datasheet_row(name: str, row: str | None) -> None:
    assert peaks.gpu_row(name) == row
    for dtype in scaling.DTYPES:
        assert peaks.gpu_peak_tflops(name, dtype) == (None if row is None else peaks.PEAK_TFLOPS[row][dtype])


def test_peak_table_is_complete_and_tensor_cores_beat_plain_fp32() -> None:
    assert set(peaks.PEAK_TFLOPS) == {row for _, row in peaks.GPU_PATTERNS if row is not None}
    for row, card in peaks.PEAK_TFLOPS.items():
        assert set(card) == set(scaling.DTYPES), row
        fp32 = card["float32"]
        assert fp32 is not None and 0 < fp32 <= (card["tf32"] or 0), row
        assert (card["float16"] or 0) >= (card["tf32"] or 0), row
        assert card["bfloat16"] in (None, card["float16"]), row  # the same tensor-core rate where it exists
    assert peaks.PEAK_TFLOPS["H100 SXM"] == {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5}
    assert peaks.PEAK_TFLOPS["A100"] == {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0}


def fake_sweep(sizes: list[int], cpu: list[float], gpu: list[float] | None, name: str | None) -> scaling.ScalingResult:
    """Return a ScalingResult built from made-up times, as a GPU server would measure them."""
    k = len(sizes)
    gpu_seconds = None if gpu is None else np.array(gpu)
    gpu_iqr = None if gpu is None else np.zeros(k)
    measured = scaling.Measured(
        "matmul",
        "float32",
        np.array(sizes, dtype=np.int64),
        "cpu",
        np.array(cpu),
        np.zeros(k),
        name,
        gpu_seconds,
        gpu_iqr,
        False,
    )
    return scaling.scaling_result(measured)


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
    merged = scaling.merge_scaling(points)
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
        scaling.merge_scaling([points[0], fake_sweep([64], [1e-5], None, None)])


def test_merging_real_one_point_runs_gives_the_sweeps_structure() -> None:
    p = ScalingParams(op="conv2d", sizes=(8, 16, 512), min_run_time=0.01)
    whole = run(scaling.SCALING, p)
    merged = scaling.merge_scaling([run(scaling.SCALING, dataclasses.replace(p, sizes=(n,))) for n in (16, 512, 8)])
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
    ScalingParams(sizes=scaling.SCALING_SIZES["conv2d"], op="conv2d").validate()


# --------------------------------------------------------------------------------------------
# 3. cudnn


def test_cudnn_on_the_cpu_times_every_iteration_of_both_modes() -> None:
    benchmark_flag = torch.backends.cudnn.benchmark
    p = CudnnParams(batch=1, iters=5)
    r = run(cudnn.CUDNN, p)
    assert torch.backends.cudnn.benchmark == benchmark_flag
    assert r.shapes == ("fixed", "varying") and r.benchmark == (False, True)
    assert r.sides.tolist() == [[64] * 5, list(cudnn.VARYING_SIDES[:5])]
    assert len(set(r.sides[1].tolist())) == 5  # a new shape every iteration
    assert r.flops.tolist() == [[cudnn.stack_flops(1, int(s)) for s in row] for row in r.sides]
    assert r.seconds.shape == (2, 2, 5) and np.all(r.seconds > 0)
    np.testing.assert_array_equal(r.median, np.median(r.seconds, axis=2))
    np.testing.assert_array_equal(r.total, r.seconds.sum(axis=2))
    assert not r.flag_has_effect and r.cudnn_version is None and r.gpu_only == ("cudnn",)
    one = run(cudnn.CUDNN, dataclasses.replace(p, shapes=("varying",)))
    assert one.seconds.shape == (1, 2, 5) and one.sides.tolist() == r.sides[1:].tolist()


def test_varying_sides_cycle_past_the_list() -> None:
    n = len(cudnn.VARYING_SIDES)
    sides = cudnn.iteration_sides("varying", n + 3)
    assert sides[:n] == cudnn.VARYING_SIDES and sides[n:] == cudnn.VARYING_SIDES[:3]
    assert cudnn.FIXED_SIDE not in (cudnn.WARM_UP_SIDE,) and cudnn.WARM_UP_SIDE not in cudnn.VARYING_SIDES


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
        assert footprint.checkpoint_saved_activations(depth, s) == saved_by_checkpointing(depth, s)
    assert footprint.checkpoint_saved_activations(depth, 1) == depth + 1


@pytest.fixture(scope="module")
def memory() -> tuple[FootprintParams, footprint.FootprintResult]:
    p = FootprintParams(width=64, depth=6, batch=16, min_run_time=0.01, seed=4)
    return p, run(footprint.FOOTPRINT, p)


def test_no_grad_and_inference_mode_keep_nothing_for_backward(
    memory: tuple[FootprintParams, footprint.FootprintResult],
) -> None:
    p, r = memory
    act = p.batch * p.width * 4
    assert r.activation_bytes == act and r.modes == footprint.GRAD_MODES and r.relus == footprint.RELUS
    assert r.saved_bytes[1:].tolist() == [[0, 0], [0, 0]]
    # with grad: X and each block's ReLU output (the next Linear's input); the Linear outputs are not kept
    assert r.saved_bytes[0].tolist() == [(p.depth + 1) * act] * 2


def test_in_place_relu_allocates_half_the_new_outputs(memory: tuple[FootprintParams, footprint.FootprintResult]) -> None:
    p, r = memory
    act = p.batch * p.width * 4
    assert r.new_tensors.tolist() == [[2 * p.depth, p.depth]] * 3
    assert r.new_bytes.tolist() == [[2 * p.depth * act, p.depth * act]] * 3
    assert np.all(r.new_bytes[:, 1] < r.new_bytes[:, 0])
    assert r.cuda_peak_bytes is None and r.ckpt_cuda_peak_bytes is None and r.gpu_only == ("cuda_peak",)


def test_checkpointing_keeps_what_the_formula_says_and_changes_no_gradient(
    memory: tuple[FootprintParams, footprint.FootprintResult],
) -> None:
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


def test_one_segments_value_runs_alone_and_counts_the_same(memory: tuple[FootprintParams, footprint.FootprintResult]) -> None:
    p, r = memory
    one = run(footprint.FOOTPRINT, dataclasses.replace(p, segments=(3,)))
    assert one.segments.tolist() == [3] and one.ckpt_saved_bytes.tolist() == [r.ckpt_saved_bytes[2]]
    for name in ("saved_bytes", "new_bytes", "new_tensors"):
        np.testing.assert_array_equal(getattr(one, name), getattr(r, name))


def test_memory_refuses_segments_past_the_depth_and_too_much_work() -> None:
    e = refusal(FootprintParams(depth=4, segments=(2, 5)))
    assert (e.field, e.key, e.info) == ("segments", "more_than_depth", {"max": 4})
    assert refusal(FootprintParams(segments=(3, 2))).key == "not_increasing"
    e = refusal(FootprintParams(width=2048, depth=16, batch=1024))
    assert (e.field, e.key) == ("batch", "too_large")
    FootprintParams(width=2048, depth=16, batch=e.info["max"]).validate()
    assert refusal(FootprintParams(width=2048, depth=16, batch=e.info["max"] + 1)).key == "too_large"
    e = refusal(FootprintParams(width=2048, depth=32, batch=1))  # one sample is too much: the width is
    assert (e.field, e.key) == ("width", "too_large")
    FootprintParams(width=e.info["max"], depth=32, batch=1).validate()
    assert refusal(FootprintParams(width=e.info["max"] + 1, depth=32, batch=1)).field == "width"
    with pytest.raises(ExperimentError) as caught:  # valid, but over the default budget
        run(footprint.FOOTPRINT, FootprintParams(width=e.info["max"], depth=32, batch=1))
    assert caught.value.key == "budget"


# --------------------------------------------------------------------------------------------
# 5. transfer


def test_transfer_sharing_flags_agree_with_numpy() -> None:
    p = TransferParams(sizes=(1024, 4096, 65536), min_run_time=0.01)
    r = run(transfer.TRANSFER, p)
    assert r.sizes.tolist() == list(p.sizes) and r.numpy_methods == transfer.NUMPY_METHODS
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
    assert r.gpu_only == ("host_device",) and r.gpu_methods == transfer.GPU_METHODS


def test_transfer_bounds_its_total_and_its_order() -> None:
    e = refusal(TransferParams(sizes=tuple(2**28 - 1024 * k for k in range(4, -1, -1))))
    assert (e.field, e.key, e.info) == ("sizes", "too_much_data", {"max_mb": 1024})
    assert refusal(TransferParams(sizes=(4096, 1024))).key == "not_increasing"
    assert transfer.TRANSFER_SIZES == (4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


def test_transfer_one_size_has_the_sweeps_structure() -> None:
    p = TransferParams(sizes=(1024, 2048), min_run_time=0.01)
    whole, one = run(transfer.TRANSFER, p), run(transfer.TRANSFER, dataclasses.replace(p, sizes=(2048,)))
    for f in dataclasses.fields(whole):
        a, b = getattr(whole, f.name), getattr(one, f.name)
        if isinstance(a, np.ndarray):
            assert a.shape[:-1] == b.shape[:-1] and b.shape[-1] == 1 and a.dtype == b.dtype, f.name
    np.testing.assert_array_equal(one.shares_memory[:, 0], whole.shares_memory[:, 1])


# --------------------------------------------------------------------------------------------
# Links: a choice that loads other fields brings them along


def test_a_link_that_sets_the_op_gets_that_ops_sizes() -> None:
    p, rejected = TimingParams.from_query({"tab": "timing", "timing.op": "conv2d"}, "timing")
    assert rejected == [] and p == TimingParams.for_op("conv2d") and p.size == timing.TIMING_DEFAULT_SIZE["conv2d"]
    p, rejected = TimingParams.from_query({"timing.op": "conv2d", "timing.size": "32"}, "timing")
    assert rejected == [] and (p.op, p.size) == ("conv2d", 32)  # a size the link gives wins
    p, rejected = TimingParams.from_query({"timing.op": "conv2d", "timing.size": "x"}, "timing")
    assert [r.field for r in rejected] == ["size"] and p == TimingParams.for_op("conv2d")
    p, rejected = TimingParams.from_query({"timing.op": "eval", "timing.size": "32"}, "timing")
    assert [r.field for r in rejected] == ["op"] and (p.op, p.size) == ("matmul", 32)
    p, rejected = ScalingParams.from_query({"scaling.op": "conv2d"}, "scaling")
    assert rejected == [] and p == ScalingParams.for_op("conv2d")


# --------------------------------------------------------------------------------------------
# Sliders: ladders over decades, stops where the lesson's work limit is


def test_the_size_and_batch_sliders_are_ladders_of_powers_of_two_through_the_defaults() -> None:
    ladders = {
        (TimingParams, "size"): (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        (CudnnParams, "batch"): (1, 2, 4, 8, 16, 32, 64),
        (FootprintParams, "width"): (16, 32, 64, 128, 256, 512, 1024, 2048),
        (FootprintParams, "batch"): (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    }
    for (cls, name), stops in ladders.items():
        assert spec(cls, name).meta["ladder"] == stops, (cls, name)
        assert getattr(cls(), name) in stops
    for op in common.OPS:
        assert TimingParams.for_op(op).size in spec(TimingParams, "size").meta["ladder"]
    TimingParams(size=300).validate()  # any size in bounds stays valid (a link may carry it)


@pytest.mark.parametrize("op", common.OPS)
def test_the_timing_sliders_stop_at_the_largest_size_and_iters_the_work_limit_allows(op: str) -> None:
    size_spec, iters_spec = spec(TimingParams, "size"), spec(TimingParams, "iters")
    largest = TimingParams(op=op).upper_bound(size_spec)
    assert largest == common.largest_size(op, timing.TIMING_MAX_FLOPS / (5 + timing.BENCH_CALLS)) < 4096
    TimingParams(op=op, size=largest, iters=5).validate()
    e = refusal(TimingParams(op=op, size=largest + 1, iters=5))  # the work limit names itself first
    assert (e.field, e.key, e.info) == ("size", "too_large", {"max": largest})
    for size in (8, TimingParams.for_op(op).size, largest // 2, largest):
        p = TimingParams(op=op, size=size)
        most = p.upper_bound(iters_spec)
        assert most is not None and 5 <= most <= 100
        dataclasses.replace(p, iters=int(most)).validate()
        if most < 100:
            e = refusal(dataclasses.replace(p, iters=int(most) + 1))
            assert (e.field, e.key, e.info) == ("iters", "too_much_work", {"max": most})


def test_the_cudnn_and_footprint_sliders_stop_where_their_refusals_say() -> None:
    iters = spec(CudnnParams, "iters")
    for batch in (1, 8, 16, 64):
        for shapes in (("fixed",), cudnn.SHAPES):
            p = CudnnParams(batch=batch, shapes=shapes, iters=5)
            most = int(p.upper_bound(iters) or 0)
            dataclasses.replace(p, iters=most).validate()
            if most < 50:
                assert refusal(dataclasses.replace(p, iters=most + 1)).info == {"max": most}
    width, batch_spec = spec(FootprintParams, "width"), spec(FootprintParams, "batch")
    for p in (FootprintParams(), FootprintParams(depth=32, batch=1), FootprintParams(width=2048, depth=16)):
        most = int(p.upper_bound(batch_spec) or 0)
        if p.work_per_sample() <= footprint.MEMORY_MAX_FLOPS:
            dataclasses.replace(p, batch=most).validate()
        if most < 1024:
            e = refusal(dataclasses.replace(p, batch=most + 1))
            assert (e.field, e.info) in (("batch", {"max": most}), ("width", {"max": p.max_width()}))
    deep = FootprintParams(depth=32, batch=1)
    widest = int(deep.upper_bound(width) or 0)
    assert widest == deep.max_width() < 2048
    e = refusal(dataclasses.replace(deep, width=widest + 1))
    assert (e.field, e.key, e.info) == ("width", "too_large", {"max": widest})


def test_work_estimates_count_the_multiply_adds_of_the_fixed_calls() -> None:
    p = TimingParams(size=64, iters=10)
    assert p.estimate_work() == 64**3 * (10 + timing.BENCH_CALLS)
    q = ScalingParams(sizes=(8, 4096))  # 4096 is over the CPU's limit: not run here, not counted
    assert q.estimate_work() == 8**3 * scaling.CALLS_PER_POINT
    c = CudnnParams(batch=2, iters=5, shapes=("fixed",))
    assert c.estimate_work() == (cudnn.stack_flops(2, cudnn.WARM_UP_SIDE) + 10 * cudnn.stack_flops(2, 64)) / 2
    f = FootprintParams(width=32, depth=4, batch=8)
    assert f.estimate_work() == 8 * f.work_per_sample() / 2
    assert TransferParams(sizes=(1024,)).estimate_work() == 1024 * transfer.TOUCHES_PER_BYTE


# --------------------------------------------------------------------------------------------
# Predictions: each answer at its params


def fake_timing(sync: list[float]) -> timing.TimingResult:
    """Return a TimingResult with made-up synchronised times (the rest as a CPU run would have it)."""
    times = np.array(sync)
    return timing.TimingResult(
        "matmul",
        512,
        common.flops("matmul", 512),
        "cpu",
        "cpu",
        times,
        times,
        None,
        float(np.median(times)),
        float(np.median(times)),
        None,
        1e-3,
        0.0,
        times[:1],
        1,
        True,
        False,
        ("events",),
    )


def test_the_bare_clock_reads_the_same_as_the_synchronised_one_on_a_cpu() -> None:
    assert timing.bare_clock_answer(fake_timing([9e-3, 3e-3, 3e-3, 4e-3])) == "same"
    gpu = dataclasses.replace(fake_timing([9e-3, 3e-3, 3e-3]), naive=np.array([1e-5] * 3), naive_median=1e-5)
    assert timing.bare_clock_answer(gpu) == "shorter"
    r = run(timing.TIMING, timing.BARE_CLOCK.params)
    assert r.op == "conv2d" != TimingParams().op  # not the case the page opens on
    assert timing.bare_clock_answer(r) == "same" and np.array_equal(r.naive, r.sync)


def fake_point(n: int, seconds: float) -> scaling.ScalingResult:
    """Return a one-size CPU sweep that took `seconds` per call."""
    sizes = np.array([n], dtype=np.int64)
    return scaling.scaling_result(
        scaling.Measured("matmul", "float32", sizes, "cpu", np.array([seconds]), np.zeros(1), None, None, None, False)
    )


def test_doubling_answers_the_work_ratio_whatever_the_clock_measured() -> None:
    p = scaling.DOUBLING.params
    assert p.sizes == (256, 512) and common.flops("matmul", 512) / common.flops("matmul", 256) == 8
    busy = [fake_point(n, common.flops("matmul", n) / 50e9) for n in p.sizes]  # a CPU at a steady 50 GFLOP/s
    assert scaling.doubling_answer(busy) == "8"
    assert scaling.doubling_answer(busy[::-1]) == "8"  # the parts come in any order
    # A CI run beside another test process measured every 256 block at half speed: times 4x apart.
    assert scaling.doubling_answer([fake_point(256, 1e-3), fake_point(512, 4.1e-3)]) == "8"
    # conv2d's work grows as the square of the side: doubling it quadruples the FLOPs.
    conv = [
        scaling.scaling_result(
            scaling.Measured("conv2d", "float32", np.array([n]), "cpu", np.array([1e-3]), np.zeros(1), None, None, None, False)
        )
        for n in (32, 64)
    ]
    assert scaling.doubling_answer(conv) == "4"


def test_the_checkpoint_prediction_asks_about_a_depth_the_page_does_not_show_by_default() -> None:
    p = footprint.CHECKPOINT_KEPT.params
    assert (p.depth, p.segment_values()) == (16, (4,)) and p.depth != footprint.FootprintParams().depth
    r = run(footprint.FOOTPRINT, dataclasses.replace(p, min_run_time=0.01))
    # Three checkpointed segments keep their inputs, the plain last one its input and its 4 blocks' outputs.
    assert footprint.checkpoint_kept_answer(r) == "8" == str(footprint.checkpoint_saved_activations(16, 4))
    assert r.ckpt_saved_bytes[0] == 8 * r.activation_bytes == r.ckpt_theory_bytes[0]
    assert r.saved_bytes[0, 0] == 17 * r.activation_bytes  # without checkpointing: depth + 1


def test_as_tensor_shares_at_the_predictions_params() -> None:
    parts = [run(transfer.TRANSFER, dataclasses.replace(transfer.AS_TENSOR.params, sizes=(n,))) for n in (1 << 20,)]
    assert transfer.AS_TENSOR.params.sizes == (1 << 20,)
    assert transfer.as_tensor_answer(parts) == "shares"


# --------------------------------------------------------------------------------------------
# The scripts count for themselves: saved bytes and new outputs with their own hooks, FLOPs by
# their own formula, sharing with numpy. The contract suite compares what `shown` lists; these
# check what the scripts compute on their own beyond it.

EXAMPLES = [(e, p) for e in EXPERIMENTS for p in e.examples]


def example_id(case: tuple[Experiment[Any, Any], Params]) -> str:
    experiment, p = case
    defaults = experiment.params()
    return (
        experiment.name
        + "("
        + ",".join(f"{s.name}={getattr(p, s.name)}" for s in p.specs() if getattr(p, s.name) != getattr(defaults, s.name))
        + ")"
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every example's script on its own; return id -> what it did."""
    folder: Path = tmp_path_factory.mktemp("speed_scripts")  # no core/ here: the scripts must stand alone
    sources = {example_id(case): case[0].write_script(case[1], "cpu") for case in EXAMPLES}
    return run_scripts(sources, folder, timeout=300, warm_up=True)


def test_the_footprint_script_checkpoints_with_exact_gradients(ran: dict[str, Ran]) -> None:
    for case in EXAMPLES:
        if case[0] is footprint.FOOTPRINT:
            out = ran[example_id(case)].out
            diffs = [numbers(line.split("grad max diff")[1])[0] for line in out.splitlines() if "grad max diff" in line]
            assert diffs and max(diffs) <= 1e-5  # 0 on a CPU; a GPU may pick other kernels


# --------------------------------------------------------------------------------------------
# CUDA only: the GPU parts exist, and the clocks relate as they must


CUDA = torch.device("cuda")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("p", [TimingParams(size=256, iters=8), TimingParams(op="conv2d", size=32, iters=8)])
def test_timing_on_cuda_synchronised_reads_at_least_the_naive_clock(p: TimingParams) -> None:
    flag = torch.backends.cudnn.benchmark
    r = run(timing.TIMING, p, CUDA)
    assert torch.backends.cudnn.benchmark == flag  # restored
    assert r.device == "cuda" and r.device_name == torch.cuda.get_device_name(CUDA) and r.gpu_only == ()
    assert r.events is not None and r.events.shape == r.naive.shape == r.sync.shape == (p.iters,)
    assert np.all(r.sync >= r.naive) and np.all(r.events > 0) and not r.sync_is_naive
    assert r.events_median == np.median(r.events) and r.cudnn_benchmark == (p.op == "conv2d")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", scaling.DTYPES)
def test_scaling_on_cuda_times_every_size_and_looks_up_the_peak(dtype: str) -> None:
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    r = run(scaling.SCALING, ScalingParams(dtype=dtype, sizes=(16, 256, 4096), min_run_time=0.01), CUDA)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert r.gpu_seconds is not None and r.gpu_tflops is not None and np.all(r.gpu_seconds > 0)  # 4096 too
    assert r.cpu_skipped == (4096,) and r.gpu_name == torch.cuda.get_device_name(CUDA)
    np.testing.assert_array_equal(r.gpu_tflops, r.flops / r.gpu_seconds / 1e12)
    assert r.crossover == scaling.crossover(r.sizes, r.cpu_seconds, r.gpu_seconds)
    assert r.gpu_peak_tflops == peaks.gpu_peak_tflops(r.gpu_name, dtype)
    assert (r.gpu_fraction is None) == (r.gpu_peak_tflops is None)
    assert r.tf32_active == (dtype == "tf32" and torch.cuda.get_device_capability(CUDA) >= (8, 0))
    assert r.gpu_only == ()


@pytest.mark.gpu
@gpu
def test_cudnn_on_cuda_restores_the_flag_and_reports_cudnn() -> None:
    flag = torch.backends.cudnn.benchmark
    r = run(cudnn.CUDNN, CudnnParams(batch=2, iters=5), CUDA)
    assert torch.backends.cudnn.benchmark == flag
    assert r.flag_has_effect == torch.backends.cudnn.is_available() and r.gpu_only == ()
    assert r.cudnn_version == torch.backends.cudnn.version()
    assert r.seconds.shape == (2, 2, 5) and np.all(r.seconds > 0)


@pytest.mark.gpu
@gpu
def test_memory_on_cuda_has_allocator_peaks_and_checkpoint_keeps_what_it_says() -> None:
    p = FootprintParams(width=64, depth=6, batch=8, min_run_time=0.01)
    r = run(footprint.FOOTPRINT, p, CUDA)
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
        assert abs(kept - (footprint.checkpoint_saved_activations(p.depth, s) - 1) * act) < act, s
        del out


@pytest.mark.gpu
@gpu
def test_transfer_on_cuda_times_every_copy() -> None:
    p = TransferParams(sizes=(4096, 1 << 20), min_run_time=0.01)
    r = run(transfer.TRANSFER, p, CUDA)
    assert r.gpu_seconds is not None and r.gpu_gbps is not None and r.gpu_seconds.shape == (4, 2)
    np.testing.assert_array_equal(r.gpu_gbps, r.sizes / r.gpu_seconds / 1e9)
    assert r.pin_seconds is not None and np.all(r.pin_seconds > 0)
    assert r.return_seconds is not None and r.return_seconds.shape == (2, 2) and r.gpu_only == ()
    assert r.device_name == torch.cuda.get_device_name(CUDA)
