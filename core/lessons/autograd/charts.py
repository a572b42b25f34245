"""The autograd lesson's pure builders: torch's graph as Graphviz DOT, and the mechanics' figures and tables.

Every builder takes `tr`, a function from a text key to the words to show, so the same figure is
drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.charts import STORAGE_COLORS, Figure, Text, finish, trace
from core.lessons.autograd.accumulate import AccumulateResult
from core.lessons.autograd.custom import CustomResult
from core.lessons.autograd.detach import DetachResult
from core.lessons.autograd.graph import GraphResult
from core.lessons.autograd.higher import HigherResult
from core.lessons.autograd.hooks import HooksResult
from core.lessons.autograd.nograd import NogradResult
from core.memo import same_inputs

# ----------------------------------------------------------------------------------------------
# Autograd graphs (Graphviz DOT, drawn in the browser by st.graphviz_chart)


def _dot_text(text: str) -> str:
    """Return text escaped for a quoted DOT string (backslashes and double quotes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def autograd_dot(r: GraphResult, tr: Text, step: int | None = None, ids: str = "n") -> str:
    """Return DOT text of torch's autograd graph: leaves at the top, the output at the bottom.

    Each node shows its grad_fn, source text, value, shape and (after backward) its .grad.
    With `step`, only the first `step` nodes of backward's visiting order are done: the current
    one is orange, and every edge a done node has sent a gradient along carries that gradient.
    `ids` prefixes the node names (the browser matches nodes of successive drawings by name).
    """
    done = set(r.order[:step]) if step is not None else set(r.order)
    current = r.order[step - 1] if step else None
    # Fewer crossing-minimisation passes and straight edges: a 200-node graph lays out in the browser
    # in well under the time of the default settings, and small graphs look the same.
    lines = [
        "digraph autograd {",
        "  rankdir=TB; bgcolor=transparent; mclimit=0.3; nslimit=2; splines=line;",
        '  node [fontname="Helvetica", fontsize=11, style=filled, fillcolor="#e8eef7", color="#4c78a8"];',
        '  edge [fontname="Helvetica", fontsize=10, color="#888888"];',
    ]
    for n in r.nodes:
        parts = [n.op, n.label] if n.label and not n.is_leaf else [f"{n.label}  ({tr('leaf')})", n.op]
        if n.value:
            parts.append(f"{tr('value')} {n.value} · {tr('shape')} {n.shape}")
        parts.append(f"is_leaf={n.is_leaf} · requires_grad={n.requires_grad}")
        if n.grad is not None and (step is None or n.id in done):
            parts.append(f".grad {n.grad}")
        fill = "#f29e4c" if n.id == current else ("#d4e6c3" if n.is_leaf else "#e8eef7")
        shape = "box" if n.is_leaf else "ellipse"
        width = 3 if n.id in done and step is not None else 1
        label = "\\n".join(_dot_text(part) for part in parts)  # DOT's own line-break escape
        lines.append(f'  {ids}{n.id} [label="{label}", shape={shape}, fillcolor="{fill}", penwidth={width}];')
    for e in r.edges:
        flowing = e.src in done and e.grad is not None and step is not None
        attrs = f'label="{_dot_text(e.grad or "")}", color="#e45756", fontcolor="#e45756", penwidth=2' if flowing else ""
        lines.append(f"  {ids}{e.dst} -> {ids}{e.src} [{attrs}];")
    lines.append("}")
    return "\n".join(lines)


@same_inputs
def grads_table(r: GraphResult, tr: Text) -> pd.DataFrame:
    """Return one row per named tensor with its .grad (None shown as a dash)."""
    return pd.DataFrame({tr("tensor"): [name for name, _ in r.grads], ".grad": [g or "None" for _, g in r.grads]})


# ----------------------------------------------------------------------------------------------
# Autograd mechanics


def _short(v: float) -> str:
    """Return v as an integer when it is one, else to 3 significant digits."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e9 else f"{v:.3g}"


@same_inputs
def accumulate_figure(r: AccumulateResult, tr: Text) -> Figure:
    """x.grad and w.grad after each backward call (markers) against what theory predicts (dashed)."""
    fig = Figure()
    for name, measured, expected, color in (
        ("x", r.x_grad, r.x_grad_expected, STORAGE_COLORS[0]),
        ("w", r.w_grad, r.w_grad_expected, STORAGE_COLORS[1]),
    ):
        fig.add_scatter(x=r.calls, y=measured, mode="markers", marker={"size": 11, "color": color}, name=f"{name}.grad")
        fig.add_scatter(
            x=r.calls, y=expected, mode="lines", line={"dash": "dash", "color": color}, name=f"{name}.grad {tr('theory')}"
        )
    fig.update_xaxes(title=tr("calls"), dtick=1)
    fig.update_yaxes(title=".grad")
    return finish(fig, tr("accumulate_title"))


# The heading of the true-gradient column, per op (charts strings of "detach").
TRUE_GRAD_LABEL = {"sigmoid": "true_grad", "pow": "true_grad_pow", "sin": "true_grad_sin", "exp": "true_grad_exp"}


@same_inputs
def detach_table(r: DetachResult, tr: Text) -> pd.DataFrame:
    """Return, for .data and detach(), a.grad (or the error) next to the true gradient and the version counters."""
    rows = []
    for way in (r.data, r.detach):
        if way.torch_error:
            outcome = tr("raised")
        elif way.grad is not None and np.allclose(way.grad, r.true_grad):
            outcome = tr("right")
        else:
            outcome = tr("silently_wrong")
        rows.append(
            {
                tr("way"): ".data" if way.way == "data" else ".detach()",
                "a.grad": "—" if way.grad is None else ", ".join(_short(v) for v in way.grad),
                tr(TRUE_GRAD_LABEL[r.op]): ", ".join(f"{v:.4g}" for v in r.true_grad),
                tr("version"): f"{way.out_version_before} → {way.out_version_after}",
                tr("outcome"): outcome,
            }
        )
    return pd.DataFrame(rows)


@same_inputs
def nograd_figure(r: NogradResult, tr: Text) -> Figure:
    """Memory autograd keeps alive for backward in each grad mode (bars): the saved storages that are not weights.

    A saved weight is a reference to the parameter, which exists anyway, so it costs nothing extra.
    """
    modes = [tr(m) for m in r.modes]
    fig = Figure(trace("bar", x=modes, y=r.kept_bytes / 2**20, name=tr("activations"), marker_color=STORAGE_COLORS[0]))
    fig.update_yaxes(title=tr("saved_mib"))
    fig.update_xaxes(title=tr("mode"))
    return finish(fig, tr("nograd_title"))


@same_inputs
def nograd_table(r: NogradResult, tr: Text) -> pd.DataFrame:
    """Return per mode: graph nodes, saved tensors, bytes kept beyond the weights, weights referenced, requires_grad."""
    return pd.DataFrame(
        {
            tr("mode"): [tr(m) for m in r.modes],
            tr("graph_nodes"): r.graph_nodes,
            tr("saved_tensors"): r.saved_tensors,
            tr("saved_bytes"): [f"{int(b):,}" for b in r.kept_bytes],
            tr("weights_referenced"): [f"{int(b):,}" for b in r.saved_weight_bytes],
            "requires_grad": ["✓" if v else "✗" for v in r.requires_grad],
            tr("max_diff"): [f"{v:.1e}" for v in r.max_abs_diff],
        }
    )


@same_inputs
def higher_figure(r: HigherResult, tr: Text) -> Figure:
    """f, f' and f'' from autograd (solid) against the analytic derivatives (dotted)."""
    fig = Figure()
    for name, measured, exact, color in (
        ("f", r.f, None, STORAGE_COLORS[0]),
        ("f′", r.d1, r.d1_exact, STORAGE_COLORS[1]),
        ("f″", r.d2, r.d2_exact, "#e45756"),
    ):
        fig.add_scatter(x=r.x, y=measured, mode="lines", line={"color": color, "width": 3}, name=f"{name} (autograd)")
        if exact is not None:
            line = {"color": "#222222", "dash": "dot", "width": 1.5}
            fig.add_scatter(x=r.x, y=exact, mode="lines", line=line, name=f"{name} ({tr('analytic')})")
    fig.update_xaxes(title="x")
    fig.update_yaxes(title=tr("value"))
    return finish(fig, tr("higher_title"), height=400)


@same_inputs
def hooks_table(r: HooksResult, tr: Text) -> pd.DataFrame:
    """Return x.grad without and with the tensor hook, and what autograd.grad returned, per element of x."""
    return pd.DataFrame(
        {
            "x": [f"{v:.4g}" for v in r.x],
            tr("plain"): [f"{v:.4g}" for v in r.grad_plain],
            tr("hooked"): [f"{v:.4g}" for v in r.grad_hooked],
            "autograd.grad": [f"{v:.4g}" for v in r.autograd_grad],
        }
    )


@same_inputs
def custom_table(r: CustomResult, tr: Text) -> pd.DataFrame:
    """Return the custom backward's gradients next to plain torch's, for w, x and b."""
    agree = ["✓" if np.isclose(a, b) else "✗" for a, b in zip(r.custom_grads, r.torch_grads, strict=True)]
    return pd.DataFrame(
        {
            tr("input"): ["w", "x", "b"],
            tr("custom"): [f"{v:.4g}" for v in r.custom_grads],
            tr("plain_torch"): [f"{v:.4g}" for v in r.torch_grads],
            tr("agree"): agree,
        }
    )
