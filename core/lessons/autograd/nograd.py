"""no_grad, inference_mode and requires_grad_(False): what autograd keeps for backward in each grad mode.

One MLP forward per mode, with a saved_tensors_hooks pack hook counting every tensor autograd saves
(and the bytes of the distinct storages behind them), next to the size of the graph it built.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, RunContext
from core.lessons.autograd.common import empty_linear
from core.params import Params, bounds, ladder, seed_field

GRAD_MODES = ("grad", "no_grad", "inference_mode", "frozen")


@dataclass(frozen=True)
class NogradParams(Params):
    """The MLP: width, layers, batch size, and the seed of its weights and input."""

    width: int = field(default=256, metadata=ladder(8, 1024))
    depth: int = field(default=3, metadata=bounds(1, 8))
    batch: int = field(default=64, metadata=ladder(1, 512))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the bytes of the weights and of the activations the grad-mode graph keeps alive."""
        weights = self.depth * (self.width * self.width + self.width)
        # Input, every layer's linear and relu output (kept while grad mode's graph lives), one
        # output copy per mode.
        activations = (2 * self.depth + 1 + len(GRAD_MODES)) * self.batch * self.width
        return 4 * (weights + activations)

    def estimate_work(self) -> float:
        """Return the multiply-adds of one MLP forward in each grad mode."""
        return float(len(GRAD_MODES) * self.depth * self.batch * self.width * self.width)


@dataclass(frozen=True)
class NogradResult:
    """Per grad mode: graph size, what autograd saved for backward, and how far the output is from grad mode's."""

    modes: tuple[str, ...]  # GRAD_MODES; every array below has one entry per mode
    graph_nodes: np.ndarray  # unique autograd nodes reachable from the output's grad_fn
    saved_tensors: np.ndarray  # tensors autograd saved for backward (the pack hook's calls)
    saved_bytes: np.ndarray  # bytes of the distinct storages behind them (see _SavedCounter)
    saved_weight_bytes: np.ndarray  # the part of saved_bytes that is parameter memory
    requires_grad: np.ndarray  # output.requires_grad
    max_abs_diff: np.ndarray  # max |output - grad mode's output|
    weight_bytes: int  # all parameters of the MLP
    activation_bytes: int  # one batch of activations, batch * width * 4
    output_sum: float  # sum of grad mode's output, to compare with the script

    @property
    def kept_bytes(self) -> np.ndarray:
        """Return the memory autograd keeps alive for backward per mode: saved storages that are not parameters.

        Saving a weight keeps a reference to the parameter, which the model holds anyway: no copy is made.
        """
        kept: np.ndarray = self.saved_bytes - self.saved_weight_bytes
        return kept


class _SavedCounter:
    """Counts what autograd saves for backward while it is the saved_tensors_hooks pack hook.

    Each saved tensor is counted once per call (`tensors`), but its bytes are those of the
    storage behind it, counted once per distinct storage (`nbytes`): a ReLU output saved by the
    ReLU and again as the next Linear's input costs memory once, and a weight saved as the view
    weight.t() holds the weight's storage, which is parameter memory (`weight_nbytes`), not new.
    """

    def __init__(self, param_storages: set[int]) -> None:
        self.param_storages = param_storages
        self.storages: dict[int, int] = {}
        self.tensors = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """Return t unchanged (kept as is for backward), after counting it."""
        self.tensors += 1
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def nbytes(self) -> int:
        """Return the bytes of the distinct storages saved so far."""
        return sum(self.storages.values())

    @property
    def weight_nbytes(self) -> int:
        """Return the part of nbytes that belongs to parameters."""
        return sum(n for ptr, n in self.storages.items() if ptr in self.param_storages)


def count_graph_nodes(t: torch.Tensor) -> int:
    """Return how many distinct autograd nodes are reachable from t.grad_fn (0 without one)."""
    seen: dict[int, Any] = {}  # id -> node; holding the node keeps its id from being reused
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(child for child, _ in node.next_functions)
    return len(seen)


def _mlp(p: NogradParams, ctx: RunContext) -> nn.Sequential:
    """Return depth x (Linear(width, width), ReLU) with weights drawn from ctx.generator."""
    layers: list[nn.Module] = []
    bound = 1 / math.sqrt(p.width)  # nn.Linear's own default range
    for _ in range(p.depth):
        linear = empty_linear(p.width, p.width, ctx.device)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=ctx.generator)
            linear.bias.uniform_(-bound, bound, generator=ctx.generator)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


def _mode(mode: str, net: nn.Module) -> AbstractContextManager[Any]:
    """Return the context manager that puts a forward pass in one of GRAD_MODES."""
    if mode == "no_grad":
        return torch.no_grad()
    if mode == "inference_mode":
        return torch.inference_mode()
    if mode == "frozen":
        return _frozen(net)
    return nullcontext()


@contextmanager
def _frozen(net: nn.Module) -> Iterator[None]:
    """Turn requires_grad off on every parameter for the with-block."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


def run(p: NogradParams, ctx: RunContext) -> NogradResult:
    """Return graph size and memory saved for backward by one MLP forward in each grad mode."""
    net = _mlp(p, ctx)
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    params = {q.untyped_storage().data_ptr() for q in net.parameters()}
    rows: list[tuple[int, int, int, int, bool]] = []
    outputs: list[torch.Tensor] = []
    for mode in GRAD_MODES:
        ctx.check_deadline()
        counter = _SavedCounter(params)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t), _mode(mode, net):
            y_hat = net(X)
        rows.append((count_graph_nodes(y_hat), counter.tensors, counter.nbytes, counter.weight_nbytes, y_hat.requires_grad))
        outputs.append(y_hat.detach().clone() if mode == "grad" else y_hat)
        del y_hat  # frees this mode's graph before the next forward
    diffs = [float((y - outputs[0]).abs().max().item()) for y in outputs]
    nodes, tensors, nbytes, weight_nbytes, requires = zip(*rows, strict=True)
    return NogradResult(
        GRAD_MODES,
        np.array(nodes),
        np.array(tensors),
        np.array(nbytes),
        np.array(weight_nbytes),
        np.array(requires, dtype=bool),
        np.array(diffs),
        sum(q.numel() * q.element_size() for q in net.parameters()),
        p.batch * p.width * 4,
        float(outputs[0].sum().item()),
    )


def context(p: NogradParams, device_type: str) -> dict[str, Any]:
    """Return the values of no_grad.py.j2: the same MLP and input, drawn in the same order from the seed."""
    return {"seed": p.seed, "width": p.width, "depth": p.depth, "batch": p.batch}


def shown(r: NogradResult) -> list[float | str]:
    """Return each mode's row of the table and figure as the script prints it, and the largest output differences."""
    rows: list[float | str] = [
        f"{mode:15} nodes {int(nodes)} saved tensors {int(tensors)} saved bytes {int(nbytes)} "
        f"of which weights {int(weights)} (referenced, not copied) kept beyond the weights {int(nbytes - weights)} "
        f"requires_grad {bool(requires)} max diff"
        for mode, nodes, tensors, nbytes, weights, requires in zip(
            r.modes, r.graph_nodes, r.saved_tensors, r.saved_bytes, r.saved_weight_bytes, r.requires_grad, strict=True
        )
    ]
    return [*rows, *r.max_abs_diff]


NOGRAD = Experiment(
    "nograd",
    NogradParams,
    run,
    script="no_grad.py.j2",
    context=context,
    shown=shown,
    examples=(NogradParams(width=8, depth=1, batch=1, seed=5), NogradParams(width=64, depth=4, batch=16, seed=8)),
)
