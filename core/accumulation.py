"""Experiments of the "Gradient accumulation" lesson: each is Params, Result, run_* and code_*.

The lesson's model and data live here, once, and every experiment (including those in
core/accumulation_memory.py) uses them: a small MLP or CNN whose hidden blocks are
`layer -> norm -> ReLU`, and a synthetic classification task labelled by a fixed random
"teacher", so that training on it makes progress.

Every weight is drawn from ctx.generator, reproducing torch's own default initialisation
(nn.Linear / nn.Conv2d `reset_parameters`) with the generator passed in; the module is built on
the meta device first because torch's constructors draw from the global RNG otherwise. The
generated scripts contain the same code (`model_code`), so they print the page's numbers.

1. equiv  - the full-batch gradient vs k accumulated micro-batches: the right ways and the notes' mistakes.
2. norm   - the same with BatchNorm, which breaks the equality, and GroupNorm / LayerNorm, which do not.
3. curves - training curves: big batch vs accumulation vs small batches (at lr and at lr / k).

Results hold numpy arrays and plain Python values only. All randomness comes from ctx.generator.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.params import InvalidParams, Params, bounds, choices
from core.runner import RunContext
from core.tensors import Experiment

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


# --------------------------------------------------------------------------------------------
# Shared by the three experiments: dtypes, the work limit, gradients and their comparison


DTYPES = {"float32": torch.float32, "float64": torch.float64}
# A run may do at most MAX_WORK units of work, a unit being about one multiply-add on one CPU core:
# about 6 s at the 1e10 units per second a core sustains here (the runner stops a run at 20 s).
MAX_WORK = 6e10
BLOCK_OVERHEAD = 8e5  # a block's fixed cost in one forward pass (Python, dispatch, autograd), in work units
ELEMENTWISE = 4  # the cost of one activation value (norm, ReLU and their gradients), in work units
CONV_MAC = 0.6  # a convolution's multiply-add costs less than a small matmul's (bigger, better blocked kernels)
PIXEL_OVERHEAD = 400  # a convolution's cost per output pixel beyond its multiply-adds (im2col), in work units
FLOAT64_COST = 2  # float64 runs at about half float32's speed on a CPU

P = TypeVar("P", bound=Params)


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def _numpy(t: torch.Tensor) -> np.ndarray:
    """Return a CPU float64 numpy copy of t."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


def macs_per_sample(spec: ModelSpec) -> int:
    """Return the multiply-adds of one sample's forward pass through the network's Linear / Conv2d layers."""
    if spec.model == "mlp":
        return IN_FEATURES * spec.width + (spec.depth - 1) * spec.width**2 + spec.width * CLASSES
    convs = CHANNELS * 9 * spec.width + (spec.depth - 1) * 9 * spec.width**2
    return SIDE * SIDE * convs + spec.width * CLASSES


def pass_work(spec: ModelSpec, samples: int, passes: int = 1, backward: bool = True) -> float:
    """Return the work of `passes` forward (and backward) passes over `samples` samples in all."""
    per_sample = float(ELEMENTWISE * spec.activations_per_sample())
    if spec.model == "mlp":
        per_sample += macs_per_sample(spec)
    else:
        per_sample += CONV_MAC * macs_per_sample(spec) + PIXEL_OVERHEAD * SIDE * SIDE * spec.depth
    return (3 if backward else 1) * (samples * per_sample + passes * BLOCK_OVERHEAD * (spec.depth + 1))


def _largest_fitting(p: P, work: Callable[[P], float], name: str, lo: int) -> int | None:
    """Return the largest value of field `name`, from lo up to (not including) p's own, whose run fits MAX_WORK."""
    step = int(next(s for s in p.specs() if s.name == name).meta.get("step") or 1)
    values = range(lo, int(getattr(p, name)), step)
    # The work grows with every size field, so the values that fit come first.
    fits = bisect.bisect_right(values, MAX_WORK, key=lambda v: work(dataclasses.replace(p, **{name: v})))
    return values[fits - 1] if fits else None


def _too_much_work(p: P, work: Callable[[P], float], fields: tuple[tuple[str, int], ...]) -> InvalidParams:
    """Return the refusal naming the first field that, lowered alone (not below its lo), fits, with its largest such value.

    When no field can do it alone, name the first at its lo: once it is lowered, the next refusal names another.
    """
    for name, lo in fields:
        value = _largest_fitting(p, work, name, lo)
        if value is not None:
            return InvalidParams(name, "too_much_work", max=value)
    name, lo = fields[0]
    return InvalidParams(name, "too_much_work", max=lo)


