"""curves: training curves of a big batch, of accumulation, and of small batches (at lr and at lr / k).

Every way of training starts from the same weights and sees the same sample stream, so one way
alone gives the same curve as inside a run of all (the page runs one way at a time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, RunContext, to_numpy
from core.lessons.accumulation import common
from core.lessons.accumulation.model import MODELS, SIDE, ModelSpec, build_model, make_batch, make_teacher, model_context
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

CURVE_VARIANTS = ("big", "accum", "small", "small_lr")
DATASET = 4096  # training samples, drawn once; each epoch visits them in a fresh random order
HELDOUT = 1024  # held-out samples: the loss after every effective step is measured on them


@dataclass(frozen=True)
class CurvesParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=64, metadata=bounds(4, 512))  # B: samples per effective step
    accum_steps: int = field(default=4, metadata=bounds(1, 64, hi_of="most_micro_batches"))  # k
    steps: int = field(default=60, metadata=bounds(10, 500))  # effective steps N
    lr: float = field(default=0.2, metadata=ladder(0.001, 1.0, "125"))
    width: int = field(default=64, metadata=ladder(8, 256) | {"step": 8})
    depth: int = field(default=2, metadata=bounds(1, 4))
    variants: tuple[str, ...] = field(default=CURVE_VARIANTS, metadata=choices(*CURVE_VARIANTS))
    seed: int = seed_field()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no normalisation layers)."""
        return ModelSpec(self.model, self.width, self.depth)

    def most_micro_batches(self) -> int:
        """Return the largest k: every micro-batch needs at least one sample."""
        return self.batch

    def estimate_work(self) -> float:
        """Return the run's work: per variant and effective step, its training passes and the held-out loss."""
        spec, B, k = self.spec(), self.batch, self.accum_steps
        evaluate = common.pass_work(spec, HELDOUT, backward=False)
        step = {
            "big": common.pass_work(spec, B),
            "accum": common.pass_work(spec, B, k),
            # k passes and k optimizer steps (about a forward pass's fixed cost each), and the loss before them
            "small": common.pass_work(spec, B, k) + common.pass_work(spec, B, 1 + k, backward=False),
        }
        return self.steps * sum(step[v.removesuffix("_lr")] + evaluate for v in self.variants)

    def validate(self) -> None:
        super().validate()
        if not self.variants:
            raise InvalidParams("variants", "empty")
        if self.estimate_work() > common.MAX_WORK:
            limits = (("steps", 10), ("width", 8), ("batch", max(4, self.accum_steps)), ("depth", 1))
            raise common.too_much_work(self, CurvesParams.estimate_work, limits)

    def estimate_bytes(self) -> int:
        spec = self.spec()
        sample = math.prod(spec.input_shape())
        per_epoch = DATASET // self.batch
        epochs = -(-self.steps // per_epoch)
        data = 4 * (DATASET + HELDOUT) * sample + 8 * (DATASET + HELDOUT) + 8 * epochs * DATASET
        # Parameters, .grad and spares; a training pass's saved activations and their gradients; the
        # held-out forward pass (no autograd) keeps about two layers' outputs at once.
        pixels = 1 if spec.model == "mlp" else SIDE * SIDE
        net = 4 * spec.parameter_count() + 2 * self.batch * spec.activations_per_sample() + 2 * HELDOUT * self.width * pixels
        return data + 4 * net + (1 << 16)


@dataclass(frozen=True)
class CurvesResult:
    variants: tuple[str, ...]
    steps: np.ndarray  # (N + 1,) 0..N effective steps
    eval_loss: np.ndarray  # (variants, N + 1) held-out loss before training and after each effective step
    train_loss: np.ndarray  # (variants, N) mean loss of each effective step's B samples, before its update(s)
    accuracy: np.ndarray  # (variants,) held-out accuracy after the last step
    updates: np.ndarray  # (variants,) int64: optimizer steps taken (N, or N k for small batches)
    lrs: np.ndarray  # (variants,) the learning rate used (lr, or lr / k for small_lr)
    diverged: np.ndarray  # (variants,) bool: a loss became inf or nan
    micro_sizes: tuple[int, ...]  # (k,) samples per micro-batch


def sample_order(batch: int, steps: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Return (steps, batch) training-set indices: per epoch a fresh permutation cut into full batches (the rest dropped)."""
    per_epoch = DATASET // batch
    epochs = -(-steps // per_epoch)
    perms = [
        torch.randperm(DATASET, generator=g, device=device)[: per_epoch * batch].view(per_epoch, batch) for _ in range(epochs)
    ]
    return torch.cat(perms)[:steps]


def _train_step(
    net: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, variant: str, accum_steps: int
) -> torch.Tensor:
    """Take one effective step of the variant on the batch X, y; return the batch's mean loss before the update(s)."""
    B = len(y)
    micro = list(zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps), strict=True))
    if variant == "big":  # one update on all B samples
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), y)
        torch.autograd.backward(loss)
        optimizer.step()
        return loss.detach()
    if variant == "accum":  # k backward passes adding up the gradient of all B samples, then one update
        optimizer.zero_grad()
        total = torch.zeros((), device=X.device)
        for X_i, y_i in micro:
            loss = F.cross_entropy(net(X_i), y_i) * (len(y_i) / B)
            torch.autograd.backward(loss)
            total += loss.detach()
        optimizer.step()
        return total
    with torch.no_grad():  # small batches: the loss of the step's samples before the first of its k updates
        before = F.cross_entropy(net(X), y)
    for X_i, y_i in micro:
        optimizer.zero_grad()
        torch.autograd.backward(F.cross_entropy(net(X_i), y_i))
        optimizer.step()
    return before


