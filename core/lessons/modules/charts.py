"""The modules lesson's pure builders: experiment results in, tables, plotly figures and Graphviz DOT out.

Every builder takes `tr`, a function from a text key to the words to show (see core.charts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.charts import STORAGE_COLORS, Figure, Text, finish, trace
from core.lessons.modules.custom import CustomResult
from core.lessons.modules.hooks import HOOK_KINDS, LAYERS, HooksResult
from core.lessons.modules.lenet import LeNetResult
from core.lessons.modules.members import CHECKS, MembersResult
from core.lessons.modules.modes import ModesResult
from core.lessons.modules.state import StateResult
from core.lessons.modules.tree import BUILDS, TreeResult
from core.memo import same_inputs


@same_inputs
def members_table(r: MembersResult, tr: Text) -> pd.DataFrame:
    """Return one row per member: how it was declared, then torch's answer to each question (✓ / ✗)."""
    mark = {"yes": "✓", "no": "✗"}
    rows = []
    for name, declaration, checks, keys in zip(r.names, r.declarations, r.checks, r.state_keys, strict=True):
        # The generator only makes the page reproducible: the table shows the declaration as one would write it.
        short = declaration.replace("torch.randn(2, generator=g)", "torch.randn(2)").replace(
            "init_(nn.Linear(2, 2), g)", "nn.Linear(2, 2)"
        )
        row = {tr("member"): name, tr("declared"): short}
        row |= {tr(check): mark[answer] for check, answer in zip(CHECKS, checks, strict=True)}
        row[tr("keys")] = keys or "—"
        rows.append(row)
    return pd.DataFrame(rows)


@same_inputs
def lenet_table(r: LeNetResult, tr: Text) -> pd.DataFrame:
    """Return one row per layer: its output shape from the forward pass ('—' after a failure) and its parameters."""
    rows = [{tr("layer"): tr("input"), tr("shape"): r.input_shape, tr("params"): 0, tr("formula"): ""}]
    for layer, shape, count, how in zip(r.layers, r.shapes, r.n_params, r.param_formulas, strict=True):
        failed = tr("failed") if layer == r.failed_at else "—"
        rows.append({tr("layer"): layer, tr("shape"): shape or failed, tr("params"): count, tr("formula"): how})
    return pd.DataFrame(rows)


@same_inputs
def lenet_bars(r: LeNetResult, tr: Text) -> Figure:
    """Return a bar per layer that has parameters: how many it has (the fully connected ones dominate)."""
    named = [(layer, count) for layer, count in zip(r.layers, r.n_params, strict=True) if count]
    fig = Figure()
    fig.add_bar(
        x=[layer for layer, _ in named],
        y=[count for _, count in named],
        text=[f"{count:,}" for _, count in named],
        textposition="outside",
        marker_color="#4c78a8",
    )
    fig.update_layout(xaxis={"title": tr("layer")}, yaxis={"title": tr("params_axis"), "rangemode": "tozero"})
    return finish(fig, tr("bars_title"))


@same_inputs
def dropout_strip(r: ModesResult, tr: Text) -> Figure:
    """Return the first outputs of Dropout on a vector of ones as two rows of cells: train mode above, eval below."""
    z = np.vstack([r.strip_train, r.strip_eval])
    fig = Figure(
        trace(
            "heatmap",
            z=z,
            y=[tr("train"), tr("eval")],
            colorscale=[[0, "#f2f2f2"], [1, "#4c78a8"]],
            zmin=0,
            text=np.vectorize(lambda v: f"{v:.3g}")(z),
            texttemplate="%{text}",
            colorbar={"title": tr("value")},
            xgap=1,
            ygap=2,
        )
    )
    fig.update_layout(xaxis={"title": tr("element")})
    return finish(fig, tr("strip_title"), height=260)


