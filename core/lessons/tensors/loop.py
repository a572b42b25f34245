"""A Python loop against the vectorised op on the same data, timed: sum or clamp of n numbers, three ways.

- `tensor_loop`: a Python loop over the tensor's elements; every step is a small torch call
  (indexing makes a 0-d tensor, then an add or a clamp), so each element pays the dispatch overhead.
- `list_loop`: `x.tolist()` once, then plain Python floats: no torch per element, still the interpreter.
- `vectorised`: one call, `x.sum()` or `x.clamp(lo, hi)`: the loop runs in compiled code.

All three are timed by core.measure (torch.utils.benchmark, CUDA synchronised), alone on the device,
with the server's CPU thread count shown next to the times. Their results are kept too: the same
numbers, up to float32 rounding order for the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.tensors.common import TIMED_CALLS
from core.measure import time_call
from core.params import Params, choices, ladder, seed_field

LOOP_OPS = ("sum", "clamp")
LOOP_WAYS = ("tensor_loop", "list_loop", "vectorised")
CLAMP = (-1.0, 1.0)  # clamp's bounds on standard-normal data: about a third of the values are cut
MIN_RUN_TIME = 0.05  # seconds torch.utils.benchmark measures each way (a slow way: a few calls)
CALL_COST = {"tensor_loop": 20.0, "list_loop": 2.0, "vectorised": 1.0}  # element operations per element, roughly


@dataclass(frozen=True)
class LoopParams(Params):
    op: str = field(default="sum", metadata=choices(*LOOP_OPS))
    n: int = field(default=10_000, metadata=ladder(10, 50_000, "125"))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return x, the results and the Python list of floats (~32 bytes a float), with room to spare."""
        return self.n * (4 * 4 + 32 * 2)

    def estimate_work(self) -> float:
        """Return the element operations of every timed call (the clock, not a count, ends each timing)."""
        return float(self.n * sum(CALL_COST.values()) * (1 + TIMED_CALLS))


@dataclass(frozen=True)
class LoopResult:
    op: str
    n: int
    threads: int  # CPU threads torch ran with
    ways: tuple[str, ...]
    median_us: np.ndarray  # per way: median time per call, µs
    q25_us: np.ndarray
    q75_us: np.ndarray
    values: np.ndarray  # per way: the sum, or the sum of the clamped values (a checksum)
    max_diff: float  # largest |value - vectorised value| over the loops

    def speedup(self, way: str) -> float:
        """Return how many times longer `way` takes than the vectorised op."""
        return float(self.median_us[self.ways.index(way)] / self.median_us[self.ways.index("vectorised")])


def _sum_tensor_loop(x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros((), device=x.device)
    for i in range(x.shape[0]):
        total += x[i]
    return total


def _sum_list_loop(x: torch.Tensor) -> float:
    total = 0.0
    for v in x.tolist():
        total += v
    return total


def _clamp_tensor_loop(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i].clamp(*CLAMP)
    return out


def _clamp_list_loop(x: torch.Tensor) -> list[float]:
    lo, hi = CLAMP
    return [min(max(v, lo), hi) for v in x.tolist()]


def ways(op: str, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Return the three ways of computing op on x, as calls to time."""
    if op == "sum":
        return {"tensor_loop": lambda: _sum_tensor_loop(x), "list_loop": lambda: _sum_list_loop(x), "vectorised": x.sum}
    return {
        "tensor_loop": lambda: _clamp_tensor_loop(x),
        "list_loop": lambda: _clamp_list_loop(x),
        "vectorised": lambda: x.clamp(*CLAMP),
    }


def checksum(value: Any) -> float:
    """Return a way's result as one number: the sum itself, or the sum of the clamped values (in float64)."""
    if isinstance(value, torch.Tensor):
        return float(value.double().sum().item())
    if isinstance(value, list):
        return float(np.sum(np.asarray(value, dtype=np.float64)))
    return float(value)


def run(p: LoopParams, ctx: RunContext) -> LoopResult:
    """Time the three ways on the same n standard-normal numbers and keep each one's result."""
    x = torch.randn(p.n, generator=ctx.generator, device=ctx.device)
    calls = ways(p.op, x)
    values, median, q25, q75 = [], [], [], []
    for i, way in enumerate(LOOP_WAYS):
        ctx.check_deadline()
        values.append(checksum(calls[way]()))
        timing = time_call(calls[way], ctx.device, MIN_RUN_TIME)
        lo, hi = timing.spread
        median.append(timing.median * 1e6)
        q25.append(lo * 1e6)
        q75.append(hi * 1e6)
        ctx.progress(i + 1, len(LOOP_WAYS))
    return LoopResult(
        p.op,
        p.n,
        torch.get_num_threads(),
        LOOP_WAYS,
        np.array(median),
        np.array(q25),
        np.array(q75),
        np.array(values),
        float(max(abs(v - values[-1]) for v in values[:-1])),
    )


def shown(r: LoopResult) -> list[float | str]:
    """Return each way's result, which the script prints too (the times vary from run to run: not compared)."""
    return [float(v) for v in r.values]


def context(p: LoopParams, device_type: str) -> Mapping[str, Any]:
    """Return what loop.py.j2 reads: the op, the size, the seed, clamp's bounds and the device."""
    return {"op": p.op, "n": p.n, "seed": p.seed, "lo": CLAMP[0], "hi": CLAMP[1], "device": device_type}


LOOP = Experiment(
    "loop",
    LoopParams,
    run,
    script="loop.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(LoopParams(op="clamp", n=100), LoopParams(n=10), LoopParams(op="clamp", n=2000, seed=4)),
)


def _slower_by_100(r: LoopResult) -> str:
    """Return whether the loop over tensor elements takes over 100 times as long as the vectorised op."""
    return "over_100x" if r.speedup("tensor_loop") > 100 else "under_100x"


# 10,000 elements (the default n): each loop step costs microseconds of dispatch, the vectorised sum a fraction of a
# nanosecond per element. The ratio is ~10,000x on one core, so the answer survives a vectorised timing slowed 100-fold
# by a busy CPU (at 1,000 elements it was ~1,200x, and a starved run once measured under 100x).
LOOP_FACTOR = Prediction(
    "loop_factor",
    LOOP,
    LoopParams(n=10_000),
    options=("under_100x", "over_100x"),
    answer=_slower_by_100,
    question="loop.predict_q",
    why="loop.predict_why",
)