def _grads(net: nn.Module) -> list[torch.Tensor]:
    """Return a copy of every parameter's .grad: what the backward passes so far have added up."""
    grads = []
    for w in net.parameters():
        assert w.grad is not None
        grads.append(w.grad.detach().clone())
    return grads


def full_batch_grad(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """Return the gradient of the batch's mean cross-entropy for every parameter (.grad untouched), and the loss."""
    loss = F.cross_entropy(net(X), y)
    return list(torch.autograd.grad(loss, list(net.parameters()))), float(loss.item())


def accumulate(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, accum_steps: int, variant: str, ctx: RunContext
) -> list[torch.Tensor]:
    """Run backward once per micro-batch (torch.tensor_split), each loss scaled the variant's way; return .grad.

    "divide" scales by 1/k, "weighted" by n_i / B, "seeds" by 1 + 1/k (the notes' `loss += loss / k`),
    "no_divide" not at all. backward adds into .grad, so what is returned also holds what .grad held before.
    """
    B = X.shape[0]
    for X_i, y_i in zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps), strict=True):
        ctx.check_deadline()
        loss = F.cross_entropy(net(X_i), y_i)
        if variant == "divide":
            loss = loss / accum_steps
        elif variant == "weighted":
            loss = loss * (len(y_i) / B)
        elif variant == "seeds":
            loss += loss / accum_steps  # the notes' line, as written
        torch.autograd.backward(loss)
    return _grads(net)


@dataclass(frozen=True)
class _Comparison:
    """How far a gradient is from a reference, per parameter tensor and over all of them (float64)."""

    max_abs: np.ndarray  # (P,) max |g - ref| per tensor
    rel: np.ndarray  # (P,) ||g - ref|| / ||ref|| per tensor
    overall_max_abs: float
    overall_rel: float
    scale: float  # <g, ref> / <ref, ref>: the factor g is of ref, along ref
    ref_norm: float


def _flat(ts: list[torch.Tensor]) -> torch.Tensor:
    """Return every tensor flattened and concatenated, in float64."""
    return torch.cat([t.double().flatten() for t in ts])


def _compare(grads: list[torch.Tensor], ref: list[torch.Tensor]) -> _Comparison:
    """Return how far grads are from ref (the generated scripts print the overall figures computed the same way)."""
    diffs = [a.double() - b.double() for a, b in zip(grads, ref, strict=True)]
    d = torch.cat([t.flatten() for t in diffs])
    r = _flat(ref)
    v = _flat(grads)
    return _Comparison(
        np.array([t.abs().max().item() for t in diffs]),
        np.array([(t.norm() / b.double().norm()).item() for t, b in zip(diffs, ref, strict=True)]),
        d.abs().max().item(), (d.norm() / r.norm()).item(), (v @ r / (r @ r)).item(), r.norm().item(),
    )  # fmt: skip


def _micro_sizes(batch: int, accum_steps: int) -> tuple[int, ...]:
    """Return the sizes torch.tensor_split gives: the first batch % k micro-batches one sample larger."""
    return tuple(len(t) for t in torch.tensor_split(torch.empty(batch, device="meta"), accum_steps))


def _more_than_batch(name: str, value: int, batch: int) -> None:
    """Raise InvalidParams when `value` micro-batches cannot be cut from a batch of `batch` samples."""
    if value > batch:
        raise InvalidParams(name, "more_than_batch", batch=batch)


# --------------------------------------------------------------------------------------------
# 1. Equivalence: the full-batch gradient vs k accumulated micro-batches


VARIANTS = ("divide", "weighted", "no_divide", "seeds", "no_zero_grad")
STALE_LR = 0.1  # the SGD step taken between the two effective steps of "no_zero_grad"
PREVIEW = 200  # gradient entries kept per variant for a scatter plot


@dataclass(frozen=True)
class EquivParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=32, metadata=bounds(2, 512))  # B
    accum_steps: int = field(default=4, metadata=bounds(1, 64))  # k
    width: int = field(default=64, metadata=bounds(8, 256, 8))
    depth: int = field(default=2, metadata=bounds(1, 6))
    dtype: str = field(default="float32", metadata=choices(*DTYPES))
    seed: int = _seed()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no normalisation layers)."""
        return ModelSpec(self.model, self.width, self.depth)

    def work(self) -> float:
        """Return the run's work: two full-batch gradients and six accumulations of k micro-batches."""
        spec = self.spec()
        cost = FLOAT64_COST if self.dtype == "float64" else 1
        return cost * (2 * pass_work(spec, self.batch) + 6 * pass_work(spec, self.batch, self.accum_steps))

    def validate(self) -> None:
        super().validate()
        _more_than_batch("accum_steps", self.accum_steps, self.batch)
        if self.work() > MAX_WORK:
            raise _too_much_work(self, EquivParams.work, (("batch", self.accum_steps), ("width", 8), ("depth", 1)))

    def estimate_bytes(self) -> int:
        spec = self.spec()
        itemsize = 8 if self.dtype == "float64" else 4
        # Parameters, .grad and about ten gradient copies; what autograd saves for B samples and the
        # gradients flowing back through it; the two batches.
        values = 12 * spec.parameter_count() + 2 * self.batch * spec.activations_per_sample()
        return itemsize * (values + 2 * self.batch * math.prod(spec.input_shape())) + (1 << 16)


