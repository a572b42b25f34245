"""Figures and tables of the "Gradient accumulation" lesson (pure: result and translator in, figure out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from core.charts import MB, Figure, Text, finish, memory_time_figure, sci
from core.lessons.accumulation.curves import CurvesResult
from core.lessons.accumulation.equiv import EquivResult
from core.lessons.accumulation.memory import AccumMemory, MemoryResult
from core.lessons.accumulation.norm import NormResult
from core.lessons.accumulation.savers import SaverRun, SaversResult
from core.memo import same_inputs

# What each variant does to a micro-batch's loss before backward, as the code says it.
VARIANT_CODE = {
    "divide": "loss / k",
    "weighted": "loss * n_i / B",
    "no_divide": "loss",
    "seeds": "loss += loss / k",
    "no_zero_grad": "loss / k, no zero_grad()",
}
VARIANT_COLORS = {
    "divide": "#4c78a8",
    "weighted": "#54a24b",
    "no_divide": "#e45756",
    "seeds": "#f58518",
    "no_zero_grad": "#b279a2",
}
LINE_COLORS = {
    "none": "#333333",
    "batchnorm": "#e45756",
    "batchnorm_eval": "#f58518",
    "groupnorm": "#4c78a8",
    "layernorm": "#54a24b",
}
CURVE_STYLE = {
    "big": ("#333333", "solid", 5),
    "accum": ("#f58518", "dash", 2),
    "small": ("#4c78a8", "solid", 2),
    "small_lr": ("#54a24b", "dot", 2),
}
# A log axis cannot show 0: exact zeros are drawn here, and their hover text says "0".
LOG_FLOOR = 1e-18


@same_inputs
def equiv_table(r: EquivResult, tr: Text) -> pd.DataFrame:
    """Return one row per variant: its code, error against the full-batch gradient, measured and predicted factor."""
    return pd.DataFrame(
        {
            tr("variant"): [tr(v) for v in r.variants],
            tr("code"): [VARIANT_CODE[v] for v in r.variants],
            tr("rel"): [sci(v) for v in r.overall_rel],
            tr("max_abs"): [sci(v) for v in r.overall_max_abs],
            tr("scale"): [f"{v:.6g}" for v in r.scale],
            tr("predicted"): ["—" if v is None else f"{v:.6g}" for v in r.predicted_scale],
        }
    )


@same_inputs
def equiv_params_table(r: EquivResult, tr: Text) -> pd.DataFrame:
    """Return the relative error of every parameter tensor (rows) for every variant (columns)."""
    columns = {tr("parameter"): [f"{n} {tuple(s)}" for n, s in zip(r.param_names, r.param_shapes, strict=True)]}
    for i, v in enumerate(r.variants):
        columns[tr(v)] = [sci(x) for x in r.rel[i]]
    return pd.DataFrame(columns)


@same_inputs
def equiv_error_figure(r: EquivResult, tr: Text) -> Figure:
    """Bar per variant: relative error of the accumulated gradient (log scale), with the dtype's epsilon marked."""
    rel = np.asarray(r.overall_rel, dtype=float)
    fig = Figure()
    fig.add_bar(
        x=[tr(v) for v in r.variants],
        y=np.maximum(rel, LOG_FLOOR),
        text=[sci(v) for v in rel],
        marker_color=[VARIANT_COLORS[v] for v in r.variants],
        hovertemplate="%{x}: %{text}<extra></extra>",
    )
    fig.add_hline(y=r.eps, line_dash="dot", annotation_text=f"eps({r.dtype}) = {r.eps:.1e}", annotation_position="top left")
    fig.update_yaxes(type="log", title=tr("rel_axis"), exponentformat="power")
    return finish(fig, tr("error_title"), height=360)


@same_inputs
def equiv_scatter_figure(r: EquivResult, tr: Text) -> Figure:
    """Scatter of the same gradient entries: full batch (x) against each variant (y); y = x is correct."""
    fig = Figure()
    lo = float(min(r.preview_ref.min(), r.preview.min()))
    hi = float(max(r.preview_ref.max(), r.preview.max()))
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"color": "#999999", "dash": "dot"})
    for i, v in enumerate(r.variants):
        fig.add_scatter(
            x=r.preview_ref[i],
            y=r.preview[i],
            mode="markers",
            name=tr(v),
            marker={"color": VARIANT_COLORS[v], "size": 5, "opacity": 0.7},
        )
    fig.update_xaxes(title=tr("g_full"))
    fig.update_yaxes(title=tr("g_acc"))
    return finish(fig, tr("scatter_title"), height=420)