@same_inputs
def running_figure(r: ModesResult, tr: Text) -> Figure:
    """Return running_mean step by step (training steps, then the summary passes) with each batch's mean."""
    steps = np.arange(len(r.running_means))
    summary_x = np.arange(len(r.summary_running_means)) + steps[-1]
    fig = Figure()
    fig.add_scatter(x=steps[1:], y=r.batch_means, mode="markers", name=tr("batch_mean"), marker={"color": "#bab0ac"})
    fig.add_scatter(x=steps, y=r.running_means, mode="lines+markers", name=tr("running_mean"), line={"color": "#4c78a8"})
    if len(summary_x) > 1:
        fig.add_scatter(
            x=summary_x,
            y=r.summary_running_means,
            mode="lines+markers",
            name=tr("summary"),
            line={"color": "#e45756", "dash": "dot"},
        )
    fig.add_hline(y=r.data_mean, line_dash="dash", line_color="#54a24b", annotation_text=tr("data_mean"))
    fig.update_layout(xaxis={"title": tr("step")}, yaxis={"title": tr("mean_axis")}, legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("running_title"), height=400)


KIND_STYLE = {
    "forward_pre": ("#72b7b2", "triangle-right"),
    "forward": ("#4c78a8", "circle"),
    "backward": ("#e45756", "triangle-left"),
}


@same_inputs
def hooks_timeline(r: HooksResult, tr: Text) -> Figure:
    """Return every hook call as a marker: x its place in time, y its layer, colour and shape its kind."""
    fig = Figure()
    order = np.arange(1, len(r.kinds) + 1)
    for kind in HOOK_KINDS:
        picked = [i for i, k in enumerate(r.kinds) if k == kind]
        if not picked:
            continue
        color, symbol = KIND_STYLE[kind]
        fig.add_scatter(
            x=order[picked],
            y=[r.layers[i] for i in picked],
            mode="markers",
            name=tr(kind),
            marker={"color": color, "symbol": symbol, "size": 14},
            text=[r.seen[i] for i in picked],
            hovertemplate="#%{x} %{y}: %{text}<extra></extra>",
        )
    second = [i for i, s in enumerate(r.runs) if s == 2]
    if second:
        fig.add_vline(x=second[0] + 0.5, line_dash="dash", line_color="#888888", annotation_text=tr("step2"))
    fig.update_layout(
        xaxis={"title": tr("call"), "dtick": 1},
        yaxis={"title": tr("layer"), "categoryorder": "array", "categoryarray": list(reversed(LAYERS))},
        legend={"orientation": "h", "y": -0.25},
    )
    return finish(fig, tr("timeline_title"), height=380)


@same_inputs
def hooks_table(r: HooksResult, tr: Text) -> pd.DataFrame:
    """Return one row per hook call: step, kind, layer and the shapes it saw."""
    return pd.DataFrame(
        {
            tr("step"): r.runs,
            tr("kind"): [tr(k) for k in r.kinds],
            tr("layer"): r.layers,
            tr("seen"): r.seen,
        }
    )


@same_inputs
def activation_histograms(r: HooksResult, tr: Text) -> Figure:
    """Return the histogram of each hooked layer's output, as captured by its forward hook in step 1."""
    fig = Figure()
    for i, (layer, edges, counts) in enumerate(zip(r.hist_layers, r.hist_edges, r.hist_counts, strict=True)):
        centers = (edges[:-1] + edges[1:]) / 2
        fig.add_bar(x=centers, y=counts, name=layer, opacity=0.6, marker_color=STORAGE_COLORS[i % len(STORAGE_COLORS)])
    fig.update_layout(barmode="overlay", xaxis={"title": tr("activation")}, yaxis={"title": tr("count")})
    return finish(fig, tr("hist_title"))


@same_inputs
def keys_table(r: StateResult, tr: Text) -> pd.DataFrame:
    """Return every key of the saved file and of the target net: where it is, and what strict=False reports."""
    keys = list(r.saved_keys) + [k for k in r.target_keys if k not in r.saved_keys]
    rows = []
    for key in keys:
        status = "missing" if key in r.missing else "unexpected" if key in r.unexpected else ""
        rows.append(
            {
                tr("key"): key,
                tr("in_file"): "✓" if key in r.saved_keys else "✗",
                tr("in_net"): "✓" if key in r.target_keys else "✗",
                tr("strict_false"): tr(status) if status else "—",
            }
        )
    return pd.DataFrame(rows)


