"""The tensors lesson's pure builders: result in, plotly Figure or pandas DataFrame out.

Every builder takes `tr`, a function from a text key to the words to show, so the same figure
is drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.charts import STORAGE_COLORS, Figure, Text, finish, trace
from core.lessons.tensors.broadcast import BroadcastResult
from core.lessons.tensors.common import TensorFacts
from core.lessons.tensors.create import CreateResult
from core.lessons.tensors.dtype import DtypeResult
from core.lessons.tensors.index import IndexResult
from core.lessons.tensors.inplace import InplaceResult
from core.lessons.tensors.layout import LayoutResult
from core.lessons.tensors.loop import LoopResult
from core.lessons.tensors.numpy_sharing import NumpyResult
from core.lessons.tensors.reduce import ReduceResult
from core.lessons.tensors.shape import ShapeResult
from core.memo import same_inputs

PLAIN, PICKED, CHANGED = "#e8eef7", "#8fb5e8", "#f29e4c"  # a cell, a cell read, a cell the edit changed


def cell_text(v: float) -> str:
    """Return a value as a cell shows it: T/F for booleans, whole numbers as integers, else 3 significant digits."""
    if isinstance(v, bool | np.bool_):
        return "T" if v else "F"
    if float(v).is_integer() and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.3g}"


# ----------------------------------------------------------------------------------------------
# Creation


@same_inputs
def creation_figure(r: CreateResult, tr: Text) -> Figure:
    """Histogram of the values against the expected counts, or the values by index when not random."""
    fig = Figure()
    if r.counts.size:
        fig.add_bar(x=r.bin_x, y=r.counts, width=r.bin_width * 0.95, name=tr("observed"), marker_color=STORAGE_COLORS[0])
        mode = "markers" if r.discrete else "lines"
        fig.add_scatter(
            x=r.bin_x,
            y=r.expected,
            mode=mode,
            name=tr("expected"),
            line={"color": "#e45756", "width": 3},
            marker={"size": 10, "symbol": "diamond"},
        )
        fig.update_xaxes(title=tr("value"))
        fig.update_yaxes(title=tr("count"))
        return finish(fig, tr("hist_title"))
    shown = np.where(np.isfinite(r.values), r.values, np.nan)
    fig.add_scatter(
        x=np.arange(shown.size),
        y=shown,
        mode="markers+lines" if shown.size <= 200 else "lines",
        name=tr("value"),
        marker_color=STORAGE_COLORS[0],
    )
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
def grids_figure(grids: Sequence[Grid], title: str) -> Figure:
    """Draw tensors side by side as grids of cells with their values written in.

    Each panel has its own x/y axis pair, laid out side by side with its own width.
    """
    n, gap = len(grids), 0.04
    width = (1 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []  # traces (core.charts.trace)
    layout: dict[str, Any] = {"annotations": []}
    tallest = 1
    for i, g in enumerate(grids):
        values = as_panel(g.values)
        mark = np.zeros_like(values) if g.highlight is None else as_panel(g.highlight.astype(np.float64))
        z = np.where(np.isnan(values), np.nan, mark)
        text = [["" if np.isnan(v) else cell_text(v) for v in row] for row in values]
        suffix = "" if i == 0 else str(i + 1)
        data.append(
            trace(
                "heatmap",
                z=z,
                text=text,
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                showscale=False,
                xgap=2,
                ygap=2,
                colorscale=[[0, PLAIN], [1, g.color]],
                hoverinfo="skip",
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
            )
        )
        left = i * (width + gap)
        layout[f"xaxis{suffix}"] = {
            "domain": [left, left + width],
            "showticklabels": False,
            "showgrid": False,
            "zeroline": False,
            "anchor": f"y{suffix}",
        }
        layout[f"yaxis{suffix}"] = {
            "autorange": "reversed",
            "showticklabels": False,
            "showgrid": False,
            "zeroline": False,
            "anchor": f"x{suffix}",
        }
        layout["annotations"].append(
            {
                "text": g.label,
                "x": left + width / 2,
                "y": 1.0,
                "xref": "paper",
                "yref": "paper",
                "yanchor": "bottom",
                "showarrow": False,
            }
        )
        tallest = max(tallest, values.shape[0])
    return finish(Figure(data=data, layout=layout), title, height=min(700, 140 + 34 * tallest))


def tensor_grids(
    facts: Sequence[TensorFacts], highlight: Callable[[TensorFacts], np.ndarray | None], color: str = PICKED
) -> list[Grid]:
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


@same_inputs  # the same list for the same result, so that grids_figure finds its figure again
def shape_grids(r: ShapeResult) -> list[Grid]:
    """Return x and each output as grids."""
    return tensor_grids([r.input, *r.outputs], lambda f: None)


@same_inputs  # the same list for the same result, so that grids_figure finds its figure again
def layout_grids(r: LayoutResult) -> list[Grid]:
    """Return every tensor after the edit as a grid, the elements the edit changed in orange."""
    return tensor_grids(r.after, lambda f: r.changed(f.name), CHANGED)


@same_inputs
def layout_table(r: LayoutResult, tr: Text) -> pd.DataFrame:
    """Return the facts table of every tensor after the edit, with how many of its elements changed."""
    return facts_table(r.after, tr, changed=lambda f: int(r.changed(f.name).sum()))


@same_inputs
def storage_figure(r: LayoutResult, tr: Text) -> Figure:
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
        pad = width - after.size
        labels.append(f"{tr('storage')} #{sid}")
        rows_z.append([2.0 if c else 1.0 for c in changed] + [np.nan] * pad)
        rows_text.append([cell_text(v) for v in after] + [""] * pad)
        for f in r.after:
            if f.storage_id != sid:
                continue
            hits = np.bincount(f.storage_index.ravel(), minlength=after.size)[: after.size]
            labels.append(f"  {f.name}")
            rows_z.append([(2.0 if changed[i] else 1.0) if hits[i] else 0.0 for i in range(after.size)] + [np.nan] * pad)
            rows_text.append([("×" + str(h) if h > 1 else "●") if h else "" for h in hits] + [""] * pad)
    fig = Figure(
        trace(
            "heatmap",
            z=rows_z,
            text=rows_text,
            texttemplate="%{text}",
            zmin=0,
            zmax=2,
            showscale=False,
            xgap=2,
            ygap=2,
            colorscale=[[0, PLAIN], [0.5, PICKED], [1, CHANGED]],
            y=labels,
            x=list(range(width)),
            hovertemplate=tr("cell") + " %{x}<extra>%{y}</extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title=tr("cell"), dtick=1)
    return finish(fig, tr("storage_title"), height=120 + 32 * len(labels))


# ----------------------------------------------------------------------------------------------
# Broadcasting and indexing


@same_inputs
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


def broadcast_grids(r: BroadcastResult, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> list[Grid]:
    """Return a, b and a + b as grids (none when the result is too large to draw or the sum failed)."""
    if r.a is None or r.b is None or r.total is None:
        return []
    return [Grid(f"a {shape_a}", r.a), Grid(f"b {shape_b}", r.b), Grid(f"a + b {r.result_shape}", r.total)]


@same_inputs  # the same list for the same result, so that grids_figure finds its figure again
def index_grids(r: IndexResult, tr: Text) -> list[Grid]:
    """Return the grids of an indexing experiment: x with read cells, the index or mask, the output."""
    grids = [Grid("x", r.x, r.picked)]
    if r.index is not None:
        grids.append(Grid(tr("index"), r.index.astype(np.float64)))
    if r.out is not None:
        grids.append(Grid(tr("output") + f" {tuple(r.out.shape)}", r.out))
    return grids


# ----------------------------------------------------------------------------------------------
# Reductions, clamp, and a loop against the vectorised op


def reduce_grids(r: ReduceResult, expr: str, back: str) -> list[Grid]:
    """Return x (the maxima or the clamped cells marked), r, and r taken back against x with keepdim=True."""
    grids = [Grid(f"x {tuple(r.x.shape)}", r.x, r.picked, CHANGED if r.op == "clamp" else PICKED)]
    grids.append(Grid(f"{expr.removeprefix('r = ')} {tuple(r.out.shape)}", r.out))
    if r.back_keep is not None:
        grids.append(Grid(f"{back} (keepdim=True) {tuple(r.back_keep.shape)}", r.back_keep))
    return grids


@same_inputs
def reduce_table(r: ReduceResult, back: str, tr: Text) -> pd.DataFrame:
    """Return r's shape and what `back` gives, with keepdim=False and with keepdim=True."""

    def outcome(values: np.ndarray | None, error: str | None, right: bool) -> str:
        if error is not None:
            return tr("fails")
        assert values is not None
        return f"{tuple(values.shape)} — " + (tr("right") if right else tr("wrong_pairs"))

    return pd.DataFrame(
        {
            "keepdim": ["False", "True"],
            tr("r_shape"): [str(r.shape_drop), str(r.shape_keep)],
            back: [outcome(r.back_drop, r.back_drop_error, r.back_drop_right), outcome(r.back_keep, None, True)],
        }
    )


