"""Experiments of the "Speed and memory" lesson: each is Params, Result, run_* and code_*.

1. timing   - one matmul or conv2d timed four ways: a bare clock, a CUDA-synchronised clock, CUDA
              events and torch.utils.benchmark; every call from the cold first one.
2. scaling  - time and achieved TFLOP/s as the size grows, on the CPU and on CUDA: where the GPU
              wins (the crossover) and what fraction of the card's datasheet peak it reaches.
3. cudnn    - a small conv stack with torch.backends.cudnn.benchmark off and on, for a fixed input
              shape and for one that changes every iteration.
4. memory   - what a forward pass keeps for backward (grad, no_grad, inference_mode; in-place or not)
              and gradient checkpointing's memory-for-time trade-off.
5. transfer - torch.tensor (copies) vs torch.as_tensor / torch.from_numpy (share), and host <-> device
              copies: pageable vs pinned, blocking vs non_blocking.

The page runs each experiment with execute(..., exclusive=True): alone on its device, so nobody
else's work pollutes the clock, and so the process-wide switches some runs flip
(torch.backends.cudnn.benchmark, the two allow_tf32 flags) are seen by nobody else. They are set
only on CUDA (on the CPU they steer nothing) and always restored. Timings are noisy: tests check
structure and formulas, never speeds.

The CPU path always runs. What needs CUDA is None in the result and named in its `gpu_only`.
Sweeps are tuple fields (sizes, shapes, segments): the page runs one point at a time with
dataclasses.replace for a progress bar; a one-point run has the same structure, and
merge_scaling puts scaling's points back together (its crossover and peak need the whole sweep).
Results hold numpy arrays and plain Python values only; all randomness comes from ctx.generator.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from core.measure import cuda_peak_bytes, saved_activation_bytes, time_call
from core.params import InvalidParams, Params, bounds, choices, shape_spec
from core.runner import RunContext, cpu_model
from core.tensors import Experiment

CPU = torch.device("cpu")
OPS = ("matmul", "conv2d")
# The conv2d family of the lesson: one image, 64 -> 64 channels, 3x3 kernel, padding 1 (output side =
# input side). `size` is the input side. 64 channels keep it compute-bound enough for a GPU to show.
CONV_CHANNELS = 64
CONV_KERNEL = 3


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def flops(op: str, size: int) -> int:
    """Return the floating-point operations of one call (a multiply-add counts 2).

    matmul: an n x n by n x n product, 2 n^3. conv2d: 2 * N * C_out * H_out * W_out * C_in * kh * kw
    with N = 1, C_in = C_out = CONV_CHANNELS, H_out = W_out = size. Bias-free, as FlopCounterMode counts.
    """
    if op == "matmul":
        return 2 * size**3
    return 2 * 1 * CONV_CHANNELS * size * size * CONV_CHANNELS * CONV_KERNEL * CONV_KERNEL


def largest_size(op: str, max_flops: float) -> int:
    """Return the largest size whose one call does at most max_flops (0 when even size 1 does more)."""
    lo, hi = 0, 1 << 16
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if flops(op, mid) <= max_flops:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _footprint(op: str, size: int, element_size: int) -> int:
    """Return the bytes of one call's operands and result."""
    if op == "matmul":
        return 3 * size * size * element_size
    c, k = CONV_CHANNELS, CONV_KERNEL
    # input, output, weight, and as much again for the convolution's workspace (cuDNN, oneDNN)
    return 2 * (2 * c * size * size + c * c * k * k) * element_size


