"""Pure figure and table builders: experiment result in, plotly Figure or pandas DataFrame out.

Every builder takes `tr`, a function from a text key to the words to show, so the same figure
is drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.init import DistResult, FansResult, SignalResult, TrainResult
from core.memo import same_inputs
from core.tensors import (
    BroadcastResult,
    CreateResult,
    DtypeResult,
    IndexResult,
    InplaceResult,
    LayoutResult,
    NumpyResult,
    ShapeResult,
    TensorFacts,
)

Text = Callable[[str], str]

PLAIN, PICKED, CHANGED = "#e8eef7", "#8fb5e8", "#f29e4c"
STORAGE_COLORS = ("#4c78a8", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d", "#bab0ac")


def _fmt(v: float) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "T" if v else "F"
    if float(v).is_integer() and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.3g}"


MB = 1e6  # memory figures are shown in MB (10^6 bytes)


def sci(v: float) -> str:
    """Return v in short scientific notation ('0' for an exact zero, '—' for nan)."""
    if v != v:
        return "—"
    return "0" if v == 0 else f"{v:.1e}"


def memory_time_figure(labels: Sequence[str], memory_mb: Sequence[float], time_ms: Sequence[float],
                       time_err: tuple[Sequence[float], Sequence[float]], names: tuple[str, str, str],
                       title: str) -> go.Figure:  # fmt: skip
    """Bars of memory (left axis, MB) and time per step with its spread (right axis, ms) per setting on x.

    `time_err` is (below, above) the time, in ms; `names` is (x axis, memory axis, time axis).
    """
    xtitle, memory_name, time_name = names
    fig = go.Figure()
    fig.add_bar(x=list(labels), y=list(memory_mb), name=memory_name, marker_color="#4c78a8", opacity=0.8)
    fig.add_scatter(x=list(labels), y=list(time_ms), yaxis="y2", mode="lines+markers", name=time_name,
                    line={"color": "#e45756", "width": 3}, marker={"size": 9},
                    error_y={"type": "data", "symmetric": False, "array": list(time_err[1]),
                             "arrayminus": list(time_err[0])})  # fmt: skip
    fig.update_layout(
        xaxis={"title": xtitle, "type": "category"},
        yaxis={"title": memory_name, "rangemode": "tozero"},
        yaxis2={"title": time_name, "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return finish(fig, title, height=420)


def finish(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    # No template: st.plotly_chart applies the app theme, and a named template costs ~20 ms to copy.
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 60, "b": 40})
    return fig


# ----------------------------------------------------------------------------------------------
# Creation


@same_inputs
def creation_figure(r: CreateResult, tr: Text) -> go.Figure:
    """Histogram of the values against the expected counts, or the values by index when not random."""
    fig = go.Figure()
    if r.counts.size:
        fig.add_bar(x=r.bin_x, y=r.counts, width=r.bin_width * 0.95, name=tr("observed"), marker_color=STORAGE_COLORS[0])
        mode = "markers" if r.discrete else "lines"
        fig.add_scatter(x=r.bin_x, y=r.expected, mode=mode, name=tr("expected"), line={"color": "#e45756", "width": 3},
                        marker={"size": 10, "symbol": "diamond"})  # fmt: skip
        fig.update_xaxes(title=tr("value"))
        fig.update_yaxes(title=tr("count"))
        return finish(fig, tr("hist_title"))
    shown = np.where(np.isfinite(r.values), r.values, np.nan)
    fig.add_scatter(x=np.arange(shown.size), y=shown, mode="markers+lines" if shown.size <= 200 else "lines",
                    name=tr("value"), marker_color=STORAGE_COLORS[0])  # fmt: skip
    fig.update_xaxes(title=tr("flat_index"))
    fig.update_yaxes(title=tr("value"))
    return finish(fig, tr("values_title"))


# ----------------------------------------------------------------------------------------------
# Grids of cells


@dataclass(frozen=True)
class Grid:
    """One tensor to draw as cells: a label, its values and (optionally) cells to highlight."""

    label: str
    values: np.ndarray
    highlight: np.ndarray | None = None
    color: str = PICKED


def as_panel(values: np.ndarray) -> np.ndarray:
    """Return a 2-D float array: rows x last dim; leading dims stacked with a blank row between slices."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim == 2:
        return a
    slices = a.reshape(-1, a.shape[-2], a.shape[-1])
    gap = np.full((1, a.shape[-1]), np.nan)
    parts: list[np.ndarray] = []
    for s in slices:
        parts += [s, gap]
    return np.vstack(parts[:-1])