@dataclass(frozen=True)
class EquivResult:
    model: str
    dtype: str
    batch: int  # B
    accum_steps: int  # k
    param_names: tuple[str, ...]  # as net.named_parameters() names them: "0.weight", ...
    param_shapes: tuple[tuple[int, ...], ...]
    variants: tuple[str, ...]  # VARIANTS
    max_abs: np.ndarray  # (variants, params) max |g_v - g_ref| per parameter tensor
    rel: np.ndarray  # (variants, params) ||g_v - g_ref|| / ||g_ref|| per parameter tensor
    overall_max_abs: np.ndarray  # (variants,) the same over all parameters at once
    overall_rel: np.ndarray  # (variants,)
    scale: np.ndarray  # (variants,) measured <g_v, g_ref> / <g_ref, g_ref>
    # (variants,) the theory's factor: 1, 1, k, k + 1 for equal micro-batches, None where there is no single number;
    # no_zero_grad: 1 + <g_prev, g_ref> / <g_ref, g_ref>, as g_v = g_ref + g_prev
    predicted_scale: tuple[float | None, ...]
    ref_norm: np.ndarray  # (variants,) ||g_ref||: the full-batch gradient (the second batch's for no_zero_grad)
    stale_rel_predicted: float  # no_zero_grad: ||g_prev|| / ||g_ref||, the error the theory predicts
    stale_residual: float  # no_zero_grad: max |(g_v - g_ref) - g_prev|, zero up to rounding
    micro_sizes: tuple[int, ...]  # (k,) samples per micro-batch, as torch.tensor_split cuts them
    micro_weights: np.ndarray  # (k,) B / (k n_i): the weight "divide" gives each micro-batch's samples, relative to 1/B
    even: bool  # every micro-batch has B / k samples
    loss: float  # the full-batch loss of the first batch at the initial weights
    eps: float  # torch.finfo(dtype).eps
    preview_ref: np.ndarray  # (variants, PREVIEW) entries of g_ref, evenly spaced over all parameters
    preview: np.ndarray  # (variants, PREVIEW) the same entries of g_v


def predicted_scales(accum_steps: int, even: bool) -> tuple[float | None, ...]:
    """Return the factor each of the first four variants' gradient is of the full-batch gradient, by theory.

    With equal micro-batches, each micro-batch's mean gradient g_i averages to g_full: sum_i g_i = k g_full.
    "divide" and "weighted" give g_full, "no_divide" k g_full, "seeds" (1 + 1/k) k g_full = (k + 1) g_full.
    With unequal ones only "weighted" (n_i / B) is exact; the others weigh a sample by 1 / (k n_i) or
    1 / n_i, which is no fixed multiple of g_full: it depends on how the samples' gradients differ.
    """
    k = float(accum_steps)
    return (1.0, 1.0, k, k + 1) if even else (None, 1.0, None, None)


