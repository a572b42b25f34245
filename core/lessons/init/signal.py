"""Two deep MLPs side by side: the std of activations and gradients at every layer, against mean-field theory.

At finite width each layer's scale moves a little at random (about sqrt(2/width) per layer), so one
network can drift away from a flat theory line. The run repeats both configurations for `seeds`
draws of input and weights (the first is the one drawn in full) and the page shades their min-max band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.init.common import ACTIVATIONS, BINS, LEAKY_SLOPE, SIGNAL_SCHEMES, init_call, init_weight, weight_std
from core.params import Params, bounds, choices, ladder, seed_field

ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, LEAKY_SLOPE),
    "sigmoid": torch.sigmoid,
    "selu": F.selu,
    "gelu": F.gelu,
}
ACTIVATION_CODE = {
    "linear": "lambda z: z",
    "tanh": "torch.tanh",
    "relu": "torch.relu",
    "leaky_relu": f"lambda z: F.leaky_relu(z, {LEAKY_SLOPE})",
    "sigmoid": "torch.sigmoid",
    "selu": "F.selu",
    "gelu": "F.gelu",
}
# E[act(z)^2] / Var(z) for z ~ N(0, v), where the theory is exact: the rest have none.
SECOND_MOMENT = {"linear": 1.0, "relu": 0.5, "leaky_relu": (1 + LEAKY_SLOPE**2) / 2}


@dataclass(frozen=True)
class SignalParams(Params):
    depth: int = field(default=20, metadata=bounds(1, 100))
    width: int = field(default=256, metadata=ladder(8, 2048))
    batch: int = field(default=128, metadata=ladder(1, 2048))  # 128 x 256 values per layer: std to ~0.4%
    activation: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    scheme: str = field(default="xavier_normal", metadata=choices(*SIGNAL_SCHEMES))
    activation2: str = field(default="relu", metadata=choices(*ACTIVATIONS))
    scheme2: str = field(default="kaiming_normal", metadata=choices(*SIGNAL_SCHEMES))
    seed: int = seed_field()
    # Networks drawn per configuration: the band. Three already show a single network's drift (seed 0:
    # the first ReLU + Kaiming network ends at 0.55 of its start, the band spans 0.55-1.29), at 0.2 s of
    # a core instead of five's 0.4 s: this tab is the heaviest a class moves (bench/load.py).
    seeds: int = field(default=3, metadata=bounds(1, 8))

    def estimate_bytes(self) -> int:
        # One configuration at a time: weights and their gradients, then per layer the saved input
        # and output, the kept pre-activation and its gradient; the input batch and float64 copies.
        d, w, b = self.depth, self.width, self.batch
        return 8 * d * w * w + 16 * d * b * w + 24 * b * w

    def estimate_work(self) -> float:
        # Per configuration and layer: drawing the weight, one matmul forward and two backward
        # (for the input and for the weight), and a few passes over the activations (act, std, grad).
        d, w, b = self.depth, self.width, self.batch
        return float(2 * self.seeds * d * (w * w + 3 * b * w * w + 10 * b * w))


@dataclass(frozen=True)
class SignalTheory:
    """The mean-field prediction for one configuration, per layer 1..depth (see signal_theory)."""

    pre_std: np.ndarray
    act_std: np.ndarray
    delta_std: np.ndarray
    grad_std: np.ndarray  # the same at every layer
    ratio: float  # Var(z_l) / Var(z_{l-1}) forward = E[delta_l^2] / E[delta_{l+1}^2] backward


@dataclass(frozen=True)
class SignalRun:
    """One configuration's measurements, per layer 1..depth."""

    activation: str
    scheme: str
    weight_std: float  # std of every weight (all layers are width x width: fan_in = fan_out = width)
    pre_std: np.ndarray  # std of z_l = h_{l-1} @ W_l.T  (forward)
    act_std: np.ndarray  # std of h_l = act(z_l)
    delta_std: np.ndarray  # std of dloss/dz_l  (the backward signal)
    grad_std: np.ndarray  # std of dloss/dW_l  (what the optimizer sees)
    theory: SignalTheory | None  # for linear, relu and leaky_relu; None for the others
    forward_ratio: float | None  # measured: geometric mean of Var(z_l) / Var(z_{l-1}) over layers 2..depth
    backward_ratio: float | None  # measured: geometric mean of E[delta_l^2] / E[delta_{l+1}^2]
    hist_counts: np.ndarray  # (len(hist_layers), BINS) counts of h_l over one common range
    hist_outside: np.ndarray  # values beyond that range (or not finite), per histogram layer
    bin_x: np.ndarray  # bin centres of the common range
    bin_width: float
    act_std_seeds: np.ndarray  # (seeds, depth): act_std of every network drawn, the first being act_std
    grad_std_seeds: np.ndarray  # (seeds, depth): grad_std likewise


