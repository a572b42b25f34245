"""CPU vs GPU as the size grows: time and achieved TFLOP/s per size, the crossover, and the fraction of the peak.

The page sweeps `sizes` one point at a time (`sweep="sizes"`); merge_scaling puts the points back
together, since the crossover and the CPU's measured peak need the whole sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.speed.common import (
    CPU,
    OPS,
    backend_flags,
    check_increasing,
    cpu_threads,
    cpu_threads_limit,
    device_name,
    flops,
    footprint_bytes,
    op_call,
    operands,
    operands_context,
)
from core.lessons.speed.peaks import gpu_peak_tflops, peaks_by_pattern
from core.measure import time_call
from core.params import Params, bounds, choices, seed_field, shape_spec
from core.runner import cpu_model

DTYPES = ("float32", "tf32", "bfloat16", "float16")
TORCH_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CODE = {"float32": "torch.float32", "tf32": "torch.float32", "bfloat16": "torch.bfloat16", "float16": "torch.float16"}
SCALING_SIZES = {"matmul": (16, 32, 64, 128, 256, 512, 1024), "conv2d": (8, 16, 32, 64, 128, 256, 512)}
# The CPU side skips sizes whose one call does more than this (matmul n <= 2048 in float32: about 0.2 s a
# call on one core; conv2d side <= 482); the GPU side runs every size.
CPU_MAX_FLOPS = 2 * 2048**3
# bfloat16 / float16 run on the CPU too (this is what the lesson shows), but a CPU without native 16-bit
# arithmetic (AVX512-BF16, AMX, AVX512-FP16) converts in software and is several times slower than in
# float32, so their limit is a quarter: matmul n <= 1290.
HALF_CPU_SLOWDOWN = 4
CALLS_PER_POINT = 3  # time_call's fewest: the warm-up, benchmark's block-size estimate, one block


def cpu_max_flops(dtype: str) -> float:
    """Return the most FLOPs one call may do for the CPU side to time it."""
    return CPU_MAX_FLOPS / (HALF_CPU_SLOWDOWN if TORCH_DTYPES[dtype].itemsize == 2 else 1)


def achieved_tflops(flop_counts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Return flops / seconds in TFLOP/s (nan where the time is nan)."""
    return np.asarray(flop_counts, dtype=np.float64) / np.asarray(seconds, dtype=np.float64) / 1e12


def crossover(sizes: np.ndarray, cpu_seconds: np.ndarray, gpu_seconds: np.ndarray | None) -> int | None:
    """Return the smallest size where the GPU took less time than the CPU, or None (no GPU, or never).

    Sizes the CPU skipped (nan) cannot be compared and do not count.
    """
    if gpu_seconds is None:
        return None
    for i in np.argsort(sizes, kind="stable"):
        c, g = float(cpu_seconds[i]), float(gpu_seconds[i])
        if math.isfinite(c) and math.isfinite(g) and g < c:
            return int(sizes[i])
    return None