def _preview(v: torch.Tensor, r: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Return PREVIEW entries of r and of v, evenly spaced over all parameters."""
    index = torch.linspace(0, r.numel() - 1, min(PREVIEW, r.numel()), device=r.device).long()
    return _numpy(r[index]), _numpy(v[index])


def run_equiv(p: EquivParams, ctx: RunContext) -> EquivResult:
    """Compare k accumulated micro-batches with the full batch, every variant at the same initial weights."""
    dtype = DTYPES[p.dtype]
    spec = p.spec()
    teacher = make_teacher(ctx.generator, ctx.device)
    X, y = make_batch(spec, p.batch, teacher, ctx.generator, ctx.device, dtype)
    X2, y2 = make_batch(spec, p.batch, teacher, ctx.generator, ctx.device, dtype)  # for the forgotten zero_grad
    net = build_model(spec, ctx.generator, ctx.device, dtype)
    k = p.accum_steps
    g_full, loss = full_batch_grad(net, X, y)
    runs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for variant in VARIANTS[:4]:
        net.zero_grad()
        runs.append((accumulate(net, X, y, k, variant, ctx), g_full))
    # Forgetting zero_grad: a correct effective step on the first batch, an SGD step, then the second
    # batch's micro-batches add onto the first batch's gradient still in .grad. This changes the weights,
    # so it comes last; its reference is the second batch's gradient at the new weights.
    optimizer = torch.optim.SGD(net.parameters(), lr=STALE_LR)
    net.zero_grad()
    g_prev = accumulate(net, X, y, k, "weighted", ctx)
    optimizer.step()
    g_stale = accumulate(net, X2, y2, k, "weighted", ctx)
    g_ref2, _ = full_batch_grad(net, X2, y2)
    runs.append((g_stale, g_ref2))
    comparisons = [_compare(v, r) for v, r in runs]
    previews = [_preview(_flat(v), _flat(r)) for v, r in runs]
    prev, ref2 = _flat(g_prev), _flat(g_ref2)
    stale_residual = (_flat(g_stale) - ref2 - prev).abs().max().item()
    sizes = _micro_sizes(p.batch, k)
    even = p.batch % k == 0
    stale_scale = 1 + (prev @ ref2 / (ref2 @ ref2)).item()  # g_v = g_ref + g_prev
    names = tuple(name for name, _ in net.named_parameters())
    return EquivResult(
        p.model, p.dtype, p.batch, k, names, tuple(tuple(w.shape) for w in net.parameters()), VARIANTS,
        np.array([c.max_abs for c in comparisons]), np.array([c.rel for c in comparisons]),
        np.array([c.overall_max_abs for c in comparisons]), np.array([c.overall_rel for c in comparisons]),
        np.array([c.scale for c in comparisons]), (*predicted_scales(k, even), stale_scale),
        np.array([c.ref_norm for c in comparisons]), (prev.norm() / ref2.norm()).item(), stale_residual,
        sizes, np.array([p.batch / (k * n) for n in sizes]), even, loss, float(torch.finfo(dtype).eps),
        np.array([r for r, _ in previews]), np.array([v for _, v in previews]),
    )  # fmt: skip


def _report_code() -> str:
    """Return script source defining report(name, grads, ref): the overall figures, as _compare computes them."""
    return """def flat(ts):
    return torch.cat([t.double().flatten() for t in ts])


def report(name, grads, ref):
    d = torch.cat([(a.double() - b.double()).flatten() for a, b in zip(grads, ref)])
    r, v = flat(ref), flat(grads)
    print(f"{name}: max abs diff {d.abs().max().item()} relative error {(d.norm() / r.norm()).item()} "
          f"scale {(v @ r / (r @ r)).item()}")
"""


def code_equiv(p: EquivParams) -> str:
    """Return a script that compares every variant's accumulated gradient with the full-batch one and prints it."""
    spec = p.spec()
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn

{model_code(spec)}

{_report_code()}

B, accum_steps, dtype = {p.batch}, {p.accum_steps}, torch.{p.dtype}
g = torch.Generator().manual_seed({p.seed})
teacher = make_teacher(g)
X, y = make_batch(B, teacher, g, dtype)
X2, y2 = make_batch(B, teacher, g, dtype)  # a second batch, for the forgotten zero_grad
net = make_net(g, dtype)
params = list(net.parameters())
print("micro-batch sizes", [len(t) for t in torch.tensor_split(y, accum_steps)])


def full_batch_grad(X, y):
    loss = F.cross_entropy(net(X), y)  # the mean over all B samples
    return torch.autograd.grad(loss, params)  # leaves .grad alone


def accumulate(X, y, variant):
    for X_i, y_i in zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps)):
        loss = F.cross_entropy(net(X_i), y_i)  # the mean over this micro-batch's n_i samples
        if variant == "divide":
            loss = loss / accum_steps  # the textbook fix: exact when every micro-batch has B / k samples
        elif variant == "weighted":
            loss = loss * (len(y_i) / B)  # each sample weighs 1 / B: exact for any split
        elif variant == "seeds":
            loss += loss / accum_steps  # the notes' mistake: multiplies each gradient by 1 + 1/k
        loss.backward()  # adds this micro-batch's gradient into .grad
    return [w.grad.clone() for w in params]


g_full = full_batch_grad(X, y)
for variant in ["divide", "weighted", "no_divide", "seeds"]:
    net.zero_grad()
    report(variant, accumulate(X, y, variant), g_full)

