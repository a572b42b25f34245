"""Plotly figures as st.plotly_chart reads them, turned into their plain specification once per figure object.

st.plotly_chart calls `to_dict()` on every figure it is given, on every rerun: a deep copy that
also encodes each array (3–4 ms for an init signal chart, about a sixth of a cached rerun of that
page). Chart builders hand back the very same figure object while their inputs are the same
(core.memo), so the specification can be kept beside the figure and handed over as it is. Figures
are shared by every student and never changed once built; the specification is not changed by
st.plotly_chart either (it only serialises it).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from plotly.basedatatypes import BaseFigure


class _Specified(BaseFigure):  # type: ignore[misc]
    """A figure reduced to its specification: only `to_dict()`, which is what st.plotly_chart reads."""

    def __init__(self, spec: dict[str, Any]) -> None:  # BaseFigure's own set-up is not needed to hand a dict over
        self._spec = spec

    def to_dict(self) -> dict[str, Any]:
        return self._spec


# Figures are unhashable: kept by id, and a weak reference tells whether that id is still the same figure.
_KEPT: dict[int, tuple[weakref.ref[BaseFigure], _Specified]] = {}
_LOCK = threading.RLock()  # a weak reference's callback may run inside a locked section (garbage collection)


def specified(fig: BaseFigure) -> BaseFigure:
    """Return what to give st.plotly_chart for `fig`: the same drawing, its specification built once per figure."""
    key = id(fig)
    with _LOCK:
        ref, kept = _KEPT.get(key, (None, None))
    if ref is not None and kept is not None and ref() is fig:
        return kept
    kept = _Specified(fig.to_dict())
    with _LOCK:
        _KEPT[key] = (weakref.ref(fig, lambda dead: _forget(key, dead)), kept)
    return kept


def _forget(key: int, dead: weakref.ref[BaseFigure]) -> None:
    with _LOCK:
        if key in _KEPT and _KEPT[key][0] is dead:
            del _KEPT[key]
