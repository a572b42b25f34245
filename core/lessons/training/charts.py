"""The training lesson's builders for paths: regression lines and boundaries, loss surfaces, optimizer races.

A Result in, a plotly Figure or pandas DataFrame out (runs compared side by side: charts_runs.py).

Every builder takes `tr`, a function from a text key to the words to show, so the same figure is
drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.charts import BLUES, STORAGE_COLORS, Figure, Text, finish, trace
from core.lessons.training.linreg import TRUE_B, TRUE_W, LinregResult
from core.lessons.training.logreg import TARGET, LogregResult
from core.lessons.training.optim import OptimResult
from core.memo import same_inputs

RIGHT, PITFALL = STORAGE_COLORS[0], "#e45756"
FRAMES = 40  # an animated path shows at most this many frames


def frame_steps(count: int) -> list[int]:
    """Return the path lengths (at most FRAMES, ending with all `count` points) the animation shows."""
    return sorted({int(k) for k in np.linspace(1, count, min(FRAMES, count))})


def play_controls(tr: Text, steps: Sequence[int]) -> dict[str, Any]:
    """Return the layout entries of a play/pause button and a step slider over the figure's frames."""
    play = {
        "label": "▶",
        "method": "animate",
        "args": [None, {"frame": {"duration": 120, "redraw": False}, "fromcurrent": True}],
    }
    pause = {"label": "❚❚", "method": "animate", "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}]}
    slider_steps = [
        {
            "label": str(k - 1),
            "method": "animate",
            "args": [[str(k)], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}],
        }
        for k in steps
    ]
    return {
        "updatemenus": [
            {"type": "buttons", "buttons": [play, pause], "x": 0, "y": -0.12, "xanchor": "left", "direction": "right"}
        ],
        "sliders": [
            {
                "steps": slider_steps,
                "active": len(slider_steps) - 1,
                "x": 0.12,
                "len": 0.88,
                "y": -0.05,
                "currentvalue": {"prefix": tr("iteration") + " "},
            }
        ],
    }


@same_inputs
def linreg_fit(r: LinregResult, step: int, tr: Text) -> Figure:
    """The 20 points, the line at iteration `step` for both updates, the true line and the least-squares line."""
    fig = Figure()
    fig.add_scatter(x=r.x, y=r.y, mode="markers", name=tr("points"), marker={"color": "#555555", "size": 8})
    xs = np.array([0.0, 10.0])
    lines = (
        (tr("true_line"), TRUE_W, TRUE_B, {"color": "#54a24b", "dash": "dash"}),
        (tr("least_squares"), r.best_w, r.best_b, {"color": "#b279a2", "dash": "dot"}),
        (tr("right_step"), r.w[min(step, r.iters)], r.b[min(step, r.iters)], {"color": RIGHT, "width": 4}),
    )
    k = min(step, len(r.pitfall_w) - 1)
    for name, w, b, line in (*lines, (tr("pitfall_step"), r.pitfall_w[k], r.pitfall_b[k], {"color": PITFALL, "width": 3})):
        if np.isfinite(w) and np.isfinite(b):
            fig.add_scatter(x=xs, y=w * xs + b, mode="lines", name=f"{name}: y = {w:.3g}x + {b:.3g}", line=line)
    fig.update_xaxes(title=tr("x"), range=[0, 10])
    fig.update_yaxes(title=tr("y"), range=[min(0.0, float(r.y.min()) - 2), float(r.y.max()) + 4])
    return finish(fig, tr("fit_title").format(step=min(step, r.iters)), height=380)


@same_inputs
def linreg_loss(r: LinregResult, threshold: float, tr: Text) -> Figure:
    """The loss per iteration of both updates (log scale) and the stopping threshold."""
    fig = Figure()
    fig.add_scatter(x=np.arange(len(r.loss)), y=r.loss, mode="lines", name=tr("right_step"), line={"color": RIGHT, "width": 3})
    fig.add_scatter(
        x=np.arange(len(r.pitfall_loss)), y=r.pitfall_loss, mode="lines", name=tr("pitfall_step"), line={"color": PITFALL}
    )
    fig.add_hline(y=threshold, line={"dash": "dash", "color": "#222222"}, annotation_text=tr("threshold"))
    fig.update_yaxes(type="log", title=tr("loss"), exponentformat="power")
    fig.update_xaxes(title=tr("iteration"))
    return finish(fig, tr("loss_title"), height=340)