@same_inputs
def norm_figure(r: NormResult, tr: Text) -> Figure:
    """Relative error of accumulation against k, one line per normalisation (log-log; exact zeros at the floor)."""
    fig = Figure()
    for i, line in enumerate(r.lines):
        rel = np.asarray(r.rel[i], dtype=float)
        fig.add_scatter(
            x=r.ks,
            y=np.where(np.isnan(rel), np.nan, np.maximum(rel, LOG_FLOOR)),
            mode="lines+markers",
            name=tr(line),
            text=[sci(v) for v in rel],
            line={"color": LINE_COLORS[line], "width": 2},
            hovertemplate="k = %{x}: %{text}<extra>%{fullData.name}</extra>",
        )
    fig.add_hline(y=r.eps, line_dash="dot", annotation_text=f"eps({r.dtype}) = {r.eps:.1e}", annotation_position="bottom right")
    fig.update_xaxes(type="log", title=tr("k"), tickvals=r.ks, ticktext=[str(k) for k in r.ks])
    fig.update_yaxes(type="log", title=tr("rel_axis"), exponentformat="power")
    return finish(fig, tr("norm_title"), height=400)


@same_inputs
def norm_stats_table(r: NormResult, tr: Text) -> pd.DataFrame:
    """Return the first BatchNorm layer's input mean and variance per channel: full batch, then each micro-batch."""
    rows = [tr("full_batch")] + [tr("micro").format(i=i + 1, n=n) for i, n in enumerate(r.show_sizes)]
    columns: dict[str, list[str]] = {tr("batch_col"): rows}
    for c in range(r.channels):
        columns[f"mean[{c}]"] = [f"{v:.3f}" for v in r.stat_mean[:, c]]
    for c in range(min(r.channels, 4)):
        columns[f"var[{c}]"] = [f"{v:.3f}" for v in r.stat_var[:, c]]
    return pd.DataFrame(columns)


@same_inputs
def curves_figure(results: Sequence[CurvesResult], tr: Text) -> Figure:
    """Held-out loss after each effective step for each way of training, on the same sample stream."""
    fig = Figure()
    for r in results:
        for i, v in enumerate(r.variants):
            color, dash, width = CURVE_STYLE[v]
            label = f"{tr(v)} — {tr('updates')} {int(r.updates[i])}, lr {r.lrs[i]:.3g}"
            fig.add_scatter(
                x=r.steps, y=r.eval_loss[i], mode="lines", name=label, line={"color": color, "dash": dash, "width": width}
            )
    fig.update_xaxes(title=tr("effective_step"))
    fig.update_yaxes(title=tr("heldout_loss"))
    return finish(fig, tr("curves_title"), height=400)


def curves_table(results: Sequence[CurvesResult], tr: Text) -> pd.DataFrame:
    """Return per way of training: optimizer steps, learning rate, final held-out loss and accuracy."""
    rows = [(r, i) for r in results for i in range(len(r.variants))]
    return pd.DataFrame(
        {
            tr("variant"): [tr(r.variants[i]) for r, i in rows],
            tr("updates"): [int(r.updates[i]) for r, i in rows],
            "lr": [f"{r.lrs[i]:.4g}" for r, i in rows],
            tr("final_loss"): [f"{r.eval_loss[i, -1]:.4f}" for r, i in rows],
            tr("accuracy"): [f"{r.accuracy[i]:.1%}" for r, i in rows],
        }
    )


def _spread_ms(times: np.ndarray, median: float) -> tuple[float, float]:
    """Return how far the 25th and 75th percentiles of the block times lie below and above the median, in ms."""
    q25, q75 = np.percentile(np.asarray(times, dtype=float), [25, 75])
    return 1e3 * (median - q25), 1e3 * (q75 - median)


