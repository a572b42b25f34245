"""module.train() vs module.eval(): what Dropout and BatchNorm do in each mode, and the "summary" pass that moves running_mean.

Dropout: a train-mode pass zeroes a fraction p of the values and scales the rest by 1/(1-p); eval is
the identity. BatchNorm1d: train mode normalizes with the batch's own statistics and moves
running_mean/var by `momentum` each step; eval mode normalizes with the running ones. A forward pass
in train mode on a dummy batch (what a model-summary call does) moves the running statistics too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.params import Params, bounds, ladder, seed_field

SHOWN_VALUES = 48  # dropout outputs drawn in the strip
SUMMARY_BATCH = 2  # the dummy batch a summary pass feeds: torch.randn(2, 1)


@dataclass(frozen=True)
class ModesParams(Params):
    """Dropout's p and size; BatchNorm's momentum, the data's mean and std, steps, batch and summary passes."""

    p: float = field(default=0.5, metadata=bounds(0.0, 0.9, 0.05))
    features: int = field(default=1024, metadata=ladder(16, 4096))
    momentum: float = field(default=0.1, metadata=bounds(0.0, 1.0, 0.05))
    data_mean: float = field(default=3.0, metadata=bounds(-5.0, 5.0, 0.5))
    data_std: float = field(default=2.0, metadata=bounds(0.5, 4.0, 0.5))
    steps: int = field(default=30, metadata=bounds(1, 100))
    batch: int = field(default=32, metadata=ladder(2, 256))
    summary_passes: int = field(default=1, metadata=bounds(0, 10))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the bytes of the dropout vectors (input, mask, two outputs) and one batch, float32."""
        return 4 * (4 * self.features + 4 * self.batch)

    def estimate_work(self) -> float:
        """Return the element operations: four passes over the dropout vector and ~10 per value per BN step."""
        return float(4 * self.features + 10 * self.batch * (self.steps + 2) + 10 * SUMMARY_BATCH * self.summary_passes)


@dataclass(frozen=True)
class ModesResult:
    """Dropout's measured fraction and scale; BatchNorm's statistics at every step and before/after the summary."""

    p: float
    zeroed_fraction: float  # of the train-mode output
    kept_scale: float  # the value a kept 1.0 becomes: 1/(1-p)
    train_mean: float  # mean of the train-mode output of a vector of ones (≈ 1: the expectation is kept)
    eval_max_change: float  # max |dropout(X) - X| with the module in eval mode: 0, the identity
    real_dropout_ok: bool  # every output of a real nn.Dropout in train mode is 0 or x/(1-p)
    strip_train: np.ndarray  # the first SHOWN_VALUES outputs, train and eval
    strip_eval: np.ndarray
    batch_means: np.ndarray  # per training step, of the batch
    batch_vars: np.ndarray  # unbiased, as BatchNorm uses for running_var
    running_means: np.ndarray  # after each step (index 0: before any step, 0.0)
    running_vars: np.ndarray
    train_out_mean: float  # a fresh batch through BatchNorm in train mode: normalized by its own statistics
    train_out_std: float
    eval_out_mean: float  # the same batch in eval mode: normalized by the running statistics
    eval_out_std: float
    eval_formula_error: float  # max |eval output - (x - running_mean)/sqrt(running_var + eps)|
    eval_batch_formula_error: float  # max |eval output - (x - batch mean)/sqrt(batch var + eps)|
    summary_running_means: np.ndarray  # running_mean after each summary pass (index 0: before)
    summary_eval_mean: float  # the fresh batch in eval mode after the summary passes
    data_mean: float  # the mean the data is drawn around (the chart's reference line)


def dropout_part(p: ModesParams, ctx: RunContext) -> dict[str, Any]:
    """Return dropout on a vector of ones in train mode (mask from ctx.generator, as nn.Dropout draws it) and eval mode."""
    X = torch.ones(p.features, device=ctx.device)
    # nn.Dropout draws its mask from the global RNG, which a run does not own; this is its CPU computation,
    # bernoulli(1 - p) scaled by 1/(1 - p), with the mask drawn from the run's own generator.
    keep = torch.bernoulli(torch.full_like(X, 1 - p.p), generator=ctx.generator)
    y_train = X * keep / (1 - p.p)
    dropout = nn.Dropout(p.p)
    real = dropout.train()(X)  # the real module: its mask is not reproducible, its values are checked
    real_ok = bool(torch.all((real == 0) | torch.isclose(real, X / (1 - p.p))).item())
    y_eval = dropout.eval()(X)
    kept = y_train[keep > 0]
    return {
        "zeroed_fraction": float((y_train == 0).float().mean().item()),
        "kept_scale": float(kept[0].item()) if kept.numel() else 1 / (1 - p.p),
        "train_mean": float(y_train.mean().item()),
        "eval_max_change": float((y_eval - X).abs().max().item()),
        "real_dropout_ok": real_ok,
        "strip_train": to_numpy(y_train[:SHOWN_VALUES]),
        "strip_eval": to_numpy(y_eval[:SHOWN_VALUES]),
    }


def statistics(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return BatchNorm's buffers running_mean and running_var (typed: torch declares them Optional)."""
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None  # track_running_stats=True, the default
    return mean, var