@dataclass(frozen=True)
class SignalResult:
    layers: np.ndarray  # 1..depth
    hist_layers: np.ndarray  # the layers whose activations are histogrammed
    runs: tuple[SignalRun, SignalRun]  # (activation, scheme), (activation2, scheme2)


def hist_layers(depth: int) -> list[int]:
    """Return the layers shown as small multiples: 1, depth/4, depth/2, 3 depth/4, depth."""
    return sorted({max(1, round(depth * f)) for f in (0.0, 0.25, 0.5, 0.75, 1.0)})


def signal_theory(activation: str, scheme: str, depth: int, width: int, batch: int) -> SignalTheory | None:
    """Return the mean-field prediction for one configuration, or None where it has none.

    Forward: x ~ N(0, 1), so E[h_0^2] = 1. For z_l = h_{l-1} W_l^T with i.i.d. weights of variance
    s^2, Var(z_l) = width s^2 E[h_{l-1}^2] and E[h_l^2] = c Var(z_l), where c = 1 (linear), 1/2
    (relu cuts half of a symmetric z), (1 + slope^2)/2 (leaky_relu). So Var(z_l) grows by the
    ratio r = width s^2 c per layer: Kaiming fan_in (s^2 = 2/width) keeps relu's scale (r = 1),
    Xavier (s^2 = 2/(fan_in + fan_out) = 1/width) halves it (r = 1/2).
    Backward, loss = (h_L * R).sum() with R ~ N(0, 1): delta_L = R act'(z_L) has E[delta_L^2] = c
    (E[act'^2] = c too), and delta_{l-1} = (delta_l W_l) act'(z_{l-1}) gives E[delta_{l-1}^2] = r E[delta_l^2].
    Weight gradient: dloss/dW_l = delta_l^T h_{l-1} summed over the batch, so its variance is
    batch c r^(L-l) r^(l-1) = batch c r^(L-1): the same at every layer, forward and backward
    shrinkage compensate.
    """
    c = SECOND_MOMENT.get(activation)
    if c is None:
        return None
    var_w = weight_std(scheme, activation, width, width) ** 2
    r = width * var_w * c
    layer = np.arange(1, depth + 1, dtype=np.float64)
    pre_var = width * var_w * r ** (layer - 1)  # layer 1 sees x itself: E[x^2] = 1, no factor c
    slope = {"linear": 1.0, "relu": 0.0, "leaky_relu": LEAKY_SLOPE}[activation]
    mean = (1 - slope) / math.sqrt(2 * math.pi)  # E[act(z)] / std(z): relu's output is not centred
    return SignalTheory(
        np.sqrt(pre_var),
        np.sqrt(pre_var * (c - mean**2)),
        np.sqrt(c * r ** (depth - layer)),
        np.full(depth, math.sqrt(batch * c * r ** (depth - 1))),
        r,
    )


def _geometric_ratio(first: float, last: float, steps: int) -> float | None:
    """Return (last / first)^(2 / steps): the mean per-layer variance ratio, None if undefined."""
    if steps < 1 or not (0 < first < math.inf and 0 < last < math.inf):
        return None
    return float((last / first) ** (2 / steps))


def _stds(ts: Sequence[torch.Tensor]) -> np.ndarray:
    """Return each tensor's population std (float32 input: torch accumulates in float64 on the CPU), read in one go."""
    return np.array(torch.stack([t.detach().std(correction=0) for t in ts]).tolist())


