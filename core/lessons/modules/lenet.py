"""LeNet's shapes: the shape after every layer and the parameters per layer, from a real forward pass.

conv1 -> ReLU -> pool -> conv2 -> ReLU -> pool -> flatten -> fc1 -> ReLU -> fc2 -> ReLU -> fc3, with
the classic channel counts 6 and 16 and fc1 expecting 16 * 5 * 5 = 400 inputs unless the student
lets it fit the shape that arrives. Where a layer refuses its input, torch's own error is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, first_line
from core.lessons.modules.common import materialize
from core.params import Params, bounds, choices, seed_field

CLASSIC_IN = 16 * 5 * 5  # what fc1 of LeNet-5 expects: 16 channels of 5 x 5
LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2", "relu4", "fc3")
SIZES = range(1, 257)  # the input sizes searched for those that fit fc1


@dataclass(frozen=True)
class LeNetParams(Params):
    """The input's channels and size, the conv kernel, padding and stride, and the pooling."""

    in_channels: int = field(default=1, metadata=bounds(1, 3))
    size: int = field(default=32, metadata=bounds(8, 64))
    kernel: int = field(default=5, metadata=bounds(1, 7))
    padding: int = field(default=0, metadata=bounds(0, 3))
    stride: int = field(default=1, metadata=bounds(1, 3))
    pool: str = field(default="max", metadata=choices("max", "avg"))
    pool_size: int = field(default=2, metadata=bounds(1, 3))
    fit_fc1: bool = False  # fc1's in_features taken from the shape that arrives, instead of 400
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the bytes of the activations of one image and of every layer's weights (float32)."""
        side = self.size + 2 * self.padding
        activations = (self.in_channels + 3 * 6 + 3 * 16) * side * side
        weights = (self.in_channels + 16) * 6 * self.kernel**2 + 16 * side * side * 120 + 120 * 84 + 84 * 10
        return 4 * (activations + weights)

    def estimate_work(self) -> float:
        """Return the multiply-adds of one forward pass (every output position counted at the padded size)."""
        side = self.size + 2 * self.padding
        convs = (self.in_channels * 6 + 6 * 16) * self.kernel**2 * side * side
        return float(convs + 16 * side * side * 120 + 120 * 84 + 84 * 10)


@dataclass(frozen=True)
class LeNetResult:
    """Per layer: the output shape ('' after a failure) and the number of parameters; the error, and what fits."""

    layers: tuple[str, ...]
    shapes: tuple[str, ...]  # "(1, 6, 28, 28)"; "" for the layer that failed and those after it
    n_params: tuple[int, ...]  # sum(p.numel()) of each layer
    param_formulas: tuple[str, ...]  # how each count comes about, "" for layers without parameters
    input_shape: str
    fc1_in: int  # fc1.in_features
    arriving: int  # the features that reach fc1 (0 when an earlier layer failed)
    failed_at: str  # the layer that raised, or ""
    error: str  # torch's message, first line
    fitting_sizes: tuple[int, ...]  # input sizes (1..256) whose flattened features equal fc1's in_features
    total: int


def out_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Return floor((n + 2*padding - kernel) / stride) + 1, the size a conv or pooling window produces."""
    return (n + 2 * padding - kernel) // stride + 1


def flattened(p: LeNetParams, size: int) -> int:
    """Return the features reaching fc1 for an input of this size by the formula (0 when a layer gets nothing)."""
    n = size
    for _ in range(2):
        n = out_size(n, p.kernel, p.stride, p.padding)
        n = out_size(n, p.pool_size, p.pool_size) if n >= p.pool_size else 0
        if n <= 0:
            return 0
    return 16 * n * n


def build(p: LeNetParams, fc1_in: int, ctx: RunContext) -> nn.Sequential:
    """Return LeNet with these settings as one Sequential of named layers, initialized from ctx.generator."""
    pool = nn.MaxPool2d if p.pool == "max" else nn.AvgPool2d
    with torch.device("meta"):
        net = nn.Sequential()
        net.add_module("conv1", nn.Conv2d(p.in_channels, 6, p.kernel, p.stride, p.padding))
        net.add_module("relu1", nn.ReLU())
        net.add_module("pool1", pool(p.pool_size))
        net.add_module("conv2", nn.Conv2d(6, 16, p.kernel, p.stride, p.padding))
        net.add_module("relu2", nn.ReLU())
        net.add_module("pool2", pool(p.pool_size))
        net.add_module("flatten", nn.Flatten())
        net.add_module("fc1", nn.Linear(fc1_in, 120))
        net.add_module("relu3", nn.ReLU())
        net.add_module("fc2", nn.Linear(120, 84))
        net.add_module("relu4", nn.ReLU())
        net.add_module("fc3", nn.Linear(84, 10))
    return materialize(net, ctx.device, ctx.generator)


def formula(layer: nn.Module) -> str:
    """Return how a layer's parameter count comes about: weight sizes multiplied, plus the bias."""
    if isinstance(layer, nn.Conv2d):
        o, i, kh, kw = layer.weight.shape
        return f"{o}·{i}·{kh}·{kw} + {o}"
    if isinstance(layer, nn.Linear):
        return f"{layer.out_features}·{layer.in_features} + {layer.out_features}"
    return ""