def run(p: ModesParams, ctx: RunContext) -> ModesResult:
    """Return what Dropout and BatchNorm1d do in train and eval mode, step by step, and after a summary pass."""
    g, d = ctx.generator, ctx.device
    dropped = dropout_part(p, ctx)
    bn = nn.BatchNorm1d(1, momentum=p.momentum, device=d)
    running_mean, running_var = statistics(bn)  # updated in place by every train-mode pass
    means: list[float] = []
    variances: list[float] = []
    running_means, running_vars = [running_mean.item()], [running_var.item()]
    bn.train()
    for _ in range(p.steps):
        ctx.check_deadline()
        X = p.data_mean + p.data_std * torch.randn(p.batch, 1, generator=g, device=d)
        bn(X)
        means.append(X.mean().item())
        variances.append(X.var().item())
        running_means.append(running_mean.item())
        running_vars.append(running_var.item())
    X_test = p.data_mean + p.data_std * torch.randn(p.batch, 1, generator=g, device=d)
    with torch.no_grad():
        saved = {k: v.clone() for k, v in bn.state_dict().items()}
        train_out = bn.train()(X_test)
        bn.load_state_dict(saved)  # that train-mode pass moved the running statistics: put them back
        eval_out = bn.eval()(X_test)
        by_running = (X_test - running_mean) / torch.sqrt(running_var + bn.eps)
        by_batch = (X_test - X_test.mean()) / torch.sqrt(X_test.var(unbiased=False) + bn.eps)
        summary = [running_mean.item()]
        bn.train()  # the pitfall: a "summary" forward pass on dummy data, left in train mode
        for _ in range(p.summary_passes):
            bn(torch.randn(SUMMARY_BATCH, 1, generator=g, device=d))
            summary.append(running_mean.item())
        after = bn.eval()(X_test)
    return ModesResult(
        p.p,
        **dropped,
        batch_means=np.array(means),
        batch_vars=np.array(variances),
        running_means=np.array(running_means),
        running_vars=np.array(running_vars),
        train_out_mean=float(train_out.mean().item()),
        train_out_std=float(train_out.std(unbiased=False).item()),
        eval_out_mean=float(eval_out.mean().item()),
        eval_out_std=float(eval_out.std(unbiased=False).item()),
        eval_formula_error=float((eval_out - by_running).abs().max().item()),
        eval_batch_formula_error=float((eval_out - by_batch).abs().max().item()),
        summary_running_means=np.array(summary),
        summary_eval_mean=float(after.mean().item()),
        data_mean=p.data_mean,
    )


def context(p: ModesParams, device_type: str) -> dict[str, Any]:
    """Return what train_eval.py.j2 reads: the settings, the device and the summary batch."""
    return {**vars(p), "device": device_type, "summary_batch": SUMMARY_BATCH, "shown_values": SHOWN_VALUES}


def shown(r: ModesResult) -> Sequence[float | str]:
    """Return the dropout measurements, the last running statistics and the means before and after the summary."""
    return [
        r.zeroed_fraction,
        r.kept_scale,
        r.train_mean,
        r.eval_max_change,
        float(r.running_means[-1]),
        float(r.running_vars[-1]),
        r.train_out_mean,
        r.eval_out_mean,
        float(r.summary_running_means[-1]),
        r.summary_eval_mean,
    ]


MODES = Experiment(
    "mod_modes",
    ModesParams,
    run,
    script="train_eval.py.j2",
    context=context,
    shown=shown,
    examples=(
        ModesParams(p=0.9, momentum=0.5, steps=5, batch=2, summary_passes=10, seed=7),
        ModesParams(p=0.0, momentum=0.0, data_mean=-5.0, data_std=0.5, summary_passes=0),
    ),
)


def _which_statistics(r: ModesResult) -> str:
    """Return which statistics the eval-mode output matches: 'running_stats' or 'batch_stats'."""
    return "running_stats" if r.eval_formula_error < r.eval_batch_formula_error else "batch_stats"


EVAL_STATS = Prediction(
    "eval_statistics",
    MODES,
    ModesParams(),
    options=("batch_stats", "running_stats"),
    answer=_which_statistics,
    question="mod_modes.predict_eval_q",
    why="mod_modes.predict_eval_why",
)
