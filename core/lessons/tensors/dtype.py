"""dtype conversions: sample values through two dtypes (truncation, rounding, overflow), and the cost of .to()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, RunContext, to_numpy
from core.lessons.tensors.common import TIMED_CALLS
from core.measure import time_call
from core.params import Params, choices, ladder

DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
# Seconds torch.utils.benchmark times the conversion: 0.05 s gives four or more blocks (a spread) in ~0.1 s.
MIN_RUN_TIME = 0.05
# Values chosen to show truncation, rounding, overflow and lost integers.
SAMPLE_VALUES = (-2.7, -0.5, 0.1, 0.5, 1.5, 2.5, 3.99, 200.0, 300.0, 70000.0, 16777217.0, 1e-8)


@dataclass(frozen=True)
class DtypeParams(Params):
    src: str = field(default="float32", metadata=choices(*DTYPES))
    dst: str = field(default="int64", metadata=choices(*DTYPES))
    n: int = field(default=1_000_000, metadata=ladder(1, 10_000_000, "125"))

    def estimate_bytes(self) -> int:
        """Return the timed tensor and its converted copy, 8 bytes each, with room to spare."""
        return self.n * 8 * 3

    def estimate_work(self) -> float:
        """Return the element conversions: filling the timed tensor, then its timed conversions.

        The timer stops by the clock (MIN_RUN_TIME); at a size where one conversion takes longer
        than that it makes TIMED_CALLS calls at most.
        """
        return self.n * (1.0 + TIMED_CALLS)


@dataclass(frozen=True)
class DtypeResult:
    original: np.ndarray  # the sample values in float64
    in_src: np.ndarray  # after conversion to src (as float64 for display)
    in_dst: np.ndarray  # after src -> dst
    bytes_src: int  # per element
    bytes_dst: int
    same_object: bool  # .to(dst) returned the tensor itself (dst == src)
    time_us: float  # median time to convert n elements
    spread_us: float  # interquartile range of that time


def run(p: DtypeParams, ctx: RunContext) -> DtypeResult:
    """Convert sample values float64 -> src -> dst and time converting n elements (synchronised on CUDA)."""
    src, dst = getattr(torch, p.src), getattr(torch, p.dst)
    original = torch.tensor(SAMPLE_VALUES, dtype=torch.float64, device=ctx.device)
    in_src = original.to(src)
    in_dst = in_src.to(dst)
    big = torch.ones(p.n, dtype=src, device=ctx.device)
    timing = time_call(lambda: big.to(dst), ctx.device, MIN_RUN_TIME)
    return DtypeResult(
        to_numpy(original, float64=True),
        to_numpy(in_src, float64=True),
        to_numpy(in_dst, float64=True),
        in_src.element_size(),
        in_dst.element_size(),
        in_src.to(dst) is in_src,
        timing.median * 1e6,
        timing.iqr * 1e6,
    )


def shown(r: DtypeResult) -> list[float | str]:
    """Return the sample values before, in src and in dst, the bytes per element, and whether .to() copied."""
    values = [float(v) for v in (*r.original, *r.in_src, *r.in_dst)]
    return [
        *values,
        f"bytes per element: {r.bytes_src} -> {r.bytes_dst}",
        f".to() returned the same tensor: {r.same_object}",
    ]


def context(p: DtypeParams, device_type: str) -> Mapping[str, Any]:
    """Return what dtype.py.j2 reads: the sample values, both dtypes and the size timed."""
    return {"values": list(SAMPLE_VALUES), "src": p.src, "dst": p.dst, "n": p.n}


DTYPE = Experiment(
    "dtype",
    DtypeParams,
    run,
    script="dtype.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(
        DtypeParams("float16", "int8", n=1000),
        DtypeParams("float32", "float32", n=1000),
        DtypeParams("bool", "float32", n=1000),
        DtypeParams("bfloat16", "int64", n=1000),
    ),
)
