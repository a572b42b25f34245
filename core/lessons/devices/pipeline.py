"""Model parallelism over two devices: stage times measured here, then the two-stage pipeline's time for every split size.

The experiment splits a 4-layer MLP into two halves, measures each half's forward time (no grad) on
this machine for every chunk size the curve needs, takes both simulated devices to be this fast,
and models the link between them at `transfer_gbps`. The schedule is computed exactly, a smaller
last chunk included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.devices.common import GB, OPS_PER_TIMED_SECOND, TIMED_CALLS, linear
from core.measure import time_call
from core.params import Params, bounds, ladder, seed_field

PIPE_CLASSES = 10  # outputs of the last layer
ACTIVATION_BYTES = 4  # float32: what crosses the link per number between the stages


@dataclass(frozen=True)
class PipeParams(Params):
    batch: int = field(default=512, metadata=ladder(1, 512))
    split_size: int = field(default=32, metadata=ladder(1, 512))  # micro-batch size; above the batch: one chunk
    width: int = field(default=256, metadata=ladder(16, 1024))  # hidden units of the MLP
    transfer_gbps: float = field(default=16.0, metadata=ladder(0.1, 1000.0))  # link between the devices, GB/s
    min_run_time: float = field(default=0.02, metadata=bounds(0.01, 0.1, 0.01))  # seconds of timing per size
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the weights, the batch, and the activations of a few layers of the largest chunk."""
        weights = 3 * self.width * self.width + self.width * PIPE_CLASSES
        return 4 * (weights + 6 * self.batch * self.width) + (1 << 16)

    def estimate_work(self) -> float:
        """Return the multiply-adds: per measured chunk one forward of stage 1, then each stage's timing."""
        stage1 = 2 * self.width * self.width
        stage2 = self.width * self.width + self.width * PIPE_CLASSES
        measured = sizes_to_measure(self.batch, candidate_splits(self.batch, self.split_size))
        fixed = sum(measured) * (stage1 + TIMED_CALLS * (stage1 + stage2))
        return fixed + 2 * len(measured) * self.min_run_time * OPS_PER_TIMED_SECOND


@dataclass(frozen=True)
class PipeResult:
    device: str  # where the stage times were measured; both simulated devices are taken to be this fast
    batch: int
    width: int
    transfer_gbps: float
    # The measured stage times (forward, no grad), seconds per call, at every size the curve needs.
    measured_sizes: np.ndarray  # (s,) int: chunk sizes measured (candidate splits and their remainders)
    stage1_s: np.ndarray  # (s,) first half: Linear-ReLU-Linear-ReLU
    stage2_s: np.ndarray  # (s,) second half: Linear-ReLU-Linear(width, 10)
    overhead_s: tuple[float, float]  # per-call overhead of each stage: its time for a one-sample chunk
    per_sample_s: tuple[float, float]  # (T(batch) - T(1)) / (batch - 1) of each stage; 0 for batch 1
    # The curve over the candidate split sizes (powers of two up to the batch, the chosen split, the batch).
    splits: np.ndarray  # (k,) int, ascending
    chunks: np.ndarray  # (k,) int: m = ceil(batch / split)
    total_s: np.ndarray  # (k,) modelled time of the pipelined forward pass of the whole batch
    utilisation: np.ndarray  # (k,) busy time of the two devices / (2 * total)
    split_size: int  # the chosen split, at most the batch
    chosen_total_s: float
    best_split: int  # the split of the least total time
    best_total_s: float
    no_pipeline_s: float  # T1(batch) + transfer(batch) + T2(batch): model parallel without micro-batches
    single_device_s: float  # T1(batch) + T2(batch): the whole model on one device


def split_sizes(batch: int, split: int) -> list[int]:
    """Return the micro-batch sizes of X.split(split) for a batch of `batch`: full chunks, then the rest."""
    full, rest = divmod(batch, split)
    return [split] * full + ([rest] if rest else [])


