"""Lesson 4 — Weight initialization: distributions, fans and gains, signal flow, training consequence."""

import streamlit as st

from core.lessons.init import TABS
from core.lessons.init import charts as init_charts
from core.lessons.init import dist as init_dist
from core.lessons.init import fans as init_fans
from core.lessons.init import signal as init_signal
from core.lessons.init import train as init_train
from ui.i18n import t
from ui.panels import charts_text, figure, lesson_page, table
from ui.run import code_panel, predict, run_experiment


@st.fragment
def dist() -> None:
    p, r = run_experiment(init_dist.DIST, columns=4)
    if r is not None:
        tr = charts_text("dist")
        figure(
            init_charts.dist_figure(r, tr), "dist.caption", key="dist.fig", shape=r.shape, fan_in=r.fan_in, fan_out=r.fan_out
        )
        st.markdown(t("dist.formula", formula=r.formula))
        table(init_charts.dist_table(r, tr))
        if r.theory_zero_fraction is not None:
            measured, theory = f"{init_charts.zero_fraction(r):.3f}", f"{r.theory_zero_fraction:.3f}"
            st.markdown(t("dist.sparse_line", measured=measured, theory=theory))
        if r.gram_max_dev is not None:
            st.markdown(t("dist.orthogonal_line", dev=f"{r.gram_max_dev:.1e}"))
    code_panel(init_dist.DIST, p)


@st.fragment
def fans() -> None:
    p, r = run_experiment(init_fans.FANS, columns=4)
    if r is not None:
        shape, fan_in, fan_out = st.columns(3)
        shape.metric(t("fans.shape"), str(r.weight_shape))
        fan_in.metric("fan_in", f"{r.fan_in}", t("fans.torch_says", value=r.torch_fan_in), delta_color="off", delta_arrow="off")
        fan_out.metric(
            "fan_out", f"{r.fan_out}", t("fans.torch_says", value=r.torch_fan_out), delta_color="off", delta_arrow="off"
        )
        if r.layer == "conv2d":
            o, i, kh, kw = r.weight_shape
            st.markdown(t("fans.formula_conv", i=i, o=o, kh=kh, kw=kw, fan_in=r.fan_in, fan_out=r.fan_out))
        else:
            o, i = r.weight_shape
            st.markdown(t("fans.formula_linear", i=i, o=o))
        table(init_charts.gains_table(r, charts_text("fans")), "fans.gains_caption")
    code_panel(init_fans.FANS, p)
    predict(init_fans.FAN_IN)


@st.fragment
def signal() -> None:
    p, r = run_experiment(init_signal.SIGNAL, columns=4)
    if p is not None and r is not None:
        tr = charts_text("signal")
        for col, (config, measured, theory) in zip(st.columns(2), init_charts.signal_ratios(r), strict=True):
            col.metric(
                t("signal.ratio", config=config),
                measured,
                t("signal.theory_ratio", value=theory),
                delta_color="off",
                delta_arrow="off",
            )
        figure(init_charts.signal_figure(r, tr, "act"), "signal.caption_act", key="signal.act", seeds=p.seeds)
        figure(init_charts.signal_figure(r, tr, "grad"), "signal.caption_grad", key="signal.grad")
        figure(init_charts.signal_hist_figure(r, tr), "signal.caption_hist", key="signal.hist")
    code_panel(init_signal.SIGNAL, p)
    predict(init_signal.RELU_XAVIER)
    predict(init_signal.TANH_STANDARD)


@st.fragment
def train() -> None:
    p, results = run_experiment(init_train.TRAIN, columns=4)  # one cached run per initialization
    if results is not None:
        figure(init_charts.train_figure(results, charts_text("train")), "train.caption", key="train.fig")
    code_panel(init_train.TRAIN, p)


lesson_page("init", TABS, {"dist": dist, "fans": fans, "signal": signal, "train": train})
