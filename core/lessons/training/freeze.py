"""Freezing layers four ways, then taking steps: which .grad stays None, which weights move, by how much.

A small classifier fc1 → bn → ReLU → fc2 → ReLU → head trains `warm_steps` with everything
trainable (so the optimizer has momentum to carry), then the chosen layers are frozen by one method
and it takes `steps` more:

- requires_grad: `p.requires_grad_(False)`; their .grad becomes None at the next zero_grad and stays so.
- not_in_optimizer: a new optimizer over the other parameters (their state carried over); autograd
  still computes the frozen ones' gradients, and optimizer.zero_grad() no longer clears them.
- eval: `module.eval()`; it only changes how BatchNorm and Dropout behave. Nothing is frozen.
- zero_grad: the frozen parameters stay in the optimizer with their gradient zeroed; weight decay and
  momentum still move them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

LAYERS = ("fc1", "bn", "fc2", "head")
METHODS = ("requires_grad", "not_in_optimizer", "eval", "zero_grad")
OPTIMIZERS = ("sgd", "adamw")
N, FEATURES, HIDDEN, CLASSES = 64, 4, 8, 2
STEP_WORK = 10_000_000  # one step: tiny matmuls, the rest Python and dispatch, in multiply-adds (bench.work)


@dataclass(frozen=True)
class FreezeParams(Params):
    frozen: tuple[str, ...] = field(default=("fc1", "bn"), metadata=choices(*LAYERS))
    method: str = field(default="requires_grad", metadata=choices(*METHODS))
    optimizer: str = field(default="sgd", metadata=choices(*OPTIMIZERS))
    lr: float = field(default=0.1, metadata=ladder(0.001, 1.0, "125"))
    momentum: float = field(default=0.9, metadata=bounds(0.0, 0.99, 0.01))  # SGD only
    weight_decay: float = field(default=0.01, metadata=bounds(0.0, 0.5, 0.01))
    warm_steps: int = field(default=5, metadata=bounds(0, 20))
    steps: int = field(default=10, metadata=bounds(1, 50))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields these settings read (momentum is SGD's)."""
        return {s.name: s.name for s in self.specs() if s.name != "momentum" or self.optimizer == "sgd"}

    def validate(self) -> None:
        """Refuse freezing nothing, and freezing everything where that leaves nothing to train."""
        super().validate()
        if not self.frozen:
            raise InvalidParams("frozen", "empty")
        if set(self.frozen) >= set(LAYERS) and self.method in ("requires_grad", "not_in_optimizer"):
            # No parameter requires grad (backward raises), or the optimizer gets an empty list (it raises).
            raise InvalidParams("frozen", "all_frozen")

    def estimate_bytes(self) -> int:
        return 8 * N * (FEATURES + HIDDEN * 4) + 64 * 4 * HIDDEN * HIDDEN + (1 << 16)

    def estimate_work(self) -> float:
        return float((self.warm_steps + self.steps) * STEP_WORK)


@dataclass(frozen=True)
class FreezeResult:
    names: tuple[str, ...]  # every parameter and BatchNorm buffer, "fc1.weight", "bn.running_mean", ...
    frozen: np.ndarray  # (k,) bool: its layer was chosen
    is_buffer: np.ndarray  # (k,) bool: a buffer (running statistics), not a parameter
    requires_grad: np.ndarray  # (k,) bool, after the last step (False for buffers)
    grad_none: np.ndarray  # (k,) bool: .grad is None after the last step (True for buffers)
    grad_norm: np.ndarray  # (k,) norm of .grad after the last step; nan when None
    norm_before: np.ndarray  # (k,) norm when the layers were frozen
    norm_after: np.ndarray  # (k,) norm after the last step
    max_change: np.ndarray  # (k,) max |after − before|: exactly 0.0 when bit-identical
    loss: np.ndarray  # (warm_steps + steps,) training loss at each step


def make_net(g: torch.Generator, device: torch.device) -> nn.Sequential:
    """Return fc1 → bn → ReLU → fc2 → ReLU → head, Linear weights at PyTorch's default bounds drawn from g (fc1 has no bias)."""
    fc1 = nn.Linear(FEATURES, HIDDEN, bias=False, device=device)  # BatchNorm cancels a bias
    fc2, head = nn.Linear(HIDDEN, HIDDEN, device=device), nn.Linear(HIDDEN, CLASSES, device=device)
    net = nn.Sequential()
    for name, module in (("fc1", fc1), ("bn", nn.BatchNorm1d(HIDDEN, device=device)), ("relu1", nn.ReLU())):
        net.add_module(name, module)
    for name, module in (("fc2", fc2), ("relu2", nn.ReLU()), ("head", head)):
        net.add_module(name, module)
    with torch.no_grad():
        for layer in (fc1, fc2, head):
            bound = layer.in_features**-0.5
            layer.weight.uniform_(-bound, bound, generator=g)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound, generator=g)
    return net