def _operands(
    op: str, size: int, dtype: torch.dtype, device: torch.device, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the two inputs of one call, drawn from g on device: (A, B) or (image, weight)."""
    if op == "matmul":
        a = torch.randn(size, size, generator=g, device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g, device=device, dtype=dtype)
        return a, b
    c, k = CONV_CHANNELS, CONV_KERNEL
    x = torch.randn(1, c, size, size, generator=g, device=device, dtype=dtype)
    w = torch.randn(c, c, k, k, generator=g, device=device, dtype=dtype)
    return x, w / math.sqrt(c * k * k)  # unit-variance outputs: float16 stays far from overflow


def _op(op: str, a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Return the call to time: a @ b, or conv2d(a, b) with padding that keeps the side."""
    if op == "matmul":
        return lambda: a @ b
    return lambda: F.conv2d(a, b, padding=CONV_KERNEL // 2)


def _sync(device: torch.device) -> None:
    """Wait for every kernel queued on device (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    """Return the GPU's name on CUDA, else the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


@contextmanager
def _backend_flags(device: torch.device, *, cudnn_benchmark: bool | None = None, tf32: bool | None = None) -> Iterator[None]:
    """Set cudnn.benchmark and/or both TF32 switches for the with-block on CUDA; restore them after.

    They are process-wide: the page runs these experiments exclusively, so no other run sees them. On
    the CPU they change nothing, so they are left alone (CPU runs may overlap in one process).
    """
    if device.type != "cuda":
        yield
        return
    cuda_backend, cudnn = torch.backends.cuda, torch.backends.cudnn
    saved = (cudnn.benchmark, cuda_backend.matmul.allow_tf32, cudnn.allow_tf32)
    try:
        if cudnn_benchmark is not None:
            cudnn.benchmark = cudnn_benchmark
        if tf32 is not None:
            cuda_backend.matmul.allow_tf32 = tf32
            cudnn.allow_tf32 = tf32
        yield
    finally:
        cudnn.benchmark, cuda_backend.matmul.allow_tf32, cudnn.allow_tf32 = saved


def _check_increasing(name: str, values: tuple[int, ...]) -> None:
    """Raise InvalidParams(name, 'not_increasing') unless values rise strictly (a sweep, in order)."""
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidParams(name, "not_increasing")


# --------------------------------------------------------------------------------------------
# 1. How to time: four clocks around the same calls


TIMING_DEFAULT_SIZE = {"matmul": 512, "conv2d": 64}  # about 3-5 ms per call on one CPU core
BENCH_MIN_RUN_TIME = 0.2  # seconds of blocks torch.utils.benchmark measures
BENCH_CALLS = 3  # calls benchmark makes at least besides its blocks: the warm-up and the block-size estimate
# One run does at most this many FLOPs (about 3 s on one CPU core). Params cannot know the device, so the
# CPU sets the limit everywhere; a GPU does the same work in a blink.
TIMING_MAX_FLOPS = 2.5e11


@dataclass(frozen=True)
class TimingParams(Params):
    op: str = field(default="matmul", metadata=choices(*OPS))
    size: int = field(default=TIMING_DEFAULT_SIZE["matmul"], metadata=bounds(8, 4096))  # matmul n / conv input side
    iters: int = field(default=20, metadata=bounds(5, 100))
    seed: int = _seed()

    @classmethod
    def for_op(cls, op: str) -> TimingParams:
        """Return the defaults for op: a conv2d side is much smaller than a matmul n for the same time."""
        return cls(op=op, size=TIMING_DEFAULT_SIZE[op])

    @classmethod
    def linked(cls, name: str, value: str) -> dict[str, int]:
        """Return the fields to reset when `name` changes: a new op starts from its own default size."""
        return {"size": TIMING_DEFAULT_SIZE[value]} if name == "op" else {}

    def validate(self) -> None:
        super().validate()
        per_call = flops(self.op, self.size)
        lo_iters = int(_meta(TimingParams, "iters")["lo"])
        if per_call * (lo_iters + BENCH_CALLS) > TIMING_MAX_FLOPS:
            raise InvalidParams("size", "too_large", max=largest_size(self.op, TIMING_MAX_FLOPS / (lo_iters + BENCH_CALLS)))
        if per_call * (self.iters + BENCH_CALLS) > TIMING_MAX_FLOPS:
            raise InvalidParams("iters", "too_much_work", max=int(TIMING_MAX_FLOPS // per_call) - BENCH_CALLS)

    def estimate_bytes(self) -> int:
        return 2 * _footprint(self.op, self.size, 4)  # the operands, and the result of the call before


@dataclass(frozen=True)
class TimingResult:
    op: str
    size: int
    flops: int  # per call
    device: str  # "cpu" or "cuda"
    device_name: str
    # Per call, seconds, (iters,), from the very first (cold) call: [0] pays for lazy initialisation,
    # allocation and, for conv2d on CUDA, cuDNN's autotuning. Each call is read by every clock at once.
    naive: np.ndarray  # time.perf_counter() around the call, no synchronisation: on CUDA only the launch
    sync: np.ndarray  # torch.cuda.synchronize() before each clock read: the work itself; on the CPU = naive
    events: np.ndarray | None  # torch.cuda.Event pair around the call: GPU time; None on the CPU
    naive_median: float  # over every call, the cold one included (a median shrugs it off)
    sync_median: float
    events_median: float | None
    bench_median: float  # torch.utils.benchmark blocked_autorange (core.measure.time_call): seconds per call
    bench_iqr: float
    bench_times: np.ndarray  # seconds per call, one per measured block
    bench_calls: int  # calls in the measured blocks
    sync_is_naive: bool  # True on the CPU: a call is finished when it returns, there is nothing to wait for
    cudnn_benchmark: bool  # conv2d on CUDA: cudnn.benchmark was on, so the first call autotuned
    gpu_only: tuple[str, ...]  # ("events",) on the CPU


def _meta(cls: type[Params], name: str) -> Any:
    """Return the metadata of one field of a Params class."""
    return next(s.meta for s in cls.specs() if s.name == name)


def run_timing(p: TimingParams, ctx: RunContext) -> TimingResult:
    """Time the same calls with a bare clock, a synchronised clock and CUDA events; then benchmark them."""
    device, cuda = ctx.device, ctx.device.type == "cuda"
    a, b = _operands(p.op, p.size, torch.float32, device, ctx.generator)
    fn = _op(p.op, a, b)
    naive, synced, events = [], [], []
    autotune = p.op == "conv2d" and cuda
    with _backend_flags(device, cudnn_benchmark=True if autotune else None):
        for _ in range(p.iters):
            ctx.check_deadline()
            if cuda:
                start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                torch.cuda.synchronize(device)  # start on an idle GPU, as a synchronised clock must
                start.record()
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()  # the naive reading: the call has returned, the kernel may not have run
            naive.append(t1 - t0)
            if cuda:
                end.record()
                torch.cuda.synchronize(device)
                synced.append(time.perf_counter() - t0)
                events.append(start.elapsed_time(end) / 1e3)  # milliseconds on the GPU's own clock
            else:
                synced.append(t1 - t0)  # the CPU ran the call before returning: synchronising adds nothing
        ctx.check_deadline()
        bench = time_call(fn, device, BENCH_MIN_RUN_TIME)
    events_arr = np.array(events) if cuda else None
    return TimingResult(
        p.op, p.size, flops(p.op, p.size), device.type, _device_name(device), np.array(naive), np.array(synced),
        events_arr, float(np.median(naive)), float(np.median(synced)),
        None if events_arr is None else float(np.median(events_arr)),
        bench.median, bench.iqr, np.array(bench.times), bench.calls, not cuda, autotune, () if cuda else ("events",),
    )  # fmt: skip


def _operands_code(op: str, size: int | str, dtype: str) -> str:
    """Return script lines that make the operands `a`, `b` and the call `fn` on `device` from generator `g`."""
    if op == "matmul":
        return f"""a = torch.randn({size}, {size}, generator=g, device=device, dtype={dtype})
b = torch.randn({size}, {size}, generator=g, device=device, dtype={dtype})


def fn():
    return a @ b
"""
    c, k = CONV_CHANNELS, CONV_KERNEL
    return f"""a = torch.randn(1, {c}, {size}, {size}, generator=g, device=device, dtype={dtype})  # one {c}-channel image
b = torch.randn({c}, {c}, {k}, {k}, generator=g, device=device, dtype={dtype}) / {math.sqrt(c * k * k)!r}


def fn():
    return F.conv2d(a, b, padding={k // 2})
"""


def _flops_code(op: str, n: str) -> str:
    """Return the FLOP-count expression of one call of size n, as script text."""
    if op == "matmul":
        return f"2 * {n}**3"
    c, k = CONV_CHANNELS, CONV_KERNEL
    return f"2 * 1 * {c} * {n} * {n} * {c} * {k} * {k}  # 2 * N * C_out * H_out * W_out * C_in * kh * kw"


def code_timing(p: TimingParams) -> str:
    """Return a script that times the same calls four ways and prints every reading."""
    autotune = (
        "if cuda:\n    torch.backends.cudnn.benchmark = True  # the first call autotunes: it is slow\n"
        if p.op == "conv2d"
        else ""
    )
    return f"""import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils import benchmark

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
cuda = device.type == "cuda"
g = torch.Generator(device=device).manual_seed({p.seed})
{_operands_code(p.op, p.size, "torch.float32")}

{autotune}flops = {_flops_code(p.op, str(p.size))}
print(f"op {p.op} size {p.size} flops {{flops}} device {{device.type}}")
naive, synced, events = [], [], []
for i in range({p.iters}):  # from the first, cold call on
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()  # naive: on a GPU the call returns once the kernel is queued
    naive.append(t1 - t0)
    if cuda:
        end.record()
        torch.cuda.synchronize()  # wait for the kernel before reading the clock
        synced.append(time.perf_counter() - t0)
        events.append(start.elapsed_time(end) / 1e3)  # elapsed_time is in milliseconds
    else:
        synced.append(t1 - t0)  # on the CPU the work is done when the call returns
    print(f"call {{i}}: naive {{naive[-1]:.3e}} s, synchronized {{synced[-1]:.3e}} s"
          + (f", events {{events[-1]:.3e}} s" if cuda else ""))
print(f"median naive {{statistics.median(naive):.3e}} s, synchronized {{statistics.median(synced):.3e}} s"
      + (f", events {{statistics.median(events):.3e}} s" if cuda else ""))

fn()  # warm up, then let torch.utils.benchmark pick the block size and synchronize around blocks
m = benchmark.Timer(stmt="fn()", globals={{"fn": fn}}, num_threads=torch.get_num_threads()).blocked_autorange(
    min_run_time={BENCH_MIN_RUN_TIME!r}
)
print(f"benchmark median {{m.median:.3e}} s per call over {{len(m.times) * m.number_per_run}} calls")
"""


# --------------------------------------------------------------------------------------------
# 2. CPU vs GPU as the size grows: achieved TFLOP/s against the peak


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

# Dense (no sparsity) peak TFLOP/s per GPU and dtype. Source: NVIDIA datasheet of each product (the
# "with sparsity" figures halved; for the GeForce RTX 4090, NVIDIA's Ada Lovelace architecture
# whitepaper, FP16/BF16 with FP32 accumulate, which is what PyTorch's matmul uses). "float32" is the
# non-tensor-core FP32 figure. Cards without TF32 units (Volta, Turing) run "tf32" as float32; None
# where the card has no such arithmetic in hardware (bfloat16 before Ampere).
PEAK_TFLOPS: dict[str, dict[str, float | None]] = {
    "H100 SXM": {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5},
    "H100 PCIe": {"float32": 51.0, "tf32": 378.0, "bfloat16": 756.5, "float16": 756.5},
    "H200": {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5},
    "A100": {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0},  # 40 GB and 80 GB, SXM and PCIe
    "A10": {"float32": 31.2, "tf32": 62.5, "bfloat16": 125.0, "float16": 125.0},
    "L4": {"float32": 30.3, "tf32": 60.0, "bfloat16": 121.0, "float16": 121.0},
    "RTX 4090": {"float32": 82.6, "tf32": 82.6, "bfloat16": 165.2, "float16": 165.2},
    "V100 SXM2": {"float32": 15.7, "tf32": 15.7, "bfloat16": None, "float16": 125.0},
    "V100 PCIe": {"float32": 14.0, "tf32": 14.0, "bfloat16": None, "float16": 112.0},
    "V100S": {"float32": 16.4, "tf32": 16.4, "bfloat16": None, "float16": 130.0},
    "T4": {"float32": 8.1, "tf32": 8.1, "bfloat16": None, "float16": 65.0},
}
# torch.cuda.get_device_name -> table row: the first pattern that matches (case-insensitive) wins. Whole
# words, not bare substrings: "A10" must not match "A100" or "A10G", nor "L4" match "L40S". NVL cards
# (H100 NVL, H200 NVL) have lower clocks than the SXM parts: no row, no fraction.
GPU_PATTERNS: tuple[tuple[str, str | None], ...] = (
    (r"\bNVL\b", None),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe"),
    (r"\bH100\b", "H100 SXM"),  # "NVIDIA H100 80GB HBM3"
    (r"\bH200\b", "H200"),
    (r"\bA100\b", "A100"),
    (r"\bA10\b", "A10"),
    (r"\bL4\b", "L4"),
    (r"\bRTX 4090\b(?! D\b)", "RTX 4090"),
    (r"\bV100S\b", "V100S"),
    (r"\bV100\b.*\bPCIe\b", "V100 PCIe"),
    (r"\bV100\b", "V100 SXM2"),
    (r"\bT4\b", "T4"),
)


def gpu_row(name: str) -> str | None:
    """Return the PEAK_TFLOPS row of a torch.cuda.get_device_name, or None for a card not in the table."""
    for pattern, row in GPU_PATTERNS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return row
    return None


def gpu_peak_tflops(name: str, dtype: str) -> float | None:
    """Return the datasheet's dense peak TFLOP/s of the named GPU in dtype, or None when unknown."""
    row = gpu_row(name)
    return None if row is None else PEAK_TFLOPS[row][dtype]


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
    order = np.argsort(sizes, kind="stable")
    for i in order:
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
    seed: int = _seed()

    @classmethod
    def for_op(cls, op: str) -> ScalingParams:
        """Return the defaults for op, with its own sweep (SCALING_SIZES)."""
        return cls(op=op, sizes=SCALING_SIZES[op])

    @classmethod
    def linked(cls, name: str, value: str) -> dict[str, tuple[int, ...]]:
        """Return the fields to reset when `name` changes: a new op starts from its own sweep."""
        return {"sizes": SCALING_SIZES[value]} if name == "op" else {}

    def validate(self) -> None:
        super().validate()
        _check_increasing("sizes", self.sizes)

    def estimate_bytes(self) -> int:
        element = TORCH_DTYPES[self.dtype].itemsize
        limit = cpu_max_flops(self.dtype)
        # One size at a time. A CPU-side size exists twice a moment (drawn on the device, copied to the CPU).
        return max((2 if flops(self.op, n) <= limit else 1) * _footprint(self.op, n, element) for n in self.sizes)


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


def _scaling_result(
    op: str, dtype: str, sizes: np.ndarray, cpu_name: str, cpu_seconds: np.ndarray, cpu_iqr: np.ndarray,
    gpu_name: str | None, gpu_seconds: np.ndarray | None, gpu_iqr: np.ndarray | None, tf32_active: bool,
) -> ScalingResult:  # fmt: skip
    """Return the ScalingResult of these measurements, with everything derived from them computed here."""
    flop_counts = np.array([flops(op, int(n)) for n in sizes], dtype=np.int64)
    cpu_tflops = achieved_tflops(flop_counts, cpu_seconds)
    measured = cpu_tflops[np.isfinite(cpu_tflops)]
    cpu_peak = float(measured.max()) if measured.size else None
    gpu_tflops = None if gpu_seconds is None else achieved_tflops(flop_counts, gpu_seconds)
    gpu_peak = None if gpu_name is None else gpu_peak_tflops(gpu_name, dtype)
    limit = cpu_max_flops(dtype)
    return ScalingResult(
        op, dtype, sizes, flop_counts, cpu_name, cpu_seconds, cpu_iqr, cpu_tflops,
        tuple(int(n) for n, f in zip(sizes, flop_counts, strict=True) if f > limit), limit, cpu_peak,
        cpu_tflops / cpu_peak if cpu_peak else np.full(len(sizes), math.nan),
        gpu_name, gpu_seconds, gpu_iqr, gpu_tflops, gpu_peak,
        None if gpu_tflops is None or gpu_peak is None else gpu_tflops / gpu_peak,
        crossover(sizes, cpu_seconds, gpu_seconds), tf32_active,
        () if gpu_name is not None else ("gpu", "crossover", "gpu_peak"),
    )  # fmt: skip


def run_scaling(p: ScalingParams, ctx: RunContext) -> ScalingResult:
    """Time one call per size on the CPU (up to the work limit) and on CUDA when the run has it."""
    dtype, device, k = TORCH_DTYPES[p.dtype], ctx.device, len(p.sizes)
    cuda = device.type == "cuda"
    gpu_seconds = gpu_iqr = None
    if cuda:
        gpu_seconds, gpu_iqr = np.full(k, math.nan), np.full(k, math.nan)
        # float32 means true FP32 (cuDNN uses TF32 for convolutions by default); tf32 switches both on.
        with _backend_flags(device, tf32=p.dtype == "tf32"):
            for i, n in enumerate(p.sizes):
                ctx.check_deadline()
                a, b = _operands(p.op, n, dtype, device, ctx.generator)
                timing = time_call(_op(p.op, a, b), device, p.min_run_time)
                gpu_seconds[i], gpu_iqr[i] = timing.median, timing.iqr
                del a, b
    cpu_seconds, cpu_iqr = np.full(k, math.nan), np.full(k, math.nan)
    for i, n in enumerate(p.sizes):
        if flops(p.op, n) > cpu_max_flops(p.dtype):
            continue
        ctx.check_deadline()
        a, b = (t.to(CPU) for t in _operands(p.op, n, dtype, device, ctx.generator))
        timing = time_call(_op(p.op, a, b), CPU, p.min_run_time)
        cpu_seconds[i], cpu_iqr[i] = timing.median, timing.iqr
        del a, b
    tf32_active = p.dtype == "tf32" and cuda and torch.cuda.get_device_capability(device) >= (8, 0)
    return _scaling_result(
        p.op, p.dtype, np.array(p.sizes, dtype=np.int64), cpu_model(), cpu_seconds, cpu_iqr,
        _device_name(device) if cuda else None, gpu_seconds, gpu_iqr, tf32_active,
    )  # fmt: skip


def merge_scaling(parts: Sequence[ScalingResult]) -> ScalingResult:
    """Return one sweep from runs of single points (or any runs of one op and dtype), sorted by size.

    The crossover, the CPU's measured peak and every fraction are recomputed over the whole sweep.
    """
    first = parts[0]
    if any(r.op != first.op or r.dtype != first.dtype or (r.gpu_name is None) != (first.gpu_name is None) for r in parts):
        raise ValueError("merge_scaling: the runs differ in op, dtype or device")
    sizes = np.concatenate([r.sizes for r in parts])
    order = np.argsort(sizes, kind="stable")

    def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        present = [a for a in arrays if a is not None]
        return np.concatenate(present)[order] if len(present) == len(arrays) else None

    cpu_seconds, cpu_iqr = joined([r.cpu_seconds for r in parts]), joined([r.cpu_iqr for r in parts])
    assert cpu_seconds is not None and cpu_iqr is not None
    return _scaling_result(
        first.op, first.dtype, sizes[order], first.cpu_name, cpu_seconds, cpu_iqr, first.gpu_name,
        joined([r.gpu_seconds for r in parts]), joined([r.gpu_iqr for r in parts]), first.tf32_active,
    )  # fmt: skip


def code_scaling(p: ScalingParams) -> str:
    """Return a script that times one call per size on the CPU and on CUDA, and prints TFLOP/s and the crossover."""
    peaks = [(pattern, None if row is None else PEAK_TFLOPS[row][p.dtype]) for pattern, row in GPU_PATTERNS]
    peak_lines = "\n".join(f'    (r"{pattern}", {peak!r}),' for pattern, peak in peaks)
    element = "float32 (tf32 changes nothing on a CPU)" if p.dtype == "tf32" else p.dtype
    return f"""import math
import re

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sizes = {list(p.sizes)}
dtype = {DTYPE_CODE[p.dtype]}  # {element}
cpu_max_flops = {cpu_max_flops(p.dtype)!r}  # the CPU skips bigger calls: they would take seconds each
cuda = torch.cuda.is_available()
device = torch.device("cuda" if cuda else "cpu")
g = torch.Generator(device=device).manual_seed({p.seed})
# Dense peak TFLOP/s in {p.dtype} from NVIDIA's datasheets, by the GPU's name (first match wins)
peaks = [
{peak_lines}
]


def operands(n, where):
    \"\"\"Draw the inputs of one call of size n on the run's device, then move them where they are timed.\"\"\"
{_indent(_operands_code(p.op, "n", "dtype").split(chr(10) + chr(10))[0], 4)}
    return a.to(where), b.to(where)


def time_per_call(n, where):
    a, b = operands(n, where)
{_indent(_call_code(p.op), 4)}
    fn()  # warm-up: the first call pays for allocation and initialisation
    timer = benchmark.Timer(stmt="fn()", globals={{"fn": fn}}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time={p.min_run_time!r}).median  # synchronizes CUDA around blocks


if cuda:
    torch.backends.cuda.matmul.allow_tf32 = {p.dtype == "tf32"}  # float32 means true FP32, also for cuDNN
    torch.backends.cudnn.allow_tf32 = {p.dtype == "tf32"}
    name = torch.cuda.get_device_name()
    peak = next((peak for pattern, peak in peaks if re.search(pattern, name, flags=re.IGNORECASE)), None)
    print(f"gpu {{name}}: peak {{peak}} TFLOP/s (datasheet)")
cpu_best, crossover = 0.0, None
for n in sizes:
    flops = {_flops_code(p.op, "n")}
    line = f"size {{n}} flops {{flops}}"
    cpu = math.nan
    if flops <= cpu_max_flops:
        cpu = time_per_call(n, torch.device("cpu"))
        cpu_best = max(cpu_best, flops / cpu / 1e12)
        line += f" cpu {{cpu:.3e}} s {{flops / cpu / 1e12:.4f}} TFLOP/s"
    else:
        line += " cpu skipped"
    if cuda:
        gpu = time_per_call(n, device)
        line += f" gpu {{gpu:.3e}} s {{flops / gpu / 1e12:.4f}} TFLOP/s"
        if peak:
            line += f" ({{flops / gpu / 1e12 / peak:.1%}} of peak)"
        if crossover is None and gpu < cpu:
            crossover = n
    print(line)
print(f"cpu best measured {{cpu_best:.4f}} TFLOP/s")
if cuda:
    print(f"crossover {{crossover}}")
"""


def _call_code(op: str) -> str:
    """Return the script's definition of fn() for op, over a and b."""
    if op == "matmul":
        return "def fn():\n    return a @ b\n"
    return f"def fn():\n    return F.conv2d(a, b, padding={CONV_KERNEL // 2})\n"


def _indent(text: str, spaces: int) -> str:
    """Return text with every non-empty line indented."""
    return "\n".join((" " * spaces + line) if line else line for line in text.rstrip("\n").split("\n"))


# --------------------------------------------------------------------------------------------
# 3. cudnn.benchmark on and off, for fixed and varying input shapes


SHAPES = ("fixed", "varying")
CUDNN_CHANNELS = 32
CUDNN_LAYERS = 3  # Conv2d(3x3, padding 1) + ReLU, three times; the first takes 3 channels
FIXED_SIDE = 64
VARYING_SIDES = tuple(range(48, 81, 2))  # 17 sides around FIXED_SIDE, one per iteration; longer runs cycle
WARM_UP_SIDE = 30  # one forward at a side no iteration uses: pays for lazy initialisation, tunes no shape
# Images pushed through the stack in one run (batch x iterations x modes x 2 flag settings): about 3 s on one CPU core.
CUDNN_MAX_IMAGES = 1600


@dataclass(frozen=True)
class CudnnParams(Params):
    batch: int = field(default=8, metadata=bounds(1, 64))
    iters: int = field(default=10, metadata=bounds(5, 50))
    shapes: tuple[str, ...] = field(default=SHAPES, metadata=choices(*SHAPES))
    seed: int = _seed()

    def validate(self) -> None:
        super().validate()
        if not self.shapes:
            raise InvalidParams("shapes", "empty")
        per_iter = self.batch * len(self.shapes) * 2
        if per_iter * self.iters > CUDNN_MAX_IMAGES:
            raise InvalidParams("iters", "too_much_work", max=CUDNN_MAX_IMAGES // per_iter)

    def estimate_bytes(self) -> int:
        side = max(VARYING_SIDES)
        images = (len(VARYING_SIDES) + 2) * self.batch * 3 * side * side  # every input is drawn before the clock runs
        activations = self.batch * side * side * 2 * CUDNN_CHANNELS  # no_grad: a layer's input and output at most
        weights = 9 * CUDNN_CHANNELS * (3 + (CUDNN_LAYERS - 1) * CUDNN_CHANNELS)
        return 4 * (images + 2 * (activations + weights))  # float32; as much again for convolution workspaces


@dataclass(frozen=True)
class CudnnResult:
    shapes: tuple[str, ...]  # the modes run, in order
    benchmark: tuple[bool, bool]  # (False, True): the second axis of seconds
    sides: np.ndarray  # (len(shapes), iters) int64: the input side of each iteration
    flops: np.ndarray  # (len(shapes), iters) int64: FLOPs of each iteration's forward pass
    seconds: np.ndarray  # (len(shapes), 2, iters) synchronised seconds of each forward pass
    median: np.ndarray  # (len(shapes), 2) median over the iterations
    total: np.ndarray  # (len(shapes), 2) sum over the iterations: autotuning included
    device: str
    device_name: str
    cudnn_version: int | None  # torch.backends.cudnn.version() on CUDA
    flag_has_effect: bool  # False on the CPU: there is no cuDNN, the flag steers nothing
    gpu_only: tuple[str, ...]  # ("cudnn",) on the CPU


def iteration_sides(mode: str, iters: int) -> tuple[int, ...]:
    """Return the input side of every iteration: always FIXED_SIDE, or VARYING_SIDES in turn."""
    if mode == "fixed":
        return (FIXED_SIDE,) * iters
    return tuple(VARYING_SIDES[i % len(VARYING_SIDES)] for i in range(iters))


def stack_flops(batch: int, side: int) -> int:
    """Return the FLOPs of one forward through the conv stack (2 * N * C_out * H * W * C_in * 9 per layer)."""
    total, c_in = 0, 3
    for _ in range(CUDNN_LAYERS):
        total += 2 * batch * CUDNN_CHANNELS * side * side * c_in * 9
        c_in = CUDNN_CHANNELS
    return total


def run_cudnn(p: CudnnParams, ctx: RunContext) -> CudnnResult:
    """Time every forward pass of the conv stack with cudnn.benchmark off, then on, for each shape mode."""
    device, cuda, g = ctx.device, ctx.device.type == "cuda", ctx.generator
    weights, c_in = [], 3
    for _ in range(CUDNN_LAYERS):
        weights.append(torch.randn(CUDNN_CHANNELS, c_in, 3, 3, generator=g, device=device) * math.sqrt(2 / (9 * c_in)))
        c_in = CUDNN_CHANNELS
    images = {
        side: torch.randn(p.batch, 3, side, side, generator=g, device=device)
        for side in sorted({s for mode in p.shapes for s in iteration_sides(mode, p.iters)} | {WARM_UP_SIDE})
    }

    def forward(x: torch.Tensor) -> torch.Tensor:
        for w in weights:
            x = F.relu(F.conv2d(x, w, padding=1))
        return x

    seconds = np.zeros((len(p.shapes), 2, p.iters))
    with torch.no_grad():
        with _backend_flags(device, cudnn_benchmark=False):
            forward(images[WARM_UP_SIDE])  # creates the cuDNN handle and workspace; autotunes nothing
        for m, mode in enumerate(p.shapes):
            for b, flag in enumerate((False, True)):
                with _backend_flags(device, cudnn_benchmark=flag):
                    ctx.progress(2 * m + b, 2 * len(p.shapes))
                    for i, side in enumerate(iteration_sides(mode, p.iters)):
                        ctx.check_deadline()
                        _sync(device)
                        t0 = time.perf_counter()
                        forward(images[side])
                        _sync(device)  # the right clock: wait for the GPU before reading it
                        seconds[m, b, i] = time.perf_counter() - t0
    sides = np.array([iteration_sides(mode, p.iters) for mode in p.shapes], dtype=np.int64)
    stack = np.array([[stack_flops(p.batch, int(s)) for s in row] for row in sides], dtype=np.int64)
    return CudnnResult(
        tuple(p.shapes), (False, True), sides, stack, seconds, np.median(seconds, axis=2), seconds.sum(axis=2),
        device.type, _device_name(device),
        torch.backends.cudnn.version() if cuda else None, cuda and torch.backends.cudnn.is_available(),  # type: ignore[no-untyped-call]
        () if cuda else ("cudnn",),
    )  # fmt: skip


def code_cudnn(p: CudnnParams) -> str:
    """Return a script that times each forward pass with cudnn.benchmark off and on and prints the times."""
    return f"""import time

import torch
from torch import nn

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed({p.seed})
layers = []
for c_in in [3] + [{CUDNN_CHANNELS}] * {CUDNN_LAYERS - 1}:
    layers += [nn.Conv2d(c_in, {CUDNN_CHANNELS}, 3, padding=1, bias=False), nn.ReLU()]
net = nn.Sequential(*layers).to(device)
fixed = [{FIXED_SIDE}] * {p.iters}
sides_list = {list(VARYING_SIDES)}
varying = [sides_list[i % len(sides_list)] for i in range({p.iters})]  # a new shape every iteration
print("cudnn", torch.backends.cudnn.version() if device.type == "cuda" else "not used on the CPU")


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


with torch.no_grad():
    net(torch.randn({p.batch}, 3, {WARM_UP_SIDE}, {WARM_UP_SIDE}, device=device))  # lazy initialisation, once
    for mode in {list(p.shapes)}:
        sides = fixed if mode == "fixed" else varying
        print(mode, "sides", sides)
        for flag in (False, True):
            torch.backends.cudnn.benchmark = flag  # True: time every algorithm for each new shape, keep the fastest
            times = []
            for side in sides:
                x = torch.randn({p.batch}, 3, side, side, device=device)
                sync()
                t0 = time.perf_counter()
                net(x)
                sync()
                times.append(time.perf_counter() - t0)
            print(f"{{mode}} benchmark={{flag}}: first {{times[0]:.3e}} s, median {{sorted(times)[len(times) // 2]:.3e}} s, "
                  f"total {{sum(times):.3e}} s")
torch.backends.cudnn.benchmark = False  # the default
"""


# --------------------------------------------------------------------------------------------
# 4. Memory: what a forward pass keeps for backward, and gradient checkpointing


GRAD_MODES = ("grad", "no_grad", "inference_mode")
RELUS = ("out_of_place", "in_place")
# One run does at most this many FLOPs (a few seconds on one CPU core): six forward passes, then per segments
# value one counted forward pass and STEPS_PER_POINT training steps (the gradient check, the benchmark's
# warm-up, block-size estimate and blocks), each about STEP_PASSES forward passes' worth.
MEMORY_MAX_FLOPS = 1.5e11
STEPS_PER_POINT = 5
STEP_PASSES = 4  # forward 1, backward 2 (gradients of the input and of the weight), recomputation up to 1


@dataclass(frozen=True)
class MemParams(Params):
    width: int = field(default=512, metadata=bounds(16, 2048))
    depth: int = field(default=8, metadata=bounds(1, 32))  # blocks of Linear(width, width) + ReLU
    batch: int = field(default=64, metadata=bounds(1, 1024))
    # checkpoint_sequential's segments, rising, each at most depth; () means every value 1..depth
    segments: tuple[int, ...] = field(default=(), metadata=shape_spec(max_dims=32, lo=1, hi=32, min_dims=0, sep=","))
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.2, 0.01))  # benchmark seconds per segments value
    seed: int = _seed()

    def segment_values(self) -> tuple[int, ...]:
        """Return the segments values the run measures."""
        return self.segments or tuple(range(1, self.depth + 1))

    def work_per_sample(self) -> int:
        """Return the run's FLOPs per sample of the batch."""
        forward = 2 * self.width * self.width * self.depth
        return forward * (len(GRAD_MODES) * len(RELUS) + len(self.segment_values()) * (1 + STEPS_PER_POINT * STEP_PASSES))

    def validate(self) -> None:
        super().validate()
        _check_increasing("segments", self.segments)
        if any(s > self.depth for s in self.segments):
            raise InvalidParams("segments", "more_than_depth", max=self.depth)
        per_sample = self.work_per_sample()
        if per_sample > MEMORY_MAX_FLOPS:  # even one sample is too much: the layers are too wide
            per_width2 = per_sample / self.width**2  # the work grows with width^2
            widest = math.isqrt(int(MEMORY_MAX_FLOPS // per_width2))
            raise InvalidParams("width", "too_large", max=widest)
        if self.batch * per_sample > MEMORY_MAX_FLOPS:
            raise InvalidParams("batch", "too_large", max=int(MEMORY_MAX_FLOPS // per_sample))

    def estimate_bytes(self) -> int:
        weights = self.depth * self.width * (self.width + 1) * 4
        activation = self.batch * self.width * 4
        # weights, their gradients and the plain run's gradients; X, R and every Linear and ReLU output, twice
        # (a recomputed segment's while the saved ones are alive)
        return 3 * weights + (4 * self.depth + 4) * activation


@dataclass(frozen=True)
class MemResult:
    activation_bytes: int  # one layer's output: batch * width * 4 bytes (float32)
    modes: tuple[str, ...]  # GRAD_MODES: axis 0 of the (a) tables
    relus: tuple[str, ...]  # RELUS: axis 1
    # (a) one forward pass, (3, 2) int64 bytes
    saved_bytes: np.ndarray  # what autograd keeps for backward (saved-tensor hooks; parameters excluded)
    new_bytes: np.ndarray  # storages the modules' outputs newly allocated, summed (in-place ReLU allocates none)
    new_tensors: np.ndarray  # how many such outputs
    cuda_peak_bytes: np.ndarray | None  # allocator peak during the pass above what was allocated before; None on the CPU
    # (b) checkpoint_sequential(net, s, X, use_reentrant=False), (k,) per segments value s
    segments: np.ndarray  # int64; s = 1 is the plain network (checkpoint_sequential checkpoints nothing then)
    ckpt_saved_bytes: np.ndarray  # int64 bytes kept for backward after the forward pass (hooks, see run_memory)
    ckpt_theory_bytes: np.ndarray  # int64: checkpoint_saved_activations(depth, s) * activation_bytes
    ckpt_step_seconds: np.ndarray  # median seconds per training step (forward, loss, backward)
    ckpt_step_iqr: np.ndarray
    ckpt_grad_max_diff: np.ndarray  # max |grad - plain grad| over every weight and bias: recomputation is exact
    ckpt_cuda_peak_bytes: np.ndarray | None  # allocator peak during a training step; None on the CPU
    device: str
    gpu_only: tuple[str, ...]  # ("cuda_peak",) on the CPU


def checkpoint_saved_activations(depth: int, segments: int) -> int:
    """Return how many activations (batch x width each) checkpoint_sequential keeps for backward.

    It cuts the depth blocks into segments of depth // segments blocks; each of the first segments - 1
    segments keeps only its input; the last segment (the rest) runs plainly and keeps its input and each
    block's output. segments = 1: everything, depth + 1. The fewest near segments = sqrt(depth).
    """
    size = depth // segments
    return (segments - 1) + (depth - (segments - 1) * size) + 1


@dataclass
class _Net:
    """The lesson's MLP and handles on its ReLUs (to switch them in place)."""

    net: nn.Sequential
    relus: list[nn.ReLU]


def _mlp(p: MemParams, ctx: RunContext) -> _Net:
    """Return depth blocks of Linear(width, width) + ReLU, initialised as nn.Linear does but from ctx.generator."""
    relus = [nn.ReLU() for _ in range(p.depth)]
    # Meta first: nn.Linear would draw its default weights from the global RNG, which the run does not own.
    blocks = [nn.Sequential(nn.Linear(p.width, p.width, device="meta"), relu) for relu in relus]
    net = nn.Sequential(*blocks).to_empty(device=ctx.device)
    bound = 1 / math.sqrt(p.width)  # kaiming_uniform_(a=sqrt(5)) and the bias's uniform: both +-1/sqrt(fan_in)
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-bound, bound, generator=ctx.generator)
    return _Net(net, relus)


def _new_outputs(net: nn.Module, fn: Callable[[], object]) -> tuple[int, int]:
    """Return (how many, bytes) of module outputs that fn() allocated anew (not written into an input).

    Counted per call, not per address: a freed output's memory is reused by the next at once.
    """
    count, total = 0, 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal count, total
        storage = output.untyped_storage()
        if all(storage.data_ptr() != t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)):
            count += 1
            total += storage.nbytes()

    leaves = [m for m in net.modules() if not isinstance(m, nn.Sequential)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return count, total


def _checkpointed(net: nn.Sequential, segments: int, X: torch.Tensor) -> torch.Tensor:
    """Return net(X) run by checkpoint_sequential in `segments` segments, non-reentrant (torch's recommendation)."""
    out: torch.Tensor = checkpoint_sequential(net, segments, X, use_reentrant=False)  # type: ignore[no-untyped-call]
    return out


def _grad_context(mode: str) -> Any:
    """Return a fresh context manager for the grad mode: enable_grad, no_grad or inference_mode."""
    return {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]()


def run_memory(p: MemParams, ctx: RunContext) -> MemResult:
    """Count a forward pass's memory per grad mode and ReLU kind; then checkpointing's memory and time per segments.

    The saved-tensor hooks count honestly under non-reentrant checkpointing: checkpoint saves each
    segment's input through autograd (seen by the hooks) and swaps in its own hooks inside the segment,
    which keep no tensor, only a way to recompute it; the counts equal checkpoint_saved_activations.
    """
    device, cuda, g = ctx.device, ctx.device.type == "cuda", ctx.generator
    model = _mlp(p, ctx)
    net, params = model.net, list(model.net.parameters())
    X = torch.randn(p.batch, p.width, generator=g, device=device)
    R = torch.randn(p.batch, p.width, generator=g, device=device)  # dloss/doutput: a fixed random read-out
    shape = (len(GRAD_MODES), len(RELUS))
    saved, new_bytes, new_tensors = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    peaks = np.zeros(shape, np.int64) if cuda else None
    for i, mode in enumerate(GRAD_MODES):
        for j, relu in enumerate(RELUS):
            ctx.check_deadline()
            for module in model.relus:
                module.inplace = relu == "in_place"

            def forward(mode: str = mode) -> torch.Tensor:
                with _grad_context(mode):
                    out: torch.Tensor = net(X)
                return out

            saved[i, j] = saved_activation_bytes(forward, params)
            new_tensors[i, j], new_bytes[i, j] = _new_outputs(net, forward)
            if peaks is not None:
                before, peak = cuda_peak_bytes(forward, device)
                peaks[i, j] = peak - before
    for module in model.relus:
        module.inplace = False

    def step(segments: int) -> None:
        for param in params:
            param.grad = None
        torch.autograd.backward((_checkpointed(net, segments, X) * R).sum())

    step(1)  # one segment: checkpoint_sequential runs the blocks plainly
    plain = [param.grad.clone() for param in params if param.grad is not None]
    segment_values = p.segment_values()
    k = len(segment_values)
    ckpt_saved, diffs = np.zeros(k, np.int64), np.zeros(k)
    step_seconds, step_iqr = np.zeros(k), np.zeros(k)
    ckpt_peaks = np.zeros(k, np.int64) if cuda else None
    for i, s in enumerate(segment_values):
        ctx.check_deadline()
        ctx.progress(i, k)
        ckpt_saved[i] = saved_activation_bytes(partial(_checkpointed, net, s, X), params)
        step(s)
        diffs[i] = max(float((param.grad - ref).abs().max().item()) for param, ref in zip(params, plain, strict=True)
                       if param.grad is not None)  # fmt: skip
        ctx.check_deadline()
        timing = time_call(partial(step, s), device, p.min_run_time)
        step_seconds[i], step_iqr[i] = timing.median, timing.iqr
        if ckpt_peaks is not None:
            before, peak = cuda_peak_bytes(partial(step, s), device)
            ckpt_peaks[i] = peak - before
    activation = p.batch * p.width * 4
    theory = np.array([checkpoint_saved_activations(p.depth, s) * activation for s in segment_values], dtype=np.int64)
    return MemResult(
        activation, GRAD_MODES, RELUS, saved, new_bytes, new_tensors, peaks, np.array(segment_values, dtype=np.int64),
        ckpt_saved, theory, step_seconds, step_iqr, diffs, ckpt_peaks, device.type, () if cuda else ("cuda_peak",),
    )  # fmt: skip


def code_memory(p: MemParams) -> str:
    """Return a script that counts saved and newly allocated bytes per grad mode, then checkpoints per segments."""
    return f"""import math

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.checkpoint import checkpoint_sequential

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
batch, width, depth = {p.batch}, {p.width}, {p.depth}
torch.manual_seed({p.seed})
relus = [nn.ReLU() for _ in range(depth)]
net = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), relu) for relu in relus]).to(device)
params = list(net.parameters())
X = torch.randn(batch, width, device=device)
R = torch.randn(batch, width, device=device)  # the gradient of the loss at the output
print("activation bytes", batch * width * 4)


def saved_bytes(fn):
    \"\"\"Bytes of the distinct storages autograd saves for backward while fn runs (weights excluded).\"\"\"
    skip = {{p.untyped_storage().data_ptr() for p in params}}
    seen = {{}}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr(), storage.nbytes()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def new_outputs(fn):
    \"\"\"How many module outputs fn allocates anew (an in-place ReLU writes into its input), and their bytes.\"\"\"
    found = []

    def hook(module, inputs, output):
        if all(output.untyped_storage().data_ptr() != t.untyped_storage().data_ptr() for t in inputs):
            found.append(output.untyped_storage().nbytes())

    handles = [m.register_forward_hook(hook) for m in net.modules() if not isinstance(m, nn.Sequential)]
    fn()
    for h in handles:
        h.remove()
    return len(found), sum(found)


modes = {{"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}}
for mode, context in modes.items():
    for inplace in (False, True):
        for relu in relus:
            relu.inplace = inplace

        def forward():
            with context():
                return net(X)

        count, allocated = new_outputs(forward)
        print(f"{{mode}} {{'in_place' if inplace else 'out_of_place'}}: saved {{saved_bytes(forward)}} B, "
              f"new {{count}} tensors {{allocated}} B")
for relu in relus:
    relu.inplace = False


def step(segments):
    for p in params:
        p.grad = None
    out = checkpoint_sequential(net, segments, X, use_reentrant=False)  # segments=1: no checkpoint
    (out * R).sum().backward()


step(1)
plain = [p.grad.clone() for p in params]
for s in {list(p.segment_values())}:
    saved = saved_bytes(lambda: checkpoint_sequential(net, s, X, use_reentrant=False))
    step(s)
    diff = max((p.grad - g).abs().max().item() for p, g in zip(params, plain))
    t = benchmark.Timer(stmt="step(s)", globals={{"step": step, "s": s}}).blocked_autorange(min_run_time={p.min_run_time!r})
    print(f"segments {{s}}: saved {{saved}} B, grad max diff {{diff}}, step {{t.median:.3e}} s")
"""


# --------------------------------------------------------------------------------------------
# 5. Copies: numpy -> torch, and host <-> device


TRANSFER_SIZES = tuple(4096 * 4**k for k in range(8))  # 4 KB .. 64 MB
NUMPY_METHODS = ("tensor", "as_tensor", "from_numpy")
GPU_METHODS = ("h2d_pageable", "h2d_pinned", "h2d_pinned_non_blocking", "d2h")
TRANSFER_MAX_TOTAL = 2**30  # bytes over all sizes: each is copied several times per method
RETURN_CALLS = 5  # non_blocking calls timed on the host clock per size


@dataclass(frozen=True)
class TransferParams(Params):
    # bytes, one copy per size
    sizes: tuple[int, ...] = field(default=TRANSFER_SIZES, metadata=shape_spec(max_dims=12, lo=1024, hi=2**28, sep=","))
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.1, 0.01))  # benchmark seconds per size and method

    def validate(self) -> None:
        super().validate()
        _check_increasing("sizes", self.sizes)
        if sum(self.sizes) > TRANSFER_MAX_TOTAL:
            raise InvalidParams("sizes", "too_much_data", max_mb=TRANSFER_MAX_TOTAL // 2**20)

    def estimate_bytes(self) -> int:
        # the array, a torch.tensor copy, a pinned copy, the device copy and a copy back
        return 5 * max(self.sizes)


@dataclass(frozen=True)
class TransferResult:
    sizes: np.ndarray  # (k,) int64 bytes (uint8 arrays: one byte per element)
    numpy_methods: tuple[str, ...]  # NUMPY_METHODS: axis 0 below
    numpy_seconds: np.ndarray  # (3, k) median seconds per call (torch.utils.benchmark)
    shares_memory: np.ndarray  # (3, k) bool: np.shares_memory(array, result.numpy())
    same_data_ptr: np.ndarray  # (3, k) bool: result.data_ptr() == array.ctypes.data
    tensor_gbps: np.ndarray  # (k,) GB/s (1e9 bytes) of torch.tensor, the one that copies: size / seconds
    device_name: str | None  # the GPU's name; None without CUDA
    gpu_methods: tuple[str, ...]  # GPU_METHODS: axis 0 below
    gpu_seconds: np.ndarray | None  # (4, k) median seconds per copy, synchronised around benchmark blocks
    gpu_gbps: np.ndarray | None  # (4, k) size / gpu_seconds / 1e9
    pin_seconds: np.ndarray | None  # (k,) one tensor.pin_memory(): pinning has a price, paid once per buffer
    return_seconds: np.ndarray | None  # (2, k) host seconds until .to(cuda) returns: (blocking, non_blocking), pinned
    gpu_only: tuple[str, ...]  # ("host_device",) without CUDA


def run_transfer(p: TransferParams, ctx: RunContext) -> TransferResult:
    """Time numpy -> torch conversions (and check which share memory), and host <-> device copies on CUDA."""
    device, cuda, k = ctx.device, ctx.device.type == "cuda", len(p.sizes)
    numpy_seconds, shares, same_ptr = np.zeros((3, k)), np.zeros((3, k), bool), np.zeros((3, k), bool)
    gpu_seconds = np.zeros((len(GPU_METHODS), k)) if cuda else None
    pin_seconds = np.zeros(k) if cuda else None
    return_seconds = np.zeros((2, k)) if cuda else None
    for i, size in enumerate(p.sizes):
        ctx.check_deadline()
        array = np.resize(np.arange(256, dtype=np.uint8), size)  # no randomness needed: bytes are bytes
        makers = [partial(torch.tensor, array), partial(torch.as_tensor, array), partial(torch.from_numpy, array)]
        for m, make in enumerate(makers):
            t = make()
            shares[m, i] = np.shares_memory(array, t.numpy())
            same_ptr[m, i] = t.data_ptr() == array.ctypes.data
            del t
            numpy_seconds[m, i] = time_call(make, CPU, p.min_run_time).median
        if gpu_seconds is not None and pin_seconds is not None and return_seconds is not None:
            gpu_seconds[:, i], pin_seconds[i], return_seconds[:, i] = _time_copies(device, array, p.min_run_time, ctx)
    sizes = np.array(p.sizes, dtype=np.int64)
    return TransferResult(
        sizes, NUMPY_METHODS, numpy_seconds, shares, same_ptr, sizes / numpy_seconds[0] / 1e9,
        _device_name(device) if cuda else None, GPU_METHODS, gpu_seconds,
        None if gpu_seconds is None else sizes / gpu_seconds / 1e9, pin_seconds, return_seconds,
        () if cuda else ("host_device",),
    )  # fmt: skip


def _time_copies(
    device: torch.device, array: np.ndarray, min_run_time: float, ctx: RunContext
) -> tuple[list[float], float, list[float]]:
    """Return one size's seconds per GPU_METHODS, one pin_memory(), and .to's return (blocking, non_blocking)."""
    host = torch.from_numpy(array)  # pageable: the driver stages it through a pinned buffer of its own
    t0 = time.perf_counter()
    pinned = host.pin_memory()  # page-locked: the GPU's copy engine reads it directly (DMA)
    pin_seconds = time.perf_counter() - t0
    on_device = pinned.to(device)
    copies: list[Callable[[], torch.Tensor]] = [
        lambda: host.to(device), lambda: pinned.to(device), lambda: pinned.to(device, non_blocking=True),
        lambda: on_device.to(CPU),
    ]  # fmt: skip
    seconds = []
    for copy in copies:
        ctx.check_deadline()
        seconds.append(time_call(copy, device, min_run_time).median)
    return_seconds = []
    for non_blocking in (False, True):
        returns = []
        for _ in range(RETURN_CALLS):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            pinned.to(device, non_blocking=non_blocking)  # non_blocking returns once the copy is queued
            returns.append(time.perf_counter() - t0)
        torch.cuda.synchronize(device)
        return_seconds.append(statistics.median(returns))
    return seconds, pin_seconds, return_seconds


def code_transfer(p: TransferParams) -> str:
    """Return a script that times numpy -> torch conversions and host <-> device copies per size."""
    return f"""import time

import numpy as np
import torch
from torch.utils import benchmark


def per_call(fn):
    fn()  # warm-up
    return benchmark.Timer(stmt="fn()", globals={{"fn": fn}}).blocked_autorange(min_run_time={p.min_run_time!r}).median


cuda = torch.cuda.is_available()
for size in {list(p.sizes)}:
    array = np.resize(np.arange(256, dtype=np.uint8), size)
    for name, make in [("tensor", torch.tensor), ("as_tensor", torch.as_tensor), ("from_numpy", torch.from_numpy)]:
        t = make(array)
        shares = np.shares_memory(array, t.numpy())  # torch.tensor copies; the other two wrap the same memory
        seconds = per_call(lambda: make(array))
        rate = "no copy" if shares else f"{{size / seconds / 1e9:.2f}} GB/s"
        print(f"size {{size}} {{name}}: shares {{shares}} same data_ptr {{t.data_ptr() == array.ctypes.data}} "
              f"{{seconds:.3e}} s, {{rate}}")
    if cuda:
        host = torch.from_numpy(array)
        t0 = time.perf_counter()
        pinned = host.pin_memory()
        print(f"size {{size}} pin_memory {{time.perf_counter() - t0:.3e}} s")
        on_device = pinned.to("cuda")
        copies = {{
            "h2d_pageable": lambda: host.to("cuda"),
            "h2d_pinned": lambda: pinned.to("cuda"),
            "h2d_pinned_non_blocking": lambda: pinned.to("cuda", non_blocking=True),
            "d2h": lambda: on_device.to("cpu"),
        }}
        for name, copy in copies.items():
            seconds = per_call(copy)  # benchmark synchronizes CUDA around its blocks
            print(f"size {{size}} {{name}}: {{seconds:.3e}} s {{size / seconds / 1e9:.2f}} GB/s")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pinned.to("cuda", non_blocking=True)
        print(f"size {{size}} non_blocking returned after {{time.perf_counter() - t0:.3e}} s")  # the copy runs on
        torch.cuda.synchronize()
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "timing": Experiment(TimingParams, run_timing, code_timing),
    "scaling": Experiment(ScalingParams, run_scaling, code_scaling),
    "cudnn": Experiment(CudnnParams, run_cudnn, code_cudnn),
    "footprint": Experiment(MemParams, run_memory, code_memory),
    "transfer": Experiment(TransferParams, run_transfer, code_transfer),
}
