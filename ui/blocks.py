"""Experiment blocks: the fragment in which a lesson page draws one experiment, from its widgets to its questions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core.experiment import Experiment, Prediction
from core.params import Params
from ui.run import code_panel, predict, run_experiment

P = TypeVar("P", bound=Params)


def experiment_block(
    experiment: Experiment[P, Any], *predictions: Prediction[Any, Any], columns: int = 3
) -> Callable[[Callable[[P, Any], None]], Callable[[], None]]:
    """Make `draw(p, r)` an experiment block: an st.fragment that runs the experiment and draws its result.

    The block draws the experiment's widgets in `columns` columns and runs it (run_experiment), calls
    `draw` with the params and the result (the list of results of a sweep) when the run succeeded,
    then shows the runnable script (code_panel) and asks the `predictions` in order. Moving one of
    its widgets reruns this block only.
    """

    def decorate(draw: Callable[[P, Any], None]) -> Callable[[], None]:
        @functools.wraps(draw)  # the fragment is named after `draw`, as a hand-written block would be
        def block() -> None:
            p, r = run_experiment(experiment, columns)
            if p is not None and r is not None:
                draw(p, r)
            code_panel(experiment, p)
            for prediction in predictions:
                predict(prediction)

        return st.fragment(block)

    return decorate
