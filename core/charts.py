"""The shared chart base: the `Text` translator type, `finish`, the palette, number formatters, one shared figure.

Each lesson's pure builders live in `core/lessons/<slug>/charts.py`: experiment result in, plotly
Figure or pandas DataFrame out. Every builder takes `tr`, a function from a text key to the words
to show, so the same figure is drawn in any language without the builder knowing about languages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

Text = Callable[[str], str]

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
    fig = go.Figure()
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
