"""What the init lesson's experiments share: calculate_gain's names, the normal CDF, and the MLP inits.

`signal` and `train` build plain MLPs whose weights one of SIGNAL_SCHEMES draws: `init_weight`
fills a weight that way and `init_call` writes the same call as script text, so page and script agree.
"""

from __future__ import annotations

import math
import typing
from typing import Literal, cast

import numpy as np
import torch
from torch import nn

BINS = 40  # histogram bins of every distribution the lesson draws
LAYERS = ("linear", "conv2d")
Nonlinearity = Literal[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
# Every name torch.nn.init.calculate_gain accepts.
NONLINEARITIES: tuple[str, ...] = typing.get_args(Nonlinearity)
FanMode = Literal["fan_in", "fan_out"]

ACTIVATIONS = ("linear", "tanh", "relu", "leaky_relu", "sigmoid", "selu", "gelu")
# "standard" is Glorot & Bengio's name (2010) for the common heuristic U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
# the contrast to their "normalized" init (xavier_uniform); nn.Linear's own default draws from the same range.
SIGNAL_SCHEMES = (
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "normal_0.01",
    "normal_1",
    "standard",
)
LEAKY_SLOPE = 0.01  # F.leaky_relu's default
# The nonlinearity kaiming_* is told about for each activation (calculate_gain has no gelu: relu's).
KAIMING_FOR = {
    "linear": "linear",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "sigmoid": "sigmoid",
    "selu": "selu",
    "gelu": "relu",
}


def gain(nonlinearity: str, param: float | None = None) -> float:
    """Return torch.nn.init.calculate_gain(nonlinearity, param) (typed: the name is a Literal there)."""
    return float(nn.init.calculate_gain(cast(Nonlinearity, nonlinearity), param))


def ndtr(x: np.ndarray) -> np.ndarray:
    """Return the standard normal CDF at x (float64)."""
    return np.asarray(torch.special.ndtr(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy())


def phi(x: float) -> float:
    """Return the standard normal density at x."""
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def weight_std(scheme: str, activation: str, fan_in: int, fan_out: int) -> float:
    """Return the std of the weights a scheme draws, from the documented formulas."""
    if scheme.startswith("xavier"):
        return math.sqrt(2 / (fan_in + fan_out))
    if scheme.startswith("kaiming"):
        return kaiming_gain(activation) / math.sqrt(fan_in)
    if scheme == "standard":
        return 1 / math.sqrt(3 * fan_in)  # U(-b, b) has variance b^2 / 3, with b = 1 / sqrt(fan_in)
    return 0.01 if scheme == "normal_0.01" else 1.0


def kaiming_gain(activation: str) -> float:
    """Return the gain kaiming_* uses for this activation (leaky_relu with slope 0.01)."""
    name = KAIMING_FOR[activation]
    return gain(name, LEAKY_SLOPE if name == "leaky_relu" else 0)


def init_call(scheme: str, activation: str) -> str:
    """Return the torch.nn.init call (as script text, on `w`) for a scheme in an MLP with this activation."""
    if scheme.startswith("xavier"):
        return f"nn.init.{scheme}_(w, generator=g)"
    if scheme.startswith("kaiming"):
        name = KAIMING_FOR[activation]
        slope = f"a={LEAKY_SLOPE}, " if name == "leaky_relu" else ""
        return f'nn.init.{scheme}_(w, {slope}mode="fan_in", nonlinearity="{name}", generator=g)'
    if scheme == "standard":
        return "nn.init.uniform_(w, -(w.shape[1] ** -0.5), w.shape[1] ** -0.5, generator=g)"
    return f"nn.init.normal_(w, 0.0, {'0.01' if scheme == 'normal_0.01' else '1.0'}, generator=g)"


def init_weight(w: torch.Tensor, scheme: str, activation: str, g: torch.Generator) -> torch.Tensor:
    """Fill w in place as init_call says: xavier with gain 1, kaiming fan_in with the activation's gain, standard by fan_in."""
    if scheme == "xavier_uniform":
        return nn.init.xavier_uniform_(w, generator=g)
    if scheme == "xavier_normal":
        return nn.init.xavier_normal_(w, generator=g)
    if scheme.startswith("kaiming"):
        name = cast(Nonlinearity, KAIMING_FOR[activation])
        a = LEAKY_SLOPE if name == "leaky_relu" else 0
        fill = nn.init.kaiming_uniform_ if scheme == "kaiming_uniform" else nn.init.kaiming_normal_
        return fill(w, a=a, mode="fan_in", nonlinearity=name, generator=g)
    if scheme == "standard":
        bound = w.shape[1] ** -0.5
        return nn.init.uniform_(w, -bound, bound, generator=g)
    return nn.init.normal_(w, 0.0, 0.01 if scheme == "normal_0.01" else 1.0, generator=g)