@same_inputs
def loop_figure(r: LoopResult, tr: Text) -> Figure:
    """Time per call of each way (log scale), with the interquartile range of the timed blocks as error bars."""
    names = [tr(w) for w in r.ways]
    fig = Figure(
        trace(
            "bar",
            x=names,
            y=r.median_us,
            error_y={"type": "data", "symmetric": False, "array": r.q75_us - r.median_us, "arrayminus": r.median_us - r.q25_us},
            marker_color=[STORAGE_COLORS[i] for i in range(len(r.ways))],
            text=[f"{v:,.0f} µs" if v >= 100 else f"{v:.3g} µs" for v in r.median_us],
            textposition="outside",
        )
    )
    fig.update_yaxes(type="log", title=tr("time_us"))
    fig.update_xaxes(title=tr("way"))
    return finish(fig, tr("loop_title").format(n=f"{r.n:,}", threads=r.threads))


# ----------------------------------------------------------------------------------------------
# In-place, NumPy and dtype


@same_inputs
def inplace_table(r: InplaceResult, tr: Text) -> pd.DataFrame:
    """Return x before, x after, the second name x0 after, and the statement's result, as rows."""
    rows = {tr("x_before"): r.x_before, tr("x_after"): r.x_after, tr("alias_after"): r.alias_after}
    if r.result is not None:
        rows[tr("result")] = r.result
    return pd.DataFrame({k: [cell_text(v) for v in values] for k, values in rows.items()}).T


