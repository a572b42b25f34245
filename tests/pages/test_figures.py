"""ui.figures: st.plotly_chart gets the same JSON from a kept specification as from the figure, once per figure object."""

from __future__ import annotations

import gc

import plotly.graph_objects as go
import plotly.io as pio
import plotly.tools

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
    assert key in figures._KEPT
    del fig
    gc.collect()
    assert key not in figures._KEPT
    other = go.Figure(go.Bar(x=[1], y=[2]))
    assert sent(figures.specified(other)) == sent(other)
