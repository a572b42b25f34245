"""Lesson 4 — Weight initialization: distributions, fans and gains, signal flow, training consequence."""

import streamlit as st

from core.lessons.init import TABS
from core.lessons.init import charts as init_charts
from core.lessons.init import dist as init_dist
from core.lessons.init import fans as init_fans
from core.lessons.init import signal as init_signal
from core.lessons.init import train as init_train
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import Metric, charts_text, figure, lesson_page, metrics, table


@experiment_block(init_dist.DIST, columns=4)
def dist(p: init_dist.DistParams, r: init_dist.DistResult) -> None:
    tr = charts_text("dist")
    figure(init_charts.dist_figure(r, tr), "dist.caption", key="dist.fig", shape=r.shape, fan_in=r.fan_in, fan_out=r.fan_out)
    st.markdown(t("dist.formula", formula=r.formula))
    table(init_charts.dist_table(r, tr))
    if r.theory_zero_fraction is not None:
        measured, theory = f"{init_charts.zero_fraction(r):.3f}", f"{r.theory_zero_fraction:.3f}"
        st.markdown(t("dist.sparse_line", measured=measured, theory=theory))
    if r.gram_max_dev is not None:
        st.markdown(t("dist.orthogonal_line", dev=f"{r.gram_max_dev:.1e}"))


@experiment_block(init_fans.FANS, init_fans.FAN_IN, columns=4)
def fans(p: init_fans.FansParams, r: init_fans.FansResult) -> None:
    metrics(
        Metric(t("fans.shape"), str(r.weight_shape)),
        Metric("fan_in", f"{r.fan_in}", t("fans.torch_says", value=r.torch_fan_in)),
        Metric("fan_out", f"{r.fan_out}", t("fans.torch_says", value=r.torch_fan_out)),
    )
    if r.layer == "conv2d":
        o, i, kh, kw = r.weight_shape
        st.markdown(t("fans.formula_conv", i=i, o=o, kh=kh, kw=kw, fan_in=r.fan_in, fan_out=r.fan_out))
    else:
        o, i = r.weight_shape
        st.markdown(t("fans.formula_linear", i=i, o=o))
    table(init_charts.gains_table(r, charts_text("fans")), "fans.gains_caption")


@experiment_block(init_signal.SIGNAL, init_signal.RELU_XAVIER, init_signal.TANH_STANDARD, columns=4)
def signal(p: init_signal.SignalParams, r: init_signal.SignalResult) -> None:
    tr = charts_text("signal")
    ratios = [
        Metric(t("signal.ratio", config=config), measured, t("signal.theory_ratio", value=theory))
        for config, measured, theory in init_charts.signal_ratios(r)
    ]
    metrics(*ratios)
    figure(init_charts.signal_figure(r, tr, "act"), "signal.caption_act", key="signal.act", seeds=p.seeds)
    figure(init_charts.signal_figure(r, tr, "grad"), "signal.caption_grad", key="signal.grad")
    figure(init_charts.signal_hist_figure(r, tr), "signal.caption_hist", key="signal.hist")


# one cached run per initialization
@experiment_block(init_train.TRAIN, columns=4)
def train(p: init_train.TrainParams, results: list[init_train.TrainResult]) -> None:
    figure(init_charts.train_figure(results, charts_text("train")), "train.caption", key="train.fig")


lesson_page("init", TABS, {"dist": dist, "fans": fans, "signal": signal, "train": train})