def memory_bytes(step: AccumMemory | SaverRun) -> int:
    """Return the memory figure the charts show: the CUDA allocator's peak, or on a CPU the saved activation bytes."""
    return step.cuda_peak_bytes if step.cuda_peak_bytes is not None else step.saved_bytes


@same_inputs
def _memory_and_time(
    labels: list[str], runs: Sequence[AccumMemory | SaverRun], cuda: bool, tr: Text, title: str, xtitle: str
) -> Figure:
    """Bars of memory (left axis, MB) and points of time per step with their spread (right axis, ms)."""
    spreads = [_spread_ms(s.times, s.time_median) for s in runs]
    return memory_time_figure(
        labels,
        [memory_bytes(s) / MB for s in runs],
        [1e3 * s.time_median for s in runs],
        ([lo for lo, _ in spreads], [hi for _, hi in spreads]),
        (xtitle, tr("peak_mb" if cuda else "saved_mb"), tr("ms")),
        title,
    )


@same_inputs
def memory_figure(results: Sequence[MemoryResult], tr: Text) -> Figure:
    """Memory of one effective step and time per effective step against k (one result per k)."""
    steps = [s for r in results for s in r.steps]
    cuda = results[0].device == "cuda"
    return _memory_and_time([str(s.accum_steps) for s in steps], steps, cuda, tr, tr("memory_title"), tr("k"))


def memory_table(results: Sequence[MemoryResult], tr: Text) -> pd.DataFrame:
    """Return per k: micro-batch sizes, memory, time per effective step (median and IQR) and per sample."""
    steps = [s for r in results for s in r.steps]
    columns: dict[str, list[object]] = {
        "k": [s.accum_steps for s in steps],
        tr("micro_batches"): [", ".join(map(str, sorted(set(s.micro_batches), reverse=True))) for s in steps],
        tr("saved_mb"): [f"{s.saved_bytes / MB:.3f}" for s in steps],
    }
    if results[0].device == "cuda":
        columns[tr("peak_mb")] = [f"{(s.cuda_peak_bytes or 0) / MB:.2f}" for s in steps]
        columns[tr("baseline_mb")] = [f"{(s.cuda_baseline_bytes or 0) / MB:.2f}" for s in steps]
    columns[tr("ms")] = [f"{1e3 * s.time_median:.3g}" for s in steps]
    columns[tr("iqr_ms")] = [f"{1e3 * s.time_iqr:.2g}" for s in steps]
    columns[tr("us_per_sample")] = [f"{1e6 * s.time_per_sample:.3g}" for s in steps]
    return pd.DataFrame(columns)


@same_inputs
def savers_figure(results: Sequence[SaversResult], tr: Text) -> Figure:
    """Memory and time of one training step for each way of saving memory that this device can run."""
    runs = [run for r in results for run in r.runs if run.unavailable is None]
    cuda = results[0].device == "cuda"
    return _memory_and_time([tr(run.mode) for run in runs], runs, cuda, tr, tr("savers_title"), tr("mode"))


def savers_table(results: Sequence[SaversResult], tr: Text) -> pd.DataFrame:
    """Return per mode: saved bytes (weight copies apart), memory peak, time, loss and gradient error vs fp32."""
    runs = [run for r in results for run in r.runs]

    def column(cell: Callable[[SaverRun], str]) -> list[str]:
        return [cell(run) if run.unavailable is None else "—" for run in runs]

    columns = {
        tr("mode"): [tr(run.mode) for run in runs],
        tr("saved_mb"): column(lambda run: f"{run.saved_bytes / MB:.3f}"),
        tr("weight_copies_mb"): column(lambda run: f"{run.weight_copy_bytes / MB:.3f}"),
        tr("recompute_mb"): column(lambda run: f"{run.recompute_bytes / MB:.3f}"),
    }
    if results[0].device == "cuda":
        columns[tr("peak_mb")] = column(lambda run: f"{(run.cuda_peak_bytes or 0) / MB:.2f}")
    columns[tr("ms")] = column(lambda run: f"{1e3 * run.time_median:.3g}")
    columns[tr("loss")] = column(lambda run: f"{run.loss:.5f}")
    columns[tr("grad_error")] = column(lambda run: sci(run.grad_rel_error))
    return pd.DataFrame(columns)