# Forgetting zero_grad: one correct effective step, then the next batch's gradients land on the old ones.
optimizer = torch.optim.SGD(net.parameters(), lr={STALE_LR})
net.zero_grad()
g_prev = accumulate(X, y, "weighted")
optimizer.step()
# (optimizer.zero_grad() forgotten here)
g_stale = accumulate(X2, y2, "weighted")
g_ref = full_batch_grad(X2, y2)
report("no_zero_grad", g_stale, g_ref)
print("no_zero_grad: predicted relative error", (flat(g_prev).norm() / flat(g_ref).norm()).item())
"""


# --------------------------------------------------------------------------------------------
# 2. Normalisation layers: BatchNorm breaks the equality, GroupNorm and LayerNorm keep it


LINES = ("none", "batchnorm", "batchnorm_eval", "groupnorm", "layernorm")
STAT_CHANNELS = 8  # channels of the first BatchNorm layer whose statistics are shown


@dataclass(frozen=True)
class NormParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=32, metadata=bounds(2, 512))  # B
    k_max: int = field(default=16, metadata=bounds(1, 64))  # k runs over 1, 2, 4, ... up to min(k_max, B)
    width: int = field(default=32, metadata=bounds(8, 128, 8))
    depth: int = field(default=2, metadata=bounds(1, 4))
    dtype: str = field(default="float32", metadata=choices(*DTYPES))
    show_k: int = field(default=4, metadata=bounds(1, 64))  # the k whose per-micro-batch statistics are shown
    seed: int = _seed()

    def spec(self, norm: str = "batchnorm") -> ModelSpec:
        """Return the network of one line ("batchnorm_eval" is the BatchNorm network)."""
        return ModelSpec(self.model, self.width, self.depth, "batchnorm" if norm == "batchnorm_eval" else norm)

    def ks(self) -> list[int]:
        """Return the numbers of micro-batches compared: the powers of two up to min(k_max, batch)."""
        return [2**i for i in range(7) if 2**i <= min(self.k_max, self.batch)]

    def work(self) -> float:
        """Return the run's work: per line, the full-batch gradient and one accumulation per k."""
        spec = self.spec()
        cost = FLOAT64_COST if self.dtype == "float64" else 1
        per_line = pass_work(spec, self.batch) + sum(pass_work(spec, self.batch, k) for k in self.ks())
        return cost * len(LINES) * per_line

    def validate(self) -> None:
        super().validate()
        _more_than_batch("show_k", self.show_k, self.batch)
        if self.width % GROUPS:
            raise InvalidParams("width", "not_a_multiple", of=GROUPS)  # GroupNorm splits the channels into GROUPS groups
        if self.work() > MAX_WORK:
            raise _too_much_work(self, NormParams.work, (("batch", self.show_k), ("width", 8), ("depth", 1), ("k_max", 1)))

    def estimate_bytes(self) -> int:
        itemsize = 8 if self.dtype == "float64" else 4
        params = max(self.spec(norm).parameter_count() for norm in LINES)
        acts = self.spec().activations_per_sample()
        values = 6 * params + 2 * self.batch * acts + self.batch * math.prod(self.spec().input_shape())
        return itemsize * values + (1 << 16)


@dataclass(frozen=True)
class NormResult:
    model: str
    dtype: str
    batch: int
    ks: np.ndarray  # (K,) int64: 1, 2, 4, ...
    lines: tuple[str, ...]  # LINES
    rel: np.ndarray  # (lines, K) ||g_accum - g_full|| / ||g_full|| over all parameters; nan where skipped
    max_abs: np.ndarray  # (lines, K) max |g_accum - g_full|; nan where skipped
    skipped: tuple[int, ...]  # the ks the "batchnorm" line skips: MLP micro-batches of one sample
    loss: np.ndarray  # (lines,) full-batch loss at the initial weights
    grad_norm: np.ndarray  # (lines,) ||g_full||
    show_k: int
    show_sizes: tuple[int, ...]  # (show_k,) samples per micro-batch
    channels: int  # C: the first min(STAT_CHANNELS, width) channels of the first BatchNorm layer
    stat_mean: np.ndarray  # (show_k + 1, C) per-channel mean of its input: row 0 the full batch, then each micro-batch
    stat_var: np.ndarray  # (show_k + 1, C) the biased variance, the one BatchNorm normalises with
    show_skipped: bool  # the running statistics below are nan: BatchNorm1d refuses micro-batches of one sample
    running_mean_full: np.ndarray  # (C,) running_mean after one forward of the full batch (momentum 0.1)
    running_mean_micro: np.ndarray  # (C,) after show_k forwards, one per micro-batch
    running_var_full: np.ndarray  # (C,) running_var, updated with the unbiased variance
    running_var_micro: np.ndarray  # (C,)
    eps: float  # torch.finfo(dtype).eps


