"""Reproducibility: one seed trained twice compared bit for bit, other seeds as a band, and what determinism costs.

A small conv net trains on random 8×8 images. Run A and run B use the same seed; the band is the
same training from `n_seeds` other seeds (seed + 1, seed + 2, ...). The chosen mode sets
`torch.use_deterministic_algorithms` and the cuDNN flags for all the runs (and puts them back
after): they are process-wide, which is why this experiment runs alone on its device
(exclusive). The time of one training step with default flags and with the chosen ones is
measured through core.measure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.measure import time_call
from core.params import Params, bounds, choices, ladder, seed_field

MODES = ("default", "deterministic", "benchmark")
N, SIDE, CHANNELS, CLASSES = 32, 8, 4, 4
STEP_WORK = 2 * N * (CHANNELS * 9 * SIDE * SIDE + CHANNELS * CHANNELS * 9 * SIDE * SIDE + CHANNELS * SIDE * SIDE * CLASSES)
MIN_RUN_TIME = 0.05  # seconds of timed steps per mode


@dataclass(frozen=True)
class ReproParams(Params):
    mode: str = field(default="default", metadata=choices(*MODES))
    steps: int = field(default=20, metadata=bounds(5, 100))
    n_seeds: int = field(default=3, metadata=bounds(2, 8))
    lr: float = field(default=0.05, metadata=ladder(0.001, 0.5, "125"))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        return 4 * N * SIDE * SIDE * CHANNELS * 8 + 8 * (self.n_seeds + 2) * self.steps + (1 << 16)

    def estimate_work(self) -> float:
        # Forward and backward (3x, doubled for the per-call overhead) of every step of every run, plus the timed steps.
        return float(6 * STEP_WORK * (self.steps * (self.n_seeds + 2) + 2 * 200))


@dataclass(frozen=True)
class ReproResult:
    loss_a: np.ndarray  # (steps,) run A
    loss_b: np.ndarray  # (steps,) run B, same seed
    max_diff: float  # max |A - B|; 0.0 when bit-identical
    identical: bool  # every loss of B has the same bits as A's
    seeds: np.ndarray  # (n_seeds,) the band's seeds
    band: np.ndarray  # (n_seeds, steps)
    device: str
    seconds_default: float  # median time of one training step, default flags
    seconds_mode: float  # the same with the chosen mode's flags


@contextmanager
def flags(mode: str) -> Iterator[None]:
    """Set the mode's determinism and cuDNN flags for the block, then restore what was there."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        # warn_only: an op without a deterministic version warns instead of stopping the lesson.
        torch.use_deterministic_algorithms(mode == "deterministic", warn_only=True)
        torch.backends.cudnn.deterministic = mode == "deterministic"
        torch.backends.cudnn.benchmark = mode == "benchmark"
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def setup(seed: int, device: torch.device) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """Return the net, images X and labels y, all drawn from a generator seeded with `seed`."""
    g = torch.Generator(device).manual_seed(seed)
    X = torch.randn(N, 1, SIDE, SIDE, generator=g, device=device)
    y = torch.randint(0, CLASSES, (N,), generator=g, device=device)
    net = nn.Sequential(
        nn.Conv2d(1, CHANNELS, 3, padding=1, device=device),
        nn.ReLU(),
        nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, device=device),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(CHANNELS * SIDE * SIDE, CLASSES, device=device),
    )
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d | nn.Linear):
                bound = (layer.weight[0].numel()) ** -0.5  # PyTorch's default bound 1/sqrt(fan_in)
                layer.weight.uniform_(-bound, bound, generator=g)
                assert layer.bias is not None
                layer.bias.uniform_(-bound, bound, generator=g)
    return net, X, y


def train(seed: int, p: ReproParams, ctx: RunContext) -> np.ndarray:
    """Return the loss of every step of one training run from `seed`."""
    net, X, y = setup(seed, ctx.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=0.9)
    losses = torch.empty(p.steps, device=ctx.device)
    for step in range(p.steps):
        ctx.check_deadline()
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), y)
        torch.autograd.backward(loss)
        optimizer.step()
        losses[step] = loss.detach()
    out: np.ndarray = to_numpy(losses, float64=True)
    return out


def step_seconds(p: ReproParams, ctx: RunContext) -> float:
    """Return the median seconds of one training step under the current flags."""
    net, X, y = setup(p.seed, ctx.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad()
        torch.autograd.backward(F.cross_entropy(net(X), y))
        optimizer.step()

    return time_call(step, ctx.device, min_run_time=MIN_RUN_TIME).median


def run(p: ReproParams, ctx: RunContext) -> ReproResult:
    """Train twice from one seed and once from each other seed under the mode's flags; time a step both ways."""
    seeds = np.arange(1, p.n_seeds + 1) + p.seed
    with flags(mode=p.mode):
        loss_a = train(p.seed, p, ctx)
        loss_b = train(p.seed, p, ctx)
        band: list[np.ndarray] = []
        for k, seed in enumerate(seeds):
            if band and ctx.stop_requested():  # Stop pressed: the band has the seeds trained so far
                break
            band.append(train(int(seed), p, ctx))
            ctx.progress(k + 1, p.n_seeds + 2)
        seconds_mode = step_seconds(p, ctx)
    with flags(mode="default"):
        seconds_default = step_seconds(p, ctx)
    return ReproResult(
        loss_a,
        loss_b,
        float(np.abs(loss_a - loss_b).max()),
        bool(np.array_equal(loss_a.view(np.int64), loss_b.view(np.int64))),
        seeds[: len(band)],
        np.array(band),
        ctx.device.type,
        seconds_default,
        seconds_mode,
    )


def context(p: ReproParams, device_type: str) -> dict[str, Any]:
    """Return what reproducibility.py.j2 reads."""
    return {
        "device": device_type,
        "p": p,
        "n": N,
        "side": SIDE,
        "channels": CHANNELS,
        "classes": CLASSES,
        "threads": torch.get_num_threads(),
        "min_run_time": MIN_RUN_TIME,
    }


def shown(r: ReproResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints (not the times): the last losses, the difference, the band's ends."""
    last = r.band[:, -1]
    return [float(r.loss_a[-1]), float(r.loss_b[-1]), r.max_diff, float(last.min()), float(last.max())]


REPRO = Experiment(
    "train_repro",
    ReproParams,
    run,
    script="reproducibility.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(ReproParams(mode="deterministic", steps=10, n_seeds=3, lr=0.1, seed=7),),
    stoppable=True,
)


def _same_seed(r: ReproResult) -> str:
    """Return whether two runs from one seed gave the same bits."""
    return "identical" if r.identical else "differ"


SAME_SEED = Prediction(
    "train_same_seed",
    REPRO,
    ReproParams(),
    options=("identical", "differ"),
    answer=_same_seed,
    question="train_repro.predict_q",
    why="train_repro.predict_why",
)
