"""fan_in and fan_out of a real layer, by the lesson's formula and by torch, and the calculate_gain table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.init.common import LAYERS, NONLINEARITIES, gain
from core.params import Params, bounds, choices

GAIN_FORMULAS = {
    **{name: "1" for name in NONLINEARITIES[:8]},
    "tanh": "5/3",
    "relu": "sqrt(2)",
    "leaky_relu": "sqrt(2 / (1 + slope^2))",
    "selu": "3/4",
}


@dataclass(frozen=True)
class FansParams(Params):
    layer: str = field(default="conv2d", metadata=choices(*LAYERS))
    # A layer's exact sizes (the seeds' Linear(3, 5)): number boxes, where fan_in is read off by hand.
    in_features: int = field(default=3, metadata=bounds(1, 2048) | {"exact": True})
    out_features: int = field(default=5, metadata=bounds(1, 2048) | {"exact": True})
    in_channels: int = field(default=2, metadata=bounds(1, 256))
    out_channels: int = field(default=10, metadata=bounds(1, 256))
    kernel_h: int = field(default=3, metadata=bounds(1, 7))
    kernel_w: int = field(default=5, metadata=bounds(1, 7))
    slope: float = field(default=0.01, metadata=bounds(0, 1, 0.01))  # leaky_relu's negative slope

    def roles(self) -> dict[str, str]:
        """Return the fields this layer reads."""
        names = (
            ("in_features", "out_features")
            if self.layer == "linear"
            else ("in_channels", "out_channels", "kernel_h", "kernel_w")
        )
        return {n: n for n in ("layer", *names, "slope")}

    def estimate_bytes(self) -> int:
        if self.layer == "linear":
            return self.in_features * self.out_features * 4
        return self.in_channels * self.out_channels * self.kernel_h * self.kernel_w * 4

    def estimate_work(self) -> float:
        # Nothing is computed on the weight: it is only given memory (to_empty) and its shape read.
        return float(self.estimate_bytes() // 4)


@dataclass(frozen=True)
class FansResult:
    layer: str
    weight_shape: tuple[int, ...]  # of the real layer's weight: (out, in) or (out, in, kh, kw)
    receptive_field: int  # kh * kw (1 for Linear)
    fan_in: int  # the lesson's formula: in * kh * kw
    fan_out: int  # out * kh * kw
    torch_fan_in: int  # torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
    torch_fan_out: int
    nonlinearities: tuple[str, ...]  # every name calculate_gain accepts
    gains: np.ndarray  # calculate_gain(name, slope) for each
    gain_formulas: tuple[str, ...]
    slope: float


def run(p: FansParams, ctx: RunContext) -> FansResult:
    """Return fan_in/fan_out by formula and by torch on a real layer, and the gain table."""
    # Built on the meta device, then given real memory: no draw from the global RNG.
    if p.layer == "linear":
        linear = nn.Linear(p.in_features, p.out_features, bias=False, device="meta").to_empty(device=ctx.device)
        weight, n_in, n_out, field_size = linear.weight, p.in_features, p.out_features, 1
    else:
        conv = nn.Conv2d(p.in_channels, p.out_channels, (p.kernel_h, p.kernel_w), bias=False, device="meta")
        weight = conv.to_empty(device=ctx.device).weight
        n_in, n_out, field_size = p.in_channels, p.out_channels, p.kernel_h * p.kernel_w
    torch_in, torch_out = nn.init._calculate_fan_in_and_fan_out(weight)
    gains = np.array([gain(name, p.slope) for name in NONLINEARITIES])
    return FansResult(
        p.layer,
        tuple(weight.shape),
        field_size,
        n_in * field_size,
        n_out * field_size,
        torch_in,
        torch_out,
        NONLINEARITIES,
        gains,
        tuple(GAIN_FORMULAS[n] for n in NONLINEARITIES),
        p.slope,
    )


def context(p: FansParams, device_type: str) -> dict[str, Any]:
    """Return what fans_and_gains.py.j2 reads: the settings, the formula's sizes and calculate_gain's names."""
    linear = p.layer == "linear"
    sizes = {
        "n_in": p.in_features if linear else p.in_channels,
        "n_out": p.out_features if linear else p.out_channels,
        "receptive_field": "1" if linear else f"{p.kernel_h} * {p.kernel_w}",
    }
    return asdict(p) | sizes | {"nonlinearities": list(NONLINEARITIES)}


def shown(r: FansResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the weight's shape, both fans both ways, every gain."""
    return [str(r.weight_shape), r.fan_in, r.fan_out, r.torch_fan_in, r.torch_fan_out, *(float(g) for g in r.gains)]


FANS = Experiment(
    "fans",
    FansParams,
    run,
    script="fans_and_gains.py.j2",
    context=context,
    shown=shown,
    examples=(
        FansParams(layer="linear", in_features=300, out_features=7, slope=0.3),
        FansParams(in_channels=256, out_channels=1, kernel_h=7, kernel_w=1, slope=1.0),
    ),
)

# The page's question: nn.Conv2d(16, 32, kernel_size=3) has fan_in 16 * 3 * 3 = 144.
FAN_IN = Prediction(
    "fan_in",
    FANS,
    FansParams(layer="conv2d", in_channels=16, out_channels=32, kernel_h=3, kernel_w=3),
    options=("16", "48", "144", "288"),
    answer=lambda r: str(r.fan_in),
    question="fans.predict_q",
    why="fans.predict_why",
)
