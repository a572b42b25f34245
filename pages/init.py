"""Lesson 4 — Weight initialization: distributions, fans and gains, signal flow, training consequence."""

from dataclasses import replace

import streamlit as st

from core import charts
from core import init as I
from ui.catalog import INIT
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, lesson_tabs, script_box, table
from ui.run import run_cached, run_parts
from ui.session import leave_pages_folder_mode
from ui.widgets import param_widgets

leave_pages_folder_mode()

st.title(t("nav.init"))
prose("init", "intro")
tab, panel = lesson_tabs("init", INIT.tabs)
with panel:
    prose("init", tab)
    if tab == "dist":
        p = param_widgets(I.DistParams, "dist", columns=4)
        r = run_cached(I.run_dist, p, prefix="dist")
        if p and r:
            tr = charts_text("dist")
            figure(charts.dist_figure(r, tr), "dist.caption", key="dist.fig", shape=r.shape, fan_in=r.fan_in,
                   fan_out=r.fan_out)  # fmt: skip
            st.markdown(t("dist.formula", formula=r.formula))
            table(charts.dist_table(r, tr))
            if r.theory_zero_fraction is not None:
                st.markdown(t("dist.sparse_line", measured=f"{r.col_zero_fraction.mean():.3f}",
                              theory=f"{r.theory_zero_fraction:.3f}"))  # fmt: skip
            if r.gram_max_dev is not None:
                st.markdown(t("dist.orthogonal_line", dev=f"{r.gram_max_dev:.1e}"))
            script_box(I.code_dist(p), "init_distribution.py")

    elif tab == "fans":
        p = param_widgets(I.FansParams, "fans", columns=4)
        r = run_cached(I.run_fans, p, prefix="fans")
        if p and r:
            cols = st.columns(3)
            cols[0].metric(t("fans.shape"), str(r.weight_shape))
            cols[1].metric("fan_in", f"{r.fan_in}", t("fans.torch_says", value=r.torch_fan_in), delta_color="off",
                           delta_arrow="off")  # fmt: skip
            cols[2].metric("fan_out", f"{r.fan_out}", t("fans.torch_says", value=r.torch_fan_out), delta_color="off",
                           delta_arrow="off")  # fmt: skip
            if r.layer == "conv2d":
                st.markdown(t("fans.formula_conv", i=p.in_channels, o=p.out_channels, kh=p.kernel_h, kw=p.kernel_w,
                              fan_in=r.fan_in, fan_out=r.fan_out))  # fmt: skip
            else:
                st.markdown(t("fans.formula_linear", i=p.in_features, o=p.out_features))
            table(charts.gains_table(r, charts_text("fans")), "fans.gains_caption")
            script_box(I.code_fans(p), "fans_and_gains.py")
        q = run_cached(I.run_fans, I.FansParams(layer="conv2d", in_channels=16, out_channels=32, kernel_h=3, kernel_w=3))
        ask("fan_in", t("fans.predict_q"), ["16", "48", "144", "288"], None if q is None else str(q.fan_in),
                t("fans.predict_why"))  # fmt: skip

    elif tab == "signal":
        p = param_widgets(I.SignalParams, "signal", columns=4)
        r = run_cached(I.run_signal, p, prefix="signal")
        if p and r:
            tr = charts_text("signal")
            cols = st.columns(2)
            for col, run in zip(cols, r.runs, strict=True):
                theory = "—" if run.theory is None else f"{run.theory.ratio:.3g}"
                measured = "—" if run.forward_ratio is None else f"{run.forward_ratio:.3g}"
                col.metric(t("signal.ratio", config=f"{run.activation} + {run.scheme}"), measured,
                           t("signal.theory_ratio", value=theory), delta_color="off", delta_arrow="off")  # fmt: skip
            figure(charts.signal_figure(r, tr, "act"), "signal.caption_act", key="signal.act")
            figure(charts.signal_figure(r, tr, "grad"), "signal.caption_grad", key="signal.grad")
            figure(charts.signal_hist_figure(r, tr), "signal.caption_hist", key="signal.hist")
            script_box(I.code_signal(p), "signal_flow.py")
        q = run_cached(I.run_signal, I.SignalParams(activation="relu", scheme="xavier_normal", depth=20))
        ratio = None if q is None else q.runs[0].act_std[-1] / q.runs[0].act_std[0]
        verdict = None if ratio is None else ("shrinks" if ratio < 0.1 else "grows" if ratio > 10 else "same")
        ask("relu_xavier", t("signal.predict_q"), [t(f"signal.{v}") for v in ("shrinks", "same", "grows")],
                None if verdict is None else t(f"signal.{verdict}"), t("signal.predict_why"))  # fmt: skip

    elif tab == "train":
        p = param_widgets(I.TrainParams, "train", columns=4)
        if p:
            # One cached run per initialization, so the bar moves as each finishes.
            parts = [replace(p, schemes=(scheme,)) for scheme in p.schemes]
            results = run_parts(I.run_train, parts, "train.progress", prefix="train")
            if results:
                figure(charts.train_figure(results, charts_text("train")), "train.caption", key="train.fig")
            script_box(I.code_train(p), "train_per_init.py")