def pipeline_time(
    sizes: Sequence[int], stage1: Callable[[int], float], stage2: Callable[[int], float], link: Callable[[int], float]
) -> float:
    """Return when the last micro-batch leaves stage 2 of the two-device pipeline.

    The schedule of PyTorch's model-parallel tutorial: device 1 runs stage 1 on the micro-batches one
    after another; each output crosses the link to device 2 (a copy engine, so it overlaps with
    compute), and device 2 runs stage 2 on each chunk once it has arrived and the previous chunk is
    done. Each of the three resources (device 1, link, device 2) takes the chunks in order, one at a
    time, so for chunk i of n_i samples

        done1_i = done1_{i-1} + T1(n_i)
        link_i  = max(done1_i, link_{i-1}) + C(n_i)
        done2_i = max(link_i, done2_{i-1}) + T2(n_i)

    and the result is done2 of the last chunk. For m equal chunks this is the flow-shop formula
    T1 + C + T2 + (m - 1) * max(T1, C, T2): the first chunk fills the pipeline, then the slowest
    resource sets the pace; with C = 0 it is T1 + (m - 1) * max(T1, T2) + T2.
    """
    done1 = link_done = done2 = 0.0
    for n in sizes:
        done1 += stage1(n)
        link_done = max(done1, link_done) + link(n)
        done2 = max(link_done, done2) + stage2(n)
    return done2


def equal_chunks_time(t1: float, c: float, t2: float, m: int) -> float:
    """Return T1 + C + T2 + (m - 1) max(T1, C, T2): pipeline_time for m chunks of one size."""
    return t1 + c + t2 + (m - 1) * max(t1, c, t2)


def transfer_seconds(n: int, width: int, gbps: float) -> float:
    """Return the time the link needs for n samples' activations (n x width float32) at gbps GB/s."""
    return n * width * ACTIVATION_BYTES / (gbps * GB)


def candidate_splits(batch: int, split_size: int) -> list[int]:
    """Return the split sizes of the curve: powers of two up to the batch, the chosen split, the batch."""
    powers = {2**k for k in range(batch.bit_length()) if 2**k <= batch}
    return sorted(powers | {min(split_size, batch), batch})


def sizes_to_measure(batch: int, splits: Sequence[int]) -> list[int]:
    """Return every chunk size the curve needs: each split and the remainder it leaves."""
    return sorted({n for s in splits for n in split_sizes(batch, s)})


@dataclass(frozen=True)
class PipeCurve:
    """The modelled pipeline time for each candidate split (see pipeline_time)."""

    splits: np.ndarray
    chunks: np.ndarray
    total_s: np.ndarray
    utilisation: np.ndarray


def pipeline_curve(
    batch: int, splits: Sequence[int], stage1: Mapping[int, float], stage2: Mapping[int, float], link: Callable[[int], float]
) -> PipeCurve:
    """Return the total time and utilisation of the pipeline for each split, from stage times per chunk size."""
    totals, busy = [], []
    for s in splits:
        sizes = split_sizes(batch, s)
        total = pipeline_time(sizes, stage1.__getitem__, stage2.__getitem__, link)
        totals.append(total)
        busy.append(sum(stage1[n] + stage2[n] for n in sizes) / (2 * total))
    chunks = [math.ceil(batch / s) for s in splits]
    return PipeCurve(np.array(splits), np.array(chunks), np.array(totals), np.array(busy))


def _stages(width: int, g: torch.Generator, device: torch.device) -> tuple[nn.Sequential, nn.Sequential]:
    """Return the two halves of a 4-layer MLP: Linear-ReLU-Linear-ReLU and Linear-ReLU-Linear(width, 10)."""
    stage1 = nn.Sequential(linear(width, width, g, device), nn.ReLU(), linear(width, width, g, device), nn.ReLU())
    stage2 = nn.Sequential(linear(width, width, g, device), nn.ReLU(), linear(width, PIPE_CLASSES, g, device))
    return stage1, stage2


