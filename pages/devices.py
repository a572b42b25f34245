"""Lesson — Devices and many GPUs: device facts and .to costs, DataParallel, pipelining, portable checkpoints."""

import streamlit as st

from core import charts_devices as C
from core import devices as D
from ui.catalog import DEVICES
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, gpu_note, lesson_tabs, script_box, table, torch_says
from ui.run import run_cached
from ui.widgets import param_widgets

st.title(t("nav.devices"))
prose("devices", "intro")
tab, panel = lesson_tabs("devices", DEVICES.tabs)
with panel:
    prose("devices", tab)
    if tab == "facts":
        p = param_widgets(D.FactsParams, "facts", columns=2)
        r = run_cached(D.run_facts, p, prefix="facts", exclusive=True)  # timed: alone on the device
        if p and r:
            tr = charts_text("facts")
            table(C.facts_table(r, tr), "facts.table_caption")
            if r.gpus:
                table(C.gpus_table(r, tr), "facts.gpus_caption")
            gpu_note([name for name in r.gpu_only if getattr(r, name) is None])  # gpu_only names every CUDA part
            yes_no = {True: t("yes"), False: t("no")}
            st.markdown(t("facts.same_line", same=yes_no[r.same_object], ptr=yes_no[r.same_data_ptr]))
            if r.cuda_same_object is not None:
                st.markdown(t("facts.cuda_same_line", same=yes_no[r.cuda_same_object]))
            figure(C.transfer_figure(r, tr), "facts.caption", key="facts.fig", mb=r.nbytes // 2**20)
            table(C.transfer_table(r, tr), "facts.transfer_caption")
            script_box(D.code_facts(p), "devices_facts.py")
        q = run_cached(D.run_facts, D.FactsParams(), exclusive=True)
        ask("same", t("facts.predict_q"), [t("facts.same_tensor"), t("facts.new_copy")],
                None if q is None else t("facts.same_tensor" if q.same_object else "facts.new_copy"),
                t("facts.predict_why"))  # fmt: skip

    elif tab == "dataparallel":
        p = param_widgets(D.DPParams, "dataparallel", columns=4)
        r = run_cached(D.run_dataparallel, p, prefix="dataparallel")
        if p and r:
            tr = charts_text("dataparallel")
            sizes = ", ".join(map(str, r.chunk_sizes))
            st.markdown(t("dataparallel.split_line", N=r.batch, G=r.replicas, k=len(r.chunk_sizes), sizes=sizes))
            if len(r.chunk_sizes) < r.replicas:
                st.markdown(t("dataparallel.fewer_line", G=r.replicas, k=len(r.chunk_sizes)))
            table(C.dp_replicas_table(r, tr), "dataparallel.replicas_caption")
            figure(C.dp_losses_figure(r, tr), "dataparallel.caption_losses", key="dataparallel.losses")
            table(C.dp_reductions_table(r, tr), "dataparallel.reductions_caption")
            st.markdown(t("dataparallel.even_line" if r.even_split else "dataparallel.uneven_line",
                          naive=f"{r.mean_of_means:.6g}", full=f"{r.global_mean:.6g}"))  # fmt: skip
            figure(C.dp_weights_figure(r, tr), "dataparallel.caption_weights", key="dataparallel.weights", N=r.batch)
            if r.grad_diff_naive is not None and r.grad_diff_weighted is not None:
                figure(C.dp_grad_figure(r, tr), "dataparallel.caption_grad", key="dataparallel.grad")
                st.markdown(t("dataparallel.grad_line", weighted=C.sci(r.grad_diff_weighted), naive=C.sci(r.grad_diff_naive)))
            script_box(D.code_dataparallel(p), "devices_dataparallel.py")
        q = run_cached(D.run_dataparallel, D.DPParams(seeds_example=True, replicas=2))
        options = ["0.433", "0.525", "0.55"]
        answer = None if q is None else min(options, key=lambda o: abs(float(o) - q.mean_of_means))
        ask("mean_of_means", t("dataparallel.predict_q"), options, answer, t("dataparallel.predict_why"))
        q = run_cached(D.run_dataparallel, D.DPParams(seeds_example=False, batch=5, replicas=4))
        ask("gpus_used", t("dataparallel.predict_gpus_q"), ["2", "3", "4", "5"],
                None if q is None else str(len(q.chunk_sizes)), t("dataparallel.predict_gpus_why"))  # fmt: skip

    elif tab == "pipeline":
        p = param_widgets(D.PipeParams, "pipeline", columns=3)
        r = run_cached(D.run_pipeline, p, prefix="pipeline", exclusive=True)  # timed: alone on the device
        if p and r:
            tr = charts_text("pipeline")
            cols = st.columns(4)
            cols[0].metric(t("pipeline.chosen_metric", s=r.split_size), f"{r.chosen_total_s * 1e3:.3g} ms")
            cols[1].metric(t("pipeline.best_metric", s=r.best_split), f"{r.best_total_s * 1e3:.3g} ms")
            cols[2].metric(t("pipeline.no_pipeline_metric"), f"{r.no_pipeline_s * 1e3:.3g} ms")
            cols[3].metric(t("pipeline.single_metric"), f"{r.single_device_s * 1e3:.3g} ms")
            figure(C.pipeline_figure(r, tr), "pipeline.caption", key="pipeline.curve", device=r.device,
                   gbps=f"{r.transfer_gbps:g}", width=r.width)  # fmt: skip
            st.markdown(t("pipeline.measured_line", device=r.device, o1=C.us(r.overhead_s[0]), o2=C.us(r.overhead_s[1]),
                          s1=C.us(r.per_sample_s[0]), s2=C.us(r.per_sample_s[1])))  # fmt: skip
            figure(C.stage_times_figure(r, tr), "pipeline.caption_stages", key="pipeline.stages", device=r.device)
            with st.expander(t("pipeline.table_heading")):
                table(C.pipeline_table(r, tr), "pipeline.table_caption")
            script_box(D.code_pipeline(p), "devices_pipeline.py")
        q = run_cached(D.run_pipeline, D.PipeParams(), exclusive=True)
        verdict = None
        if q is not None:
            verdict = "smallest" if q.best_split == 1 else "whole" if q.best_split == q.batch else "between"
        ask("best_split", t("pipeline.predict_q"), [t(f"pipeline.{v}") for v in ("smallest", "between", "whole")],
                None if verdict is None else t(f"pipeline.{verdict}"), t("pipeline.predict_why"))  # fmt: skip

    elif tab == "checkpoint":
        p = param_widgets(D.CkptParams, "checkpoint", columns=4)
        r = run_cached(D.run_checkpoint, p, prefix="checkpoint")
        if p and r:
            tr = charts_text("checkpoint")
            st.markdown(t("checkpoint.saved_line", call=r.saved_call, device=r.device, bytes=r.file_bytes))
            if r.wrap:
                ids = ", ".join(map(str, r.dp_device_ids)) or "—"
                st.markdown(t("checkpoint.wrapper_line", ids=ids, matches=t("yes") if r.wrapper_matches else t("no")))
            table(C.ckpt_saved_table(r, tr), "checkpoint.saved_caption")
            table(C.ckpt_keys_table(r, tr), "checkpoint.keys_caption")
            st.markdown(t("checkpoint.report_line", missing=len(r.missing_keys), unexpected=len(r.unexpected_keys)))
            if r.strict_error:
                torch_says(r.strict_error)
            else:
                st.markdown(t("checkpoint.strict_ok"))
            if r.all_equal:
                st.success(t("checkpoint.all_equal"), icon=":material/check_circle:")
            else:
                st.warning(t("checkpoint.not_equal", n=r.equal_per_key.count(False), total=len(r.model_keys)))
            table(C.ckpt_equal_table(r, tr), "checkpoint.equal_caption")
            script_box(D.code_checkpoint(p), "devices_checkpoint.py")
        q = run_cached(D.run_checkpoint, D.CkptParams(wrap=True, strip="none"))
        outcome = None if q is None else "loads" if q.strict_error is None else "keys" if q.missing_keys else "other"
        ask("plain_load", t("checkpoint.predict_q"), [t(f"checkpoint.{v}") for v in ("loads", "keys", "other")],
                None if outcome is None else t(f"checkpoint.{outcome}"), t("checkpoint.predict_why"))  # fmt: skip
        equal = None if q is None else sum(q.equal_per_key)
        share = None if equal is None else "all" if equal == len(q.model_keys) else "none" if equal == 0 else "some"
        ask("non_strict", t("checkpoint.predict_strict_q"), [t(f"checkpoint.{v}") for v in ("all", "some", "none")],
                None if share is None else t(f"checkpoint.{share}"), t("checkpoint.predict_strict_why"))  # fmt: skip