@dataclass(frozen=True)
class ScalingParams(Params):
    op: str = field(default="matmul", metadata=choices(*OPS))
    dtype: str = field(default="float32", metadata=choices(*DTYPES))
    # matmul n / conv input side, rising; SCALING_SIZES holds each op's default sweep
    sizes: tuple[int, ...] = field(default=SCALING_SIZES["matmul"], metadata=shape_spec(max_dims=10, lo=8, hi=8192, sep=","))
    min_run_time: float = field(default=0.1, metadata=bounds(0.01, 0.3, 0.01))  # seconds of benchmark blocks per point
    # CPU threads the CPU side times with: 1 up to the server's TORCHLAB_THREADS; the default is that limit, so a
    # link without it compares the GPU with the CPU as the server is configured to use it.
    threads: int = field(default=cpu_threads_limit(), metadata=bounds(1, 256, hi_of="max_threads"))
    seed: int = seed_field()

    def max_threads(self) -> int:
        """Return the most CPU threads a student may choose: the server's configured count (TORCHLAB_THREADS)."""
        return cpu_threads_limit()

    def roles(self) -> dict[str, str]:
        """Return the fields the page shows: the threads slider only where the server allows more than one thread."""
        shown = {s.name: s.name for s in self.specs()}
        if cpu_threads_limit() <= 1:
            del shown["threads"]  # nothing to choose; the page says the count next to the chart
        return shown

    @classmethod
    def for_op(cls, op: str) -> ScalingParams:
        """Return the defaults for op, with its own sweep (SCALING_SIZES)."""
        return cls(op=op, sizes=SCALING_SIZES[op])

    @classmethod
    def linked(cls, name: str, value: Any) -> dict[str, Any]:
        """Return the fields to reset when `name` changes: a new op starts from its own sweep."""
        return {"sizes": SCALING_SIZES[value]} if name == "op" and value in SCALING_SIZES else {}

    def validate(self) -> None:
        super().validate()
        check_increasing("sizes", self.sizes)

    def cpu_sizes(self) -> tuple[int, ...]:
        """Return the sizes the CPU side times (the others are over its work limit)."""
        return tuple(n for n in self.sizes if flops(self.op, n) <= cpu_max_flops(self.dtype))

    def estimate_bytes(self) -> int:
        element = TORCH_DTYPES[self.dtype].itemsize
        # One size at a time. A CPU-side size exists twice a moment (drawn on the device, copied to the CPU).
        cpu = set(self.cpu_sizes())
        return max((2 if n in cpu else 1) * footprint_bytes(self.op, n, element) for n in self.sizes)

    def estimate_work(self) -> float:
        """Return the multiply-adds of the CPU side's fewest calls per size (benchmark's blocks are bounded in seconds).

        The GPU side's calls are not counted: on a CPU server they do not run, and a GPU does them in a blink.
        """
        return sum(flops(self.op, n) / 2 * CALLS_PER_POINT for n in self.cpu_sizes())


@dataclass(frozen=True)
class ScalingResult:
    op: str
    dtype: str
    sizes: np.ndarray  # (k,) int64: matmul n / conv input side
    flops: np.ndarray  # (k,) int64 per call (see flops())
    cpu_name: str
    cpu_seconds: np.ndarray  # (k,) median seconds per call (torch.utils.benchmark); nan where skipped
    cpu_iqr: np.ndarray  # (k,) seconds; nan where skipped
    cpu_tflops: np.ndarray  # (k,) achieved TFLOP/s = flops / cpu_seconds / 1e12
    cpu_skipped: tuple[int, ...]  # sizes over the CPU's work limit (cpu_max_flops), not timed
    cpu_max_flops: float  # that limit, FLOPs per call
    cpu_peak_tflops: float | None  # the highest cpu_tflops measured in this sweep: "measured", not a spec
    cpu_fraction: np.ndarray  # (k,) cpu_tflops / cpu_peak_tflops
    gpu_name: str | None  # torch.cuda.get_device_name; None without CUDA
    gpu_seconds: np.ndarray | None  # (k,) median seconds per call on CUDA, every size
    gpu_iqr: np.ndarray | None
    gpu_tflops: np.ndarray | None
    gpu_peak_tflops: float | None  # PEAK_TFLOPS of this card and dtype (datasheet); None when unknown
    gpu_fraction: np.ndarray | None  # (k,) gpu_tflops / gpu_peak_tflops
    crossover: int | None  # smallest size where gpu_seconds < cpu_seconds (see crossover())
    tf32_active: bool  # dtype "tf32" on a CUDA card with TF32 units (compute capability >= 8.0); never on the CPU
    gpu_only: tuple[str, ...]  # ("gpu", "crossover", "gpu_peak") without CUDA
    cpu_threads: int = 1  # torch.get_num_threads() while the CPU side was timed (ScalingParams.threads)


@dataclass(frozen=True)
class Measured:
    """What a sweep measured, before anything is derived from it."""

    op: str
    dtype: str
    sizes: np.ndarray
    cpu_name: str
    cpu_seconds: np.ndarray
    cpu_iqr: np.ndarray
    gpu_name: str | None
    gpu_seconds: np.ndarray | None
    gpu_iqr: np.ndarray | None
    tf32_active: bool
    cpu_threads: int = 1  # the CPU threads the CPU side was timed with