def _path_frames(paths: Sequence[tuple[np.ndarray, np.ndarray]], steps: Sequence[int], first: int) -> list[dict[str, Any]]:
    """Return one frame per path length: traces first, first + 1, ... show each path's first k points."""
    return [
        {
            "name": str(k),
            "data": [trace("scatter", x=x[:k], y=y[:k]) for x, y in paths],
            "traces": list(range(first, first + len(paths))),
        }
        for k in steps
    ]


@same_inputs
def linreg_surface(r: LinregResult, tr: Text) -> Figure:
    """Contours of the loss over (w, b) with the path of both updates, animated by a play button and step slider."""
    fig = Figure()
    fig.add_contour(
        x=r.grid_w,
        y=r.grid_b,
        z=np.log10(r.surface),
        colorscale=BLUES,
        ncontours=25,
        colorbar={"title": "log₁₀ " + tr("loss")},
        name=tr("loss"),
        hovertemplate="w %{x:.3g}, b %{y:.3g}: 10^%{z:.2f}<extra></extra>",
    )
    paths = [(r.w, r.b), (r.pitfall_w, r.pitfall_b)]
    for (w, b), name, color in zip(paths, (tr("right_step"), tr("pitfall_step")), (RIGHT, PITFALL), strict=True):
        fig.add_scatter(x=w, y=b, mode="lines+markers", name=name, line={"color": color, "width": 2}, marker={"size": 4})
    fig.add_scatter(
        x=[TRUE_W], y=[TRUE_B], mode="markers", name=tr("true_line"), marker={"symbol": "star", "size": 14, "color": "#54a24b"}
    )
    fig.add_scatter(
        x=[r.best_w],
        y=[r.best_b],
        mode="markers",
        name=tr("least_squares"),
        marker={"symbol": "x", "size": 11, "color": "#b279a2"},
    )
    steps = frame_steps(max(len(r.w), len(r.pitfall_w)))
    fig.frames = _path_frames(paths, steps, first=1)
    fig.update_layout(**play_controls(tr, steps))
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    fig.update_xaxes(title="w", range=[r.grid_w[0], r.grid_w[-1]])
    fig.update_yaxes(title="b", range=[r.grid_b[0], r.grid_b[-1]])
    return finish(fig, tr("surface_title"), height=480)


@same_inputs
def logreg_boundary(r: LogregResult, step: int, tr: Text) -> Figure:
    """The two clusters and the decision boundary w·x + b = 0 at step `step`."""
    fig = Figure()
    for label, color in ((0.0, RIGHT), (1.0, PITFALL)):
        points = r.X[r.y == label]
        fig.add_scatter(
            x=points[:, 0], y=points[:, 1], mode="markers", name=tr(f"class_{int(label)}"), marker={"color": color, "size": 6}
        )
    k = min(step, r.steps)
    (w0, w1), b = r.weight[k], r.bias[k]
    lo, hi = float(r.X[:, 0].min()) - 1, float(r.X[:, 0].max()) + 1
    if abs(w1) > 1e-12:
        xs = np.array([lo, hi])
        fig.add_scatter(x=xs, y=(-w0 * xs - b) / w1, mode="lines", name=tr("boundary"), line={"color": "#222222", "width": 3})
    fig.update_xaxes(title="x₁", range=[lo, hi])
    fig.update_yaxes(title="x₂", range=[float(r.X[:, 1].min()) - 1, float(r.X[:, 1].max()) + 1])
    title = tr("boundary_title").format(step=k, accuracy=f"{r.accuracy[k]:.1%}")
    return finish(fig, title, height=420)


