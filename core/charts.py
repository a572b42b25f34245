"""The shared chart base: `Figure` and `subplots`, the `Text` translator type, `finish`, the palette, formatters.

Each lesson's pure builders live in `core/lessons/<slug>/charts.py`: experiment result in, a
`Figure` (plotly.js's specification, built as dicts) or pandas DataFrame out. Every builder takes
`tr`, a function from a text key to the words to show, so the same figure is drawn in any language
without the builder knowing about languages.
"""

from __future__ import annotations

import base64
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.colors
import plotly.io as pio

Text = Callable[[str], str]


class Figure:
    """A plotly figure kept as the plain dicts plotly.js reads, built with the plotly calls our charts use.

    plotly's own Figure turns every trace, layout update and line into validated objects and copies
    them again to write the specification out. That was most of what a new result's charts cost the
    server (bench/figures.py), paid while the page script holds the GIL every student's page shares.
    Here a trace is a dict and an update merges dicts, with plotly's conventions: `marker_color=`
    means {"marker": {"color": ...}}, a title given as text is {"text": ...}. `to_dict()` writes the
    specification as plotly would: numpy arrays as plotly.js typed arrays, the default template
    (Streamlit's theme) in the layout. The charts are written by us, not by students, and the tests
    check every figure a page draws against plotly's validation (ui/figures.py, CHECK_SPECS).
    """

    def __init__(self, data: Any = None, layout: dict[str, Any] | None = None, frames: Any = None) -> None:
        traces = [] if data is None else [data] if isinstance(data, dict) else list(data)
        self.data: list[dict[str, Any]] = [_props(t) for t in traces]
        self.layout: dict[str, Any] = {}
        self.frames: list[dict[str, Any]] = list(frames or [])
        self._cells: dict[tuple[int, int], str] = {}  # a subplot grid (subplots()): (row, col) -> axis suffix
        if layout:
            self.update_layout(layout)

    def add_trace(self, trace: dict[str, Any], row: int | None = None, col: int | None = None) -> Figure:
        """Add a trace (a dict with its "type"), in the subplot at (row, col) when the figure has a grid."""
        props = _props(trace)
        if row is not None or col is not None:
            suffix = self._cell(row, col)
            props["xaxis"], props["yaxis"] = f"x{suffix}", f"y{suffix}"
        self.data.append(props)
        return self

    def add_scatter(self, **props: Any) -> Figure:
        return self._add("scatter", props)

    def add_bar(self, **props: Any) -> Figure:
        return self._add("bar", props)

    def add_heatmap(self, **props: Any) -> Figure:
        return self._add("heatmap", props)

    def add_contour(self, **props: Any) -> Figure:
        return self._add("contour", props)

    def _add(self, kind: str, props: dict[str, Any]) -> Figure:
        row, col = props.pop("row", None), props.pop("col", None)
        return self.add_trace(trace(kind, **props), row=row, col=col)

    def update_layout(self, layout: dict[str, Any] | None = None, **props: Any) -> Figure:
        """Merge into the layout: nested dicts are updated key by key, anything else is replaced."""
        _merge(self.layout, _props({**(layout or {}), **props}))
        return self

    def update_xaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> Figure:
        """Update every x axis (the first always exists), or only the one of the subplot at (row, col)."""
        return self._update_axes("x", row, col, props)

    def update_yaxes(self, row: int | None = None, col: int | None = None, **props: Any) -> Figure:
        """Update every y axis (the first always exists), or only the one of the subplot at (row, col)."""
        return self._update_axes("y", row, col, props)

    def _update_axes(self, letter: str, row: int | None, col: int | None, props: dict[str, Any]) -> Figure:
        if row is not None or col is not None:
            names = [f"{letter}axis{self._cell(row, col)}"]
        else:
            names = sorted({f"{letter}axis", *(k for k in self.layout if re.fullmatch(f"{letter}axis[0-9]*", k))})
        for name in names:
            _merge(self.layout.setdefault(name, {}), _props(props))
        return self

    def add_hline(self, y: Any, **props: Any) -> Figure:
        """Draw a horizontal line across the plot at y, labelled by `annotation_text` (plotly's add_hline)."""
        return self._add_line("h", y, props)

    def add_vline(self, x: Any, **props: Any) -> Figure:
        """Draw a vertical line across the plot at x, labelled by `annotation_text` (plotly's add_vline)."""
        return self._add_line("v", x, props)

    def _add_line(self, direction: str, at: Any, props: dict[str, Any]) -> Figure:
        label = {k.removeprefix("annotation_"): props.pop(k) for k in list(props) if k.startswith("annotation_")}
        text, position = label.pop("text", None), label.pop("position", "top right")
        if direction == "h":
            ref = props.pop("yref", "y")
            shape = {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": ref, "y0": at, "y1": at}
            where = {
                "xref": "x domain",
                "x": 0 if "left" in position else 1,
                "xanchor": "left" if "left" in position else "right",
                "yref": ref,
                "y": at,
                "yanchor": "top" if "bottom" in position else "bottom",
            }
        else:
            ref = props.pop("xref", "x")
            shape = {"type": "line", "xref": ref, "x0": at, "x1": at, "yref": "y domain", "y0": 0, "y1": 1}
            where = {
                "xref": ref,
                "x": at,
                "xanchor": "right" if "left" in position else "left",
                "yref": "y domain",
                "y": 0 if "bottom" in position else 1,
                "yanchor": "bottom" if "bottom" in position else "top",
            }
        self.add_shape(**shape, **props)
        if text is not None:
            self.layout.setdefault("annotations", []).append(_props({"text": text, "showarrow": False, **where, **label}))
        return self

    def add_shape(self, **props: Any) -> Figure:
        """Add a layout shape (a rectangle, a line...)."""
        self.layout.setdefault("shapes", []).append(_props(props))
        return self

    def _cell(self, row: int | None, col: int | None) -> str:
        try:
            return self._cells[(row or 1, col or 1)]
        except KeyError:
            raise ValueError(f"no subplot at row {row}, col {col}: make the figure with subplots()") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the specification plotly would write: the figure's dicts copied, arrays as typed arrays, the template."""
        spec: dict[str, Any] = {"data": _written(self.data), "layout": _written(self.layout)}
        if self.frames:
            spec["frames"] = _written(self.frames)
        name = pio.templates.default
        if name and "template" not in spec["layout"]:
            spec["layout"]["template"] = _template(name)
        return spec


def subplots(
    rows: int,
    cols: int,
    *,
    shared_xaxes: bool = False,
    vertical_spacing: float | None = None,
    horizontal_spacing: float | None = None,
    subplot_titles: Sequence[str] = (),
) -> Figure:
    """Return an empty Figure with a rows x cols grid of axes, laid out as plotly's make_subplots lays it out.

    Subplots are numbered row by row from the top left: (1, 1) draws on x/y, the next on x2/y2...
    `shared_xaxes` makes each column's upper x axes follow the bottom one, without tick labels;
    `subplot_titles` go above the subplots in the same order.
    """
    h_space = 0.2 / cols if horizontal_spacing is None else horizontal_spacing
    v_space = 0.3 / rows if vertical_spacing is None else vertical_spacing
    width, height = (1 - h_space * (cols - 1)) / cols, (1 - v_space * (rows - 1)) / rows
    fig = Figure()

    def axis_suffix(row: int, col: int) -> str:
        n = (row - 1) * cols + col
        return "" if n == 1 else str(n)

    for row, col in itertools.product(range(1, rows + 1), range(1, cols + 1)):
        n = (row - 1) * cols + col
        suffix = fig._cells[(row, col)] = axis_suffix(row, col)
        x0, y0 = (col - 1) * (width + h_space), (rows - row) * (height + v_space)
        fig.layout[f"xaxis{suffix}"] = {"anchor": f"y{suffix}", "domain": [x0, x0 + width]}
        fig.layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "domain": [y0, y0 + height]}
        if shared_xaxes and row < rows:
            fig.layout[f"xaxis{suffix}"] |= {"matches": f"x{axis_suffix(rows, col)}", "showticklabels": False}
        if n <= len(subplot_titles):
            title = {"text": subplot_titles[n - 1], "font": {"size": 16}, "showarrow": False}
            x = {"xref": "paper", "x": x0 + width / 2, "xanchor": "center"}
            y = {"yref": "paper", "y": y0 + height, "yanchor": "bottom"}
            fig.layout.setdefault("annotations", []).append(title | x | y)
    return fig


