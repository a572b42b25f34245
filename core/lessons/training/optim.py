"""Real torch.optim optimizers on 2-D surfaces: trajectories and loss per step, with minibatch-like gradient noise.

Every optimizer starts from the same point and sees the same noise (the generator restarts from
the seed for each), so the comparison is like for like. "equal" gives them all one learning rate;
"best" sweeps a 1-2-5 ladder of rates for each and keeps the one with the lowest loss over the
last tenth of the steps (a diverged run never wins), and shows the sweep. The rates of a sweep run
as parameter groups of one optimizer: each group has its own point, its own state, its own rate,
exactly as separate runs would (foreach=False: the per-tensor arithmetic of a run of one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.lessons.training.surfaces import DOMAINS, STARTS, SURFACES, source, value
from core.params import InvalidParams, Params, bounds, choices, ladder, ladder_values, seed_field

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
MODES = ("equal", "best")
SWEEP_LRS = ladder_values(0.0001, 1.0, "125")  # 13 rates from 1e-4 to 1
DIVERGED = 1e3  # a point this far out has left every surface's picture for good
STEP_WORK = 5_000_000  # one optimizer step of one point: Python and dispatch overhead, in multiply-adds (bench.work)
GRID = 80
# The torch call each optimizer name stands for; lr and weight_decay are filled in by the caller.
CALLS = {
    "sgd": "torch.optim.SGD({params}, lr={lr}, weight_decay={wd}, foreach=False)",
    "momentum": "torch.optim.SGD({params}, lr={lr}, momentum=0.9, weight_decay={wd}, foreach=False)",
    "nesterov": "torch.optim.SGD({params}, lr={lr}, momentum=0.9, nesterov=True, weight_decay={wd}, foreach=False)",
    "adam": "torch.optim.Adam({params}, lr={lr}, weight_decay={wd}, foreach=False)",
    "adamw": "torch.optim.AdamW({params}, lr={lr}, weight_decay={wd}, foreach=False)",
    "rmsprop": "torch.optim.RMSprop({params}, lr={lr}, weight_decay={wd}, foreach=False)",
    "adagrad": "torch.optim.Adagrad({params}, lr={lr}, weight_decay={wd}, foreach=False)",
}
BUILDERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, weight_decay=wd, foreach=False),
    "momentum": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=wd, foreach=False),
    "nesterov": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd, foreach=False),
    "adam": lambda ps, lr, wd: torch.optim.Adam(ps, lr=lr, weight_decay=wd, foreach=False),
    "adamw": lambda ps, lr, wd: torch.optim.AdamW(ps, lr=lr, weight_decay=wd, foreach=False),
    "rmsprop": lambda ps, lr, wd: torch.optim.RMSprop(ps, lr=lr, weight_decay=wd, foreach=False),
    "adagrad": lambda ps, lr, wd: torch.optim.Adagrad(ps, lr=lr, weight_decay=wd, foreach=False),
}


@dataclass(frozen=True)
class OptimParams(Params):
    surface: str = field(default="bowl", metadata=choices(*SURFACES))
    condition: float = field(default=20.0, metadata=ladder(1.0, 100.0, "125"))  # the bowl's curvature ratio
    rotate: bool = True  # the bowl's valley along the diagonal
    optimizers: tuple[str, ...] = field(default=("sgd", "momentum", "adam"), metadata=choices(*OPTIMIZERS))
    mode: str = field(default="equal", metadata=choices(*MODES))
    lr: float = field(default=0.05, metadata=ladder(0.0001, 1.0, "125"))
    steps: int = field(default=100, metadata=bounds(10, 500))
    noise: float = field(default=0.0, metadata=bounds(0.0, 5.0, 0.1))  # std of the noise added to each gradient
    weight_decay: float = field(default=0.0, metadata=bounds(0.0, 1.0, 0.05))
    start_x: float = field(default=STARTS["bowl"][0], metadata=bounds(-5.0, 5.0, 0.1))
    start_y: float = field(default=STARTS["bowl"][1], metadata=bounds(-5.0, 5.0, 0.1))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields these settings read: the bowl's shape only for the bowl, one rate only in "equal" mode."""
        skip = set()
        if self.surface != "bowl":
            skip |= {"condition", "rotate"}
        if self.mode == "best":
            skip.add("lr")
        return {s.name: s.name for s in self.specs() if s.name not in skip}

    @classmethod
    def linked(cls, name: str, value: Any) -> dict[str, Any]:
        """Return the start that shows a newly chosen surface's character."""
        if name == "surface" and value in STARTS:
            return {"start_x": STARTS[value][0], "start_y": STARTS[value][1]}
        return {}

    def validate(self) -> None:
        """Refuse an empty choice of optimizers."""
        super().validate()
        if not self.optimizers:
            raise InvalidParams("optimizers", "empty")

    def rates(self) -> tuple[float, ...]:
        """Return the learning rates each optimizer runs with: one, or the sweep's ladder."""
        return SWEEP_LRS if self.mode == "best" else (self.lr,)

    def estimate_bytes(self) -> int:
        return 8 * 4 * len(self.optimizers) * len(self.rates()) * (self.steps + 1) + 8 * GRID * GRID + (1 << 16)

    def estimate_work(self) -> float:
        return float(len(self.optimizers) * self.steps * (STEP_WORK + STEP_WORK // 10 * len(self.rates())))


@dataclass(frozen=True)
class OptimResult:
    optimizers: tuple[str, ...]
    lr: np.ndarray  # (n_opt,) the rate each ran with (its best in "best" mode)
    path: np.ndarray  # (n_opt, steps + 1, 2) the point before each step and after the last; nan once diverged
    loss: np.ndarray  # (n_opt, steps + 1) the surface's height there (without noise)
    diverged: np.ndarray  # (n_opt,) bool
    sweep_lrs: np.ndarray  # (k,) the rates swept ("best" mode), else the one rate
    sweep_score: np.ndarray  # (n_opt, k) mean loss over the last tenth of the steps; nan for a diverged rate
    grid_x: np.ndarray  # (GRID,)
    grid_y: np.ndarray
    surface: np.ndarray  # (GRID, GRID) height at (grid_y[i], grid_x[j])


def tail(steps: int) -> int:
    """Return how many of the last losses the score averages: a tenth of the steps, at least one."""
    return max(1, (steps + 1) // 10)


def race(p: OptimParams, name: str, ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
    """Run optimizer `name` from the start once per rate; return the paths (k, steps + 1, 2) and heights (k, steps + 1)."""
    rates = p.rates()
    start = torch.tensor([p.start_x, p.start_y], device=ctx.device)
    points = [start.clone().requires_grad_(True) for _ in rates]
    optimizer = BUILDERS[name](
        [{"params": [point], "lr": lr} for point, lr in zip(points, rates, strict=True)], rates[0], p.weight_decay
    )
    trace = torch.empty(p.steps + 1, len(rates), 3, device=ctx.device, dtype=torch.float64)
    for step in range(p.steps + 1):
        ctx.check_deadline()
        stacked = torch.stack(points)
        heights = value(p.surface, stacked[:, 0], stacked[:, 1], p.condition, p.rotate)
        trace[step] = torch.cat([stacked.detach(), heights.detach()[:, None]], dim=1).double()
        if step == p.steps:
            break
        optimizer.zero_grad()
        heights.sum().backward()  # each point's gradient is its own: the sum's other terms do not depend on it
        noise = p.noise * torch.randn(2, generator=ctx.generator, device=ctx.device)  # one draw, shared by every rate
        for point in points:
            assert point.grad is not None
            point.grad.add_(noise)
        optimizer.step()
    out = to_numpy(trace).transpose(1, 0, 2)
    gone = ~np.isfinite(out).all(axis=2) | (np.abs(out[:, :, :2]) > DIVERGED).any(axis=2)
    out[np.maximum.accumulate(gone, axis=1)] = np.nan  # from the first step out of bounds on, nothing to draw
    return out[:, :, :2], out[:, :, 2]


def run(p: OptimParams, ctx: RunContext) -> OptimResult:
    """Race each chosen optimizer on the surface; in "best" mode each at the rate its sweep found best."""
    state = ctx.generator.get_state()
    paths: list[np.ndarray] = []
    losses: list[np.ndarray] = []
    lrs: list[float] = []
    scores: list[np.ndarray] = []
    for k, name in enumerate(p.optimizers):
        if paths and ctx.stop_requested():  # Stop pressed: the optimizers raced so far are the result
            break
        ctx.generator.set_state(state)  # the same noise for every optimizer, whether it runs alone or with others
        path, loss = race(p, name, ctx)
        with np.errstate(invalid="ignore"):
            score = loss[:, -tail(p.steps) :].mean(axis=1)
        best = int(np.nanargmin(score)) if np.isfinite(score).any() else 0
        paths.append(path[best])
        losses.append(loss[best])
        lrs.append(p.rates()[best])
        scores.append(score)
        ctx.progress(k + 1, len(p.optimizers))
    x_lo, x_hi, y_lo, y_hi = DOMAINS[p.surface]
    grid_x = np.linspace(min(x_lo, p.start_x - 0.5), max(x_hi, p.start_x + 0.5), GRID)
    grid_y = np.linspace(min(y_lo, p.start_y - 0.5), max(y_hi, p.start_y + 0.5), GRID)
    heights = value(p.surface, grid_x[None, :], grid_y[:, None], p.condition, p.rotate)
    loss_curves = np.array(losses)
    return OptimResult(
        tuple(p.optimizers[: len(paths)]),
        np.array(lrs),
        np.array(paths),
        loss_curves,
        np.isnan(loss_curves).any(axis=1),
        np.array(p.rates()),
        np.array(scores),
        grid_x,
        grid_y,
        heights,
    )


def context(p: OptimParams, device_type: str) -> dict[str, Any]:
    """Return what optimizers_on_surfaces.py.j2 reads."""
    params = "[{'params': [pt], 'lr': r} for pt, r in zip(points, rates)]"
    calls = {name: CALLS[name].format(params=params, lr="rates[0]", wd=p.weight_decay) for name in p.optimizers}
    return {
        "device": device_type,
        "seed": p.seed,
        "surface_lines": source(p.surface, p.condition, p.rotate),
        "calls": calls,
        "rates": list(p.rates()),
        "steps": p.steps,
        "noise": p.noise,
        "start": (p.start_x, p.start_y),
        "tail": tail(p.steps),
        "diverged": DIVERGED,
    }


def shown(r: OptimResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: per optimizer its rate, final point and final height."""
    out: list[float | str] = []
    for k, name in enumerate(r.optimizers):
        out += [name, float(r.lr[k]), *map(float, r.path[k, -1]), float(r.loss[k, -1])]
    return out


OPTIM = Experiment(
    "train_optim",
    OptimParams,
    run,
    script="optimizers_on_surfaces.py.j2",
    context=context,
    sweep="optimizers",
    shown=shown,
    examples=(
        OptimParams(surface="rosenbrock", optimizers=("nesterov", "rmsprop"), mode="best", steps=30, noise=0.5),
        OptimParams(optimizers=("adam", "adamw"), lr=0.1, weight_decay=0.5, steps=200),
        OptimParams(surface="saddle", start_x=1.5, start_y=0.0, optimizers=("sgd", "adagrad"), lr=0.02, noise=1.0),
    ),
    stoppable=True,
)


def _lowest(results: list[OptimResult]) -> str:
    """Return the optimizer whose final height is lowest (a diverged one never is)."""
    finals = {r.optimizers[0]: r.loss[0, -1] for r in results if not r.diverged[0]}
    return min(finals, key=lambda name: finals[name]) if finals else results[0].optimizers[0]


WINNER = Prediction(
    "train_optim_winner",
    OPTIM,
    OptimParams(condition=100.0, lr=0.01),
    options=("sgd", "momentum", "adam"),
    answer=_lowest,
    question="train_optim.predict_q",
    why="train_optim.predict_why",
)
