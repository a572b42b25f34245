"""ui.figures: st.plotly_chart gets the same JSON from a kept specification as from the figure, once per figure object."""

from __future__ import annotations

import gc
import itertools
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import plotly.tools
import pytest
from plotly.subplots import make_subplots
from streamlit import dataframe_util

from core.charts import Figure, finish, subplots
from core.lessons.init import charts as init_charts
from core.lessons.init import signal
from tests.params_strategies import run_cpu
from ui import figures


def sent(fig: object) -> str:
    """Return the specification st.plotly_chart puts on the wire for fig (its own two calls)."""
    return str(pio.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False))


def test_a_lesson_chart_sends_the_same_json_through_its_kept_specification() -> None:
    r = run_cpu(signal.run, signal.SignalParams(depth=6, width=32, batch=16, seeds=2))
    fig = init_charts.signal_figure(r, lambda key: key, "act")
    kept = figures.specified(fig)
    assert json.loads(sent(kept)) == json.loads(sent(go.Figure(fig.to_dict()))), "what plotly's validated figure sends"
    assert figures.specified(fig) is kept, "built once per figure object"


def test_the_specification_goes_with_its_figure_and_an_id_reused_never_finds_it() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    figures.specified(fig)
    key = id(fig)
    assert (figures._specify, key) in figures._KEPT
    del fig
    gc.collect()
    assert (figures._specify, key) not in figures._KEPT
    other = go.Figure(go.Bar(x=[1], y=[2]))
    assert sent(figures.specified(other)) == sent(other)


def test_a_figure_built_without_validation_sends_what_validation_would_have_sent() -> None:
    fig = Figure()
    fig.add_scatter(x=[1, 2, 3], y=[3, 1, 2], name="line")
    fig.add_heatmap(z=[[0, 1], [1, 0]], colorbar={"title": "value"}, xaxis="x2", yaxis="y2")
    fig.add_vline(x=2, line={"dash": "dash"})  # no label: leaves an empty annotation list behind
    fig.update_layout(xaxis={"title": "x"}, xaxis2={"domain": [0.6, 1]}, yaxis2={"anchor": "x2"})
    finish(fig, "title")
    figures.check_spec(fig.to_dict())
    assert json.loads(sent(figures.specified(fig))) == json.loads(sent(go.Figure(fig.to_dict())))


def rounded(node: object) -> object:
    """Return a JSON value with its floats rounded to 9 places (domains computed in another order)."""
    if isinstance(node, dict):
        return {k: rounded(v) for k, v in node.items()}
    if isinstance(node, list):
        return [rounded(v) for v in node]
    return round(node, 9) if isinstance(node, float) else node


def test_lines_subplots_and_magic_underscores_come_out_as_plotlys_own_calls_make_them() -> None:
    ours, theirs = Figure(), go.Figure()
    for fig in (ours, theirs):
        fig.add_bar(x=["a", "b"], y=[1, 2], marker_color="#4c78a8")
        fig.add_hline(y=1.5, line_dash="dot", line_color="#222222", annotation_text="mean")
        fig.add_hline(y=0.5, yref="y2", line={"dash": "dash"}, annotation_text="eps", annotation_position="bottom right")
        fig.add_vline(x=1, line_dash="dash", annotation_text="crossover", annotation_position="top left")
        fig.add_vline(x=0, line={"color": "#888888"})
        fig.update_xaxes(title_text="x", type="category")
        fig.update_layout(legend={"orientation": "h"}, yaxis2={"overlaying": "y", "side": "right"})
        finish(fig, "lines")
    assert json.loads(sent(figures.specified(ours))) == json.loads(sent(theirs))

    grids: list[dict[str, Any]] = [
        {"rows": 2, "cols": 1, "shared_xaxes": True, "vertical_spacing": 0.08},
        {"rows": 1, "cols": 3, "subplot_titles": ["a", "b", "c"], "horizontal_spacing": 0.04},
    ]
    for grid in grids:
        ours, theirs = subplots(**grid), make_subplots(**grid)
        for fig in (ours, theirs):
            for row, col in itertools.product(range(1, grid["rows"] + 1), range(1, grid["cols"] + 1)):
                fig.add_scatter(x=[row], y=[col], row=row, col=col)
                fig.update_yaxes(title_text=f"{row}{col}", row=row, col=col)
            fig.update_xaxes(dtick=1)
        assert rounded(json.loads(sent(figures.specified(ours)))) == rounded(json.loads(sent(theirs))), grid
    with pytest.raises(ValueError, match="no subplot"):
        Figure().add_scatter(x=[1], y=[1], row=1, col=2)


def test_the_check_refuses_a_shorthand_plotly_js_would_not_read() -> None:
    spec = {"data": [{"type": "scatter", "x": [1], "y": [1]}], "layout": {"title": "shorthand"}}
    with pytest.raises(ValueError, match="/layout/title"):
        figures.check_spec(spec)
    with pytest.raises(ValueError):  # a property plotly does not know
        figures.check_spec({"data": [{"type": "scatter", "colour": "red"}], "layout": {}})


def test_a_table_is_converted_to_arrow_once_and_sends_the_bytes_streamlit_would_send() -> None:
    for df in (pd.DataFrame({"layer": [1, 2], "std": [0.5, 0.25]}), pd.DataFrame({"n": [3]}, index=["relu"])):
        table = figures.arrow_table(df)
        assert figures.arrow_table(df) is table, "converted once per DataFrame object"
        assert dataframe_util.convert_arrow_table_to_arrow_bytes(table) == dataframe_util.convert_pandas_df_to_arrow_bytes(df)