def make_optimizer(p: FreezeParams, params: Any) -> torch.optim.Optimizer:
    """Return the chosen optimizer over params."""
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    return torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)


def run(p: FreezeParams, ctx: RunContext) -> FreezeResult:
    """Train warm_steps with everything trainable, freeze the chosen layers by the method, train steps more; compare."""
    g = ctx.generator
    X = torch.randn(N, FEATURES, generator=g, device=ctx.device)
    y = (X @ torch.randn(FEATURES, generator=g, device=ctx.device) > 0).long()  # a linearly separable teacher
    net = make_net(g, ctx.device)
    optimizer = make_optimizer(p, net.parameters())
    tensors = dict(net.named_parameters()) | {k: v for k, v in net.named_buffers() if k.startswith("bn.running")}
    frozen_names = {name for name in tensors if name.split(".")[0] in p.frozen}
    frozen_params = [t for name, t in net.named_parameters() if name in frozen_names]
    losses = torch.empty(p.warm_steps + p.steps, device=ctx.device)
    before: dict[str, torch.Tensor] = {}
    for step in range(p.warm_steps + p.steps):
        ctx.check_deadline()
        if step == p.warm_steps:
            before = {name: t.detach().clone() for name, t in tensors.items()}
            if p.method == "requires_grad":
                for t in frozen_params:
                    t.requires_grad_(False)
            elif p.method == "not_in_optimizer":
                kept = [t for t in net.parameters() if not any(t is f for f in frozen_params)]
                carried: dict[torch.Tensor, Any] = {t: optimizer.state[t] for t in kept if t in optimizer.state}
                optimizer = make_optimizer(p, kept)
                optimizer.state.update(carried)  # the trainable parameters keep their momentum
            elif p.method == "eval":
                for name in p.frozen:
                    net.get_submodule(name).eval()
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), y)
        torch.autograd.backward(loss)
        if p.method == "zero_grad" and step >= p.warm_steps:
            for t in frozen_params:
                assert t.grad is not None
                t.grad.zero_()  # "frozen" by a zero gradient, yet still in the optimizer
        optimizer.step()
        losses[step] = loss.detach()
    names = tuple(tensors)
    buffers = {k for k, _ in net.named_buffers()}

    def norm(t: torch.Tensor | None) -> float:
        return float("nan") if t is None else float(torch.linalg.vector_norm(t.detach().double()))

    return FreezeResult(
        names,
        np.array([n in frozen_names for n in names]),
        np.array([n in buffers for n in names]),
        np.array([bool(tensors[n].requires_grad) for n in names]),
        np.array([tensors[n].grad is None for n in names]),
        np.array([norm(tensors[n].grad) for n in names]),
        np.array([norm(before[n]) for n in names]),
        np.array([norm(tensors[n]) for n in names]),
        np.array([float((tensors[n].detach() - before[n]).abs().max()) for n in names]),
        to_numpy(losses, float64=True),
    )


def context(p: FreezeParams, device_type: str) -> dict[str, Any]:
    """Return what freezing.py.j2 reads."""
    if p.optimizer == "sgd":
        make = f"torch.optim.SGD(params, lr={p.lr}, momentum={p.momentum}, weight_decay={p.weight_decay})"
    else:
        make = f"torch.optim.AdamW(params, lr={p.lr}, weight_decay={p.weight_decay})"
    return {
        "device": device_type,
        "seed": p.seed,
        "p": p,
        "make": make,
        "n": N,
        "features": FEATURES,
        "hidden": HIDDEN,
        "classes": CLASSES,
    }


def shown(r: FreezeResult) -> Sequence[float | str]:
    """Return what the page's table shows that the script prints: per tensor its name, grad norm, norms and change."""
    out: list[float | str] = []
    for k, name in enumerate(r.names):
        out += [name, float(r.norm_before[k]), float(r.norm_after[k]), float(r.max_change[k])]
        if not r.grad_none[k]:
            out.append(float(r.grad_norm[k]))
    return [*out, float(r.loss[-1])]


FREEZE = Experiment(
    "train_freeze",
    FreezeParams,
    run,
    script="freezing.py.j2",
    context=context,
    shown=shown,
    examples=(
        FreezeParams(method="zero_grad"),
        FreezeParams(frozen=("fc2",), method="not_in_optimizer", optimizer="adamw", lr=0.01, steps=5),
        FreezeParams(frozen=("bn", "head"), method="eval", warm_steps=0, steps=3, seed=2),
    ),
)


def _fc1_moves(r: FreezeResult) -> str:
    """Return whether fc1.weight changed after it was 'frozen'."""
    return "moves" if r.max_change[r.names.index("fc1.weight")] > 0 else "identical"


ZERO_GRAD_MOVES = Prediction(
    "train_zero_grad_moves",
    FREEZE,
    FreezeParams(frozen=("fc1",), method="zero_grad"),
    options=("identical", "moves"),
    answer=_fc1_moves,
    question="train_freeze.predict_q",
    why="train_freeze.predict_why",
)
