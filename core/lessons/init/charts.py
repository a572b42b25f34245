"""The init lesson's pure figure and table builders: a Result in, a plotly Figure or pandas DataFrame out.

Every builder takes `tr`, a function from a text key to the words to show, so the same figure is
drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.charts import BLUES, STORAGE_COLORS, Figure, Text, finish, trace
from core.lessons.init.dist import DistResult
from core.lessons.init.fans import FansResult
from core.lessons.init.signal import SignalResult
from core.lessons.init.train import TrainResult
from core.memo import same_inputs


@same_inputs
def dist_figure(r: DistResult, tr: Text) -> Figure:
    """Histogram of the initialized weights against the theoretical density (line) or point masses (diamonds)."""
    fig = Figure()
    if r.counts.size:
        fig.add_bar(x=r.bin_x, y=r.counts, width=r.bin_width * 0.95, name=tr("observed"), marker_color=STORAGE_COLORS[0])
        fig.add_scatter(x=r.bin_x, y=r.expected, mode="lines", name=tr("expected"), line={"color": "#e45756", "width": 3})
    if r.point_x.size:
        fig.add_bar(
            x=r.point_x,
            y=r.point_counts,
            name=tr("observed_points"),
            marker_color=STORAGE_COLORS[2],
            width=max(r.bin_width, 1e-3) * 2 if r.counts.size else None,
        )
        fig.add_scatter(
            x=r.point_x,
            y=r.point_expected,
            mode="markers",
            name=tr("expected_points"),
            marker={"size": 12, "symbol": "diamond", "color": "#e45756"},
        )
    for bound in (r.theory_lo, r.theory_hi):
        if bound is not None:
            fig.add_vline(x=bound, line={"dash": "dash", "color": "#222222"})
    fig.update_xaxes(title=tr("weight_value"))
    fig.update_yaxes(title=tr("count"))
    return finish(fig, tr("dist_title"))


@same_inputs
def dist_table(r: DistResult, tr: Text) -> pd.DataFrame:
    """Return measured against theoretical mean, std and bounds."""

    def bound(v: float | None) -> str:
        return "—" if v is None else f"{v:.4g}"

    return pd.DataFrame(
        {
            tr("measured"): [f"{r.mean:.4g}", f"{r.std:.4g}", f"{r.min:.4g}", f"{r.max:.4g}"],
            tr("theory"): [f"{r.theory_mean:.4g}", f"{r.theory_std:.4g}", bound(r.theory_lo), bound(r.theory_hi)],
        },
        index=[tr("mean"), tr("std"), "min", "max"],
    )


@same_inputs
def gains_table(r: FansResult, tr: Text) -> pd.DataFrame:
    """Return calculate_gain for every nonlinearity with its formula."""
    return pd.DataFrame(
        {
            tr("nonlinearity"): list(r.nonlinearities),
            tr("formula"): list(r.gain_formulas),
            "calculate_gain": [f"{g:.5g}" for g in r.gains],
        }
    )


@same_inputs
def signal_figure(r: SignalResult, tr: Text, quantity: str) -> Figure:
    """Per-layer std (log scale) of activations ('act') or weight gradients ('grad') for both configurations.

    Solid: measured on the first network; shaded: min to max over every network drawn (finite-width
    spread); dashed: the mean-field prediction where theory gives one.
    """
    fig = Figure()
    for run, color in zip(r.runs, (STORAGE_COLORS[0], "#e45756"), strict=True):
        name = f"{run.activation} + {run.scheme}"
        measured = run.act_std if quantity == "act" else run.grad_std
        every = run.act_std_seeds if quantity == "act" else run.grad_std_seeds
        if len(every) > 1:
            lo, hi = every.min(axis=0), every.max(axis=0)
            band = f"{name} ({tr('band').format(n=len(every))})"
            fig.add_scatter(
                x=np.concatenate([r.layers, r.layers[::-1]]),
                y=np.where(np.concatenate([hi, lo[::-1]]) > 0, np.concatenate([hi, lo[::-1]]), np.nan),
                fill="toself",
                fillcolor=_translucent(color),
                line={"width": 0},
                hoverinfo="skip",
                name=band,
            )
        fig.add_scatter(
            x=r.layers,
            y=np.where(measured > 0, measured, np.nan),
            mode="lines+markers",
            name=name,
            line={"color": color, "width": 3},
            marker={"size": 5},
        )
        theory = None if run.theory is None else (run.theory.act_std if quantity == "act" else run.theory.grad_std)
        if theory is not None:
            fig.add_scatter(
                x=r.layers, y=theory, mode="lines", name=f"{name} ({tr('theory')})", line={"color": color, "dash": "dash"}
            )
    fig.update_yaxes(type="log", title=tr(f"{quantity}_std"), exponentformat="power")
    fig.update_xaxes(title=tr("layer"))
    return finish(fig, tr(f"{quantity}_title"), height=380)


def _translucent(color: str, alpha: float = 0.2) -> str:
    """Return a '#rrggbb' colour as an rgba() string with this opacity (a band behind its line)."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


