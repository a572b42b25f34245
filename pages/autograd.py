"""Lesson 2 — Automatic differentiation: live computation graphs, step-through backward, autograd's mechanics."""

import streamlit as st

from core.lessons.autograd import TABS
from core.lessons.autograd import accumulate as autograd_accumulate
from core.lessons.autograd import charts as autograd_charts
from core.lessons.autograd import custom as autograd_custom
from core.lessons.autograd import detach as autograd_detach
from core.lessons.autograd import graph as autograd_graph
from core.lessons.autograd import higher as autograd_higher
from core.lessons.autograd import hooks as autograd_hooks
from core.lessons.autograd import nograd as autograd_nograd
from core.lessons.autograd import pitfalls as autograd_pitfalls
from core.lessons.autograd import retain as autograd_retain
from core.lessons.tensors.pitfalls import PitfallResult
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import charts_text, figure, graph, lesson_page, pitfall_steps, table, torch_says
from ui.run import code_panel, predict, run_experiment
from ui.widgets import index_slider, preset_picker


@st.fragment
def graph_builder() -> None:
    """Torch's graph of the student's expression, every named tensor's .grad, and the w.grad question."""
    preset_picker("graph", autograd_graph.EXAMPLES)
    p, r = run_experiment(autograd_graph.GRAPH, columns=4)
    if r is not None and r.torch_error:
        torch_says(r.torch_error)
    elif r is not None:
        tr = charts_text("graph")
        caption = t("graph.caption", nodes=len(r.nodes), edges=len(r.edges))
        graph(lambda ids: autograd_charts.autograd_dot(r, tr, ids=ids), caption)
        if r.summed:
            st.info(t("graph.summed", name=r.output_name))
        table(autograd_charts.grads_table(r, tr), "graph.grads_caption")
    code_panel(autograd_graph.GRAPH, p)
    predict(autograd_graph.W_GRAD)


@st.fragment
def backward_steps() -> None:
    """The same graph, with backward's visits revealed one node at a time by a slider."""
    preset_picker("graph", autograd_graph.EXAMPLES)
    p, r = run_experiment(autograd_graph.GRAPH, columns=4)
    if r is not None and r.torch_error:
        torch_says(r.torch_error)
    elif r is not None:
        tr = charts_text("graph")
        step = index_slider("backward.step", t("backward.step"), len(r.order), default=1)
        node = r.node_at(step)
        caption = (
            t("backward.caption_node", op=node.op, label=node.label or node.op, step=step, total=len(r.order))
            if node
            else t("backward.caption_start")
        )
        graph(lambda ids: autograd_charts.autograd_dot(r, tr, step=step, ids=ids), caption)
    code_panel(autograd_graph.GRAPH, p)


@experiment_block(autograd_accumulate.ACCUMULATE, autograd_accumulate.THREE_CALLS, columns=4)
def accumulate(p: autograd_accumulate.AccumulateParams, r: autograd_accumulate.AccumulateResult) -> None:
    """.grad after each backward() call against theory, and the three-calls question."""
    fig = autograd_charts.accumulate_figure(r, charts_text("accumulate"))
    figure(fig, "accumulate.caption", key="accumulate.fig", once_x=f"{r.x_grad_once:g}", once_w=f"{r.w_grad_once:g}")


@experiment_block(autograd_retain.RETAIN)
def retain(p: autograd_retain.RetainParams, r: autograd_retain.RetainResult) -> None:
    """The gradients after the first and second backward(), or torch's error under them (by hand: a cell may stay empty)."""
    cols = st.columns(2)
    cols[0].metric(t("retain.first"), f"x.grad = {r.x_grad_first:g}, w.grad = {r.w_grad_first:g}")
    if r.torch_error:
        torch_says(r.torch_error)
    else:
        cols[1].metric(t("retain.second"), f"x.grad = {r.x_grad_second:g}, w.grad = {r.w_grad_second:g}")


@experiment_block(autograd_detach.DETACH, autograd_detach.WHICH_RAISES, autograd_detach.EXP_DETACH, columns=4)
def detach(p: autograd_detach.DetachParams, r: autograd_detach.DetachResult) -> None:
    """.data and detach() side by side for sigmoid, pow, sin or exp, what the op saved, torch's error, and two questions."""
    st.markdown(t("detach.saved_line", op=autograd_detach.OP_CODE[r.op], saved=", ".join(r.saved) or "—"))
    caption = "detach.caption" if r.op == "sigmoid" else f"detach.caption_{r.op}"
    table(autograd_charts.detach_table(r, charts_text("detach")), caption)
    for way in (r.data, r.detach):
        if way.torch_error:
            torch_says(way.torch_error)


@experiment_block(autograd_nograd.NOGRAD, columns=4)
def nograd(p: autograd_nograd.NogradParams, r: autograd_nograd.NogradResult) -> None:
    """Memory autograd keeps for backward in each grad mode, as a figure and a table."""
    tr = charts_text("nograd")
    figure(autograd_charts.nograd_figure(r, tr), "nograd.caption", key="nograd.fig")
    table(autograd_charts.nograd_table(r, tr))


@experiment_block(autograd_hooks.HOOKS, columns=2)
def hooks(p: autograd_hooks.HooksParams, r: autograd_hooks.HooksResult) -> None:
    """x.grad without and with a tensor hook and by autograd.grad, and what a forward hook captured."""
    table(autograd_charts.hooks_table(r, charts_text("hooks")), "hooks.caption")
    mean, std = f"{r.activation_mean:.4g}", f"{r.activation_std:.4g}"
    st.markdown(t("hooks.activation", shape=r.activation_shape, mean=mean, std=std))


@experiment_block(autograd_higher.HIGHER, columns=4)
def higher(p: autograd_higher.HigherParams, r: autograd_higher.HigherResult) -> None:
    """f, f' and f'' from autograd with create_graph=True against the analytic curves."""
    fig = autograd_charts.higher_figure(r, charts_text("higher"))
    figure(fig, "higher.caption", key="higher.fig", e1=f"{r.d1_max_error:.1e}", e2=f"{r.d2_max_error:.1e}")


@experiment_block(autograd_custom.CUSTOM, columns=4)
def custom(p: autograd_custom.CustomParams, r: autograd_custom.CustomResult) -> None:
    """The custom Function's gradients next to plain torch's, and gradcheck's verdict."""
    table(autograd_charts.custom_table(r, charts_text("custom")))
    if r.gradcheck_ok:
        st.success(t("custom.gradcheck_ok"), icon=":material/check_circle:")
    else:
        st.error(t("custom.gradcheck_failed", message=r.torch_error or ""), icon=":material/cancel:")


@experiment_block(autograd_pitfalls.GRAD_PITFALL, autograd_pitfalls.ONE_ELEMENT)
def pitfalls(p: autograd_pitfalls.GradPitfallParams, r: PitfallResult) -> None:
    """The notes' autograd pitfalls run live: each statement with what torch printed, warned or raised."""
    pitfall_steps("grad_pitfalls", r.setup, r.steps)


def hooks_and_higher() -> None:
    """The hooks tab holds two experiments: hooks, then higher derivatives under their own heading."""
    hooks()
    st.subheader(t("higher.heading"))
    higher()


lesson_page(
    "autograd",
    TABS,
    {
        "graph": graph_builder,
        "backward": backward_steps,
        "accumulate": accumulate,
        "retain": retain,
        "detach": detach,
        "nograd": nograd,
        "hooks": hooks_and_higher,
        "custom": custom,
        "pitfalls": pitfalls,
    },
)