@same_inputs
def logreg_curves(r: LogregResult, tr: Text) -> Figure:
    """Loss (left axis) and accuracy (right axis) per step; a marker where the accuracy first reached the target."""
    steps = np.arange(len(r.loss))
    fig = Figure()
    fig.add_scatter(x=steps, y=r.loss, mode="lines", name=tr("loss"), line={"color": RIGHT, "width": 3})
    fig.add_scatter(x=steps, y=r.accuracy, mode="lines", name=tr("accuracy"), yaxis="y2", line={"color": PITFALL, "width": 2})
    if r.reached >= 0:
        fig.add_vline(
            x=r.reached, line={"dash": "dash", "color": "#222222"}, annotation_text=tr("reached").format(step=r.reached)
        )
    fig.update_layout(
        xaxis={"title": tr("step")},
        yaxis={"title": tr("loss"), "rangemode": "tozero"},
        yaxis2={"title": tr("accuracy"), "overlaying": "y", "side": "right", "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.25},
    )
    fig.add_hline(y=TARGET, yref="y2", line={"dash": "dot", "color": PITFALL})
    return finish(fig, tr("curves_title"), height=360)


@same_inputs
def optim_paths(tr: Text, *results: OptimResult) -> Figure:
    """Contours of the surface and every optimizer's path from the start, animated by a play button and step slider."""
    first = results[0]
    z = first.surface
    shown_z = np.log10(z - np.nanmin(z) + 1e-3)  # log of the height above the lowest point: valleys and plateaus both show
    fig = Figure()
    fig.add_contour(
        x=first.grid_x,
        y=first.grid_y,
        z=shown_z,
        colorscale=[[0.0, "#ffffff"], [1.0, "#8a8a8a"]],
        ncontours=30,
        showscale=False,
        hoverinfo="skip",
    )
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    colors = (*STORAGE_COLORS, "#333333")
    for r in results:
        for k, name in enumerate(r.optimizers):
            x, y = r.path[k, :, 0], r.path[k, :, 1]
            paths.append((x, y))
            label = f"{name} (lr {r.lr[k]:g})" + (f" — {tr('diverged')}" if r.diverged[k] else "")
            color = colors[(len(paths) - 1) % len(colors)]
            fig.add_scatter(x=x, y=y, mode="lines+markers", name=label, line={"color": color, "width": 3}, marker={"size": 4})
    start = first.path[0, 0]
    fig.add_scatter(
        x=[start[0]],
        y=[start[1]],
        mode="markers",
        name=tr("start"),
        marker={"symbol": "circle-open", "size": 14, "color": "#222222"},
    )
    steps = frame_steps(first.path.shape[1])
    fig.frames = _path_frames(paths, steps, first=1)
    fig.update_layout(**play_controls(tr, steps))
    fig.update_xaxes(title="x", range=[first.grid_x[0], first.grid_x[-1]])
    fig.update_yaxes(title="y", range=[first.grid_y[0], first.grid_y[-1]])
    return finish(fig, tr("paths_title"), height=520)


@same_inputs
def optim_loss(tr: Text, *results: OptimResult) -> Figure:
    """The surface's height at each optimizer's point per step (log scale when every height is positive)."""
    fig = Figure()
    colors = (*STORAGE_COLORS, "#333333")
    heights = []
    for r in results:
        for k, name in enumerate(r.optimizers):
            heights.append(r.loss[k])
            fig.add_scatter(
                y=r.loss[k], mode="lines", name=name, line={"color": colors[(len(heights) - 1) % len(colors)], "width": 2}
            )
    finite = np.concatenate(heights)[np.isfinite(np.concatenate(heights))]
    fig.update_yaxes(type="log" if finite.size and finite.min() > 0 else "linear", title=tr("height"), exponentformat="power")
    fig.update_xaxes(title=tr("step"))
    return finish(fig, tr("loss_title"), height=340)


def optim_table(tr: Text, *results: OptimResult) -> pd.DataFrame:
    """Return per optimizer: the rate it ran with, its final point and height."""
    rows = []
    for r in results:
        for k, name in enumerate(r.optimizers):
            x, y = r.path[k, -1]
            rows.append(
                {
                    tr("optimizer"): name,
                    "lr": f"{r.lr[k]:g}",
                    tr("final_point"): "—" if r.diverged[k] else f"({x:.4g}, {y:.4g})",
                    tr("final_height"): tr("diverged") if r.diverged[k] else f"{r.loss[k, -1]:.4g}",
                }
            )
    return pd.DataFrame(rows)


@same_inputs
def optim_sweep(tr: Text, *results: OptimResult) -> Figure:
    """The sweep: mean height over the last tenth of the steps against the rate, per optimizer; the best marked."""
    fig = Figure()
    colors = (*STORAGE_COLORS, "#333333")
    for i, r in enumerate(results):
        for k, name in enumerate(r.optimizers):
            color = colors[i % len(colors)]
            fig.add_scatter(x=r.sweep_lrs, y=r.sweep_score[k], mode="lines+markers", name=name, line={"color": color})
            best = int(np.argmin(np.abs(r.sweep_lrs - r.lr[k])))
            fig.add_scatter(
                x=[r.lr[k]],
                y=[r.sweep_score[k, best]],
                mode="markers",
                showlegend=False,
                marker={"symbol": "star", "size": 14, "color": color},
            )
    fig.update_xaxes(type="log", title=tr("lr"), exponentformat="power")
    fig.update_yaxes(title=tr("score"))
    return finish(fig, tr("sweep_title"), height=340)