def skips_batch_of_one(model: str, batch: int, accum_steps: int) -> bool:
    """Return whether some micro-batch holds one sample, which BatchNorm1d in train mode refuses.

    Over one sample a feature's variance is 0: every output would be its bias. torch raises "Expected
    more than 1 value per channel when training" (BatchNorm2d still has SIDE^2 values per channel).
    """
    return model == "mlp" and batch // accum_steps == 1


def _bn_statistics(p: NormParams, net: nn.Sequential, X: torch.Tensor, ctx: RunContext) -> dict[str, Any]:
    """Return the first BatchNorm layer's input statistics (full batch, then each micro-batch) and running statistics."""
    C = min(STAT_CHANNELS, p.width)
    bn = net[1]
    assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))
    dims = [0] if p.model == "mlp" else [0, 2, 3]
    with torch.no_grad():
        h = net[0](X)  # what the first BatchNorm layer normalises
        parts = [h, *torch.tensor_split(h, p.show_k)]
        stats = [torch.var_mean(part[:, :C], dim=dims, correction=0) for part in parts]
        running: list[torch.Tensor] = []
        if not skips_batch_of_one(p.model, p.batch, p.show_k):
            bn.train()
            for chunks in ([h], parts[1:]):
                ctx.check_deadline()
                bn.reset_running_stats()
                for chunk in chunks:
                    bn(chunk)
                assert bn.running_mean is not None and bn.running_var is not None
                running += [bn.running_mean[:C].clone(), bn.running_var[:C].clone()]
    nan = np.full(C, np.nan)
    values = [_numpy(t) for t in running] if running else [nan] * 4
    return {
        "channels": C,
        "stat_mean": np.array([_numpy(mean) for _, mean in stats]),
        "stat_var": np.array([_numpy(var) for var, _ in stats]),
        "show_skipped": not running,
        "running_mean_full": values[0],
        "running_var_full": values[1],
        "running_mean_micro": values[2],
        "running_var_micro": values[3],
    }


def run_norm(p: NormParams, ctx: RunContext) -> NormResult:
    """Compare k accumulated micro-batches (exact n_i / B weighting) with the full batch, per normalisation."""
    dtype = DTYPES[p.dtype]
    teacher = make_teacher(ctx.generator, ctx.device)
    X, y = make_batch(p.spec(), p.batch, teacher, ctx.generator, ctx.device, dtype)
    state = ctx.generator.get_state()
    ks = p.ks()
    rel = np.full((len(LINES), len(ks)), np.nan)
    max_abs = np.full((len(LINES), len(ks)), np.nan)
    losses, norms = [], []
    stats: dict[str, Any] = {}
    for i, line in enumerate(LINES):
        # Every line starts from the same random numbers: the same Linear / Conv2d weights (norm layers draw none).
        ctx.generator.set_state(state)
        net = build_model(p.spec(line), ctx.generator, ctx.device, dtype)
        if line == "batchnorm_eval":
            net.eval()  # BatchNorm normalises with its running statistics: each sample on its own
        g_full, loss = full_batch_grad(net, X, y)
        losses.append(loss)
        norms.append(_flat(g_full).norm().item())
        for j, k in enumerate(ks):
            if line == "batchnorm" and skips_batch_of_one(p.model, p.batch, k):
                continue
            net.zero_grad()
            c = _compare(accumulate(net, X, y, k, "weighted", ctx), g_full)
            rel[i, j], max_abs[i, j] = c.overall_rel, c.overall_max_abs
        if line == "batchnorm":
            stats = _bn_statistics(p, net, X, ctx)
    skipped = tuple(k for k in ks if skips_batch_of_one(p.model, p.batch, k))
    return NormResult(
        p.model, p.dtype, p.batch, np.array(ks, dtype=np.int64), LINES, rel, max_abs, skipped, np.array(losses),
        np.array(norms), p.show_k, _micro_sizes(p.batch, p.show_k), eps=float(torch.finfo(dtype).eps), **stats,
    )  # fmt: skip


def _net_code_with_norm(spec: ModelSpec) -> str:
    """Return model_code with make_net(g, make_norm, dtype): each block's norm layer made by make_norm()."""
    code = model_code(dataclasses.replace(spec, norm="none"))
    head = "def make_net(g, dtype=torch.float32):"
    assert code.count(head) == 1 and code.count("nn.Identity()") == 1
    return code.replace(head, "def make_net(g, make_norm, dtype=torch.float32):").replace("nn.Identity()", "make_norm()")


