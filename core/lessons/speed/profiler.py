"""torch.profiler's table of one training step: which ops take the time, by self CPU time (and CUDA time on a GPU).

The model is `depth` blocks of Linear(width, width) + ReLU and a Linear(width, 10) read-out, trained with
cross-entropy and SGD. One step runs first unprofiled (the first call pays for allocation and lazy
initialisation), then one step runs under `torch.profiler.profile`. The times are noisy; the call counts
are not: a forward pass makes one aten::addmm per Linear, backward one aten::mm per weight gradient and one
per input gradient except the first layer's (the batch X needs no gradient), so 2 * layers - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from core.experiment import Experiment, RunContext
from core.params import Params, bounds, ladder, seed_field

CLASSES = 10
LR = 0.01
MATMUL_OPS = ("aten::addmm", "aten::mm")
COUNTED_OPS = ("aten::addmm", "aten::mm", "aten::relu", "aten::threshold_backward")  # counts the theory predicts


@dataclass(frozen=True)
class ProfilerParams(Params):
    width: int = field(default=512, metadata=ladder(32, 2048))
    depth: int = field(default=3, metadata=bounds(1, 8))  # blocks of Linear(width, width) + ReLU
    batch: int = field(default=128, metadata=ladder(8, 512))
    rows: int = field(default=12, metadata=bounds(5, 25))  # rows of the table
    seed: int = seed_field()

    def layers(self) -> int:
        """Return the Linear layers: depth blocks and the read-out."""
        return self.depth + 1

    def estimate_bytes(self) -> int:
        weights = (self.depth * self.width * (self.width + 1) + (self.width + 1) * CLASSES) * 4
        # weights, gradients; the batch, every block's two activations and their gradients
        return 2 * weights + (4 * self.depth + 4) * self.batch * self.width * 4

    def estimate_work(self) -> float:
        """Return the multiply-adds of two training steps (backward does twice the forward's)."""
        forward = self.batch * (self.depth * self.width * self.width + self.width * CLASSES)
        return 2 * 3 * forward


@dataclass(frozen=True)
class ProfilerResult:
    names: tuple[str, ...]  # the top `rows` ops by self CPU time, highest first
    calls: np.ndarray  # (rows,) int64
    self_cpu_us: np.ndarray  # (rows,) float64: time in the op itself, microseconds
    cpu_total_us: np.ndarray  # (rows,) float64: the op and everything it called
    self_cuda_us: np.ndarray | None  # (rows,) float64: the op's own kernels' time on the GPU; None on the CPU
    total_self_cpu_us: float  # every op's self CPU time, summed (the step's CPU time under the profiler)
    total_self_cuda_us: float | None
    matmul_share: float  # the fraction of total_self_cpu_us in aten::addmm and aten::mm
    counted: tuple[str, ...]  # COUNTED_OPS
    counted_calls: np.ndarray  # (4,) int64: their calls in the step (0 when absent)
    layers: int
    device: str
    gpu_only: tuple[str, ...]  # ("cuda_time",) on the CPU


def mlp(p: ProfilerParams, ctx: RunContext) -> nn.Sequential:
    """Return depth blocks of Linear(width, width) + ReLU and a Linear(width, 10), drawn from ctx.generator."""
    blocks: list[nn.Module] = []
    for _ in range(p.depth):
        blocks += [nn.Linear(p.width, p.width, device="meta"), nn.ReLU()]
    net = nn.Sequential(*blocks, nn.Linear(p.width, CLASSES, device="meta")).to_empty(device=ctx.device)
    bound = 1 / math.sqrt(p.width)  # nn.Linear's default range, drawn from the run's generator
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-bound, bound, generator=ctx.generator)
    return net


def run(p: ProfilerParams, ctx: RunContext) -> ProfilerResult:
    """Profile one training step (after an unprofiled one) and return the top ops by self CPU time."""
    device, cuda = ctx.device, ctx.device.type == "cuda"
    net = mlp(p, ctx)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=device)
    y = torch.randint(0, CLASSES, (p.batch,), generator=ctx.generator, device=device)

    def step() -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), y)
        torch.autograd.backward(loss)
        optimizer.step()

    step()  # warm-up: allocation and lazy initialisation are not what the table is about
    ctx.check_deadline()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize(device)
    events = list(prof.key_averages())
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: p.rows]
    total_cpu = float(sum(e.self_cpu_time_total for e in events))
    matmul = float(sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS))
    counts = {e.key: int(e.count) for e in events}
    return ProfilerResult(
        names=tuple(e.key for e in top),
        calls=np.array([e.count for e in top], dtype=np.int64),
        self_cpu_us=np.array([e.self_cpu_time_total for e in top], dtype=np.float64),
        cpu_total_us=np.array([e.cpu_time_total for e in top], dtype=np.float64),
        self_cuda_us=np.array([e.self_device_time_total for e in top], dtype=np.float64) if cuda else None,
        total_self_cpu_us=total_cpu,
        total_self_cuda_us=float(sum(e.self_device_time_total for e in events)) if cuda else None,
        matmul_share=matmul / total_cpu if total_cpu > 0 else 0.0,
        counted=COUNTED_OPS,
        counted_calls=np.array([counts.get(name, 0) for name in COUNTED_OPS], dtype=np.int64),
        layers=p.layers(),
        device=device.type,
        gpu_only=() if cuda else ("cuda_time",),
    )


def context(p: ProfilerParams, device_type: str) -> dict[str, Any]:
    """Return the values profile_step.py.j2 reads, for the device the page ran on (CUDA adds the CUDA activity)."""
    return {
        "width": p.width,
        "depth": p.depth,
        "batch": p.batch,
        "rows": p.rows,
        "seed": p.seed,
        "classes": CLASSES,
        "lr": LR,
        "device": device_type,
        "cuda": device_type == "cuda",
        "counted": list(COUNTED_OPS),
    }


def shown(r: ProfilerResult) -> list[float | str]:
    """Return what the page shows that the script prints: the calls of the ops whose counts do not depend on timing."""
    return [f"{name} calls {n}" for name, n in zip(r.counted, r.counted_calls.tolist(), strict=True)]


PROFILER = Experiment(
    "profiler",
    ProfilerParams,
    run,
    script="profile_step.py.j2",
    context=context,
    exclusive=True,  # a timing, and the profiler is process-wide: nothing else may run meanwhile
    shown=shown,
    examples=(ProfilerParams(width=32, depth=1, batch=8, rows=5),),
)
