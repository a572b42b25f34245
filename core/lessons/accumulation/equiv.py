"""equiv: the full-batch gradient against k accumulated micro-batches, the right ways and the notes' mistakes.

Every variant accumulates the same micro-batches at the same weights and is compared with one
backward over the whole batch; forgetting zero_grad comes last, since it takes an SGD step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.lessons.accumulation import common
from core.lessons.accumulation.model import DTYPES, MODELS, ModelSpec, build_model, make_batch, make_teacher, model_context
from core.params import Params, bounds, choices, ladder, seed_field

VARIANTS = ("divide", "weighted", "no_divide", "seeds", "no_zero_grad")
STALE_LR = 0.1  # the SGD step taken between the two effective steps of "no_zero_grad"
PREVIEW = 200  # gradient entries kept per variant for a scatter plot


@dataclass(frozen=True)
class EquivParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=32, metadata=bounds(2, 512))  # B
    accum_steps: int = field(default=4, metadata=bounds(1, 64, hi_of="most_micro_batches"))  # k
    width: int = field(default=64, metadata=ladder(8, 256) | {"step": 8})
    depth: int = field(default=2, metadata=bounds(1, 6))
    dtype: str = field(default="float32", metadata=choices(*DTYPES))
    seed: int = seed_field()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no normalisation layers)."""
        return ModelSpec(self.model, self.width, self.depth)

    def most_micro_batches(self) -> int:
        """Return the largest k: every micro-batch needs at least one sample."""
        return self.batch

    def estimate_work(self) -> float:
        """Return the run's work: two full-batch gradients and six accumulations of k micro-batches."""
        spec = self.spec()
        cost = common.FLOAT64_COST if self.dtype == "float64" else 1
        return cost * (2 * common.pass_work(spec, self.batch) + 6 * common.pass_work(spec, self.batch, self.accum_steps))

    def validate(self) -> None:
        super().validate()
        if self.estimate_work() > common.MAX_WORK:
            limits = (("batch", self.accum_steps), ("width", 8), ("depth", 1))
            raise common.too_much_work(self, EquivParams.estimate_work, limits)

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
    return to_numpy(r[index], float64=True), to_numpy(v[index], float64=True)


def run(p: EquivParams, ctx: RunContext) -> EquivResult:
    """Compare k accumulated micro-batches with the full batch, every variant at the same initial weights."""
    dtype = DTYPES[p.dtype]
    spec = p.spec()
    teacher = make_teacher(ctx.generator, ctx.device)
    X, y = make_batch(spec, p.batch, teacher, ctx.generator, ctx.device, dtype)
    X2, y2 = make_batch(spec, p.batch, teacher, ctx.generator, ctx.device, dtype)  # for the forgotten zero_grad
    net = build_model(spec, ctx.generator, ctx.device, dtype)
    k = p.accum_steps
    g_full, loss = common.full_batch_grad(net, X, y)
    runs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for variant in VARIANTS[:4]:
        net.zero_grad()
        runs.append((common.accumulate(net, X, y, k, variant, ctx), g_full))
    # Forgetting zero_grad: a correct effective step on the first batch, an SGD step, then the second
    # batch's micro-batches add onto the first batch's gradient still in .grad. This changes the weights,
    # so it comes last; its reference is the second batch's gradient at the new weights.
    optimizer = torch.optim.SGD(net.parameters(), lr=STALE_LR)
    net.zero_grad()
    g_prev = common.accumulate(net, X, y, k, "weighted", ctx)
    optimizer.step()
    g_stale = common.accumulate(net, X2, y2, k, "weighted", ctx)
    g_ref2, _ = common.full_batch_grad(net, X2, y2)
    runs.append((g_stale, g_ref2))
    comparisons = [common.compare(v, r) for v, r in runs]
    previews = [_preview(common.flat(v), common.flat(r)) for v, r in runs]
    prev, ref2 = common.flat(g_prev), common.flat(g_ref2)
    sizes = common.micro_sizes(p.batch, k)
    return EquivResult(
        p.model,
        p.dtype,
        p.batch,
        k,
        tuple(name for name, _ in net.named_parameters()),
        tuple(tuple(w.shape) for w in net.parameters()),
        VARIANTS,
        np.array([c.max_abs for c in comparisons]),
        np.array([c.rel for c in comparisons]),
        np.array([c.overall_max_abs for c in comparisons]),
        np.array([c.overall_rel for c in comparisons]),
        np.array([c.scale for c in comparisons]),
        (*predicted_scales(k, p.batch % k == 0), 1 + (prev @ ref2 / (ref2 @ ref2)).item()),  # g_v = g_ref + g_prev
        np.array([c.ref_norm for c in comparisons]),
        (prev.norm() / ref2.norm()).item(),
        (common.flat(g_stale) - ref2 - prev).abs().max().item(),
        sizes,
        np.array([p.batch / (k * n) for n in sizes]),
        p.batch % k == 0,
        loss,
        float(torch.finfo(dtype).eps),
        np.array([r for r, _ in previews]),
        np.array([v for _, v in previews]),
    )


def context(p: EquivParams, device_type: str) -> dict[str, Any]:
    """Return what the script template reads (the script runs on the CPU, as the comparison needs no GPU)."""
    return {
        **model_context(p.spec()),
        "batch": p.batch,
        "accum_steps": p.accum_steps,
        "dtype": p.dtype,
        "seed": p.seed,
        "stale_lr": STALE_LR,
    }


ROUNDING = 1e-4  # relative errors below this are rounding, whose last digits depend on the order of the sums


def shown(r: EquivResult) -> list[float | str]:
    """Return the micro-batch sizes, every measured factor, the errors of the mistakes and the predicted stale error."""
    wrong = r.overall_rel > ROUNDING
    return [*r.micro_sizes, *r.scale, *r.overall_rel[wrong], *r.overall_max_abs[wrong], r.stale_rel_predicted]


EQUIV = Experiment(
    "equiv",
    EquivParams,
    run,
    "accumulation_equivalence.py.j2",
    context,
    shown=shown,
    examples=(
        EquivParams(model="cnn", batch=10, accum_steps=4, width=8, dtype="float64", seed=3),
        EquivParams(batch=8, accum_steps=1, depth=1, width=16),  # k = 1: the full batch itself
        EquivParams(batch=30, accum_steps=7, dtype="float64", seed=9),
    ),
)

SEEDS_OPTIONS = ("1", "1.125", "8", "9")


def _seeds_answer(r: EquivResult) -> str:
    """Return the option nearest to the measured factor of the notes' `loss += loss / k`."""
    scale = r.scale[r.variants.index("seeds")]
    return min(SEEDS_OPTIONS, key=lambda option: abs(float(option) - scale))


# The page opens on k = 4, where the chart shows the factor 5; the question asks for k = 8.
SEEDS = Prediction(
    "seeds",
    EQUIV,
    EquivParams(batch=32, accum_steps=8),
    options=SEEDS_OPTIONS,
    answer=_seeds_answer,
    question="equiv.predict_q",
    why="equiv.predict_why",
)
UNEVEN = Prediction(
    "uneven",
    EQUIV,
    EquivParams(batch=30, accum_steps=4),
    options=("exact", "off"),
    answer=lambda r: "exact" if r.overall_rel[VARIANTS.index("divide")] < 1e-5 else "off",
    question="equiv.predict_uneven_q",
    why="equiv.predict_uneven_why",
)
