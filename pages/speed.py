"""Lesson 7 — Speed and memory: honest timing, CPU vs GPU scaling, cudnn.benchmark, memory savers, transfers."""

from dataclasses import replace

import numpy as np
import streamlit as st

from core import accumulation_memory as M
from core import charts_accumulation as CA
from core import charts_speed as C
from core import speed as S
from ui.catalog import SPEED
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, gpu_note, lesson_tabs, script_box, table
from ui.run import run_cached, run_parts
from ui.widgets import param_widgets

st.title(t("nav.speed"))
prose("speed", "intro")
tab, panel = lesson_tabs("speed", SPEED.tabs)
with panel:
    prose("speed", tab)
    if tab == "timing":
        p = param_widgets(S.TimingParams, "timing", columns=3)
        r = run_cached(S.run_timing, p, exclusive=True, prefix="timing")
        if p and r:
            gpu_note(r.gpu_only)
            if r.sync_is_naive:
                st.markdown(t("timing.cpu_same"))
            figure(C.timing_figure(r, charts_text("timing")), "timing.caption", key="timing.fig",
                   first=f"{1e3 * r.sync[0]:.3g}", rest=f"{1e3 * float(np.median(r.sync[1:])):.3g}")  # fmt: skip
            table(C.timing_table(r, charts_text("timing")), "timing.table_caption")
            script_box(S.code_timing(p), "timing_four_ways.py")
        q = run_cached(S.run_timing, S.TimingParams(), exclusive=True)
        answer = None if q is None else t("timing.first" if int(np.argmax(q.sync)) == 0 else "timing.later")
        ask("first_call", t("timing.predict_q"), [t("timing.first"), t("timing.later")], answer, t("timing.predict_why"))

    elif tab == "scaling":
        p = param_widgets(S.ScalingParams, "scaling", columns=4)
        if p:
            # One timed point per size, alone on the device: the bar moves as each size finishes.
            parts = run_parts(S.run_scaling, [replace(p, sizes=(n,)) for n in p.sizes], "scaling.progress", exclusive=True,
                              prefix="scaling")  # fmt: skip
            if parts:
                r, tr = S.merge_scaling(parts), charts_text("scaling")
                gpu_note(r.gpu_only)
                if r.cpu_skipped:
                    skipped = ", ".join(map(str, r.cpu_skipped))
                    st.info(t("scaling.skipped", sizes=skipped, gflop=f"{r.cpu_max_flops / 1e9:.3g}"))
                if r.crossover is not None:
                    st.markdown(t("scaling.crossover_line", n=r.crossover, gpu=r.gpu_name))
                figure(C.scaling_figure(r, tr, "time"), "scaling.caption_time", key="scaling.time")
                figure(C.scaling_figure(r, tr, "tflops"), "scaling.caption_tflops", key="scaling.tflops")
                table(C.scaling_table(r, tr), "scaling.table_caption")
            script_box(S.code_scaling(p), "cpu_vs_gpu_scaling.py")
        q = run_parts(S.run_scaling, [S.ScalingParams(sizes=(n,)) for n in (256, 512)], "scaling.progress", exclusive=True)
        answer = None
        if q:
            ratio = float(q[1].cpu_seconds[0] / q[0].cpu_seconds[0])
            answer = min(("2", "4", "8"), key=lambda o: abs(np.log(ratio / int(o))))
        ask("doubling", t("scaling.predict_q"), ["2", "4", "8"], answer, t("scaling.predict_why"))

    elif tab == "cudnn":
        p = param_widgets(S.CudnnParams, "cudnn", columns=3)
        r = run_cached(S.run_cudnn, p, exclusive=True, prefix="cudnn")
        if p and r:
            gpu_note(r.gpu_only)
            figure(C.cudnn_figure(r, charts_text("cudnn")), "cudnn.caption", key="cudnn.fig")
            table(C.cudnn_table(r, charts_text("cudnn")))
            script_box(S.code_cudnn(p), "cudnn_benchmark.py")

    elif tab == "footprint":
        p = param_widgets(S.MemParams, "footprint", columns=4)
        r = run_cached(S.run_memory, p, exclusive=True, prefix="footprint")
        if p and r:
            tr = charts_text("footprint")
            gpu_note(r.gpu_only)
            table(C.footprint_table(r, tr), "footprint.table_caption")
            figure(C.checkpoint_figure(r, tr), "footprint.caption_checkpoint", key="footprint.ckpt",
                   diff=f"{float(r.ckpt_grad_max_diff.max()):.1e}")  # fmt: skip
            script_box(S.code_memory(p), "memory_footprint.py")
        q = run_cached(S.run_memory, S.MemParams(), exclusive=True)
        answer = None if q is None else t("footprint.zero" if q.saved_bytes[1, 0] == 0 else "footprint.some")
        ask("no_grad", t("footprint.predict_q"), [t("footprint.zero"), t("footprint.some")], answer,
                t("footprint.predict_why"))  # fmt: skip
        st.subheader(t("footprint.amp_heading"))
        st.markdown(t("footprint.amp_intro"))
        p = param_widgets(M.SaversParams, "savers", columns=4)
        if p:
            results = run_parts(M.run_savers, [replace(p, modes=(m,)) for m in p.modes], "savers.progress", exclusive=True,
                                prefix="savers")  # fmt: skip
            if results:
                tr = charts_text("savers")
                figure(CA.savers_figure(results, tr), "savers.caption", key="savers.fig",
                       segments=" + ".join(map(str, results[0].segments)))  # fmt: skip
                table(CA.savers_table(results, tr), "savers.table_caption")
            script_box(M.code_savers(p), "mixed_precision_and_checkpointing.py")

    elif tab == "transfer":
        p = param_widgets(S.TransferParams, "transfer", columns=2)
        if p:
            parts = run_parts(S.run_transfer, [replace(p, sizes=(n,)) for n in p.sizes], "transfer.progress", exclusive=True,
                              prefix="transfer")  # fmt: skip
            if parts:
                gpu_note(parts[0].gpu_only)
                figure(C.transfer_figure(parts, charts_text("transfer")), "transfer.caption", key="transfer.fig")
                table(C.transfer_table(parts, charts_text("transfer")), "transfer.table_caption")
            script_box(S.code_transfer(p), "transfers.py")
        q = run_cached(S.run_transfer, S.TransferParams(sizes=(1 << 20,)), exclusive=True)
        answer = None if q is None else t("transfer.shares" if q.shares_memory[1, 0] else "transfer.copies")
        ask("as_tensor", t("transfer.predict_q"), [t("transfer.copies"), t("transfer.shares")], answer,
                t("transfer.predict_why"))  # fmt: skip
