"""norm: accumulation under each normalisation; BatchNorm breaks the equality, GroupNorm and LayerNorm keep it.

Each line accumulates k micro-batches with the exact n_i / B weighting, from the same weights, and
is compared with the full-batch gradient. BatchNorm in train mode normalises each micro-batch with
that micro-batch's own statistics, which the first BatchNorm layer's input statistics show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.lessons.accumulation import common
from core.lessons.accumulation.model import (
    DTYPES,
    GROUPS,
    MODELS,
    ModelSpec,
    build_model,
    make_batch,
    make_teacher,
    model_context,
    norm_code,
)
from core.params import InvalidParams, Params, bounds, choices, ladder, seed_field

LINES = ("none", "batchnorm", "batchnorm_eval", "groupnorm", "layernorm")
STAT_CHANNELS = 8  # channels of the first BatchNorm layer whose statistics are shown


@dataclass(frozen=True)
class NormParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=32, metadata=bounds(2, 512))  # B
    k_max: int = field(default=16, metadata=ladder(1, 64))  # k runs over 1, 2, 4, ... up to min(k_max, B)
    width: int = field(default=32, metadata=ladder(8, 128) | {"step": 8})
    depth: int = field(default=2, metadata=bounds(1, 4))
    dtype: str = field(default="float32", metadata=choices(*DTYPES))
    # The k whose per-micro-batch statistics are shown.
    show_k: int = field(default=4, metadata=bounds(1, 64, hi_of="most_micro_batches"))
    seed: int = seed_field()

    def spec(self, norm: str = "batchnorm") -> ModelSpec:
        """Return the network of one line ("batchnorm_eval" is the BatchNorm network)."""
        return ModelSpec(self.model, self.width, self.depth, "batchnorm" if norm == "batchnorm_eval" else norm)

    def most_micro_batches(self) -> int:
        """Return the largest k: every micro-batch needs at least one sample."""
        return self.batch

    def ks(self) -> list[int]:
        """Return the numbers of micro-batches compared: the powers of two up to min(k_max, batch)."""
        return [2**i for i in range(7) if 2**i <= min(self.k_max, self.batch)]

    def estimate_work(self) -> float:
        """Return the run's work: per line, the full-batch gradient and one accumulation per k."""
        spec = self.spec()
        cost = common.FLOAT64_COST if self.dtype == "float64" else 1
        per_line = common.pass_work(spec, self.batch) + sum(common.pass_work(spec, self.batch, k) for k in self.ks())
        return cost * len(LINES) * per_line

    def validate(self) -> None:
        super().validate()
        if self.width % GROUPS:
            raise InvalidParams("width", "not_a_multiple", of=GROUPS)  # GroupNorm splits the channels into GROUPS groups
        if self.estimate_work() > common.MAX_WORK:
            limits = (("batch", self.show_k), ("width", 8), ("depth", 1), ("k_max", 1))
            raise common.too_much_work(self, NormParams.estimate_work, limits)

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

    def running_mean_gap(self) -> float:
        """Return the largest difference between running_mean after the full batch and after show_k micro-batches."""
        return float(np.abs(self.running_mean_full - self.running_mean_micro).max())


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
    values = [to_numpy(t, float64=True) for t in running] if running else [nan] * 4
    return {
        "channels": C,
        "stat_mean": np.array([to_numpy(mean, float64=True) for _, mean in stats]),
        "stat_var": np.array([to_numpy(var, float64=True) for var, _ in stats]),
        "show_skipped": not running,
        "running_mean_full": values[0],
        "running_var_full": values[1],
        "running_mean_micro": values[2],
        "running_var_micro": values[3],
    }


def run(p: NormParams, ctx: RunContext) -> NormResult:
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
        g_full, loss = common.full_batch_grad(net, X, y)
        losses.append(loss)
        norms.append(common.flat(g_full).norm().item())
        for j, k in enumerate(ks):
            if line == "batchnorm" and skips_batch_of_one(p.model, p.batch, k):
                continue
            net.zero_grad()
            c = common.compare(common.accumulate(net, X, y, k, "weighted", ctx), g_full)
            rel[i, j], max_abs[i, j] = c.overall_rel, c.overall_max_abs
        if line == "batchnorm":
            stats = _bn_statistics(p, net, X, ctx)
    skipped = tuple(k for k in ks if skips_batch_of_one(p.model, p.batch, k))
    return NormResult(
        p.model,
        p.dtype,
        p.batch,
        np.array(ks, dtype=np.int64),
        LINES,
        rel,
        max_abs,
        skipped,
        np.array(losses),
        np.array(norms),
        p.show_k,
        common.micro_sizes(p.batch, p.show_k),
        eps=float(torch.finfo(dtype).eps),
        **stats,
    )


def context(p: NormParams, device_type: str) -> dict[str, Any]:
    """Return what the script template reads: the network with its norm layer made by a `make_norm` it is given."""
    return {
        **model_context(p.spec("none"), make_norm=True),
        **{norm: norm_code(p.spec(norm)) for norm in ("batchnorm", "groupnorm", "layernorm")},
        "batch": p.batch,
        "dtype": p.dtype,
        "seed": p.seed,
        "lines": repr(list(LINES)),
        "ks": repr(p.ks()),
        "one_sample": "B // accum_steps == 1" if p.model == "mlp" else "False",
        "channels_shown": min(STAT_CHANNELS, p.width),
        "show_k": p.show_k,
        "dims": "0" if p.model == "mlp" else "(0, 2, 3)",
    }


ROUNDING = 1e-4  # relative errors below this are rounding, whose last digits depend on the order of the sums


def shown(r: NormResult) -> list[float | str]:
    """Return BatchNorm's errors, which ks it skips, and the first BatchNorm layer's statistics table."""
    out: list[float | str] = [f"batchnorm k={k}: skipped" for k in r.skipped]
    out += [v for v in r.rel.flatten() if v > ROUNDING]
    return out + [v for v in (*r.stat_mean.flatten(), *r.stat_var.flatten()) if abs(v) > 1e-3]


NORM = Experiment(
    "norm",
    NormParams,
    run,
    "accumulation_batchnorm.py.j2",
    context,
    shown=shown,
    examples=(
        NormParams(model="cnn", batch=8, width=8, k_max=4, show_k=3, dtype="float64"),
        NormParams(batch=3, k_max=4, show_k=3, width=8, depth=1, seed=4),
        NormParams(batch=16, k_max=4, width=16, show_k=3, seed=1),
    ),
)


def _batch_of_one_answer(r: NormResult) -> str:
    """Return what BatchNorm (train mode) does at k = B: "refused", else "exact" (below 1e-4) or "off"."""
    k = r.batch
    if k in r.skipped:
        return "refused"
    return "exact" if r.rel[r.lines.index("batchnorm"), list(r.ks).index(k)] < 1e-4 else "off"


# The page opens on B = 32 with k up to 16, so micro-batches of one sample are not on screen.
BATCH_OF_ONE = Prediction(
    "batch_of_one",
    NORM,
    NormParams(batch=8, k_max=8),
    options=("exact", "off", "refused"),
    answer=_batch_of_one_answer,
    question="norm.predict_q",
    why="norm.predict_why",
)
