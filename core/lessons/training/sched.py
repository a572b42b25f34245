"""Learning-rate schedules with consequences: the rate read from a real torch scheduler, and the loss of that run.

A small MLP (fc1: 10 → 16, ReLU, fc2: 16 → 1) fits a noisy linear teacher with minibatch SGD and
momentum; the scheduler steps once per epoch. The same run with a constant rate (same init, same
batches) is drawn beside it, so the schedule's effect is there to see. Options: calling
`scheduler.step()` before `optimizer.step()` (torch's warning is caught and shown), and the notes'
two parameter groups (fc1 at lr/10 with momentum 0.99, fc2 at the defaults lr and 0.9).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.params import Params, bounds, choices, ladder, seed_field

SCHEDULERS = (
    "step",
    "multistep",
    "exponential",
    "cosine",
    "cosine_restarts",
    "warmup",
    "linear",
    "linear_notes",
    "onecycle",
    "plateau",
)
N, FEATURES, HIDDEN, BATCH = 256, 10, 16, 64  # 4 minibatches per epoch
STEP_WORK = 5_000_000  # one minibatch step, evaluation and scheduler included: mostly Python and dispatch (bench.work)
ORDER_WARNING = "lr_scheduler.step()"  # what torch's warning about the call order contains
ALL_LAYERS = "all"  # the one parameter group's name when the layers are not split into groups (translated on the page)
# catch_warnings swaps process-wide state: two runs of this module must not interleave it.
_WARNINGS_LOCK = threading.Lock()
# Each scheduler's constructor as the script writes it; {p} fields come from the params.
CALLS = {
    "step": "lr_scheduler.StepLR(optimizer, step_size={p.step_size}, gamma={p.gamma})",
    "multistep": "lr_scheduler.MultiStepLR(optimizer, milestones={milestones}, gamma={p.gamma})",
    "exponential": "lr_scheduler.ExponentialLR(optimizer, gamma={p.gamma})",
    "cosine": "lr_scheduler.CosineAnnealingLR(optimizer, T_max={p.epochs})",
    "cosine_restarts": "lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0={p.t0})",
    "warmup": "lr_scheduler.LambdaLR(optimizer, lambda epoch: min(1.0, (epoch + 1) / {p.warmup}))",
    "linear": "lr_scheduler.LambdaLR(optimizer, lambda epoch: max(0.0, 1.0 - epoch / {p.decay}))",
    # The notes' condition compares the horizon with itself: it is always true, so past it the factor turns negative.
    "linear_notes": "lr_scheduler.LambdaLR(optimizer, lambda epoch: (1.0 - epoch / epochs) if epochs <= epochs else 0)",
    "onecycle": "lr_scheduler.OneCycleLR(optimizer, max_lr={p.lr}, total_steps={p.epochs})",
    "plateau": "lr_scheduler.ReduceLROnPlateau(optimizer, factor={p.gamma}, patience={p.patience})",
}
GAMMAS = {"step": 0.5, "multistep": 0.3, "exponential": 0.95, "plateau": 0.5}


@dataclass(frozen=True)
class SchedParams(Params):
    scheduler: str = field(default="step", metadata=choices(*SCHEDULERS))
    lr: float = field(default=0.05, metadata=ladder(0.001, 0.5, "125"))
    epochs: int = field(default=40, metadata=bounds(10, 200))
    # A setting longer than the run is valid, as in torch: a StepLR whose step_size exceeds the epochs never decays.
    step_size: int = field(default=10, metadata=bounds(1, 100))
    gamma: float = field(default=0.5, metadata=bounds(0.05, 0.99, 0.01))
    t0: int = field(default=10, metadata=bounds(1, 100))
    warmup: int = field(default=5, metadata=bounds(1, 100))
    decay: int = field(default=30, metadata=bounds(1, 100))
    patience: int = field(default=3, metadata=bounds(0, 20))
    wrong_order: bool = False
    groups: bool = False
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields this scheduler reads."""
        own = {
            "step": {"step_size", "gamma"},
            "multistep": {"gamma"},
            "exponential": {"gamma"},
            "cosine_restarts": {"t0"},
            "warmup": {"warmup"},
            "linear": {"decay"},
            "linear_notes": {"decay"},
            "plateau": {"gamma", "patience"},
        }.get(self.scheduler, set())
        optional = {"step_size", "gamma", "t0", "warmup", "decay", "patience"}
        return {s.name: s.name for s in self.specs() if s.name not in optional or s.name in own}

    @classmethod
    def linked(cls, name: str, value: Any) -> dict[str, Any]:
        """Return a decay factor that suits a newly chosen scheduler."""
        return {"gamma": GAMMAS[value]} if name == "scheduler" and value in GAMMAS else {}

    def milestones(self) -> list[int]:
        """Return MultiStepLR's milestones: half and three quarters of the run."""
        return sorted({max(1, self.epochs // 2), max(2, 3 * self.epochs // 4)})

    def estimate_bytes(self) -> int:
        return 8 * N * (FEATURES + 1) + 8 * 4 * (self.epochs + 1) + 64 * (FEATURES + 2) * HIDDEN + (1 << 16)

    def estimate_work(self) -> float:
        return float(2 * self.epochs * (N // BATCH) * STEP_WORK)


@dataclass(frozen=True)
class SchedResult:
    lr: np.ndarray  # (groups, epochs) the rate each group trained with in each epoch, read from the optimizer
    loss: np.ndarray  # (epochs + 1,) full-data MSE before training and after each epoch, with the schedule
    baseline: np.ndarray  # (epochs + 1,) the same run at the constant rate
    warning: str  # torch's warning about the call order ("" when it did not warn)
    group_names: tuple[str, ...]
    group_lr: np.ndarray  # (groups,) each group's lr and momentum as the optimizer holds them before training
    group_momentum: np.ndarray


def make_data(g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return X (N, FEATURES) and y from a random linear teacher plus noise of std 0.5."""
    X = torch.randn(N, FEATURES, generator=g, device=device)
    w_true = torch.randn(FEATURES, 1, generator=g, device=device)
    return X, X @ w_true + 0.5 * torch.randn(N, 1, generator=g, device=device)


def make_net(g: torch.Generator, device: torch.device) -> nn.Sequential:
    """Return fc1 → ReLU → fc2 with PyTorch's default init bounds, drawn from g."""
    fc1, fc2 = nn.Linear(FEATURES, HIDDEN, device=device), nn.Linear(HIDDEN, 1, device=device)
    net = nn.Sequential()
    net.add_module("fc1", fc1)
    net.add_module("relu", nn.ReLU())
    net.add_module("fc2", fc2)
    with torch.no_grad():
        for layer in (fc1, fc2):
            bound = layer.in_features**-0.5  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear's default
            layer.weight.uniform_(-bound, bound, generator=g)
            layer.bias.uniform_(-bound, bound, generator=g)
    return net


def make_scheduler(p: SchedParams, optimizer: torch.optim.Optimizer) -> Any:
    """Return the chosen torch scheduler on optimizer."""
    builders: dict[str, Callable[[], Any]] = {
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=p.step_size, gamma=p.gamma),
        "multistep": lambda: lr_scheduler.MultiStepLR(optimizer, milestones=p.milestones(), gamma=p.gamma),
        "exponential": lambda: lr_scheduler.ExponentialLR(optimizer, gamma=p.gamma),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=p.epochs),
        "cosine_restarts": lambda: lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=p.t0),
        "warmup": lambda: lr_scheduler.LambdaLR(optimizer, lambda epoch: min(1.0, (epoch + 1) / p.warmup)),
        "linear": lambda: lr_scheduler.LambdaLR(optimizer, lambda epoch: max(0.0, 1.0 - epoch / p.decay)),
        "linear_notes": lambda: lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 - epoch / p.decay),
        "onecycle": lambda: lr_scheduler.OneCycleLR(optimizer, max_lr=p.lr, total_steps=p.epochs),
        "plateau": lambda: lr_scheduler.ReduceLROnPlateau(optimizer, factor=p.gamma, patience=p.patience),
    }
    return builders[p.scheduler]()


def make_optimizer(p: SchedParams, net: nn.Sequential) -> torch.optim.SGD:
    """Return SGD with momentum 0.9; with groups, the notes' fc1 group at lr/10 and momentum 0.99 first."""
    if p.groups:
        groups: list[dict[str, Any]] = [
            {"params": net.get_submodule("fc1").parameters(), "lr": p.lr / 10, "momentum": 0.99},
            {"params": net.get_submodule("fc2").parameters()},  # no lr or momentum of its own: the defaults below
        ]
        return torch.optim.SGD(groups, lr=p.lr, momentum=0.9)
    return torch.optim.SGD(net.parameters(), lr=p.lr, momentum=0.9)


def train(p: SchedParams, ctx: RunContext, X: torch.Tensor, y: torch.Tensor, scheduled: bool) -> tuple[Any, ...]:
    """Train once (with the schedule or at the constant rate); return lr per group and epoch, losses, warning, groups."""
    state = ctx.generator.get_state()
    net = make_net(ctx.generator, ctx.device)
    optimizer = make_optimizer(p, net)
    groups = [(float(group["lr"]), float(group["momentum"])) for group in optimizer.param_groups]
    scheduler = make_scheduler(p, optimizer) if scheduled else None
    lrs = np.empty((len(optimizer.param_groups), p.epochs))
    losses = torch.empty(p.epochs + 1, device=ctx.device)
    caught: list[str] = []

    def full_loss() -> torch.Tensor:
        with torch.no_grad():
            return F.mse_loss(net(X), y)

    def step_scheduler(loss: torch.Tensor) -> None:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
                scheduler.step(float(loss))
            elif scheduler is not None:
                scheduler.step()
        caught.extend(str(r.message) for r in records if ORDER_WARNING in str(r.message))

    losses[0] = full_loss()
    for epoch in range(p.epochs):
        ctx.check_deadline()
        if p.wrong_order:  # the mistake: the schedule moves on before the optimizer has taken a step
            step_scheduler(losses[epoch])
        lrs[:, epoch] = [group["lr"] for group in optimizer.param_groups]
        order = torch.randperm(N, generator=ctx.generator, device=ctx.device)
        for batch in torch.split(order, BATCH):
            optimizer.zero_grad()
            torch.autograd.backward(F.mse_loss(net(X[batch]), y[batch]))
            optimizer.step()
        losses[epoch + 1] = full_loss()
        if not p.wrong_order:
            step_scheduler(losses[epoch + 1])
    ctx.generator.set_state(state)  # the other run starts from the same weights and batches
    return lrs, to_numpy(losses, float64=True), (caught[0] if caught else ""), groups


def run(p: SchedParams, ctx: RunContext) -> SchedResult:
    """Train with the schedule and at the constant rate from the same start; return rates, both losses, the warning."""
    X, y = make_data(ctx.generator, ctx.device)
    lrs, loss, warning, groups = train(p, ctx, X, y, scheduled=True)
    ctx.progress(1, 2)
    _, baseline, _, _ = train(p, ctx, X, y, scheduled=False)
    names = ("fc1", "fc2") if p.groups else (ALL_LAYERS,)
    return SchedResult(lrs, loss, baseline, warning, names, np.array([g[0] for g in groups]), np.array([g[1] for g in groups]))


def context(p: SchedParams, device_type: str) -> dict[str, Any]:
    """Return what lr_schedules.py.j2 reads."""
    return {
        "device": device_type,
        "seed": p.seed,
        "p": p,
        "n": N,
        "features": FEATURES,
        "hidden": HIDDEN,
        "batch": BATCH,
        "call": CALLS[p.scheduler].format(p=p, milestones=p.milestones()),
        "plateau": p.scheduler == "plateau",
        "notes": p.scheduler == "linear_notes",
        "report": report_epochs(p.epochs),
    }


def report_epochs(epochs: int) -> list[int]:
    """Return the epochs whose rate and loss the script prints (and the page's table shows)."""
    return sorted({1, epochs // 4, epochs // 2, 3 * epochs // 4, epochs} - {0})


def shown(r: SchedResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the rates and both losses at the reported epochs, torch's warning."""
    out: list[float | str] = [*map(float, r.group_lr), *map(float, r.group_momentum)]
    for epoch in report_epochs(r.lr.shape[1]):
        out += [*map(float, r.lr[:, epoch - 1]), float(r.loss[epoch]), float(r.baseline[epoch])]
    return [*out, r.warning] if r.warning else out


SCHED = Experiment(
    "train_sched",
    SchedParams,
    run,
    script="lr_schedules.py.j2",
    context=context,
    shown=shown,
    examples=(
        SchedParams(scheduler="linear_notes", lr=0.02, epochs=50, decay=30, groups=True),
        SchedParams(scheduler="onecycle", epochs=30, wrong_order=True),
        SchedParams(scheduler="plateau", epochs=40, gamma=0.5, patience=2, seed=4),
        SchedParams(scheduler="cosine_restarts", epochs=20, t0=6, wrong_order=True, groups=True),
    ),
)


def _first_epoch(r: SchedResult) -> str:
    """Return the rate the first epoch trained with when scheduler.step() comes first, as a multiple of lr."""
    ratio = r.lr[0, 0] / r.group_lr[0]
    return "full" if np.isclose(ratio, 1.0) else "half" if np.isclose(ratio, 0.5) else "other"


WRONG_ORDER = Prediction(
    "train_wrong_order",
    SCHED,
    SchedParams(scheduler="step", step_size=1, gamma=0.5, wrong_order=True),
    options=("full", "half", "other"),
    answer=_first_epoch,
    question="train_sched.predict_q",
    why="train_sched.predict_why",
)
