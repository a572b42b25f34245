"""How to time: one matmul or conv2d timed four ways, every call from the cold first one.

A bare clock (time.perf_counter() around the call: on CUDA only the launch), a CUDA-synchronised
clock, CUDA events (the GPU's own clock) and torch.utils.benchmark (core.measure.time_call) read
the same calls. The naive clock is the lesson here, so it is read on purpose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.speed.common import (
    OPS,
    backend_flags,
    device_name,
    flops,
    footprint_bytes,
    largest_size,
    op_call,
    operands,
    operands_context,
)
from core.measure import time_call
from core.params import InvalidParams, Params, bounds, check_value, choices, ladder, seed_field

MIN_ITERS = 5  # the fewest timed calls: enough to see the cold first one against the rest
TIMING_DEFAULT_SIZE = {"matmul": 512, "conv2d": 64}  # about 3-5 ms per call on one CPU core
BENCH_MIN_RUN_TIME = 0.2  # seconds of blocks torch.utils.benchmark measures
BENCH_CALLS = 3  # calls benchmark makes at least besides its blocks: the warm-up and the block-size estimate
# One run does at most this many FLOPs (about 3 s on one CPU core). Params cannot know the device, so the
# CPU sets the limit everywhere; a GPU does the same work in a blink.
TIMING_MAX_FLOPS = 2.5e11


@dataclass(frozen=True)
class TimingParams(Params):
    op: str = field(default="matmul", metadata=choices(*OPS))
    # matmul n / conv input side; the slider stops at the largest size the work limit allows for the op
    size: int = field(default=TIMING_DEFAULT_SIZE["matmul"], metadata=ladder(8, 4096) | {"hi_of": "max_size"})
    iters: int = field(default=20, metadata=bounds(MIN_ITERS, 100, hi_of="max_iters"))
    seed: int = seed_field()

    @classmethod
    def for_op(cls, op: str) -> TimingParams:
        """Return the defaults for op: a conv2d side is much smaller than a matmul n for the same time."""
        return cls(op=op, size=TIMING_DEFAULT_SIZE[op])

    @classmethod
    def linked(cls, name: str, value: Any) -> dict[str, Any]:
        """Return the fields to reset when `name` changes: a new op starts from its own default size."""
        return {"size": TIMING_DEFAULT_SIZE[value]} if name == "op" and value in TIMING_DEFAULT_SIZE else {}

    def max_size(self) -> int:
        """Return the largest size of this op whose fewest calls (iters at its lowest) stay within the work limit."""
        return largest_size(self.op, TIMING_MAX_FLOPS / (MIN_ITERS + BENCH_CALLS))

    def max_iters(self) -> int:
        """Return the most calls of this size within the work limit (never below the lowest iters)."""
        return max(MIN_ITERS, int(TIMING_MAX_FLOPS // flops(self.op, self.size)) - BENCH_CALLS)

    def validate(self) -> None:
        """Raise InvalidParams for a bad field; over the work limit, name the largest size or iters allowed.

        The work limit is checked before the sliders' stops (hi_of), so a refusal says which limit it is.
        """
        for spec in self.specs():
            check_value(spec, getattr(self, spec.name))
        per_call = flops(self.op, self.size)
        if per_call * (MIN_ITERS + BENCH_CALLS) > TIMING_MAX_FLOPS:
            raise InvalidParams("size", "too_large", max=self.max_size())
        if per_call * (self.iters + BENCH_CALLS) > TIMING_MAX_FLOPS:
            raise InvalidParams("iters", "too_much_work", max=int(TIMING_MAX_FLOPS // per_call) - BENCH_CALLS)
        super().validate()

    def estimate_bytes(self) -> int:
        return 2 * footprint_bytes(self.op, self.size, 4)  # the operands, and the result of the call before

    def estimate_work(self) -> float:
        """Return the multiply-adds of the timed calls and of benchmark's fewest (its blocks are bounded in seconds)."""
        return flops(self.op, self.size) / 2 * (self.iters + BENCH_CALLS)


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


def run(p: TimingParams, ctx: RunContext) -> TimingResult:
    """Time the same calls with a bare clock, a synchronised clock and CUDA events; then benchmark them."""
    device, cuda = ctx.device, ctx.device.type == "cuda"
    a, b = operands(p.op, p.size, torch.float32, device, ctx.generator)
    fn = op_call(p.op, a, b)
    naive, synced, events = [], [], []
    autotune = p.op == "conv2d" and cuda
    with backend_flags(device, cudnn_benchmark=True if autotune else None):
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
        op=p.op,
        size=p.size,
        flops=flops(p.op, p.size),
        device=device.type,
        device_name=device_name(device),
        naive=np.array(naive),
        sync=np.array(synced),
        events=events_arr,
        naive_median=float(np.median(naive)),
        sync_median=float(np.median(synced)),
        events_median=None if events_arr is None else float(np.median(events_arr)),
        bench_median=bench.median,
        bench_iqr=bench.iqr,
        bench_times=np.array(bench.times),
        bench_calls=bench.calls,
        sync_is_naive=not cuda,
        cudnn_benchmark=autotune,
        gpu_only=() if cuda else ("events",),
    )


def context(p: TimingParams, device_type: str) -> dict[str, Any]:
    """Return the values timing_four_ways.py.j2 reads (the script picks its device itself)."""
    values = {"size": p.size, "iters": p.iters, "seed": p.seed, "bench_min_run_time": repr(BENCH_MIN_RUN_TIME)}
    return operands_context(p.op) | values


def shown(r: TimingResult) -> list[float | str]:
    """Return what the page shows that the script prints: the op, its size and FLOPs per call (times differ per run)."""
    return [f"op {r.op} size {r.size} flops {r.flops}", r.size, r.flops]


def bare_clock_answer(r: TimingResult) -> str:
    """Return how the bare clock's median compares with the synchronised clock's: 'same', 'shorter' or 'longer'.

    Reasoning decides it, not noise: on a CPU the call has finished when it returns, so both clocks
    take the very same readings; on a GPU the bare reading is taken before the synchronised one of
    the same call, so it is shorter every time.
    """
    if np.array_equal(r.naive, r.sync):
        return "same"
    return "shorter" if r.naive_median < r.sync_median else "longer"


TIMING = Experiment(
    "timing",
    TimingParams,
    run,
    script="timing_four_ways.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(TimingParams(op="conv2d", size=12, iters=6, seed=2), TimingParams(size=48, iters=5)),
)
# Asked about conv2d while the page opens on matmul: the chart does not show the answer beforehand.
BARE_CLOCK = Prediction(
    "bare_clock",
    TIMING,
    TimingParams.for_op("conv2d"),
    options=("shorter", "same", "longer"),
    answer=bare_clock_answer,
    question="timing.predict_q",
    why="timing.predict_why",
)
