"""Experiments of the "Gradient accumulation" lesson: each is Params, Result, run_* and code_*.

The lesson's model and data live here, once, and every experiment (including those in
core/accumulation_memory.py) uses them: a small MLP or CNN whose hidden blocks are
`layer -> norm -> ReLU`, and a synthetic classification task labelled by a fixed random
"teacher", so that training on it makes progress.

Every weight is drawn from ctx.generator, reproducing torch's own default initialisation
(nn.Linear / nn.Conv2d `reset_parameters`) with the generator passed in; the module is built on
the meta device first because torch's constructors draw from the global RNG otherwise. The
generated scripts contain the same code (`model_code`), so they print the page's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MODELS = ("mlp", "cnn")
NORMS = ("none", "batchnorm", "groupnorm", "layernorm")
IN_FEATURES = 32  # MLP input size
CHANNELS, SIDE = 3, 12  # CNN input: 3 x 12 x 12 images
CLASSES = 10
GROUPS = 4  # GroupNorm groups; widths are multiples of it


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
    spec: ModelSpec, n: int, teacher: torch.Tensor, g: torch.Generator, device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Return n samples X (n, *spec.input_shape()) and their teacher labels y (n,), int64."""
    X = torch.randn(n, *spec.input_shape(), generator=g, device=device)
    flat = X.flatten(1)
    y = (flat @ teacher[: flat.shape[1]]).argmax(dim=1)
    return X.to(dtype), y


def model_code(spec: ModelSpec) -> str:
    """Return script source defining make_net(g, dtype), make_teacher(g) and make_batch(n, teacher, g, dtype).

    The functions draw the same numbers in the same order as build_model / make_teacher / make_batch.
    """
    norms = {
        "none": "nn.Identity()",
        "batchnorm": f"nn.BatchNorm1d({spec.width})" if spec.model == "mlp" else f"nn.BatchNorm2d({spec.width})",
        "groupnorm": f"nn.GroupNorm({GROUPS}, {spec.width})",
        "layernorm": f"nn.LayerNorm({spec.width})" if spec.model == "mlp" else f"nn.LayerNorm([{spec.width}, {SIDE}, {SIDE}])",
    }
    if spec.model == "mlp":
        body = f"""    layers, n_in = [], {IN_FEATURES}
    for _ in range({spec.depth}):
        layers += [nn.Linear(n_in, {spec.width}), {norms[spec.norm]}, nn.ReLU()]
        n_in = {spec.width}
    net = nn.Sequential(*layers, nn.Linear(n_in, {CLASSES}))"""
        shape = f"{IN_FEATURES}"
    else:
        body = f"""    layers, c_in = [], {CHANNELS}
    for _ in range({spec.depth}):
        layers += [nn.Conv2d(c_in, {spec.width}, 3, padding=1), {norms[spec.norm]}, nn.ReLU()]
        c_in = {spec.width}
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, {CLASSES}))"""
        shape = f"{CHANNELS}, {SIDE}, {SIDE}"
    return f"""def make_net(g, dtype=torch.float32):
    # torch's default initialisation, drawn from the generator g so that the numbers are reproducible
{body}
    for m in net:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
            nn.init.uniform_(m.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=g)
    return net.to(dtype)


def make_teacher(g):
    return torch.randn({IN_FEATURES + CHANNELS * SIDE * SIDE}, {CLASSES}, generator=g)  # labels the data


def make_batch(n, teacher, g, dtype=torch.float32):
    X = torch.randn(n, {shape}, generator=g)
    flat = X.flatten(1)
    y = (flat @ teacher[: flat.shape[1]]).argmax(dim=1)
    return X.to(dtype), y
"""