def _common_hist(hs: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Return counts (k, BINS) and outside counts of every h over one range, bin centres and width.

    The range spans mean +- 4 std of every shown layer, clipped to the values seen: a layer whose
    scale collapsed or exploded shows as a spike or as values outside, next to the others.
    """
    arrays = [h.detach().cpu().numpy().ravel().astype(np.float64) for h in hs]
    finite = [a[np.isfinite(a)] for a in arrays]
    lows = [max(f.min(), f.mean() - 4 * f.std()) for f in finite if f.size]
    highs = [min(f.max(), f.mean() + 4 * f.std()) for f in finite if f.size]
    lo, hi = (min(lows), max(highs)) if lows else (-1.0, 1.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = -1.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    counts = np.array([np.histogram(f, bins=edges)[0] for f in finite], dtype=np.float64)
    outside = np.array([a.size - c.sum() for a, c in zip(arrays, counts, strict=True)], dtype=np.float64)
    return counts, outside, (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])


def _forward(
    p: SignalParams, activation: str, scheme: str, X: torch.Tensor, state: torch.Tensor, ctx: RunContext
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Draw depth weights (no biases) from `state` and forward X through them; return the weights, every z_l and h_l."""
    act = ACTIVATION_FNS[activation]
    weights = []
    ctx.generator.set_state(state)  # both configurations start from the same random numbers
    for _ in range(p.depth):
        ctx.check_deadline()
        w = torch.empty(p.width, p.width, device=ctx.device)
        weights.append(init_weight(w, scheme, activation, ctx.generator).requires_grad_())
    h, zs, hs = X, [], []
    for w in weights:
        ctx.check_deadline()
        z = h @ w.T
        h = act(z)
        zs.append(z)
        hs.append(h)
    return weights, zs, hs


def _measure(
    p: SignalParams,
    activation: str,
    scheme: str,
    X: torch.Tensor,
    R: torch.Tensor,
    state: torch.Tensor,
    ctx: RunContext,
) -> SignalRun:
    """Forward X through depth layers, backward from (h_L * R).sum(); measure every layer, histogram a few."""
    weights, zs, hs = _forward(p, activation, scheme, X, state, ctx)
    # A fixed random read-out: every output unit gets an upstream gradient R ~ N(0, 1), whatever the
    # forward scale. (With mean(h_L^2) the gradient would be 2 h_L: it would inherit the forward
    # scale and correlate with the weights, and the top layers would leave the theory.)
    loss = (hs[-1] * R).sum()
    grads = torch.autograd.grad(loss, weights + zs)
    ctx.check_deadline()
    counts, outside, bin_x, width = _common_hist([hs[i - 1] for i in hist_layers(p.depth)])
    pre = _stds(zs)
    delta = _stds(grads[p.depth :])
    act_stds = _stds(hs)
    grad_stds = _stds(grads[: p.depth])
    return SignalRun(
        activation,
        scheme,
        weight_std(scheme, activation, p.width, p.width),
        pre,
        act_stds,
        delta,
        grad_stds,
        signal_theory(activation, scheme, p.depth, p.width, p.batch),
        _geometric_ratio(pre[0], pre[-1], p.depth - 1),
        _geometric_ratio(delta[-1], delta[0], p.depth - 1),
        counts,
        outside,
        bin_x,
        width,
        act_stds[None, :],
        grad_stds[None, :],
    )


def _band(
    p: SignalParams,
    activation: str,
    scheme: str,
    X: torch.Tensor,
    R: torch.Tensor,
    state: torch.Tensor,
    ctx: RunContext,
) -> tuple[np.ndarray, np.ndarray]:
    """Return one more network's act and weight-gradient stds per layer: all the band draws of it."""
    weights, _, hs = _forward(p, activation, scheme, X, state, ctx)
    grads = torch.autograd.grad((hs[-1] * R).sum(), weights)
    ctx.check_deadline()
    return _stds(hs), _stds(grads)


def run(p: SignalParams, ctx: RunContext) -> SignalResult:
    """Return both configurations' per-layer statistics, for `seeds` networks drawn one after the other.

    Each draw takes a new standard-normal input batch and read-out from the generator, then both
    configurations start their weights from the same random numbers; the first draw is measured in full.
    """
    configs = ((p.activation, p.scheme), (p.activation2, p.scheme2))
    firsts: list[SignalRun] = []
    act_seeds: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    grad_seeds: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for k in range(p.seeds):
        X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
        R = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
        state = ctx.generator.get_state()
        for i, (activation, scheme) in enumerate(configs):
            if k == 0:
                firsts.append(_measure(p, activation, scheme, X, R, state, ctx))
                act, grad = firsts[i].act_std, firsts[i].grad_std
            else:
                act, grad = _band(p, activation, scheme, X, R, state, ctx)
            act_seeds[i].append(act)
            grad_seeds[i].append(grad)
        ctx.progress(k + 1, p.seeds)
    main = tuple(
        replace(firsts[i], act_std_seeds=np.stack(act_seeds[i]), grad_std_seeds=np.stack(grad_seeds[i])) for i in (0, 1)
    )
    return SignalResult(np.arange(1, p.depth + 1), np.array(hist_layers(p.depth)), (main[0], main[1]))


def context(p: SignalParams, device_type: str) -> dict[str, Any]:
    """Return what signal_flow.py.j2 reads: the sizes, the seed, each configuration's activation and init call, the device."""
    configs = [
        {"name": f"{a} + {s}", "act": ACTIVATION_CODE[a], "init": init_call(s, a)}
        for a, s in ((p.activation, p.scheme), (p.activation2, p.scheme2))
    ]
    sizes = {"depth": p.depth, "width": p.width, "batch": p.batch, "seed": p.seed, "seeds": p.seeds}
    return sizes | {"configs": configs, "device": device_type}


def shown(r: SignalResult) -> Sequence[float | str]:
    """Return what the page draws that the script prints: each configuration's name, every network's act and grad stds."""
    out: list[float | str] = []
    for run_ in r.runs:
        out += [
            f"{run_.activation} + {run_.scheme}",
            *run_.act_std_seeds.ravel().tolist(),
            *run_.grad_std_seeds.ravel().tolist(),
        ]
    return out


def relu_xavier_answer(r: SignalResult) -> str:
    """Return how the first configuration's activation std changes from layer 1 to the last: by over 10x or not."""
    ratio = r.runs[0].act_std[-1] / r.runs[0].act_std[0]
    return "shrinks" if ratio < 0.1 else "grows" if ratio > 10 else "same"


SIGNAL = Experiment(
    "signal",
    SignalParams,
    run,
    script="signal_flow.py.j2",
    context=context,
    shown=shown,
    examples=(
        SignalParams(
            depth=3,
            width=16,
            batch=8,
            activation="tanh",
            scheme="normal_1",
            activation2="leaky_relu",
            scheme2="kaiming_uniform",
            seed=2,
        ),
        SignalParams(depth=30, width=32, batch=4, scheme="normal_1", activation2="gelu", scheme2="xavier_uniform"),
        SignalParams(
            depth=8,
            width=64,
            batch=16,
            activation="tanh",
            scheme="standard",
            activation2="tanh",
            scheme2="xavier_uniform",
            seeds=3,
        ),
    ),
)

# ReLU, 20 layers of width 256, xavier_normal: the variance halves per layer, the std ends ~1/700 of layer 1's.
RELU_XAVIER = Prediction(
    "relu_xavier",
    SIGNAL,
    SignalParams(activation="relu", scheme="xavier_normal", depth=20),
    options=("shrinks", "same", "grows"),
    answer=relu_xavier_answer,
    question="signal.predict_q",
    why="signal.predict_why",
)

# Glorot & Bengio's contrast: tanh with the "standard" U(-1/sqrt(n), 1/sqrt(n)) multiplies the variance by ~1/3 per layer.
TANH_STANDARD = Prediction(
    "tanh_standard",
    SIGNAL,
    SignalParams(activation="tanh", scheme="standard", activation2="tanh", scheme2="xavier_uniform"),
    options=("shrinks", "same", "grows"),
    answer=relu_xavier_answer,
    question="signal.predict_standard_q",
    why="signal.predict_standard_why",
)
