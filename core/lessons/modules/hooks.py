"""Module hooks on a live training step: forward-pre, forward and full-backward hooks firing in order.

A small MLP (fc1, act1, fc2, act2, fc3) takes one forward and backward step with the chosen hooks on
the chosen layers; every call is recorded with the shapes it saw. Then the hooks of one layer are
removed through their handles and the same step runs again. The forward hooks' captures give
activation histograms.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.lessons.modules.common import materialize
from core.params import InvalidParams, Params, choices, ladder, seed_field

LAYERS = ("fc1", "act1", "fc2", "act2", "fc3")
HOOK_KINDS = ("forward_pre", "forward", "backward")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
N_IN, N_OUT = 8, 2
BINS = 30


@dataclass(frozen=True)
class HooksParams(Params):
    """The layers to hook and the kinds of hook, the layer whose hooks are removed, the net's width and batch."""

    layers: tuple[str, ...] = field(default=("fc1", "act1", "fc2"), metadata=choices(*LAYERS))
    kinds: tuple[str, ...] = field(default=HOOK_KINDS, metadata=choices(*HOOK_KINDS))
    remove: str = field(default="act1", metadata=choices("none", *LAYERS))
    activation: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    width: int = field(default=16, metadata=ladder(4, 256))
    batch: int = field(default=64, metadata=ladder(1, 256))
    seed: int = seed_field()

    def validate(self) -> None:
        """Refuse an empty choice of layers or hook kinds: nothing would fire."""
        super().validate()
        if not self.layers:
            raise InvalidParams("layers", "empty")
        if not self.kinds:
            raise InvalidParams("kinds", "empty")

    def estimate_bytes(self) -> int:
        """Return the bytes of two steps' activations and gradients and of the captured copies (float32)."""
        return 4 * (8 * self.batch * (N_IN + 2 * self.width + N_OUT) + 2 * self.width * self.width)

    def estimate_work(self) -> float:
        """Return the multiply-adds of two forward and backward steps (backward ~ twice the forward)."""
        return float(2 * 3 * self.batch * (N_IN * self.width + self.width * self.width + self.width * N_OUT))


@dataclass(frozen=True)
class HooksResult:
    """Every hook call of both steps, in order, with the shapes it saw; activation histograms from forward hooks."""

    runs: tuple[int, ...]  # 1 or 2
    kinds: tuple[str, ...]
    layers: tuple[str, ...]
    seen: tuple[str, ...]  # "in (64, 8) → out (64, 16)", "grad_in (None,) ← grad_out (64, 16)"
    lines: tuple[str, ...]  # one printed line per call, as the script prints it
    removed: int  # handles removed before step 2
    hist_layers: tuple[str, ...]
    hist_edges: tuple[np.ndarray, ...]
    hist_counts: tuple[np.ndarray, ...]
    loss: float


def shapes(values: Any) -> str:
    """Return the shapes of a hook argument: a tensor's tuple, None, or a tuple of those."""
    if isinstance(values, torch.Tensor):
        return str(tuple(values.shape))
    if isinstance(values, tuple):
        return "(" + ", ".join(shapes(v) for v in values) + ("," if len(values) == 1 else "") + ")"
    return "None"