@same_inputs
def signal_hist_figure(r: SignalResult, tr: Text) -> Figure:
    """Activation histograms at a few layers, one heat strip per layer, both configurations side by side."""
    data = []
    for i, run in enumerate(r.runs):
        axis = "" if i == 0 else "2"
        z = np.log10(1 + run.hist_counts)
        data.append(
            trace(
                "heatmap",
                x=run.bin_x,
                y=[f"{tr('layer')} {n}" for n in r.hist_layers],
                z=z,
                showscale=False,
                colorscale=BLUES,
                xaxis=f"x{axis}",
                yaxis=f"y{axis}",
                hovertemplate="%{y}, %{x:.3g}: 10^%{z:.2f}<extra></extra>",
            )
        )
    layout = {
        "xaxis": {"domain": [0, 0.47], "title": f"{r.runs[0].activation} + {r.runs[0].scheme}"},
        "xaxis2": {"domain": [0.53, 1], "title": f"{r.runs[1].activation} + {r.runs[1].scheme}"},
        "yaxis": {"type": "category"},
        "yaxis2": {"type": "category", "anchor": "x2", "showticklabels": False},
    }
    return finish(Figure(data=data, layout=layout), tr("hist_title"), height=320)


@same_inputs
def train_figure(results: Sequence[TrainResult], tr: Text) -> Figure:
    """Training loss per step for each initialization (log scale), accuracy in the legend."""
    fig = Figure()
    colors = (*STORAGE_COLORS, "#333333")
    for i, r in enumerate(results):
        for j, scheme in enumerate(r.schemes):
            label = f"{scheme} — {tr('accuracy')} {r.accuracy[j]:.0%}" + (f" ({tr('diverged')})" if r.diverged[j] else "")
            fig.add_scatter(
                x=r.steps, y=r.loss[j], mode="lines", name=label, line={"color": colors[(i + j) % len(colors)], "width": 2}
            )
    fig.update_yaxes(type="log", title=tr("loss"))
    fig.update_xaxes(title=tr("step"))
    return finish(fig, tr("train_title"), height=380)


def zero_fraction(r: DistResult) -> float:
    """Return the measured fraction of zeros per column, averaged over the columns (sparse)."""
    return float(r.col_zero_fraction.mean())


def signal_ratios(r: SignalResult) -> list[tuple[str, str, str]]:
    """Return, per configuration, its name and its measured and theoretical variance ratio per layer ('—' if none)."""
    return [
        (
            f"{run.activation} + {run.scheme}",
            "—" if run.forward_ratio is None else f"{run.forward_ratio:.3g}",
            "—" if run.theory is None else f"{run.theory.ratio:.3g}",
        )
        for run in r.runs
    ]