def scaling_result(m: Measured) -> ScalingResult:
    """Return the ScalingResult of these measurements, with everything derived from them computed here."""
    flop_counts = np.array([flops(m.op, int(n)) for n in m.sizes], dtype=np.int64)
    cpu_tflops = achieved_tflops(flop_counts, m.cpu_seconds)
    measured = cpu_tflops[np.isfinite(cpu_tflops)]
    cpu_peak = float(measured.max()) if measured.size else None
    gpu_tflops = None if m.gpu_seconds is None else achieved_tflops(flop_counts, m.gpu_seconds)
    gpu_peak = None if m.gpu_name is None else gpu_peak_tflops(m.gpu_name, m.dtype)
    limit = cpu_max_flops(m.dtype)
    return ScalingResult(
        op=m.op,
        dtype=m.dtype,
        sizes=m.sizes,
        flops=flop_counts,
        cpu_name=m.cpu_name,
        cpu_seconds=m.cpu_seconds,
        cpu_iqr=m.cpu_iqr,
        cpu_tflops=cpu_tflops,
        cpu_skipped=tuple(int(n) for n, f in zip(m.sizes, flop_counts, strict=True) if f > limit),
        cpu_max_flops=limit,
        cpu_peak_tflops=cpu_peak,
        cpu_fraction=cpu_tflops / cpu_peak if cpu_peak else np.full(len(m.sizes), math.nan),
        gpu_name=m.gpu_name,
        gpu_seconds=m.gpu_seconds,
        gpu_iqr=m.gpu_iqr,
        gpu_tflops=gpu_tflops,
        gpu_peak_tflops=gpu_peak,
        gpu_fraction=None if gpu_tflops is None or gpu_peak is None else gpu_tflops / gpu_peak,
        crossover=crossover(m.sizes, m.cpu_seconds, m.gpu_seconds),
        tf32_active=m.tf32_active,
        gpu_only=() if m.gpu_name is not None else ("gpu", "crossover", "gpu_peak"),
        cpu_threads=m.cpu_threads,
    )


def run(p: ScalingParams, ctx: RunContext) -> ScalingResult:
    """Time one call per size on the CPU (up to the work limit) and on CUDA when the run has it."""
    dtype, device, k = TORCH_DTYPES[p.dtype], ctx.device, len(p.sizes)
    cuda = device.type == "cuda"
    gpu_seconds = gpu_iqr = None
    if cuda:
        gpu_seconds, gpu_iqr = np.full(k, math.nan), np.full(k, math.nan)
        # float32 means true FP32 (cuDNN uses TF32 for convolutions by default); tf32 switches both on.
        with backend_flags(device, tf32=p.dtype == "tf32"):
            for i, n in enumerate(p.sizes):
                ctx.check_deadline()
                a, b = operands(p.op, n, dtype, device, ctx.generator)
                timing = time_call(op_call(p.op, a, b), device, p.min_run_time)
                gpu_seconds[i], gpu_iqr[i] = timing.median, timing.iqr
                del a, b
    cpu_seconds, cpu_iqr = np.full(k, math.nan), np.full(k, math.nan)
    # The student's thread count, for the CPU side only: SCALING is exclusive, so nothing else runs meanwhile.
    with cpu_threads(p.threads):
        threads = torch.get_num_threads()
        for i, n in enumerate(p.sizes):
            if flops(p.op, n) > cpu_max_flops(p.dtype):
                continue
            ctx.check_deadline()
            a, b = (t.to(CPU) for t in operands(p.op, n, dtype, device, ctx.generator))
            timing = time_call(op_call(p.op, a, b), CPU, p.min_run_time)
            cpu_seconds[i], cpu_iqr[i] = timing.median, timing.iqr
            del a, b
    tf32_active = p.dtype == "tf32" and cuda and torch.cuda.get_device_capability(device) >= (8, 0)
    gpu_name = device_name(device) if cuda else None
    sizes = np.array(p.sizes, dtype=np.int64)
    cpu = (cpu_model(), cpu_seconds, cpu_iqr)
    gpu = (gpu_name, gpu_seconds, gpu_iqr)
    return scaling_result(Measured(p.op, p.dtype, sizes, *cpu, *gpu, tf32_active, threads))


