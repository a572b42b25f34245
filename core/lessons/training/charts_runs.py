"""The training lesson's builders for runs compared side by side: schedules, freezing, reproducibility.

A Result in, a plotly Figure or pandas DataFrame out; `tr` gives the words in the page's language.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.charts import Figure, Text, finish, sci, subplots, trace
from core.lessons.training.charts import PITFALL, RIGHT  # the lesson's two colours: the right way, the pitfall
from core.lessons.training.freeze import FreezeResult
from core.lessons.training.repro import ReproResult
from core.lessons.training.sched import ALL_LAYERS, SchedResult
from core.memo import same_inputs


def group_label(name: str, tr: Text) -> str:
    """Return how a parameter group is named on the page: its layers (fc1, fc2: code), or "all" in the page's words."""
    return tr("all_layers") if name == ALL_LAYERS else name


@same_inputs
def sched_figure(r: SchedResult, tr: Text) -> Figure:
    """Top: each group's learning rate per epoch as the optimizer held it; bottom: the loss with the schedule and without."""
    fig = subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    epochs = np.arange(1, r.lr.shape[1] + 1)
    for k, name in enumerate(r.group_names):
        fig.add_scatter(
            x=epochs,
            y=r.lr[k],
            mode="lines+markers",
            name=f"lr ({group_label(name, tr)})",
            row=1,
            col=1,
            line={"color": ("#b279a2", "#54a24b")[k], "shape": "hv"},
            marker={"size": 4},
        )
    all_epochs = np.arange(len(r.loss))
    fig.add_scatter(x=all_epochs, y=r.loss, mode="lines", name=tr("scheduled"), row=2, col=1, line={"color": RIGHT, "width": 3})
    fig.add_scatter(
        x=all_epochs, y=r.baseline, mode="lines", name=tr("constant"), row=2, col=1, line={"color": "#888888", "dash": "dash"}
    )
    fig.update_yaxes(title_text=tr("lr"), row=1, col=1)
    fig.update_yaxes(title_text=tr("loss"), type="log", exponentformat="power", row=2, col=1)
    fig.update_xaxes(title_text=tr("epoch"), row=2, col=1)
    return finish(fig, tr("sched_title"), height=560)


def sched_groups(r: SchedResult, tr: Text) -> pd.DataFrame:
    """Return each parameter group as the optimizer holds it before training: its layers, lr, momentum."""
    return pd.DataFrame(
        {
            tr("group"): list(range(len(r.group_names))),
            tr("layers"): [group_label(name, tr) for name in r.group_names],
            "lr": [f"{v:g}" for v in r.group_lr],
            "momentum": [f"{v:g}" for v in r.group_momentum],
        }
    )


@same_inputs
def freeze_table(r: FreezeResult, tr: Text) -> pd.DataFrame:
    """Return per parameter and BatchNorm buffer: frozen?, requires_grad, its .grad, norms before and after, the change."""

    def grad(k: int) -> str:
        if r.is_buffer[k]:
            return tr("buffer")
        return "None" if r.grad_none[k] else f"{r.grad_norm[k]:.4g}"

    return pd.DataFrame(
        {
            tr("tensor"): list(r.names),
            tr("frozen"): [tr("yes") if f else "" for f in r.frozen],
            "requires_grad": ["—" if b else str(bool(v)) for v, b in zip(r.requires_grad, r.is_buffer, strict=True)],
            tr("grad"): [grad(k) for k in range(len(r.names))],
            tr("norm_before"): [f"{v:.6g}" for v in r.norm_before],
            tr("norm_after"): [f"{v:.6g}" for v in r.norm_after],
            tr("max_change"): [sci(v) for v in r.max_change],
        }
    )


@same_inputs
def freeze_figure(r: FreezeResult, tr: Text) -> Figure:
    """The largest change of every tensor since freezing (bars; frozen layers in red); an exact zero shows as no bar."""
    colors = [PITFALL if f else RIGHT for f in r.frozen]
    fig = Figure(trace("bar", x=list(r.names), y=r.max_change, marker_color=colors, text=[sci(v) for v in r.max_change]))
    fig.update_yaxes(title=tr("max_change"))
    fig.update_xaxes(title=tr("tensor"))
    return finish(fig, tr("freeze_title"), height=340)


@same_inputs
def repro_figure(r: ReproResult, tr: Text) -> Figure:
    """The band of losses over other seeds, and runs A and B from one seed (B dashed on top of A)."""
    steps = np.arange(1, r.loss_a.size + 1)
    fig = Figure()
    fig.add_scatter(x=steps, y=r.band.max(axis=0), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(
        x=steps,
        y=r.band.min(axis=0),
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor="rgba(76,120,168,0.2)",
        name=tr("band").format(n=len(r.seeds)),
    )
    fig.add_scatter(x=steps, y=r.loss_a, mode="lines", name=tr("run_a"), line={"color": RIGHT, "width": 4})
    fig.add_scatter(x=steps, y=r.loss_b, mode="lines", name=tr("run_b"), line={"color": PITFALL, "width": 2, "dash": "dash"})
    fig.update_yaxes(type="log", title=tr("loss"), exponentformat="power")
    fig.update_xaxes(title=tr("step"))
    return finish(fig, tr("repro_title"), height=360)
