"""Charts and tables as Streamlit reads them, converted once per object and kept beside it.

st.plotly_chart calls `to_dict()` on every figure it is given, on every rerun: a copy that also
encodes each array (3–4 ms for an init signal chart when charts were plotly objects, about a sixth
of a cached rerun of that page; 0.3 ms as core.charts builds them now). st.dataframe converts a
pandas DataFrame to an Arrow table on every rerun in the same way (pandas→Arrow was 6% of the
server's time under 50 students). Chart and table builders hand back
the very same object while their inputs are the same (core.memo), so the converted form is kept
beside the object, for as long as it lives, and handed over as it is. Figures and tables are
shared by every student and never changed once built; Streamlit only serialises what it is given.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
from plotly.basedatatypes import BaseFigure
from streamlit import dataframe_util

from core.charts import Figure

# core.charts.Figure builds a chart as plain dicts, without plotly's validation; the tests turn this on
# (tests/conftest.py) so that every figure a page draws is checked against plotly's schema once.
CHECK_SPECS = False

T = TypeVar("T")


class _Specified(BaseFigure):  # type: ignore[misc]
    """A figure reduced to its specification: only `to_dict()`, which is what st.plotly_chart reads."""

    def __init__(self, spec: dict[str, Any]) -> None:  # BaseFigure's own set-up is not needed to hand a dict over
        self._spec = spec

    def to_dict(self) -> dict[str, Any]:
        return self._spec


# Figures and DataFrames are unhashable: kept by (converter, id), and a weak reference tells whether
# that id is still the same object.
_KEPT: dict[tuple[Callable[[Any], Any], int], tuple[weakref.ref[Any], Any]] = {}
_LOCK = threading.RLock()  # a weak reference's callback may run inside a locked section (garbage collection)


def specified(fig: Figure | BaseFigure) -> BaseFigure:
    """Return what to give st.plotly_chart for `fig`: the same drawing, its specification built once per figure."""
    return _once(_specify, fig)


def arrow_table(df: pd.DataFrame) -> pa.Table:
    """Return what to give st.dataframe for `df`: the Arrow table Streamlit would convert it to, once per DataFrame."""
    return _once(dataframe_util.convert_pandas_df_to_arrow_table, df)


def _specify(fig: Figure | BaseFigure) -> _Specified:
    spec = fig.to_dict()
    if CHECK_SPECS:
        check_spec(spec)
    return _Specified(spec)


def _once(convert: Callable[[Any], T], obj: Any) -> T:
    """Return convert(obj), computed once per living object."""
    key = (convert, id(obj))
    with _LOCK:
        found = _KEPT.get(key)
    if found is not None and found[0]() is obj:
        kept: T = found[1]
        return kept
    made = convert(obj)
    with _LOCK:
        _KEPT[key] = (weakref.ref(obj, lambda dead: _forget(key, dead)), made)
    return made


def check_spec(spec: dict[str, Any]) -> None:
    """Raise ValueError unless plotly's validation accepts spec and would send it unchanged.

    plotly.js reads only the full forms (`title: {text: ...}`), so a shorthand that validation would
    have expanded (`title="..."`) is an error here, not just an unknown property.
    """
    checked = go.Figure(spec)  # raises ValueError naming a property plotly does not know
    sent, expected = json.loads(pio.to_json(spec, validate=False)), json.loads(pio.to_json(checked, validate=False))
    for form in (sent, expected):  # the default template (Streamlit's theme placeholders) is plotly's to add
        form.get("layout", {}).pop("template", None)
    where = _first_difference(sent, expected)
    if where is not None:
        raise ValueError(f"figure spec differs from plotly's validated form at {where}")


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Return the first path where two JSON values differ, with both values there (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path or '/'}: keys {sorted(a.keys() - b.keys())} sent only, {sorted(b.keys() - a.keys())} validated only"
        found = (_first_difference(a[k], b[k], f"{path}/{k}") for k in a)
        return next((f for f in found if f is not None), None)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        found = (_first_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)))
        return next((f for f in found if f is not None), None)
    return None if a == b else f"{path or '/'}: {str(a)[:200]} != {str(b)[:200]}"


def _forget(key: tuple[Callable[[Any], Any], int], dead: weakref.ref[Any]) -> None:
    with _LOCK:
        if key in _KEPT and _KEPT[key][0] is dead:
            del _KEPT[key]
