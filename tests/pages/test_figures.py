"""ui.figures: st.plotly_chart gets the same JSON from a kept specification as from the figure, once per figure object."""

from __future__ import annotations

import gc
import json

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import plotly.tools
import pytest
from streamlit import dataframe_util

from core.charts import Figure, finish
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
    assert sent(kept) == sent(fig)
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