def run(p: LeNetParams, ctx: RunContext) -> LeNetResult:
    """Return the shape after each layer of a real forward pass, the parameters per layer, and torch's error."""
    fc1_in = CLASSIC_IN
    X = torch.randn(1, p.in_channels, p.size, p.size, generator=ctx.generator, device=ctx.device)
    if p.fit_fc1:
        fc1_in = max(1, flattened(p, p.size))  # a layer that gets nothing fails below, before fc1
    net = build(p, fc1_in, ctx)
    shapes: list[str] = []
    failed_at, error, arriving = "", "", 0
    y = X
    with torch.no_grad():
        for name, layer in net.named_children():
            if name == "fc1":
                arriving = y.shape[1]
            try:
                y = layer(y)
            except RuntimeError as e:
                failed_at, error = name, first_line(e)
                arriving = arriving if name == "fc1" else 0
                break
            shapes.append(str(tuple(y.shape)))
    shapes += [""] * (len(LAYERS) - len(shapes))
    counts = tuple(sum(q.numel() for q in layer.parameters()) for layer in net.children())
    return LeNetResult(
        LAYERS,
        tuple(shapes),
        counts,
        tuple(formula(layer) for layer in net.children()),
        str(tuple(X.shape)),
        fc1_in,
        arriving,
        failed_at,
        error,
        tuple(s for s in SIZES if flattened(p, s) == fc1_in),
        sum(counts),
    )


def context(p: LeNetParams, device_type: str) -> dict[str, Any]:
    """Return what lenet_shapes.py.j2 reads: the settings, the device and fc1's in_features."""
    fc1_in = max(1, flattened(p, p.size)) if p.fit_fc1 else CLASSIC_IN
    pool = "nn.MaxPool2d" if p.pool == "max" else "nn.AvgPool2d"
    return {**vars(p), "device": device_type, "fc1_in": fc1_in, "pool_class": pool}


def shown(r: LeNetResult) -> Sequence[float | str]:
    """Return each layer's shape and parameter count, the total and torch's error as the page states them."""
    return [*(s for s in r.shapes if s), *r.n_params, r.total, *([r.error] if r.error else [])]


LENET = Experiment(
    "mod_lenet",
    LeNetParams,
    run,
    script="lenet_shapes.py.j2",
    context=context,
    shown=shown,
    examples=(
        LeNetParams(size=28),  # the MNIST size: 16·4·4 = 256 features reach fc1, which expects 400
        LeNetParams(size=28, padding=2),  # d2l's LeNet: padding 2 on conv1 and conv2 gives 16·7·7 = 784
        LeNetParams(in_channels=3, size=64, kernel=3, stride=2, pool="avg", fit_fc1=True),
        LeNetParams(size=8, kernel=7),  # conv2 gets a 1 x 1 map: too small for its kernel
    ),
)

SHAPE_AT_28 = Prediction(
    "fc1_shape_at_28",
    LENET,
    LeNetParams(size=28),
    options=("400", "576", "256", "784"),
    answer=lambda r: str(r.arriving),
    question="mod_lenet.predict_shape_q",
    why="mod_lenet.predict_shape_why",
)

# Not the default's 2,416 (on screen): the same conv2 with 3 x 3 kernels.
CONV2_PARAMS = Prediction(
    "conv2_params_k3",
    LENET,
    LeNetParams(kernel=3),
    options=("864", "880", "1456", "2416"),
    answer=lambda r: str(r.n_params[LAYERS.index("conv2")]),
    question="mod_lenet.predict_conv2_q",
    why="mod_lenet.predict_conv2_why",
)
