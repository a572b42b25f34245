"""Lesson 2, Automatic differentiation: torch's own graph, backward step by step, and autograd's mechanics.

The graph builder (graph) serves two tabs: "graph" draws the graph, "backward" steps through it.
"""

from __future__ import annotations

from typing import Any

from core.experiment import Experiment, Prediction
from core.lessons.autograd.accumulate import ACCUMULATE, THREE_CALLS
from core.lessons.autograd.custom import CUSTOM
from core.lessons.autograd.detach import DETACH, EXP_DETACH, WHICH_RAISES
from core.lessons.autograd.graph import GRAPH, W_GRAD
from core.lessons.autograd.higher import HIGHER
from core.lessons.autograd.hooks import HOOKS
from core.lessons.autograd.nograd import NOGRAD
from core.lessons.autograd.pitfalls import GRAD_PITFALL, ONE_ELEMENT
from core.lessons.autograd.retain import RETAIN

TABS = ("graph", "backward", "accumulate", "retain", "detach", "nograd", "hooks", "custom", "pitfalls")
EXPERIMENTS: tuple[Experiment[Any, Any], ...] = (
    GRAPH,
    ACCUMULATE,
    RETAIN,
    DETACH,
    NOGRAD,
    HOOKS,
    HIGHER,
    CUSTOM,
    GRAD_PITFALL,
)
PREDICTIONS: tuple[Prediction[Any, Any], ...] = (W_GRAD, THREE_CALLS, WHICH_RAISES, EXP_DETACH, ONE_ELEMENT)