def _norm_factories(spec: ModelSpec) -> str:
    """Return the script's dict from norm name to a function making one such layer (as build_model's)."""
    w = spec.width
    bn = f"nn.BatchNorm1d({w})" if spec.model == "mlp" else f"nn.BatchNorm2d({w})"
    ln = f"nn.LayerNorm({w})" if spec.model == "mlp" else f"nn.LayerNorm([{w}, {SIDE}, {SIDE}])"
    return f"""norms = {{
    "none": nn.Identity,
    "batchnorm": lambda: {bn},
    "groupnorm": lambda: nn.GroupNorm({GROUPS}, {w}),
    "layernorm": lambda: {ln},
}}"""


def code_norm(p: NormParams) -> str:
    """Return a script that accumulates k micro-batches under each normalisation and prints the relative errors."""
    spec = p.spec()
    one_sample = "B // accum_steps == 1" if p.model == "mlp" else "False"
    dims = "0" if p.model == "mlp" else "(0, 2, 3)"
    C = min(STAT_CHANNELS, p.width)
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn

{_net_code_with_norm(spec)}

{_norm_factories(spec)}
B, dtype = {p.batch}, torch.{p.dtype}
g = torch.Generator().manual_seed({p.seed})
teacher = make_teacher(g)
X, y = make_batch(B, teacher, g, dtype)
state = g.get_state()

for line in {list(LINES)!r}:
    g.set_state(state)  # every line starts from the same weights
    net = make_net(g, norms["batchnorm" if line == "batchnorm_eval" else line], dtype)
    if line == "batchnorm_eval":
        net.eval()  # BatchNorm uses its running statistics: each sample is normalised on its own
    params = list(net.parameters())
    g_full = torch.autograd.grad(F.cross_entropy(net(X), y), params)
    r = torch.cat([b.double().flatten() for b in g_full])
    for accum_steps in {p.ks()!r}:
        if line == "batchnorm" and {one_sample}:
            print(f"{{line}} k={{accum_steps}}: skipped (BatchNorm1d cannot train on one sample)")
            continue
        net.zero_grad()
        for X_i, y_i in zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps)):
            loss = F.cross_entropy(net(X_i), y_i) * (len(y_i) / B)  # the exact weighting n_i / B
            loss.backward()
        d = torch.cat([(w.grad.double() - b.double()).flatten() for w, b in zip(params, g_full)])
        rel, max_abs = (d.norm() / r.norm()).item(), d.abs().max().item()
        print(f"{{line}} k={{accum_steps}}: relative error {{rel}} max abs diff {{max_abs}}")
    if line == "batchnorm":
        # What the first BatchNorm layer sees: its statistics differ from micro-batch to micro-batch.
        with torch.no_grad():
            h = net[0](X)[:, :{C}]
        for i, part in enumerate([h, *torch.tensor_split(h, {p.show_k})]):
            var, mean = torch.var_mean(part, dim={dims}, correction=0)  # biased: what BatchNorm divides by
            name = "full batch" if i == 0 else f"micro-batch {{i}}"
            print(f"{{name}}: mean {{mean.tolist()}} var {{var.tolist()}}")
"""


# --------------------------------------------------------------------------------------------
# 3. Training curves: big batch vs accumulation vs small batches


CURVE_VARIANTS = ("big", "accum", "small", "small_lr")
DATASET = 4096  # training samples, drawn once; each epoch visits them in a fresh random order
HELDOUT = 1024  # held-out samples: the loss after every effective step is measured on them


@dataclass(frozen=True)
class CurvesParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=64, metadata=bounds(4, 512))  # B: samples per effective step
    accum_steps: int = field(default=4, metadata=bounds(1, 64))  # k
    steps: int = field(default=60, metadata=bounds(10, 500))  # effective steps N
    lr: float = field(default=0.2, metadata=bounds(0.001, 1.0))
    width: int = field(default=64, metadata=bounds(8, 256, 8))
    depth: int = field(default=2, metadata=bounds(1, 4))
    variants: tuple[str, ...] = field(default=CURVE_VARIANTS, metadata=choices(*CURVE_VARIANTS))
    seed: int = _seed()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no normalisation layers)."""
        return ModelSpec(self.model, self.width, self.depth)

    def work(self) -> float:
        """Return the run's work: per variant and effective step, its training passes and the held-out loss."""
        spec, B, k = self.spec(), self.batch, self.accum_steps
        evaluate = pass_work(spec, HELDOUT, backward=False)
        step = {
            "big": pass_work(spec, B),
            "accum": pass_work(spec, B, k),
            # k passes and k optimizer steps (about a forward pass's fixed cost each), and the loss before them
            "small": pass_work(spec, B, k) + pass_work(spec, B, 1 + k, backward=False),
        }
        return self.steps * sum(step[v.removesuffix("_lr")] + evaluate for v in self.variants)

    def validate(self) -> None:
        super().validate()
        if not self.variants:
            raise InvalidParams("variants", "empty")
        _more_than_batch("accum_steps", self.accum_steps, self.batch)
        if self.work() > MAX_WORK:
            limits = (("steps", 10), ("width", 8), ("batch", max(4, self.accum_steps)), ("depth", 1))
            raise _too_much_work(self, CurvesParams.work, limits)

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