def run(p: PipeParams, ctx: RunContext) -> PipeResult:
    """Return the measured stage times per chunk size and the modelled pipeline time for each split."""
    stage1, stage2 = _stages(p.width, ctx.generator, ctx.device)
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    splits = candidate_splits(p.batch, p.split_size)
    t1: dict[int, float] = {}
    t2: dict[int, float] = {}
    with torch.no_grad():
        measured = sizes_to_measure(p.batch, splits)
        for done, n in enumerate(measured):
            ctx.check_deadline()
            ctx.progress(done, len(measured))
            x = X[:n]
            h = stage1(x)
            t1[n] = time_call(partial(stage1, x), ctx.device, p.min_run_time).median
            t2[n] = time_call(partial(stage2, h), ctx.device, p.min_run_time).median

    def link(n: int) -> float:
        return transfer_seconds(n, p.width, p.transfer_gbps)

    curve = pipeline_curve(p.batch, splits, t1, t2, link)
    best = int(np.argmin(curve.total_s))
    chosen = min(p.split_size, p.batch)
    sizes = sorted(t1)
    per_sample = tuple((t[p.batch] - t[1]) / (p.batch - 1) if p.batch > 1 else 0.0 for t in (t1, t2))
    return PipeResult(
        device=str(ctx.device),
        batch=p.batch,
        width=p.width,
        transfer_gbps=p.transfer_gbps,
        measured_sizes=np.array(sizes),
        stage1_s=np.array([t1[n] for n in sizes]),
        stage2_s=np.array([t2[n] for n in sizes]),
        overhead_s=(t1[1], t2[1]),
        per_sample_s=(per_sample[0], per_sample[1]),
        splits=curve.splits,
        chunks=curve.chunks,
        total_s=curve.total_s,
        utilisation=curve.utilisation,
        split_size=chosen,
        chosen_total_s=float(curve.total_s[splits.index(chosen)]),
        best_split=int(curve.splits[best]),
        best_total_s=float(curve.total_s[best]),
        no_pipeline_s=t1[p.batch] + link(p.batch) + t2[p.batch],
        single_device_s=t1[p.batch] + t2[p.batch],
    )


def context(p: PipeParams, device_type: str) -> Mapping[str, Any]:
    """Return the values the script template reads (the script picks CUDA itself when there is one)."""
    return {
        "batch": p.batch,
        "width": p.width,
        "split_size": p.split_size,
        "gbps": repr(p.transfer_gbps),
        "seed": p.seed,
        "classes": PIPE_CLASSES,
        "min_run_time": repr(p.min_run_time),
    }


def shown(r: PipeResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the chunk sizes measured, each split and its chunks.

    The times are measured again by the script, so they are not among them.
    """
    out: list[float | str] = [f"measured chunk {n}: stage 1" for n in r.measured_sizes.tolist()]
    out += [f"split {s}: {m} chunks, total" for s, m in zip(r.splits.tolist(), r.chunks.tolist(), strict=True)]
    return out


def one_chunk_verdict(r: PipeResult) -> str:
    """Return how the chosen split's pipeline compares with model parallel without micro-batches.

    'same' within rounding, else 'faster' or 'slower'. With one chunk (split_size >= batch) it is
    'same' by reasoning: device 2 can only start once the whole batch has crossed the link.
    """
    if math.isclose(r.chosen_total_s, r.no_pipeline_s, rel_tol=1e-9):
        return "same"
    return "faster" if r.chosen_total_s < r.no_pipeline_s else "slower"


PIPELINE = Experiment(
    "pipeline",
    PipeParams,
    run,
    script="devices_pipeline.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(PipeParams(batch=12, split_size=5, width=16, min_run_time=0.01),),
)

# The page opens on split 32; the question is about the split the chart's right end shows, one chunk.
ONE_CHUNK = Prediction(
    "one_chunk",
    PIPELINE,
    PipeParams(split_size=512),
    options=("faster", "same", "slower"),
    answer=one_chunk_verdict,
    question="pipeline.predict_q",
    why="pipeline.predict_why",
)
