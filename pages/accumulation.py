"""Lesson 6 — Gradient accumulation: equivalence and its mistakes, BatchNorm, training curves, memory and time."""

import streamlit as st

from core.charts import MB, sci
from core.lessons.accumulation import TABS
from core.lessons.accumulation import charts as accumulation_charts
from core.lessons.accumulation import curves as accumulation_curves
from core.lessons.accumulation import equiv as accumulation_equiv
from core.lessons.accumulation import memory as accumulation_memory
from core.lessons.accumulation import norm as accumulation_norm
from core.lessons.accumulation import savers as accumulation_savers
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import charts_text, figure, lesson_page, table


@experiment_block(accumulation_equiv.EQUIV, accumulation_equiv.SEEDS, accumulation_equiv.UNEVEN, columns=4)
def equiv(p: accumulation_equiv.EquivParams, r: accumulation_equiv.EquivResult) -> None:
    tr = charts_text("equiv")
    sizes, weights = ", ".join(map(str, r.micro_sizes)), ", ".join(f"{w:.3g}" for w in r.micro_weights)
    split = "equiv.split_even" if r.even else "equiv.split_uneven"
    st.markdown(t(split, B=r.batch, k=r.accum_steps, sizes=sizes, weights=weights))
    table(accumulation_charts.equiv_table(r, tr), "equiv.table_caption")
    figure(accumulation_charts.equiv_error_figure(r, tr), "equiv.caption_error", key="equiv.error", dtype=r.dtype)
    figure(accumulation_charts.equiv_scatter_figure(r, tr), "equiv.caption_scatter", key="equiv.scatter", n=r.preview.shape[1])
    stale = {"predicted": f"{r.stale_rel_predicted:.3g}", "measured": f"{r.overall_rel[-1]:.3g}"}
    st.markdown(t("equiv.stale_line", **stale, residual=sci(r.stale_residual)))
    with st.expander(t("equiv.per_parameter")):
        table(accumulation_charts.equiv_params_table(r, tr))


@experiment_block(accumulation_norm.NORM, accumulation_norm.BATCH_OF_ONE, columns=4)
def norm(p: accumulation_norm.NormParams, r: accumulation_norm.NormResult) -> None:
    tr = charts_text("norm")
    figure(accumulation_charts.norm_figure(r, tr), "norm.caption", key="norm.fig")
    if r.skipped:
        st.info(t("norm.skipped", ks=", ".join(map(str, r.skipped))))
    st.markdown(t("norm.stats_heading", k=r.show_k))
    table(accumulation_charts.norm_stats_table(r, tr), "norm.stats_caption")
    if not r.show_skipped:
        st.markdown(t("norm.running_line", k=r.show_k, diff=f"{r.running_mean_gap():.3g}"))


# one cached run per way of training
@experiment_block(accumulation_curves.CURVES, columns=4)
def curves(p: accumulation_curves.CurvesParams, results: list[accumulation_curves.CurvesResult]) -> None:
    tr = charts_text("curves")
    figure(accumulation_charts.curves_figure(results, tr), "curves.caption", key="curves.fig")
    table(accumulation_charts.curves_table(results, tr))
    gap = accumulation_curves.big_accum_gap(results)
    if gap is not None:
        st.markdown(t("curves.gap_line", gap=sci(gap)))


# one timed run per k, alone on the device
@experiment_block(accumulation_memory.MEMORY, accumulation_memory.QUARTER, columns=4)
def memory(p: accumulation_memory.MemoryParams, results: list[accumulation_memory.MemoryResult]) -> None:
    tr = charts_text("memory")
    st.markdown(t("memory.measured_gpu" if results[0].device == "cuda" else "memory.measured_cpu"))
    figure(accumulation_charts.memory_figure(results, tr), "memory.caption", key="memory.fig")
    table(accumulation_charts.memory_table(results, tr))
    sizes = {"params": f"{results[0].parameter_bytes / MB:.3f}", "grads": f"{results[0].gradient_bytes / MB:.3f}"}
    st.markdown(t("memory.constant_line", **sizes))


# one timed run per mode, alone on the device
@experiment_block(accumulation_savers.SAVERS, accumulation_savers.CHECKPOINT, columns=4)
def savers(p: accumulation_savers.SaversParams, results: list[accumulation_savers.SaversResult]) -> None:
    tr = charts_text("savers")
    for run in (run for r in results for run in r.runs if run.unavailable):
        st.info(t(f"savers.unavailable.{run.unavailable}", mode=tr(run.mode)))
    segments = " + ".join(map(str, results[0].segments))
    figure(accumulation_charts.savers_figure(results, tr), "savers.caption", key="savers.fig", segments=segments)
    table(accumulation_charts.savers_table(results, tr), "savers.table_caption")


lesson_page("accumulation", TABS, {"equiv": equiv, "norm": norm, "curves": curves, "memory": memory, "savers": savers})
