"""The training consequence: the same small MLP trained on two spirals once per init, its loss curves.

The page runs one cached part per scheme (`sweep="schemes"`), so every init starts from the same
random numbers whether it runs alone or with the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, RunContext, to_numpy
from core.lessons.init.common import ACTIVATIONS, LEAKY_SLOPE, SIGNAL_SCHEMES, init_call, init_weight
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

TRAIN_POINTS = 256  # two interleaved spirals, half of them per class
OPTIMIZERS = ("sgd", "adam")
ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}
MODULE_CODE = {
    "linear": "nn.Identity()",
    "tanh": "nn.Tanh()",
    "relu": "nn.ReLU()",
    "leaky_relu": f"nn.LeakyReLU({LEAKY_SLOPE})",
    "sigmoid": "nn.Sigmoid()",
    "selu": "nn.SELU()",
    "gelu": "nn.GELU()",
}
# The steps are capped so that a run's cost (TrainParams.work) stays within this: about 10 s on one CPU core.
TRAIN_MAX_WORK = 3.5e8
LAYER_OVERHEAD = 10_000  # a layer's fixed cost per step (Python, autograd, optimizer), in multiply-adds per point


@dataclass(frozen=True)
class TrainParams(Params):
    depth: int = field(default=5, metadata=bounds(1, 10))  # hidden layers
    width: int = field(default=64, metadata=ladder(16, 256))
    activation: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    schemes: tuple[str, ...] = field(
        default=("normal_0.01", "xavier_uniform", "kaiming_normal"), metadata=choices(*SIGNAL_SCHEMES)
    )
    optimizer: str = field(default="sgd", metadata=choices(*OPTIMIZERS))
    lr: float = field(default=0.1, metadata=ladder(0.0001, 1.0, "125"))
    momentum: float = field(default=0.9, metadata=bounds(0, 0.99, 0.01))  # SGD only
    steps: int = field(default=300, metadata=bounds(50, 2000))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields this optimizer reads (momentum is SGD's)."""
        names = [f.name for f in self.specs()]
        return {n: n for n in names if n != "momentum" or self.optimizer == "sgd"}

    def step_work(self) -> int:
        """Return one step's cost: multiply-adds per training point plus each layer's fixed cost, every scheme."""
        per_scheme = self.depth * self.width**2 + 64 * self.width + LAYER_OVERHEAD * (self.depth + 1)
        return len(self.schemes) * per_scheme

    def work(self) -> int:
        """Return the run's cost over all steps, in the units of TRAIN_MAX_WORK."""
        return self.steps * self.step_work()

    def max_steps(self) -> int:
        """Return the most steps these sizes and schemes may train for within TRAIN_MAX_WORK."""
        return max(1, int(TRAIN_MAX_WORK // self.step_work())) if self.schemes else 2000

    def validate(self) -> None:
        """Refuse an empty list of schemes, and more steps than max_steps (the message says how many)."""
        super().validate()
        if not self.schemes:
            raise InvalidParams("schemes", "empty")
        if self.steps > self.max_steps():
            raise InvalidParams("steps", "too_much_work", max=self.max_steps())

    def estimate_bytes(self) -> int:
        params = self.depth * self.width * (self.width + 1) + 4 * self.width
        # Parameters, gradients and two optimizer states; per layer its input, output and their gradients.
        return len(self.schemes) * 16 * params + 16 * TRAIN_POINTS * self.width * (self.depth + 1) + (1 << 16)

    def estimate_work(self) -> float:
        # Per scheme and step, for every point: forward and backward through every Linear (3 matmuls' worth),
        # plus the optimizer's few operations per parameter.
        weights = 2 * self.width + (self.depth - 1) * self.width**2 + self.width
        per_step = 3 * TRAIN_POINTS * weights + 10 * (weights + (self.depth + 1) * self.width)
        return float(len(self.schemes) * self.steps * per_step)


@dataclass(frozen=True)
class TrainResult:
    X: np.ndarray  # (TRAIN_POINTS, 2) the spiral points
    y: np.ndarray  # their classes, 0.0 or 1.0
    schemes: tuple[str, ...]
    steps: np.ndarray  # 1..steps
    loss: np.ndarray  # (len(schemes), steps) binary cross-entropy before each step; nan once it diverged
    accuracy: np.ndarray  # (len(schemes),) after the last step
    diverged: np.ndarray  # (len(schemes),) bool: the loss became inf or nan


def spirals(n: int, g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return n points on two interleaved spirals (X: (n, 2) about [-1, 1]) and their classes y."""
    t = 0.5 + 3 * math.pi * torch.rand(n, generator=g, device=device)  # angle along the arm
    y = (torch.arange(n, device=device) % 2).float()
    angle = t + math.pi * y  # the second arm is the first turned by half a turn
    X = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
    return X + 0.03 * torch.randn(n, 2, generator=g, device=device), y


def mlp(p: TrainParams, scheme: str, ctx: RunContext) -> nn.Sequential:
    """Return the MLP with every weight drawn by `scheme` from ctx.generator and zero biases."""
    layers: list[nn.Module] = []
    n_in = 2
    for _ in range(p.depth):
        layers += [nn.Linear(n_in, p.width, device="meta"), ACTIVATION_MODULES[p.activation]()]
        n_in = p.width
    layers.append(nn.Linear(n_in, 1, device="meta"))
    # Meta first: nn.Linear would draw its default weights from the global RNG, which the run does not own.
    net = nn.Sequential(*layers).to_empty(device=ctx.device)
    for module in net:
        if isinstance(module, nn.Linear):
            init_weight(module.weight, scheme, p.activation, ctx.generator)
            nn.init.zeros_(module.bias)
    return net


def run(p: TrainParams, ctx: RunContext) -> TrainResult:
    """Train one MLP per scheme, full batch on the same spirals; return every loss curve."""
    X, y = spirals(TRAIN_POINTS, ctx.generator, ctx.device)
    state = ctx.generator.get_state()
    curves, accuracy = [], []
    for scheme in p.schemes:
        # Every init starts from the same random numbers: a run of one scheme alone gives the same curve.
        ctx.generator.set_state(state)
        net = mlp(p, scheme, ctx)
        optimizer: torch.optim.Optimizer = (
            torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum)
            if p.optimizer == "sgd"
            else torch.optim.Adam(net.parameters(), lr=p.lr)
        )
        curve = torch.empty(p.steps, device=ctx.device)
        for step in range(p.steps):
            ctx.check_deadline()
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(X).squeeze(1), y)
            torch.autograd.backward(loss)
            optimizer.step()
            curve[step] = loss.detach()  # no .item(): on a GPU that would wait for every step
        with torch.no_grad():
            accuracy.append(float(((net(X).squeeze(1) > 0).float() == y).float().mean().item()))
        curves.append(to_numpy(curve, float64=True))
    loss_curves = np.array(curves)
    return TrainResult(
        to_numpy(X, float64=True),
        to_numpy(y, float64=True),
        tuple(p.schemes),
        np.arange(1, p.steps + 1),
        loss_curves,
        np.array(accuracy),
        ~np.isfinite(loss_curves).all(axis=1),
    )


def report_steps(steps: int) -> list[int]:
    """Return the steps whose loss the script prints."""
    return sorted({1, steps // 4, steps // 2, 3 * steps // 4, steps} - {0})


def context(p: TrainParams, device_type: str) -> dict[str, Any]:
    """Return what train_per_init.py.j2 reads: the settings, each scheme's init call and the steps it reports."""
    return {
        "seed": p.seed,
        "n": TRAIN_POINTS,
        "inits": [(s, init_call(s, p.activation)) for s in p.schemes],
        "report": report_steps(p.steps),
        "depth": p.depth,
        "width": p.width,
        "activation_module": MODULE_CODE[p.activation],
        "optimizer": p.optimizer,
        "lr": p.lr,
        "momentum": p.momentum,
        "steps": p.steps,
    }


def shown(r: TrainResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: each scheme's name, its loss at the reported steps, its accuracy."""
    out: list[float | str] = []
    for k, scheme in enumerate(r.schemes):
        out += [scheme, *(float(r.loss[k, step - 1]) for step in report_steps(len(r.steps))), float(r.accuracy[k])]
    return out


TRAIN = Experiment(
    "train",
    TrainParams,
    run,
    script="train_per_init.py.j2",
    context=context,
    sweep="schemes",
    shown=shown,
    examples=(
        TrainParams(
            depth=2,
            width=16,
            activation="tanh",
            schemes=("normal_1", "xavier_normal"),
            optimizer="adam",
            lr=0.01,
            steps=60,
            seed=5,
        ),
    ),
)