@same_inputs
def grids_figure(grids: Sequence[Grid], title: str) -> go.Figure:
    """Draw tensors side by side as grids of cells with their values written in.

    The panels are laid out by hand (one x/y axis pair each) rather than with make_subplots,
    which costs several times more to build for the same figure.
    """
    n, gap = len(grids), 0.04
    width = (1 - gap * (n - 1)) / n
    data: list[go.Heatmap] = []
    layout: dict[str, Any] = {"annotations": []}
    tallest = 1
    for i, g in enumerate(grids):
        values = as_panel(g.values)
        mark = np.zeros_like(values) if g.highlight is None else as_panel(g.highlight.astype(np.float64))
        z = np.where(np.isnan(values), np.nan, mark)
        text = [["" if np.isnan(v) else _fmt(v) for v in row] for row in values]
        suffix = "" if i == 0 else str(i + 1)
        data.append(go.Heatmap(z=z, text=text, texttemplate="%{text}", zmin=0, zmax=1, showscale=False, xgap=2,
                               ygap=2, colorscale=[[0, PLAIN], [1, g.color]], hoverinfo="skip",
                               xaxis=f"x{suffix}", yaxis=f"y{suffix}"))  # fmt: skip
        left = i * (width + gap)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "showticklabels": False, "showgrid": False,
                                    "zeroline": False, "anchor": f"y{suffix}"}  # fmt: skip
        layout[f"yaxis{suffix}"] = {"autorange": "reversed", "showticklabels": False, "showgrid": False,
                                    "zeroline": False, "anchor": f"x{suffix}"}  # fmt: skip
        layout["annotations"].append({"text": g.label, "x": left + width / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "yanchor": "bottom", "showarrow": False})  # fmt: skip
        tallest = max(tallest, values.shape[0])
    return finish(go.Figure(data=data, layout=layout), title, height=min(700, 140 + 34 * tallest))


def tensor_grids(facts: Sequence[TensorFacts], highlight: Callable[[TensorFacts], np.ndarray | None],
                 color: str = PICKED) -> list[Grid]:  # fmt: skip
    """Return a Grid per tensor, labelled with its name and shape."""
    return [Grid(f"{f.name} {tuple(f.shape)}", f.values, highlight(f), color) for f in facts]


# ----------------------------------------------------------------------------------------------
# Shapes and the memory-layout inspector


def facts_table(facts: Sequence[TensorFacts], tr: Text, changed: Callable[[TensorFacts], int] | None = None) -> pd.DataFrame:
    """Return one row per tensor: code, size, stride, offset, contiguity, storage it uses."""
    rows = []
    for f in facts:
        row = {
            tr("name"): f.name,
            tr("code"): f.expr,
            tr("size"): str(f.shape),
            tr("stride"): str(f.stride),
            tr("offset"): f.offset,
            tr("data_ptr"): f"+{f.ptr_offset} B",
            tr("contiguous"): "✓" if f.contiguous else "✗",
            tr("storage"): f"#{f.storage_id}",
            tr("shares_x"): "✓" if f.storage_id == 0 else "✗",
        }
        if changed is not None:
            row[tr("changed")] = changed(f)
        rows.append(row)
    return pd.DataFrame(rows)


