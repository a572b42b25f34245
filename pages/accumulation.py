"""Lesson 6 — Gradient accumulation: equivalence and its mistakes, BatchNorm, training curves, memory and time."""

from dataclasses import replace

import streamlit as st

from core import accumulation as A
from core import accumulation_memory as M
from core import charts_accumulation as C
from ui.catalog import ACCUMULATION
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, lesson_tabs, script_box, table
from ui.run import run_cached, run_parts
from ui.widgets import param_widgets

st.title(t("nav.accumulation"))
prose("accumulation", "intro")
tab, panel = lesson_tabs("accumulation", ACCUMULATION.tabs)
with panel:
    prose("accumulation", tab)
    if tab == "equiv":
        p = param_widgets(A.EquivParams, "equiv", columns=4)
        r = run_cached(A.run_equiv, p, prefix="equiv")
        if p and r:
            tr = charts_text("equiv")
            key = "equiv.split_even" if r.even else "equiv.split_uneven"
            st.markdown(t(key, B=r.batch, k=r.accum_steps, sizes=", ".join(map(str, r.micro_sizes)),
                          weights=", ".join(f"{w:.3g}" for w in r.micro_weights)))  # fmt: skip
            table(C.equiv_table(r, tr), "equiv.table_caption")
            figure(C.equiv_error_figure(r, tr), "equiv.caption_error", key="equiv.error", dtype=r.dtype)
            figure(C.equiv_scatter_figure(r, tr), "equiv.caption_scatter", key="equiv.scatter", n=r.preview.shape[1])
            st.markdown(t("equiv.stale_line", predicted=f"{r.stale_rel_predicted:.3g}",
                          measured=f"{r.overall_rel[-1]:.3g}", residual=C.sci(r.stale_residual)))  # fmt: skip
            with st.expander(t("equiv.per_parameter")):
                table(C.equiv_params_table(r, tr))
            script_box(A.code_equiv(p), "accumulation_equivalence.py")
        q = run_cached(A.run_equiv, A.EquivParams(batch=32, accum_steps=4))
        scale = None if q is None else f"{q.scale[q.variants.index('seeds')]:.0f}"
        ask("seeds", t("equiv.predict_q"), ["1", "1.25", "4", "5"], scale, t("equiv.predict_why"))
        q = run_cached(A.run_equiv, A.EquivParams(batch=30, accum_steps=4))
        verdict = None if q is None else ("exact" if q.overall_rel[0] < 1e-5 else "off")
        ask("uneven", t("equiv.predict_uneven_q"), [t("equiv.exact"), t("equiv.off")],
                None if verdict is None else t(f"equiv.{verdict}"), t("equiv.predict_uneven_why"))  # fmt: skip

    elif tab == "norm":
        p = param_widgets(A.NormParams, "norm", columns=4)
        r = run_cached(A.run_norm, p, prefix="norm")
        if p and r:
            tr = charts_text("norm")
            figure(C.norm_figure(r, tr), "norm.caption", key="norm.fig")
            if r.skipped:
                st.info(t("norm.skipped", ks=", ".join(map(str, r.skipped))))
            st.markdown(t("norm.stats_heading", k=r.show_k))
            table(C.norm_stats_table(r, tr), "norm.stats_caption")
            if not r.show_skipped:
                diff = abs(r.running_mean_full - r.running_mean_micro).max()
                st.markdown(t("norm.running_line", k=r.show_k, diff=f"{diff:.3g}"))
            script_box(A.code_norm(p), "accumulation_batchnorm.py")
        q = run_cached(A.run_norm, A.NormParams(k_max=8))
        verdict = None
        if q is not None:
            rel = q.rel[q.lines.index("layernorm"), list(q.ks).index(8)]
            verdict = "rounding" if rel < 1e-4 else "small" if rel < 0.1 else "large"
        ask("layernorm", t("norm.predict_q"), [t(f"norm.{v}") for v in ("rounding", "small", "large")],
                None if verdict is None else t(f"norm.{verdict}"), t("norm.predict_why"))  # fmt: skip

    elif tab == "curves":
        p = param_widgets(A.CurvesParams, "curves", columns=4)
        if p:
            # One cached run per way of training, so the bar moves as each finishes.
            parts = [replace(p, variants=(v,)) for v in p.variants]
            results = run_parts(A.run_curves, parts, "curves.progress", prefix="curves")
            if results:
                tr = charts_text("curves")
                figure(C.curves_figure(results, tr), "curves.caption", key="curves.fig")
                table(C.curves_table(results, tr))
                by_name = {r.variants[0]: r for r in results}
                if "big" in by_name and "accum" in by_name:
                    gap = abs(by_name["big"].eval_loss[0] - by_name["accum"].eval_loss[0]).max()
                    st.markdown(t("curves.gap_line", gap=C.sci(gap)))
            script_box(A.code_curves(p), "accumulation_training.py")

    elif tab == "memory":
        p = param_widgets(M.MemoryParams, "memory", columns=4)
        if p:
            # One timed run per k, alone on the device (exclusive): the bar moves as each k finishes.
            parts = [replace(p, accum_steps=(k,)) for k in p.accum_steps]
            results = run_parts(M.run_memory, parts, "memory.progress", exclusive=True, prefix="memory")
            if results:
                tr = charts_text("memory")
                cuda = results[0].device == "cuda"
                st.markdown(t("memory.measured_gpu" if cuda else "memory.measured_cpu"))
                figure(C.memory_figure(results, tr), "memory.caption", key="memory.fig")
                table(C.memory_table(results, tr))
                st.markdown(t("memory.constant_line", params=f"{results[0].parameter_bytes / C.MB:.3f}",
                              grads=f"{results[0].gradient_bytes / C.MB:.3f}"))  # fmt: skip
            script_box(M.code_memory(p), "accumulation_memory.py")
        one, four = (run_cached(M.run_memory, M.MemoryParams(accum_steps=(k,)), exclusive=True) for k in (1, 4))
        answer = None
        if one and four:
            ratio = four.steps[0].saved_bytes / one.steps[0].saved_bytes
            answer = min(("same", 1.0), ("half", 0.5), ("quarter", 0.25), key=lambda o: abs(o[1] - ratio))[0]
        ask("memory", t("memory.predict_q"), [t(f"memory.{o}") for o in ("same", "half", "quarter")],
                None if answer is None else t(f"memory.{answer}"), t("memory.predict_why"))  # fmt: skip

    elif tab == "savers":
        p = param_widgets(M.SaversParams, "savers", columns=4)
        if p:
            parts = [replace(p, modes=(mode,)) for mode in p.modes]
            results = run_parts(M.run_savers, parts, "savers.progress", exclusive=True, prefix="savers")
            if results:
                tr = charts_text("savers")
                for run in (run for r in results for run in r.runs if run.unavailable):
                    st.info(t(f"savers.unavailable.{run.unavailable}", mode=tr(run.mode)))
                figure(C.savers_figure(results, tr), "savers.caption", key="savers.fig",
                       segments=" + ".join(map(str, results[0].segments)))  # fmt: skip
                table(C.savers_table(results, tr), "savers.table_caption")
            script_box(M.code_savers(p), "accumulation_memory_savers.py")
        q = run_cached(M.run_savers, M.SaversParams(modes=("checkpoint",)), exclusive=True)
        verdict = None if q is None else ("exact" if q.runs[0].grad_rel_error < 1e-6 else "approximate")
        ask("checkpoint", t("savers.predict_q"), [t("savers.exact"), t("savers.approximate")],
                None if verdict is None else t(f"savers.{verdict}"), t("savers.predict_why"))  # fmt: skip
