"""The shared chart base: the `Text` translator type, `finish`, the palette, number formatters, one shared figure.

Each lesson's pure builders live in `core/lessons/<slug>/charts.py`: experiment result in, plotly
Figure or pandas DataFrame out. Every builder takes `tr`, a function from a text key to the words
to show, so the same figure is drawn in any language without the builder knowing about languages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.colors
import plotly.graph_objects as go

Text = Callable[[str], str]


class Figure(go.Figure):  # type: ignore[misc]
    """A plotly Figure built without plotly's per-property validation.

    Validating every property as it is set was most of what a new result's charts cost the server
    (bench/figures.py: an init signal chart 9.6 ms to build with it), and that cost is paid while
    the page script holds the GIL that every student's page shares. The charts are written by us,
    not by students, and the tests check every drawn figure against plotly's schema once
    (ui/figures.py, CHECK_SPECS). Traces are added as plain dicts for the same reason.
    """

    def __init__(self, data: Any = None, layout: Any = None, frames: Any = None, **kwargs: Any) -> None:
        super().__init__(data, layout, frames, _validate=False, **kwargs)

    def add_scatter(self, **props: Any) -> Figure:
        return self._add("scatter", props)

    def add_bar(self, **props: Any) -> Figure:
        return self._add("bar", props)

    def add_heatmap(self, **props: Any) -> Figure:
        return self._add("heatmap", props)

    def add_contour(self, **props: Any) -> Figure:
        return self._add("contour", props)

    def _add(self, kind: str, props: dict[str, Any]) -> Figure:
        place = {k: props.pop(k) for k in ("row", "col", "secondary_y") if k in props}
        self.add_trace(trace(kind, **props), **place)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the specification, with every `title="..."` written out as plotly.js reads it: {"text": "..."}.

        That shorthand (axes, colour bars, the figure's own title) is the one thing plotly's validation
        would have expanded that our builders use. The empty annotation list a line without a label
        leaves (add_hline, add_vline) is dropped, as validation drops it.
        """
        spec: dict[str, Any] = super().to_dict()
        _expand_titles(spec)
        layout = spec.get("layout", {})
        if "annotations" in layout and not layout["annotations"]:
            del layout["annotations"]
        return spec


def _expand_titles(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                node[key] = {"text": value}
            else:
                _expand_titles(value)
    elif isinstance(node, list):
        for item in node:
            _expand_titles(item)


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
) -> go.Figure:
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


def finish(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    # No template: st.plotly_chart applies the app theme, and a named template costs ~20 ms to copy.
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 60, "b": 40})
    return fig