def run_curves(p: CurvesParams, ctx: RunContext) -> CurvesResult:
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
            train_loss[step] = _train_step(
                net, optimizer, X_train[index], y_train[index], variant.removesuffix("_lr"), p.accum_steps
            )
            with torch.no_grad():
                eval_loss[step + 1] = F.cross_entropy(net(X_test), y_test)  # no .item(): a GPU would wait every step
        with torch.no_grad():
            accuracy.append((net(X_test).argmax(dim=1) == y_test).float().mean().item())
        eval_curves.append(_numpy(eval_loss))
        train_curves.append(_numpy(train_loss))
    updates = [p.steps * (p.accum_steps if v.startswith("small") else 1) for v in p.variants]
    eval_array, train_array = np.array(eval_curves), np.array(train_curves)
    diverged = ~(np.isfinite(eval_array).all(axis=1) & np.isfinite(train_array).all(axis=1))
    return CurvesResult(
        tuple(p.variants), np.arange(p.steps + 1), eval_array, train_array, np.array(accuracy),
        np.array(updates, dtype=np.int64), np.array(lrs), diverged, _micro_sizes(p.batch, p.accum_steps),
    )  # fmt: skip


def curve_report_steps(steps: int) -> list[int]:
    """Return the effective steps whose held-out loss the generated script prints."""
    return sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps})


def code_curves(p: CurvesParams) -> str:
    """Return a script that trains the network once per variant and prints held-out losses and accuracy."""
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn

{model_code(p.spec())}

B, accum_steps, steps, lr = {p.batch}, {p.accum_steps}, {p.steps}, {p.lr!r}
n_train, n_test = {DATASET}, {HELDOUT}
g = torch.Generator().manual_seed({p.seed})
teacher = make_teacher(g)
X_train, y_train = make_batch(n_train, teacher, g)
X_test, y_test = make_batch(n_test, teacher, g)
per_epoch = n_train // B  # full batches per epoch; the last, partial one is dropped
epochs = -(-steps // per_epoch)
order = torch.cat([torch.randperm(n_train, generator=g)[: per_epoch * B].view(per_epoch, B) for _ in range(epochs)])
state = g.get_state()
report = {curve_report_steps(p.steps)!r}


def heldout_loss(net):
    with torch.no_grad():
        return F.cross_entropy(net(X_test), y_test).item()


for variant in {list(p.variants)!r}:
    g.set_state(state)  # every variant starts from the same weights and sees the same samples
    net = make_net(g)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr / accum_steps if variant == "small_lr" else lr)
    updates = 0
    print(f"{{variant}} step 0 held-out loss {{heldout_loss(net)}}")
    for step in range(1, steps + 1):
        X, y = X_train[order[step - 1]], y_train[order[step - 1]]
        micro = zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps))
        if variant == "big":  # one update on all B samples
            optimizer.zero_grad()
            F.cross_entropy(net(X), y).backward()
            optimizer.step()
            updates += 1
        elif variant == "accum":  # k backward passes add up the gradient of all B samples: one update
            optimizer.zero_grad()
            for X_i, y_i in micro:
                loss = F.cross_entropy(net(X_i), y_i) * (len(y_i) / B)  # each sample weighs 1 / B
                loss.backward()
            optimizer.step()
            updates += 1
        else:  # small batches: k updates, one per micro-batch
            for X_i, y_i in micro:
                optimizer.zero_grad()
                F.cross_entropy(net(X_i), y_i).backward()
                optimizer.step()
                updates += 1
        if step in report:
            print(f"{{variant}} step {{step}} held-out loss {{heldout_loss(net)}}")
    with torch.no_grad():
        accuracy = (net(X_test).argmax(dim=1) == y_test).float().mean().item()
    print(f"{{variant}} accuracy {{accuracy}} updates {{updates}}")
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "equiv": Experiment(EquivParams, run_equiv, code_equiv),
    "norm": Experiment(NormParams, run_norm, code_norm),
    "curves": Experiment(CurvesParams, run_curves, code_curves),
}