@same_inputs
def numpy_figure(r: NumpyResult, tr: Text) -> Figure:
    """Bar chart of the median conversion time of each way, with the interquartile range."""
    ways = list(r.times_us)
    fig = Figure(
        trace(
            "bar",
            x=ways,
            y=[r.times_us[w] for w in ways],
            error_y={"type": "data", "array": [r.spreads_us[w] for w in ways]},
            marker_color=[STORAGE_COLORS[0] if w != "tensor" else "#e45756" for w in ways],
        )
    )
    fig.update_yaxes(title=tr("time_us"), type="log")
    fig.update_xaxes(title=tr("way"))
    return finish(fig, tr("numpy_title"))


@same_inputs
def dtype_table(r: DtypeResult, src: str, dst: str, tr: Text) -> pd.DataFrame:
    """Return the sample values as given, after conversion to src, and after src -> dst."""
    return pd.DataFrame(
        {
            tr("original"): [cell_text(v) if abs(v) >= 1e-4 or v == 0 else f"{v:g}" for v in r.original],
            src: [repr(float(v)) for v in r.in_src],
            dst: [repr(float(v)) for v in r.in_dst],
            tr("exact"): ["✓" if a == b else "✗" for a, b in zip(r.original, r.in_dst, strict=True)],
        }
    )