@same_inputs
def mylinear_table(r: CustomResult, tr: Text) -> pd.DataFrame:
    """Return MyLinear written right against the `.data` version: output, gradients, and whether SGD moved it."""
    w_norm, b_norm = r.right_grad_norms
    return pd.DataFrame(
        {
            tr("version"): [tr("right"), tr("data")],
            tr("weight_grad"): [f"‖·‖ = {w_norm:.4g}", r.data_grads[0]],
            tr("bias_grad"): [f"‖·‖ = {b_norm:.4g}", r.data_grads[1]],
            tr("changed"): ["✓" if r.right_changed else "✗", "✓" if r.data_changed else "✗"],
        }
    )


def _dot_text(text: str) -> str:
    """Return text escaped for a quoted DOT string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


@same_inputs
def tree_dot(r: TreeResult, tr: Text, ids: str = "n") -> str:
    """Return DOT text of the module tree: modules as boxes, parameters as ellipses, the walk's first visits numbered.

    The first `r.step` visits are green with their number; the last of them is orange. Modules in a
    plain Python list are drawn dashed and grey: no walk of torch reaches them.
    """
    first_visit: dict[str, int] = {}
    for i, name in enumerate(r.visit_names[: r.step], 1):
        first_visit.setdefault(name, i)
    node = {name: f"{ids}{i}" for i, name in enumerate(r.node_names)}
    lines = [
        "digraph tree {",
        "  rankdir=TB; bgcolor=transparent; nodesep=0.25; ranksep=0.35;",
        '  node [fontname="Helvetica", fontsize=11, style=filled, fillcolor="#e8eef7", color="#4c78a8", shape=box];',
        '  edge [color="#888888", arrowsize=0.6];',
    ]
    for name, text, kind in zip(r.node_names, r.node_labels, r.node_kinds, strict=True):
        shown_text = tr("python_list") if kind == "unregistered" and name == "blocks" else text
        words = shown_text if kind == "parameter" else f"{name.rpartition('.')[2] or tr('root')}: {shown_text}"
        attrs = []
        if name in first_visit and kind != "unregistered":
            words = f"#{first_visit[name]}  {words}"
            color = "#f29e4c" if first_visit[name] == r.step else "#d4e6c3"
            attrs.append(f'fillcolor="{color}"')
        if kind == "parameter":
            attrs += ["shape=ellipse", "fontsize=10"]
        elif kind == "unregistered":
            attrs += ['style="dashed,filled"', 'fillcolor="#f4f4f4"', 'color="#aaaaaa"', 'fontcolor="#888888"']
        lines.append(f'  {node[name]} [label="{_dot_text(words)}" {" ".join(attrs)}];')
    for name, parent, kind in zip(r.node_names, r.parents, r.node_kinds, strict=True):
        if parent != "-" and parent in node and not (kind == "unregistered" and name == "blocks" and parent == ""):
            style = ' [style=dashed, color="#aaaaaa"]' if kind == "unregistered" else ""
            lines.append(f"  {node[parent]} -> {node[name]}{style};")
    if "blocks" in node and r.node_kinds[r.node_names.index("blocks")] == "unregistered":
        note = _dot_text(tr("not_registered"))
        lines.append(f'  {node[""]} -> {node["blocks"]} [style=dashed, color="#aaaaaa", label="{note}", fontsize=9];')
    lines.append("}")
    return "\n".join(lines)


@same_inputs
def visits_table(r: TreeResult, tr: Text) -> pd.DataFrame:
    """Return the walk's visits in order: number, qualified name, and the module's type or the parameter's shape."""
    return pd.DataFrame(
        {
            "#": range(1, len(r.visit_names) + 1),
            tr("name"): [name or tr("root") for name in r.visit_names],
            tr("what"): r.visit_what,
        }
    )


@same_inputs
def builds_table(r: TreeResult, tr: Text) -> pd.DataFrame:
    """Return the names features' three children get under each way of building the Sequential."""
    return pd.DataFrame({tr("build"): [tr(b) for b in BUILDS], tr("names"): [", ".join(names) for names in r.build_names]})