# plotly's property names that hold an underscore themselves; in any other keyword an underscore
# walks into a nested property, as in plotly (`line_dash="dot"` is {"line": {"dash": "dot"}}).
UNDERSCORED = frozenset({"error_x", "error_y", "plot_bgcolor", "paper_bgcolor"})


def _props(props: dict[str, Any]) -> dict[str, Any]:
    """Return props as plotly.js reads them: underscores walked into nested dicts, titles given as text made {"text": ...}."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        path = [key] if key in UNDERSCORED or "_" not in key else key.split("_")
        nested = value
        for part in reversed(path[1:]):
            nested = {part: nested}
        _merge(out, {path[0]: nested})
    return out


def _merge(target: dict[str, Any], updates: dict[str, Any]) -> None:
    for key, value in updates.items():
        if key == "title" and isinstance(value, str):
            value = {"text": value}
        if isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _merge(target[key], value)
        else:
            target[key] = value


# How plotly writes a numpy array for plotly.js (a typed array: its dtype's short name and its bytes
# in base64), as _plotly_utils.utils.to_typed_array_spec does, without its generic array handling,
# which cost more than the rest of a figure. Values under these keys stay as they are, as in plotly.
TYPED_ARRAYS = {
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "float32": "f4",
    "float64": "f8",
}
NOT_TYPED = frozenset({"geojson", "layer", "layers", "range"})
NARROWER = {"int64": (np.int8, np.int16, np.int32), "uint64": (np.uint8, np.uint16, np.uint32)}


def _written(node: Any, typed: bool = True) -> Any:
    """Return node with every dict and list copied and (when `typed`) every numpy array written as a typed array."""
    if isinstance(node, dict):
        return {k: _written(v, typed and k not in NOT_TYPED) for k, v in node.items()}
    if isinstance(node, list):
        return [_written(v, typed) for v in node]
    if typed and isinstance(node, np.ndarray):
        return _typed_array(node)
    return node


def _typed_array(a: np.ndarray) -> Any:
    """Return a as plotly.js's typed array {"dtype", "bdata"[, "shape"]}; an array it cannot hold stays (written as a list)."""
    if a.size == 0:
        return a
    if str(a.dtype) in NARROWER:  # plotly.js has no 64-bit integers: the narrowest type that holds every value
        low, high = a.min(), a.max()
        fits = [t for t in NARROWER[str(a.dtype)] if np.iinfo(t).min <= low and high <= np.iinfo(t).max]
        if not fits:
            return a
        a = a.astype(fits[0])
    code = TYPED_ARRAYS.get(str(a.dtype))
    if code is None:
        return a
    spec = {"dtype": code, "bdata": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = str(a.shape)[1:-1]
    return spec


@functools.cache
def _template(name: str) -> dict[str, Any]:
    """Return a named plotly template as the dict plotly puts in a figure's layout (built once, shared by every spec)."""
    template: dict[str, Any] = pio.templates[name].to_plotly_json()
    return template


def trace(kind: str, **props: Any) -> dict[str, Any]:
    """Return a trace as the plain dict plotly reads (`kind` is its type: "scatter", "heatmap", ...)."""
    return {"type": kind, **props}


# plotly's "Blues" (ColorBrewer) written out: plotly.js has its own, different scale by that name, and
# Figure sends names unexpanded.
BLUES = [[i / (len(plotly.colors.sequential.Blues) - 1), c] for i, c in enumerate(plotly.colors.sequential.Blues)]

STORAGE_COLORS = ("#4c78a8", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d", "#bab0ac")


MB = 1e6  # memory figures are shown in MB (10^6 bytes)


def sci(v: float) -> str:
    """Return v in short scientific notation ('0' for an exact zero, '—' for nan)."""
    if v != v:
        return "—"
    return "0" if v == 0 else f"{v:.1e}"


def memory_time_figure(
    labels: Sequence[str],
    memory_mb: Sequence[float],
    time_ms: Sequence[float],
    time_err: tuple[Sequence[float], Sequence[float]],
    names: tuple[str, str, str],
    title: str,
) -> Figure:
    """Bars of memory (left axis, MB) and time per step with its spread (right axis, ms) per setting on x.

    `time_err` is (below, above) the time, in ms; `names` is (x axis, memory axis, time axis).
    """
    xtitle, memory_name, time_name = names
    fig = Figure()
    fig.add_bar(x=list(labels), y=list(memory_mb), name=memory_name, marker_color="#4c78a8", opacity=0.8)
    fig.add_scatter(
        x=list(labels),
        y=list(time_ms),
        yaxis="y2",
        mode="lines+markers",
        name=time_name,
        line={"color": "#e45756", "width": 3},
        marker={"size": 9},
        error_y={"type": "data", "symmetric": False, "array": list(time_err[1]), "arrayminus": list(time_err[0])},
    )
    fig.update_layout(
        xaxis={"title": xtitle, "type": "category"},
        yaxis={"title": memory_name, "rangemode": "tozero"},
        yaxis2={"title": time_name, "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )
    return finish(fig, title, height=420)


def finish(fig: Figure, title: str, height: int = 360) -> Figure:
    # No template: st.plotly_chart applies the app theme, and a named template costs ~20 ms to copy.
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 60, "b": 40})
    return fig