def run(p: CurvesParams, ctx: RunContext) -> CurvesResult:
    """Train the same network once per variant on the same sample stream; return the loss curves."""
    spec = p.spec()
    g = ctx.generator
    teacher = make_teacher(g, ctx.device)
    X_train, y_train = make_batch(spec, DATASET, teacher, g, ctx.device)
    X_test, y_test = make_batch(spec, HELDOUT, teacher, g, ctx.device)
    order = sample_order(p.batch, p.steps, g, ctx.device)
    state = g.get_state()
    lrs = [p.lr / p.accum_steps if v == "small_lr" else p.lr for v in p.variants]
    eval_curves, train_curves, accuracy = [], [], []
    for variant, lr in zip(p.variants, lrs, strict=True):
        # Every variant starts from the same weights: a run of one variant alone gives the same curve.
        g.set_state(state)
        net = build_model(spec, g, ctx.device)
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
        eval_loss = torch.empty(p.steps + 1, device=ctx.device)
        train_loss = torch.empty(p.steps, device=ctx.device)
        with torch.no_grad():
            eval_loss[0] = F.cross_entropy(net(X_test), y_test)
        for step in range(p.steps):
            ctx.check_deadline()
            index = order[step]
            kind = variant.removesuffix("_lr")
            train_loss[step] = _train_step(net, optimizer, X_train[index], y_train[index], kind, p.accum_steps)
            with torch.no_grad():
                eval_loss[step + 1] = F.cross_entropy(net(X_test), y_test)  # no .item(): a GPU would wait every step
        with torch.no_grad():
            accuracy.append((net(X_test).argmax(dim=1) == y_test).float().mean().item())
        eval_curves.append(to_numpy(eval_loss, float64=True))
        train_curves.append(to_numpy(train_loss, float64=True))
    updates = [p.steps * (p.accum_steps if v.startswith("small") else 1) for v in p.variants]
    eval_array, train_array = np.array(eval_curves), np.array(train_curves)
    diverged = ~(np.isfinite(eval_array).all(axis=1) & np.isfinite(train_array).all(axis=1))
    return CurvesResult(
        tuple(p.variants),
        np.arange(p.steps + 1),
        eval_array,
        train_array,
        np.array(accuracy),
        np.array(updates, dtype=np.int64),
        np.array(lrs),
        diverged,
        common.micro_sizes(p.batch, p.accum_steps),
    )


def big_accum_gap(results: Sequence[CurvesResult]) -> float | None:
    """Return the largest difference between the held-out losses of (a) batch B and (b) accumulation, if both ran."""
    by_name = {r.variants[0]: r.eval_loss[0] for r in results}  # a sweep: one way of training per result
    if "big" not in by_name or "accum" not in by_name:
        return None
    return float(np.abs(by_name["big"] - by_name["accum"]).max())


def curve_report_steps(steps: int) -> list[int]:
    """Return the effective steps whose held-out loss the script prints."""
    return sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps})


def context(p: CurvesParams, device_type: str) -> dict[str, Any]:
    """Return what the script template reads (it trains on the CPU)."""
    return {
        **model_context(p.spec()),
        "batch": p.batch,
        "accum_steps": p.accum_steps,
        "steps": p.steps,
        "lr": repr(p.lr),
        "n_train": DATASET,
        "n_test": HELDOUT,
        "seed": p.seed,
        "report": repr(curve_report_steps(p.steps)),
        "variants": repr(list(p.variants)),
    }


def shown(r: CurvesResult) -> list[float | str]:
    """Return the held-out losses at the steps the script reports (the final one in the table), accuracies and updates."""
    report = curve_report_steps(len(r.steps) - 1)
    return [*r.eval_loss[:, report].flatten(), *r.accuracy, *r.updates]


CURVES = Experiment(
    "curves",
    CurvesParams,
    run,
    "accumulation_training.py.j2",
    context,
    sweep="variants",
    shown=shown,
    examples=(
        CurvesParams(batch=10, accum_steps=3, steps=10, width=8, depth=1, variants=("small_lr", "accum"), seed=1),
        CurvesParams(batch=16, accum_steps=3, steps=12, width=16, variants=("accum", "small"), seed=2),
    ),
)
