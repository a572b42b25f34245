"""Lesson 7 — Speed and memory: honest timing, CPU vs GPU scaling, cudnn.benchmark, memory savers, leaks, transfers."""

import streamlit as st

from core.lessons.accumulation import charts as accumulation_charts
from core.lessons.accumulation import savers as accumulation_savers
from core.lessons.speed import TABS
from core.lessons.speed import charts as speed_charts
from core.lessons.speed import common as speed_common
from core.lessons.speed import cudnn as speed_cudnn
from core.lessons.speed import footprint as speed_footprint
from core.lessons.speed import leak as speed_leak
from core.lessons.speed import profiler as speed_profiler
from core.lessons.speed import scaling as speed_scaling
from core.lessons.speed import timing as speed_timing
from core.lessons.speed import transfer as speed_transfer
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import charts_text, figure, gpu_note, lesson_page, table
from ui.run import code_panel, run_experiment


def threads_note() -> None:
    """Say with how many CPU threads the timings on this tab ran (the server's configured count)."""
    st.caption(t("speed.threads_note", threads=speed_common.cpu_threads_limit()))


@experiment_block(speed_timing.TIMING, speed_timing.BARE_CLOCK)
def timing(p: speed_timing.TimingParams, r: speed_timing.TimingResult) -> None:
    tr = charts_text("timing")
    gpu_note(r.gpu_only)
    if r.sync_is_naive:
        st.markdown(t("timing.cpu_same"))
    figure(speed_charts.timing_figure(r, tr), "timing.caption", key="timing.fig", **speed_charts.timing_caption(r))
    table(speed_charts.timing_table(r, tr), "timing.table_caption")
    threads_note()


@st.fragment
def profiler() -> None:
    st.subheader(t("profiler.heading"))
    p, r = run_experiment(speed_profiler.PROFILER, columns=4)
    if r is not None:
        gpu_note(r.gpu_only)
        table(speed_charts.profiler_table(r, charts_text("profiler")))
        counts = dict(zip(r.counted, r.counted_calls.tolist(), strict=True))
        share, total = f"{r.matmul_share:.0%}", f"{r.total_self_cpu_us / 1e3:.3g}"
        calls = {"addmm": counts["aten::addmm"], "mm": counts["aten::mm"]}
        st.caption(t("profiler.caption", share=share, total=total, layers=r.layers, **calls))
        if r.self_cuda_us is not None:
            st.caption(t("profiler.caption_cuda"))
        threads_note()
    code_panel(speed_profiler.PROFILER, p)


def timing_and_profiler() -> None:
    """The timing tab holds two experiments: four ways to time one call, then the profiler's table of one step."""
    timing()
    profiler()


# one timed run per size, merged into one sweep
@experiment_block(speed_scaling.SCALING, speed_scaling.DOUBLING, columns=4)
def scaling(p: speed_scaling.ScalingParams, parts: list[speed_scaling.ScalingResult]) -> None:
    r, tr = speed_scaling.merge_scaling(parts), charts_text("scaling")
    gpu_note(r.gpu_only)
    st.markdown(t("scaling.threads_line", threads=r.cpu_threads, limit=speed_common.cpu_threads_limit()))
    if r.cpu_skipped:
        skipped = ", ".join(map(str, r.cpu_skipped))
        st.info(t("scaling.skipped", sizes=skipped, gflop=f"{r.cpu_max_flops / 1e9:.3g}"))
    if r.crossover is not None:
        st.markdown(t("scaling.crossover_line", n=r.crossover, gpu=r.gpu_name))
    figure(speed_charts.scaling_figure(r, tr, "time"), "scaling.caption_time", key="scaling.time")
    figure(speed_charts.scaling_figure(r, tr, "tflops"), "scaling.caption_tflops", key="scaling.tflops")
    table(speed_charts.scaling_table(r, tr), "scaling.table_caption")


@experiment_block(speed_cudnn.CUDNN)
def cudnn(p: speed_cudnn.CudnnParams, r: speed_cudnn.CudnnResult) -> None:
    gpu_note(r.gpu_only)
    figure(speed_charts.cudnn_figure(r, charts_text("cudnn")), "cudnn.caption", key="cudnn.fig")
    table(speed_charts.cudnn_table(r, charts_text("cudnn")))
    threads_note()


@experiment_block(speed_footprint.FOOTPRINT, speed_footprint.CHECKPOINT_KEPT, columns=4)
def footprint(p: speed_footprint.FootprintParams, r: speed_footprint.FootprintResult) -> None:
    tr, caption = charts_text("footprint"), speed_charts.checkpoint_caption(r)
    gpu_note(r.gpu_only)
    table(speed_charts.footprint_table(r, tr), "footprint.table_caption")
    figure(speed_charts.checkpoint_figure(r, tr), "footprint.caption_checkpoint", key="footprint.ckpt", **caption)
    threads_note()


@st.fragment
def savers() -> None:
    """The accumulation lesson's mixed-precision and checkpointing comparison, shown again on the memory tab."""
    st.subheader(t("footprint.amp_heading"))
    st.markdown(t("footprint.amp_intro"))
    p, results = run_experiment(accumulation_savers.SAVERS, columns=4)
    if results is not None:
        tr, segments = charts_text("savers"), " + ".join(map(str, results[0].segments))
        figure(accumulation_charts.savers_figure(results, tr), "savers.caption", key="savers.fig", segments=segments)
        table(accumulation_charts.savers_table(results, tr), "savers.table_caption")
    code_panel(accumulation_savers.SAVERS, p)


@experiment_block(speed_leak.LEAK, speed_leak.TRAINING_HOLDS, columns=4)
def leak(p: speed_leak.LeakParams, r: speed_leak.LeakResult) -> None:
    tr, tensor = charts_text("leak"), r.ways.index("tensor")
    gpu_note(r.gpu_only)
    one, held = f"{r.step_bytes / 1e6:.3f}", f"{r.kept_bytes[tensor, -1] / 1e6:.3f}"
    caption = {"steps": len(r.steps), "one": one, "held": held, "nodes": int(r.graph_nodes[tensor, -1])}
    figure(speed_charts.leak_figure(r, tr), f"leak.caption_{r.phase}", key="leak.fig", **caption)
    if r.cuda_allocated is not None:
        figure(speed_charts.leak_cuda_figure(r, tr), "leak.caption_cuda", key="leak.cuda")
    table(speed_charts.leak_table(r, tr), "leak.table_caption")


# one timed run per size
@experiment_block(speed_transfer.TRANSFER, speed_transfer.AS_TENSOR, columns=2)
def transfer(p: speed_transfer.TransferParams, parts: list[speed_transfer.TransferResult]) -> None:
    tr = charts_text("transfer")
    gpu_note(parts[0].gpu_only)
    figure(speed_charts.transfer_figure(parts, tr), "transfer.caption", key="transfer.fig")
    table(speed_charts.transfer_table(parts, tr), "transfer.table_caption")
    threads_note()


def footprint_and_savers() -> None:
    """The footprint tab holds two experiments: the memory footprint, then the accumulation lesson's savers."""
    footprint()
    savers()


lesson_page(
    "speed",
    TABS,
    {
        "timing": timing_and_profiler,
        "scaling": scaling,
        "cudnn": cudnn,
        "footprint": footprint_and_savers,
        "leak": leak,
        "transfer": transfer,
    },
)
