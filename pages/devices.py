"""Lesson — Devices and many GPUs: device facts and .to costs, DataParallel, pipelining, portable checkpoints."""

import streamlit as st

from core.charts import sci
from core.config import CONFIG
from core.lessons.devices import TABS
from core.lessons.devices import charts as devices_charts
from core.lessons.devices import checkpoint as devices_checkpoint
from core.lessons.devices import dataparallel as devices_dataparallel
from core.lessons.devices import facts as devices_facts
from core.lessons.devices import moves as devices_moves
from core.lessons.devices import pipeline as devices_pipeline
from core.lessons.devices import visible as devices_visible
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import Metric, charts_text, figure, gpu_note, lesson_page, metrics, table, torch_says, yes_no
from ui.run import code_panel, predict, result_of, run_experiment


def device_label(device: str) -> str:
    """Return the device a timing ran on, with the CPU's thread count (the server's TORCHLAB_THREADS) on a CPU."""
    return t("devices.cpu_threads_label", device=device, threads=CONFIG.threads) if device.startswith("cpu") else device


@experiment_block(devices_facts.FACTS, devices_facts.TO_CPU_TIME, columns=2)
def facts(p: devices_facts.FactsParams, r: devices_facts.FactsResult) -> None:
    tr = charts_text("facts")
    table(devices_charts.facts_table(r, tr), "facts.table_caption")
    if r.gpus:
        table(devices_charts.gpus_table(r, tr), "facts.gpus_caption")
    gpu_note(r.gpu_only)
    st.markdown(t("facts.same_line", same=yes_no(r.same_object), ptr=yes_no(r.same_data_ptr)))
    if r.cuda_same_object is not None:
        st.markdown(t("facts.cuda_same_line", same=yes_no(r.cuda_same_object)))
    figure(devices_charts.transfer_figure(r, tr), "facts.caption", key="facts.fig", mb=r.nbytes // 2**20)
    table(devices_charts.transfer_table(r, tr), "facts.transfer_caption")


@st.fragment
def moves() -> None:
    st.subheader(t("moves.heading"))
    p, r = run_experiment(devices_moves.MOVES, columns=2)
    if r is not None:
        gpu_note(r.gpu_only)
        table(devices_charts.moves_table(r, charts_text("moves")), "moves.table_caption")
    code_panel(devices_moves.MOVES, p)
    predict(devices_moves.WRITE_AFTER_TO)


@st.fragment
def visible() -> None:
    st.subheader(t("visible.heading"))
    p, r = run_experiment(devices_visible.VISIBLE_DEVICES, columns=2)
    if r is not None:
        current = "—" if r.child_current is None else str(r.child_current)
        env = t("visible.unset") if r.env_value is None else f'"{r.env_value}"'
        st.markdown(t("visible.child_line", env=env, count=r.child_count, current=current, parent=r.parent_count))
        for i, name in enumerate(r.child_names):
            physical = r.child_order[i] if i < len(r.child_order) else "?"
            st.markdown(t("visible.name_line", i=i, name=name, physical=physical))
        if r.parent_count == 0:
            st.info(t("visible.no_gpu", physical=r.physical), icon=":material/memory:")
        table(devices_charts.visible_table(r, charts_text("visible")), "visible.table_caption")
    code_panel(devices_visible.VISIBLE_DEVICES, p)


def facts_moves_visible() -> None:
    """The facts tab: the server's devices and copy costs, then what .to/.cuda return, then CUDA_VISIBLE_DEVICES."""
    facts()
    moves()
    visible()


def mismatch() -> None:
    """The pitfalls tab: the device-mismatch error, raised live by the moves experiment at its defaults."""
    r = result_of(devices_moves.MOVES, devices_moves.MovesParams())
    if r is not None:
        model, data = r.mismatch_devices
        st.markdown(t("moves.mismatch_line", model=model, data=data))
        torch_says(r.mismatch_error)
        st.markdown(t("moves.fixed_line", shape=" × ".join(map(str, r.fixed_shape))))


@experiment_block(
    devices_dataparallel.DATAPARALLEL, devices_dataparallel.GPUS_USED, devices_dataparallel.MEAN_OF_MEANS, columns=4
)
def dataparallel(p: devices_dataparallel.DPParams, r: devices_dataparallel.DPResult) -> None:
    tr = charts_text("dataparallel")
    k, sizes = len(r.chunk_sizes), ", ".join(map(str, r.chunk_sizes))
    st.markdown(t("dataparallel.split_line", N=r.batch, G=r.replicas, k=k, sizes=sizes))
    if k < r.replicas:
        st.markdown(t("dataparallel.fewer_line", G=r.replicas, k=k))
    table(devices_charts.dp_replicas_table(r, tr), "dataparallel.replicas_caption")
    figure(devices_charts.dp_losses_figure(r, tr), "dataparallel.caption_losses", key="dataparallel.losses")
    table(devices_charts.dp_reductions_table(r, tr), "dataparallel.reductions_caption")
    line = "dataparallel.even_line" if r.even_split else "dataparallel.uneven_line"
    st.markdown(t(line, naive=f"{r.mean_of_means:.6g}", full=f"{r.global_mean:.6g}"))
    figure(devices_charts.dp_weights_figure(r, tr), "dataparallel.caption_weights", key="dataparallel.weights", N=r.batch)
    if r.grad_diff_naive is not None and r.grad_diff_weighted is not None:
        figure(devices_charts.dp_grad_figure(r, tr), "dataparallel.caption_grad", key="dataparallel.grad")
        st.markdown(t("dataparallel.grad_line", weighted=sci(r.grad_diff_weighted), naive=sci(r.grad_diff_naive)))


@experiment_block(devices_pipeline.PIPELINE, devices_pipeline.ONE_CHUNK)
def pipeline(p: devices_pipeline.PipeParams, r: devices_pipeline.PipeResult) -> None:
    tr, device = charts_text("pipeline"), device_label(r.device)
    metrics(
        Metric(t("pipeline.chosen_metric", s=r.split_size), f"{r.chosen_total_s * 1e3:.3g} ms"),
        Metric(t("pipeline.best_metric", s=r.best_split), f"{r.best_total_s * 1e3:.3g} ms"),
        Metric(t("pipeline.no_pipeline_metric"), f"{r.no_pipeline_s * 1e3:.3g} ms"),
        Metric(t("pipeline.single_metric"), f"{r.single_device_s * 1e3:.3g} ms"),
    )
    caption = {"device": device, "gbps": f"{r.transfer_gbps:g}", "width": r.width}
    figure(devices_charts.pipeline_figure(r, tr), "pipeline.caption", key="pipeline.curve", **caption)
    st.markdown(t("pipeline.measured_line", **(devices_charts.measured_values(r) | {"device": device})))
    figure(devices_charts.stage_times_figure(r, tr), "pipeline.caption_stages", key="pipeline.stages", device=device)
    with st.expander(t("pipeline.table_heading")):
        table(devices_charts.pipeline_table(r, tr), "pipeline.table_caption")


@experiment_block(devices_checkpoint.CHECKPOINT, devices_checkpoint.PLAIN_LOAD, devices_checkpoint.NON_STRICT, columns=4)
def checkpoint(p: devices_checkpoint.CkptParams, r: devices_checkpoint.CkptResult) -> None:
    tr = charts_text("checkpoint")
    st.markdown(t("checkpoint.saved_line", call=r.saved_call, device=r.device, bytes=r.file_bytes))
    if r.wrap:
        ids = ", ".join(map(str, r.dp_device_ids)) or "—"
        st.markdown(t("checkpoint.wrapper_line", ids=ids, matches=yes_no(bool(r.wrapper_matches))))
    table(devices_charts.ckpt_saved_table(r, tr), "checkpoint.saved_caption")
    table(devices_charts.ckpt_keys_table(r, tr), "checkpoint.keys_caption")
    st.markdown(t("checkpoint.report_line", missing=len(r.missing_keys), unexpected=len(r.unexpected_keys)))
    if r.strict_error:
        torch_says(r.strict_error)
    else:
        st.markdown(t("checkpoint.strict_ok"))
    if r.all_equal:
        st.success(t("checkpoint.all_equal"), icon=":material/check_circle:")
    else:
        st.warning(t("checkpoint.not_equal", n=r.equal_per_key.count(False), total=len(r.model_keys)))
    table(devices_charts.ckpt_equal_table(r, tr), "checkpoint.equal_caption")


lesson_page(
    "devices",
    TABS,
    {
        "facts": facts_moves_visible,
        "dataparallel": dataparallel,
        "pipeline": pipeline,
        "checkpoint": checkpoint,
        "pitfalls": mismatch,
    },
)
