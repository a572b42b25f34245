"""Lesson 2 — Automatic differentiation: live computation graphs, step-through backward, pitfalls."""

import streamlit as st

from core import autograd as A
from core import autograd_mechanics as M
from core import charts
from ui.catalog import AUTOGRAD
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, graph, lesson_tabs, script_box, table, torch_says
from ui.run import run_cached
from ui.widgets import index_slider, param_widgets, preset_picker

st.title(t("nav.autograd"))
prose("autograd", "intro")
tab, panel = lesson_tabs("autograd", AUTOGRAD.tabs)
with panel:
    prose("autograd", tab)
    if tab in ("graph", "backward"):
        preset_picker("graph", A.EXAMPLES)
        p = param_widgets(A.GraphParams, "graph", columns=4)
        r = run_cached(A.run_graph, p, prefix="graph")
        if p and r:
            tr = charts_text("graph")
            if r.torch_error:
                torch_says(r.torch_error)
            elif tab == "graph":
                graph(lambda ids: charts.autograd_dot(r, tr, ids=ids),
                      t("graph.caption", nodes=len(r.nodes), edges=len(r.edges)))
                if r.summed:
                    st.info(t("graph.summed", name=r.output_name))
                table(charts.grads_table(r, tr), "graph.grads_caption")
            else:
                step = index_slider("backward.step", t("backward.step"), len(r.order), default=1)
                current = next((n for n in r.nodes if step and n.id == r.order[step - 1]), None)
                graph(lambda ids: charts.autograd_dot(r, tr, step=step, ids=ids),
                      t("backward.caption_node", op=current.op, label=current.label or current.op, step=step,
                        total=len(r.order)) if current else t("backward.caption_start"))  # fmt: skip
            script_box(A.code_graph(p), "autograd_graph.py")
        if tab == "graph":
            q = run_cached(A.run_graph, A.GraphParams())
            w_grad = dict(q.grads).get("w") if q else None
            ask("w_grad", t("graph.predict_q"), ["2", "3", "5", "6"], w_grad, t("graph.predict_why"))

    elif tab == "accumulate":
        p = param_widgets(M.AccumulateParams, "accumulate", columns=4)
        r = run_cached(M.run_accumulate, p, prefix="accumulate")
        if p and r:
            figure(charts.accumulate_figure(r, charts_text("accumulate")), "accumulate.caption", key="accumulate.fig",
                   once_x=f"{r.x_grad_once:g}", once_w=f"{r.w_grad_once:g}")  # fmt: skip
            script_box(M.code_accumulate(p), "accumulate.py")
        q = run_cached(M.run_accumulate, M.AccumulateParams(k=3))
        ask("accumulate", t("accumulate.predict_q"), ["2", "4", "6", "8"],
                None if q is None else f"{q.x_grad[-1]:g}", t("accumulate.predict_why"))  # fmt: skip

    elif tab == "retain":
        p = param_widgets(M.RetainParams, "retain", columns=3)
        r = run_cached(M.run_retain, p, prefix="retain")
        if p and r:
            cols = st.columns(2)
            cols[0].metric(t("retain.first"), f"x.grad = {r.x_grad_first:g}, w.grad = {r.w_grad_first:g}")
            if r.torch_error:
                torch_says(r.torch_error)
            else:
                cols[1].metric(t("retain.second"), f"x.grad = {r.x_grad_second:g}, w.grad = {r.w_grad_second:g}")
            script_box(M.code_retain(p), "retain_graph.py")

    elif tab == "detach":
        p = param_widgets(M.DetachParams, "detach", columns=3)
        r = run_cached(M.run_detach, p, prefix="detach")
        if p and r:
            table(charts.detach_table(r, charts_text("detach")), "detach.caption")
            for way in (r.data, r.detach):
                if way.torch_error:
                    torch_says(way.torch_error)
            script_box(M.code_detach(p), "detach_vs_data.py")
        q = run_cached(M.run_detach, M.DetachParams())
        answer = None if q is None else {(True, False): ".data", (False, True): ".detach()"}.get(
            (q.data.torch_error is not None, q.detach.torch_error is not None), t("detach.both_or_neither"))
        ask("detach", t("detach.predict_q"), [".data", ".detach()", t("detach.both_or_neither")], answer,
                t("detach.predict_why"))  # fmt: skip

    elif tab == "nograd":
        p = param_widgets(M.NogradParams, "nograd", columns=4)
        r = run_cached(M.run_nograd, p, prefix="nograd")
        if p and r:
            tr = charts_text("nograd")
            figure(charts.nograd_figure(r, tr), "nograd.caption", key="nograd.fig")
            table(charts.nograd_table(r, tr))
            script_box(M.code_nograd(p), "no_grad.py")

    elif tab == "hooks":
        p = param_widgets(M.HooksParams, "hooks", columns=2)
        r = run_cached(M.run_hooks, p, prefix="hooks")
        if p and r:
            table(charts.hooks_table(r, charts_text("hooks")), "hooks.caption")
            st.markdown(t("hooks.activation", shape=r.activation_shape, mean=f"{r.activation_mean:.4g}",
                          std=f"{r.activation_std:.4g}"))  # fmt: skip
            script_box(M.code_hooks(p), "hooks.py")
        st.subheader(t("higher.heading"))
        p = param_widgets(M.HigherParams, "higher", columns=4)
        r = run_cached(M.run_higher, p, prefix="higher")
        if p and r:
            figure(charts.higher_figure(r, charts_text("higher")), "higher.caption", key="higher.fig",
                   e1=f"{r.d1_max_error:.1e}", e2=f"{r.d2_max_error:.1e}")  # fmt: skip
            script_box(M.code_higher(p), "second_derivative.py")

    elif tab == "custom":
        p = param_widgets(M.CustomParams, "custom", columns=4)
        r = run_cached(M.run_custom, p, prefix="custom")
        if p and r:
            table(charts.custom_table(r, charts_text("custom")))
            if r.gradcheck_ok:
                st.success(t("custom.gradcheck_ok"), icon=":material/check_circle:")
            else:
                st.error(t("custom.gradcheck_failed", message=r.torch_error or ""), icon=":material/cancel:")
            script_box(M.code_custom(p), "multiply_add.py")