@same_inputs
def storage_figure(r: LayoutResult, tr: Text) -> go.Figure:
    """Draw each storage as a strip of cells and, under it, which cells each tensor reaches.

    A tensor's row shows, in the cells it reaches, how many of its elements map there (more than
    one for expand); cells whose value the edit changed are orange.
    """
    rows_z: list[list[float]] = []
    rows_text: list[list[str]] = []
    labels: list[str] = []
    width = max(s.size for s in r.storages_after)
    for sid, (before, after) in enumerate(zip(r.storages_before, r.storages_after, strict=True)):
        changed = before != after
        labels.append(f"{tr('storage')} #{sid}")
        rows_z.append([2.0 if c else 1.0 for c in changed] + [np.nan] * (width - after.size))
        rows_text.append([_fmt(v) for v in after] + [""] * (width - after.size))
        for f in r.after:
            if f.storage_id != sid:
                continue
            hits = np.bincount(f.storage_index.ravel(), minlength=after.size)[: after.size]
            labels.append(f"  {f.name}")
            rows_z.append([(2.0 if changed[i] else 1.0) if hits[i] else 0.0 for i in range(after.size)]
                          + [np.nan] * (width - after.size))  # fmt: skip
            rows_text.append([("×" + str(h) if h > 1 else "●") if h else "" for h in hits] + [""] * (width - after.size))
    fig = go.Figure(
        go.Heatmap(
            z=rows_z, text=rows_text, texttemplate="%{text}", zmin=0, zmax=2, showscale=False, xgap=2, ygap=2,
            colorscale=[[0, PLAIN], [0.5, PICKED], [1, CHANGED]], y=labels, x=list(range(width)),
            hovertemplate=tr("cell") + " %{x}<extra>%{y}</extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title=tr("cell"), dtick=1)
    return finish(fig, tr("storage_title"), height=120 + 32 * len(labels))


# ----------------------------------------------------------------------------------------------
# Broadcasting and indexing


def broadcast_table(r: BroadcastResult, tr: Text) -> pd.DataFrame:
    """Return the right-aligned shapes, a row of per-dimension verdicts and the result."""
    dims = [f"{tr('dim')} {i - len(r.status)}" for i in range(len(r.status))]

    def cells(shape: Sequence[int | None]) -> list[str]:
        return ["·" if s is None else str(s) for s in shape]

    result = cells(r.result_shape) if r.result_shape is not None else ["✗" if s == "mismatch" else "" for s in r.status]
    return pd.DataFrame(
        [cells(r.aligned_a), cells(r.aligned_b), [tr(s) for s in r.status], result],
        index=["a", "b", tr("rule"), "a + b"],
        columns=dims,
    )


def index_grids(r: IndexResult, tr: Text) -> list[Grid]:
    """Return the grids of an indexing experiment: x with read cells, the index or mask, the output."""
    grids = [Grid("x", r.x, r.picked)]
    if r.index is not None:
        grids.append(Grid(tr("index"), r.index.astype(np.float64)))
    if r.out is not None:
        grids.append(Grid(tr("output") + f" {tuple(r.out.shape)}", r.out))
    return grids


# ----------------------------------------------------------------------------------------------
# NumPy and dtype


@same_inputs
def numpy_figure(r: NumpyResult, tr: Text) -> go.Figure:
    """Bar chart of the median conversion time of each way, with the interquartile range."""
    ways = list(r.times_us)
    fig = go.Figure(
        go.Bar(x=ways, y=[r.times_us[w] for w in ways], error_y={"type": "data", "array": [r.spreads_us[w] for w in ways]},
               marker_color=[STORAGE_COLORS[0] if w != "tensor" else "#e45756" for w in ways])
    )  # fmt: skip
    fig.update_yaxes(title=tr("time_us"), type="log")
    fig.update_xaxes(title=tr("way"))
    return finish(fig, tr("numpy_title"))


def dtype_table(r: DtypeResult, src: str, dst: str, tr: Text) -> pd.DataFrame:
    """Return the sample values as given, after conversion to src, and after src -> dst."""
    return pd.DataFrame(
        {
            tr("original"): [_fmt(v) if abs(v) >= 1e-4 or v == 0 else f"{v:g}" for v in r.original],
            src: [repr(float(v)) for v in r.in_src],
            dst: [repr(float(v)) for v in r.in_dst],
            tr("exact"): ["✓" if a == b else "✗" for a, b in zip(r.original, r.in_dst, strict=True)],
        }
    )


def shape_grids(r: ShapeResult) -> list[Grid]:
    """Return x and each output as grids."""
    return tensor_grids([r.input, *r.outputs], lambda f: None)


def inplace_table(r: InplaceResult, tr: Text) -> pd.DataFrame:
    """Return x before, x after, the second name x0 after, and the statement's result, as rows."""
    rows = {tr("x_before"): r.x_before, tr("x_after"): r.x_after, tr("alias_after"): r.alias_after}
    if r.result is not None:
        rows[tr("result")] = r.result
    return pd.DataFrame({k: [_fmt(v) for v in values] for k, values in rows.items()}).T


# ----------------------------------------------------------------------------------------------
# Weight initialization


@same_inputs
def dist_figure(r: DistResult, tr: Text) -> go.Figure:
    """Histogram of the initialized weights against the theoretical density (line) or point masses (diamonds)."""
    fig = go.Figure()
    if r.counts.size:
        fig.add_bar(x=r.bin_x, y=r.counts, width=r.bin_width * 0.95, name=tr("observed"), marker_color=STORAGE_COLORS[0])
        fig.add_scatter(x=r.bin_x, y=r.expected, mode="lines", name=tr("expected"), line={"color": "#e45756", "width": 3})
    if r.point_x.size:
        fig.add_bar(x=r.point_x, y=r.point_counts, name=tr("observed_points"), marker_color=STORAGE_COLORS[2],
                    width=max(r.bin_width, 1e-3) * 2 if r.counts.size else None)  # fmt: skip
        fig.add_scatter(x=r.point_x, y=r.point_expected, mode="markers", name=tr("expected_points"),
                        marker={"size": 12, "symbol": "diamond", "color": "#e45756"})  # fmt: skip
    for bound in (r.theory_lo, r.theory_hi):
        if bound is not None:
            fig.add_vline(x=bound, line={"dash": "dash", "color": "#222222"})
    fig.update_xaxes(title=tr("weight_value"))
    fig.update_yaxes(title=tr("count"))
    return finish(fig, tr("dist_title"))


def dist_table(r: DistResult, tr: Text) -> pd.DataFrame:
    """Return measured against theoretical mean, std and bounds."""
    def bound(v: float | None) -> str:
        return "—" if v is None else f"{v:.4g}"

    return pd.DataFrame(
        {tr("measured"): [f"{r.mean:.4g}", f"{r.std:.4g}", f"{r.min:.4g}", f"{r.max:.4g}"],
         tr("theory"): [f"{r.theory_mean:.4g}", f"{r.theory_std:.4g}", bound(r.theory_lo), bound(r.theory_hi)]},
        index=[tr("mean"), tr("std"), "min", "max"],
    )  # fmt: skip


def gains_table(r: FansResult, tr: Text) -> pd.DataFrame:
    """Return calculate_gain for every nonlinearity with its formula."""
    return pd.DataFrame({
        tr("nonlinearity"): list(r.nonlinearities),
        tr("formula"): list(r.gain_formulas),
        "calculate_gain": [f"{g:.5g}" for g in r.gains],
    })  # fmt: skip


@same_inputs
def signal_figure(r: SignalResult, tr: Text, quantity: str) -> go.Figure:
    """Per-layer std (log scale) of activations ('act') or weight gradients ('grad') for both configurations.

    Solid: measured; dashed: the mean-field prediction where theory gives one.
    """
    fig = go.Figure()
    for run, color in zip(r.runs, (STORAGE_COLORS[0], "#e45756"), strict=True):
        name = f"{run.activation} + {run.scheme}"
        measured = run.act_std if quantity == "act" else run.grad_std
        fig.add_scatter(x=r.layers, y=np.where(measured > 0, measured, np.nan), mode="lines+markers", name=name,
                        line={"color": color, "width": 3}, marker={"size": 5})  # fmt: skip
        theory = None if run.theory is None else (run.theory.act_std if quantity == "act" else run.theory.grad_std)
        if theory is not None:
            fig.add_scatter(x=r.layers, y=theory, mode="lines", name=f"{name} ({tr('theory')})",
                            line={"color": color, "dash": "dash"})  # fmt: skip
    fig.update_yaxes(type="log", title=tr(f"{quantity}_std"), exponentformat="power")
    fig.update_xaxes(title=tr("layer"))
    return finish(fig, tr(f"{quantity}_title"), height=380)


@same_inputs
def signal_hist_figure(r: SignalResult, tr: Text) -> go.Figure:
    """Activation histograms at a few layers, one heat strip per layer, both configurations side by side."""
    data = []
    for i, run in enumerate(r.runs):
        axis = "" if i == 0 else "2"
        z = np.log10(1 + run.hist_counts)
        data.append(go.Heatmap(x=run.bin_x, y=[f"{tr('layer')} {n}" for n in r.hist_layers], z=z, showscale=False,
                               colorscale="Blues", xaxis=f"x{axis}", yaxis=f"y{axis}",
                               hovertemplate="%{y}, %{x:.3g}: 10^%{z:.2f}<extra></extra>"))  # fmt: skip
    layout = {
        "xaxis": {"domain": [0, 0.47], "title": f"{r.runs[0].activation} + {r.runs[0].scheme}"},
        "xaxis2": {"domain": [0.53, 1], "title": f"{r.runs[1].activation} + {r.runs[1].scheme}"},
        "yaxis": {"type": "category"}, "yaxis2": {"type": "category", "anchor": "x2", "showticklabels": False},
    }  # fmt: skip
    return finish(go.Figure(data=data, layout=layout), tr("hist_title"), height=320)


@same_inputs
def train_figure(results: Sequence[TrainResult], tr: Text) -> go.Figure:
    """Training loss per step for each initialization (log scale), accuracy in the legend."""
    fig = go.Figure()
    colors = (*STORAGE_COLORS, "#333333")
    for i, r in enumerate(results):
        for j, scheme in enumerate(r.schemes):
            label = f"{scheme} — {tr('accuracy')} {r.accuracy[j]:.0%}" + (f" ({tr('diverged')})" if r.diverged[j] else "")
            fig.add_scatter(x=r.steps, y=r.loss[j], mode="lines", name=label,
                            line={"color": colors[(i + j) % len(colors)], "width": 2})  # fmt: skip
    fig.update_yaxes(type="log", title=tr("loss"))
    fig.update_xaxes(title=tr("step"))
    return finish(fig, tr("train_title"), height=380)