def run(p: HooksParams, ctx: RunContext) -> HooksResult:
    """Return the calls of the chosen hooks on two training steps (the second after removing one layer's hooks)."""
    g, d = ctx.generator, ctx.device
    with torch.device("meta"):
        act = ACTIVATIONS[p.activation]
        parts = (nn.Linear(N_IN, p.width), act(), nn.Linear(p.width, p.width), act(), nn.Linear(p.width, N_OUT))
        net = nn.Sequential(OrderedDict(zip(LAYERS, parts, strict=True)))
    net = materialize(net, d, g)
    X = torch.randn(p.batch, N_IN, generator=g, device=d)
    y = torch.randn(p.batch, N_OUT, generator=g, device=d)
    calls: list[tuple[int, str, str, str]] = []
    captured: dict[str, torch.Tensor] = {}
    step = [1]

    def record(kind: str, layer: str) -> Callable[..., None]:
        def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
            calls.append((step[0], kind, layer, f"in {shapes(args)}"))

        def forward(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            calls.append((step[0], kind, layer, f"in {shapes(args)} → out {shapes(output)}"))
            if step[0] == 1:
                captured[layer] = output.detach()

        def backward(module: nn.Module, grad_input: Any, grad_output: Any) -> None:
            calls.append((step[0], kind, layer, f"grad_input {shapes(grad_input)} ← grad_output {shapes(grad_output)}"))

        chosen: dict[str, Callable[..., None]] = {"forward_pre": pre, "forward": forward, "backward": backward}
        return chosen[kind]

    handles: dict[str, list[RemovableHandle]] = {layer: [] for layer in LAYERS}
    for layer in (name for name in LAYERS if name in p.layers):
        module = net.get_submodule(layer)
        for kind in (k for k in HOOK_KINDS if k in p.kinds):
            if kind == "forward_pre":
                handles[layer].append(module.register_forward_pre_hook(record(kind, layer)))
            elif kind == "forward":
                handles[layer].append(module.register_forward_hook(record(kind, layer)))
            else:
                handles[layer].append(module.register_full_backward_hook(record(kind, layer)))

    loss = ((net(X) - y) ** 2).mean()
    loss.backward()
    removed = 0
    if p.remove != "none":
        for handle in handles[p.remove]:
            handle.remove()
            removed += 1
    step[0] = 2
    net.zero_grad()
    ((net(X) - y) ** 2).mean().backward()

    hist_layers = tuple(layer for layer in LAYERS if layer in captured)
    edges, counts = [], []
    for layer in hist_layers:
        values = to_numpy(captured[layer]).ravel().astype(np.float64)
        c, e = np.histogram(values, bins=BINS)
        edges.append(e)
        counts.append(c)
    return HooksResult(
        tuple(c[0] for c in calls),
        tuple(c[1] for c in calls),
        tuple(c[2] for c in calls),
        tuple(c[3] for c in calls),
        tuple(f"step {s} {kind} {layer}: {seen}" for s, kind, layer, seen in calls),
        removed,
        hist_layers,
        tuple(edges),
        tuple(counts),
        float(loss.item()),
    )


def context(p: HooksParams, device_type: str) -> dict[str, Any]:
    """Return what module_hooks.py.j2 reads: the settings in the order the engine registers them."""
    return {
        "seed": p.seed,
        "device": device_type,
        "width": p.width,
        "batch": p.batch,
        "n_in": N_IN,
        "n_out": N_OUT,
        "activation": ACTIVATIONS[p.activation].__name__,
        "layers": [layer for layer in LAYERS if layer in p.layers],
        "kinds": [kind for kind in HOOK_KINDS if kind in p.kinds],
        "remove": p.remove,
    }


def shown(r: HooksResult) -> Sequence[float | str]:
    """Return every recorded call (as the script prints it) and the loss."""
    return [*r.lines, r.loss]


HOOKS = Experiment(
    "mod_hooks",
    HooksParams,
    run,
    script="module_hooks.py.j2",
    context=context,
    shown=shown,
    examples=(
        HooksParams(layers=("fc3", "fc1"), kinds=("backward",), remove="fc3", activation="tanh", width=4, batch=1),
        HooksParams(layers=LAYERS, kinds=("forward", "forward_pre"), remove="none", activation="sigmoid", seed=5),
    ),
)


def _step2_calls(r: HooksResult) -> str:
    """Return how many hook calls step 2 made, after the removal."""
    return str(sum(1 for s in r.runs if s == 2))


# fc1 and fc2 carry all three kinds; fc2's handles are removed before step 2.
STEP2_CALLS = Prediction(
    "calls_after_remove",
    HOOKS,
    HooksParams(layers=("fc1", "fc2"), remove="fc2"),
    options=("0", "3", "6"),
    answer=_step2_calls,
    question="mod_hooks.predict_q",
    why="mod_hooks.predict_why",
)