def merge_scaling(parts: Sequence[ScalingResult]) -> ScalingResult:
    """Return one sweep from runs of single points (or any runs of one op and dtype), sorted by size.

    The crossover, the CPU's measured peak and every fraction are recomputed over the whole sweep.
    """
    first = parts[0]
    if any(
        r.op != first.op
        or r.dtype != first.dtype
        or (r.gpu_name is None) != (first.gpu_name is None)
        or r.cpu_threads != first.cpu_threads
        for r in parts
    ):
        raise ValueError("merge_scaling: the runs differ in op, dtype, device or CPU threads")
    sizes = np.concatenate([r.sizes for r in parts])
    order = np.argsort(sizes, kind="stable")

    def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        present = [a for a in arrays if a is not None]
        return np.concatenate(present)[order] if len(present) == len(arrays) else None

    cpu_seconds, cpu_iqr = joined([r.cpu_seconds for r in parts]), joined([r.cpu_iqr for r in parts])
    assert cpu_seconds is not None and cpu_iqr is not None
    gpu_seconds, gpu_iqr = joined([r.gpu_seconds for r in parts]), joined([r.gpu_iqr for r in parts])
    cpu = (first.cpu_name, cpu_seconds, cpu_iqr)
    return scaling_result(
        Measured(
            first.op,
            first.dtype,
            sizes[order],
            *cpu,
            first.gpu_name,
            gpu_seconds,
            gpu_iqr,
            first.tf32_active,
            first.cpu_threads,
        )
    )


def context(p: ScalingParams, device_type: str) -> dict[str, Any]:
    """Return the values cpu_vs_gpu_scaling.py.j2 reads (the script picks its device itself)."""
    return operands_context(p.op) | {
        "sizes": list(p.sizes),
        "dtype": p.dtype,
        "dtype_code": DTYPE_CODE[p.dtype],
        "element": "float32 (tf32 changes nothing on a CPU)" if p.dtype == "tf32" else p.dtype,
        "cpu_max_flops": repr(cpu_max_flops(p.dtype)),
        "seed": p.seed,
        "peaks": [(pattern, repr(peak)) for pattern, peak in peaks_by_pattern(p.dtype)],
        "min_run_time": repr(p.min_run_time),
        "tf32": p.dtype == "tf32",
        "threads": p.threads,  # replaces the process's count: the script times the CPU with the student's choice
    }


def shown(r: ScalingResult) -> list[float | str]:
    """Return what the page shows that the script prints: each size's FLOPs, which sizes the CPU skipped, the peak."""
    out: list[float | str] = [f"cpu threads {r.cpu_threads}"]
    for n, f in zip(r.sizes.tolist(), r.flops.tolist(), strict=True):
        out += [f"size {n} flops {f}" + (" cpu skipped" if n in r.cpu_skipped else " cpu "), n, f]
    if r.gpu_name is not None:
        out.append(f"gpu {r.gpu_name}: peak {r.gpu_peak_tflops} TFLOP/s")
    return out


def doubling_answer(parts: Sequence[ScalingResult]) -> str:
    """Return the option nearest (in log) to how many times the FLOPs the second size does as the first.

    The work, not the measured times: the times only approach its ratio on a quiet CPU at full rate,
    and a shared server is rarely quiet for both sizes. In a CI run beside another test process
    (2 vCPUs) every block of 256 ran at half speed and the fastest blocks' ratio was 4. A student
    who reasons "8" is right; the table shows how near this server's times came.
    """
    sweep = merge_scaling(parts)
    ratio = float(sweep.flops[1] / sweep.flops[0])
    return min(("2", "4", "8"), key=lambda option: abs(math.log(ratio / int(option))))


SCALING = Experiment(
    "scaling",
    ScalingParams,
    run,
    script="cpu_vs_gpu_scaling.py.j2",
    context=context,
    exclusive=True,
    sweep="sizes",
    shown=shown,
    examples=(
        ScalingParams(sizes=(8, 16, 4096), min_run_time=0.01),
        ScalingParams(op="conv2d", dtype="bfloat16", sizes=(8, 256), min_run_time=0.01),
        ScalingParams(dtype="tf32", sizes=(8,), min_run_time=0.01),
    ),
)
# A 512 x 512 matmul does how many times the work of a 256 x 256 one, and so takes how many times as long?
# A sweep: the answer gets the list of the parts' results (Prediction types it as one Result).
DOUBLING: Prediction[ScalingParams, Any] = Prediction(
    "doubling", SCALING, ScalingParams(sizes=(256, 512)), options=("2", "4", "8"), answer=doubling_answer
)
