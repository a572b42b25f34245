"""The lesson's network and data, used by every experiment and written into every script.

A small MLP or CNN whose hidden blocks are `layer -> norm -> ReLU`, and a synthetic
classification task labelled by a fixed random "teacher", so that training on it makes progress.
Every weight is drawn from the run's generator, reproducing torch's own default initialisation
(nn.Linear / nn.Conv2d `reset_parameters`) with that generator; the module is built on the meta
device first because torch's constructors draw from the global RNG otherwise. The scripts define
the same functions (`scripts/_model.py.j2`, filled by `model_context`), so they print the page's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

MODELS = ("mlp", "cnn")
NORMS = ("none", "batchnorm", "groupnorm", "layernorm")
IN_FEATURES = 32  # MLP input size
CHANNELS, SIDE = 3, 12  # CNN input: 3 x 12 x 12 images
CLASSES = 10
GROUPS = 4  # GroupNorm groups; widths are multiples of it
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class ModelSpec:
    """The lesson's network: MLP or CNN, `depth` hidden blocks of `width` units or channels."""

    model: str = "mlp"  # one of MODELS
    width: int = 64
    depth: int = 2
    norm: str = "none"  # one of NORMS

    def input_shape(self) -> tuple[int, ...]:
        """Return the shape of one sample."""
        return (IN_FEATURES,) if self.model == "mlp" else (CHANNELS, SIDE, SIDE)

    def activations_per_sample(self) -> int:
        """Return how many numbers one sample's forward pass produces in the hidden blocks (about)."""
        per_block = self.width * (1 if self.model == "mlp" else SIDE * SIDE)
        return 3 * self.depth * per_block + math.prod(self.input_shape()) + CLASSES

    def parameter_count(self) -> int:
        """Return the number of parameters of the network."""
        n_in = IN_FEATURES if self.model == "mlp" else CHANNELS * 9
        count = 0
        for _ in range(self.depth):
            count += n_in * self.width + self.width
            if self.norm == "layernorm" and self.model == "cnn":
                count += 2 * self.width * SIDE * SIDE
            elif self.norm != "none":
                count += 2 * self.width
            n_in = self.width * (1 if self.model == "mlp" else 9)
        return count + self.width * CLASSES + CLASSES


def _norm(spec: ModelSpec) -> nn.Module:
    """Return the normalisation layer of one hidden block (built on meta)."""
    w = spec.width
    if spec.norm == "batchnorm":
        return nn.BatchNorm1d(w, device="meta") if spec.model == "mlp" else nn.BatchNorm2d(w, device="meta")
    if spec.norm == "groupnorm":
        return nn.GroupNorm(GROUPS, w, device="meta")
    if spec.norm == "layernorm":
        return nn.LayerNorm(w if spec.model == "mlp" else [w, SIDE, SIDE], device="meta")
    return nn.Identity()


def _default_init(module: nn.Linear | nn.Conv2d, g: torch.Generator) -> None:
    """Draw module's weight and bias as its own reset_parameters does, but from g."""
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=g)
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
    bound = 1 / math.sqrt(fan_in)
    assert module.bias is not None
    nn.init.uniform_(module.bias, -bound, bound, generator=g)


def build_model(spec: ModelSpec, g: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Return the network, every weight drawn from g in module order, on device in dtype."""
    layers: list[nn.Module] = []
    if spec.model == "mlp":
        n_in = IN_FEATURES
        for _ in range(spec.depth):
            layers += [nn.Linear(n_in, spec.width, device="meta"), _norm(spec), nn.ReLU()]
            n_in = spec.width
        layers.append(nn.Linear(n_in, CLASSES, device="meta"))
    else:
        c_in = CHANNELS
        for _ in range(spec.depth):
            layers += [nn.Conv2d(c_in, spec.width, 3, padding=1, device="meta"), _norm(spec), nn.ReLU()]
            c_in = spec.width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, CLASSES, device="meta")]
    net = nn.Sequential(*layers).to_empty(device=device)
    for module in net:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _default_init(module, g)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            module.reset_parameters()  # ones and zeros (and fresh running statistics): no randomness
    return net.to(dtype)


def make_teacher(g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Return the fixed random matrix that labels the data: y = argmax(X.flatten(1) @ teacher)."""
    return torch.randn(IN_FEATURES + CHANNELS * SIDE * SIDE, CLASSES, generator=g, device=device)


def make_batch(
    spec: ModelSpec,
    n: int,
    teacher: torch.Tensor,
    g: torch.Generator,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return n samples X (n, *spec.input_shape()) and their teacher labels y (n,), int64."""
    X = torch.randn(n, *spec.input_shape(), generator=g, device=device)
    flat = X.flatten(1)
    y = (flat @ teacher[: flat.shape[1]]).argmax(dim=1)
    return X.to(dtype), y


def norm_code(spec: ModelSpec) -> str:
    """Return the script's expression for one hidden block's normalisation layer (as `_norm` builds it)."""
    w = spec.width
    if spec.norm == "batchnorm":
        return f"nn.BatchNorm1d({w})" if spec.model == "mlp" else f"nn.BatchNorm2d({w})"
    if spec.norm == "groupnorm":
        return f"nn.GroupNorm({GROUPS}, {w})"
    if spec.norm == "layernorm":
        return f"nn.LayerNorm({w})" if spec.model == "mlp" else f"nn.LayerNorm([{w}, {SIDE}, {SIDE}])"
    return "nn.Identity()"


def model_context(spec: ModelSpec, make_norm: bool = False, device_type: str = "cpu") -> dict[str, Any]:
    """Return what `scripts/_model.py.j2` reads: make_net(g, dtype), make_teacher(g), make_batch(n, teacher, g, dtype).

    With make_norm, make_net takes a `make_norm` function and calls it for each block's norm layer.
    For a CUDA device the functions build on `device` (a name the script defines) with a generator there.
    The functions draw the same numbers in the same order as build_model / make_teacher / make_batch.
    """
    return {
        "model": spec.model,
        "width": spec.width,
        "depth": spec.depth,
        "net_args": "g, make_norm, dtype=torch.float32" if make_norm else "g, dtype=torch.float32",
        "norm_layer": "make_norm()" if make_norm else norm_code(spec),
        "in_features": IN_FEATURES,
        "channels": CHANNELS,
        "classes": CLASSES,
        "side": SIDE,
        "on": "" if device_type == "cpu" else ", device=device",  # the keyword argument each constructor gets
        "sample_shape": ", ".join(map(str, spec.input_shape())),
    }
