"""nn.Module vs nn.functional, and custom layers: CenteredLayer, MyLinear written right and with the `.data` bug.

Also the notes' two slips, run for real: forward calling `self.layer1` when __init__ defined
`self.layer`, and `net._all_buffers()`, which nn.Module does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.modules.common import materialize
from core.params import Params, ladder, seed_field

LR = 0.1


class CenteredLayer(nn.Module):
    """A layer without parameters that subtracts the mean of its input."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X - X.mean()


class MyLinear(nn.Module):
    """A fully connected layer with ReLU, its weight and bias as Parameters; `use_data` reproduces the notes' bug."""

    def __init__(self, in_units: int, units: int, g: torch.Generator, device: torch.device, use_data: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units, generator=g, device=device))
        self.bias = nn.Parameter(torch.randn(units, generator=g, device=device))
        self.use_data = use_data

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.use_data:  # .data is a tensor outside autograd: the graph never reaches the parameters
            return F.relu(torch.matmul(X, self.weight.data) + self.bias.data)
        return F.relu(torch.matmul(X, self.weight) + self.bias)


class Net(nn.Module):
    """The notes' slip: __init__ defines self.layer, forward calls self.layer1."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.layer1(X)  # type: ignore[no-any-return, operator]  # the slip itself: nn.Module.__getattr__ raises


def head(units: int) -> nn.Linear:
    """Return a Linear(units, 1) on the meta device: the layer after MyLinear."""
    return nn.Linear(units, 1, device="meta")


@dataclass(frozen=True)
class CustomParams(Params):
    """The sizes of the layers (the notes' MyLinear(5, 3)) and of the batch."""

    in_units: int = field(default=5, metadata=ladder(1, 256))
    units: int = field(default=3, metadata=ladder(1, 256))
    batch: int = field(default=4, metadata=ladder(1, 256))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the bytes of four weight matrices, their gradients and the activations (float32)."""
        return 4 * (8 * self.in_units * self.units + 8 * self.batch * (self.in_units + self.units))

    def estimate_work(self) -> float:
        """Return the multiply-adds of the forward and backward passes of the four layers."""
        return float(4 * 3 * self.batch * self.in_units * self.units)


@dataclass(frozen=True)
class CustomResult:
    """The module/functional comparison, CenteredLayer's means, the two MyLinears' gradients, torch's two errors."""

    functional_max_diff: float  # max |nn.Sequential(Linear, ReLU)(X) - F.relu(F.linear(X, W, b))|
    module_state: tuple[str, ...]  # named_parameters() of the nn version; the functional one has none
    centered_in_mean: float
    centered_out_mean: float  # ≈ 0 (rounding)
    right_grad_norms: tuple[float, float]  # ‖weight.grad‖, ‖bias.grad‖ of MyLinear written right
    right_changed: bool  # an SGD step changed its weight
    data_grads: tuple[str, str]  # str(weight.grad), str(bias.grad) of the .data version: "None"
    data_changed: bool
    same_forward_diff: float  # max |right(X) - data_version(X)| with equal weights: the bug is silent
    typo_error: str
    buffers_error: str


def run(p: CustomParams, ctx: RunContext) -> CustomResult:
    """Return what the nn and functional forms compute, CenteredLayer's means, and what the .data bug does."""
    g, d = ctx.generator, ctx.device
    X = torch.randn(p.batch, p.in_units, generator=g, device=d)
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(p.in_units, p.units), nn.ReLU())
    net = materialize(net, d, g)
    linear = net[0]
    assert isinstance(linear, nn.Linear)
    with torch.no_grad():
        functional = F.relu(F.linear(X, linear.weight, linear.bias))  # the state is whatever tensors are passed
        diff = float((net(X) - functional).abs().max().item())
        centered = CenteredLayer()(X)

    # Each MyLinear sits under a Linear head, as in a real network: the loss still has a graph through the
    # head, so backward runs, and the bug shows only as parameters that never get a gradient.
    right = nn.Sequential(MyLinear(p.in_units, p.units, g, d, use_data=False), materialize(head(p.units), d, g))
    buggy = nn.Sequential(MyLinear(p.in_units, p.units, g, d, use_data=True), materialize(head(p.units), d, g))
    buggy.load_state_dict(right.state_dict())  # the same numbers in both
    with torch.no_grad():
        same = float((right(X) - buggy(X)).abs().max().item())
    steps = []
    for net_ in (right, buggy):
        layer = net_[0]
        assert isinstance(layer, MyLinear)
        before = layer.weight.detach().clone()
        optimizer = torch.optim.SGD(net_.parameters(), lr=LR)
        net_(X).sum().backward()
        optimizer.step()
        steps.append((layer.weight.grad, layer.bias.grad, not torch.equal(before, layer.weight)))
    typo_error = buffers_error = ""
    try:
        Net()(X)
    except AttributeError as e:
        typo_error = str(e)
    try:
        net._all_buffers()  # type: ignore[operator]  # the notes call this; nn.Module has buffers() and named_buffers()
    except AttributeError as e:
        buffers_error = str(e)
    (w_grad, b_grad, right_changed), (data_w, data_b, data_changed) = steps
    assert w_grad is not None and b_grad is not None
    return CustomResult(
        diff,
        tuple(name for name, _ in net.named_parameters()),
        float(X.mean().item()),
        float(centered.mean().item()),
        (float(w_grad.norm().item()), float(b_grad.norm().item())),
        right_changed,
        (str(data_w), str(data_b)),
        data_changed,
        same,
        typo_error,
        buffers_error,
    )


def context(p: CustomParams, device_type: str) -> dict[str, Any]:
    """Return what custom_layers.py.j2 reads: the sizes, the seed and the device."""
    return {**vars(p), "device": device_type, "lr": LR}


def shown(r: CustomResult) -> Sequence[float | str]:
    """Return the numbers and torch's messages the page shows."""
    return [
        r.functional_max_diff,
        *r.module_state,
        r.centered_in_mean,
        r.centered_out_mean,
        *r.right_grad_norms,
        r.same_forward_diff,
        r.typo_error,
        r.buffers_error,
        f"weight.grad {r.data_grads[0]}",
        f"bias.grad {r.data_grads[1]}",
        f"weight changed by the step: {r.data_changed}",
    ]


CUSTOM = Experiment(
    "mod_custom",
    CustomParams,
    run,
    script="custom_layers.py.j2",
    context=context,
    shown=shown,
    examples=(CustomParams(in_units=256, units=1, batch=1, seed=4), CustomParams(in_units=1, units=64, batch=256)),
)

DATA_GRAD = Prediction(
    "data_grad",
    CUSTOM,
    CustomParams(),
    options=("tensor", "zeros", "None"),
    answer=lambda r: "None" if r.data_grads[0] == "None" else "tensor",
    question="mod_custom.predict_q",
    why="mod_custom.predict_why",
)
