"""Lesson 5 — Training loops: regression you can watch, optimizers on surfaces, schedules, freezing, reproducibility."""

import streamlit as st

from core.lessons.training import TABS
from core.lessons.training import charts as train_charts
from core.lessons.training import charts_runs as runs_charts
from core.lessons.training import freeze as train_freeze
from core.lessons.training import linreg as train_linreg
from core.lessons.training import logreg as train_logreg
from core.lessons.training import optim as train_optim
from core.lessons.training import repro as train_repro
from core.lessons.training import sched as train_sched
from ui.i18n import t
from ui.panels import charts_text, figure, lesson_page, table, torch_says
from ui.run import code_panel, predict, run_experiment
from ui.widgets import index_slider


@st.fragment
def linreg() -> None:
    p, r = run_experiment(train_linreg.LINREG, columns=5)
    if p is not None and r is not None:
        tr = charts_text("train_linreg")
        iters, w, b = st.columns(3)
        iters.metric(t("train_linreg.iters"), r.iters if r.stopped else t("train_linreg.not_stopped", iters=r.iters))
        w.metric(
            "w",
            f"{r.w[-1]:.4g}",
            t("train_linreg.pitfall_value", value=f"{r.pitfall_w[-1]:.4g}"),
            delta_color="off",
            delta_arrow="off",
        )
        b.metric(
            "b",
            f"{r.b[-1]:.4g}",
            t("train_linreg.pitfall_value", value=f"{r.pitfall_b[-1]:.4g}"),
            delta_color="off",
            delta_arrow="off",
        )
        step = index_slider("train_linreg.step", t("train_linreg.step"), r.iters, r.iters)
        figure(train_charts.linreg_fit(r, step, tr), "train_linreg.caption_fit", key="train_linreg.fit")
        figure(train_charts.linreg_loss(r, p.threshold, tr), "train_linreg.caption_loss", key="train_linreg.loss")
        figure(train_charts.linreg_surface(r, tr), "train_linreg.caption_surface", key="train_linreg.surface")
    code_panel(train_linreg.LINREG, p)
    predict(train_linreg.LR_TOO_BIG)


@st.fragment
def logreg() -> None:
    p, r = run_experiment(train_logreg.LOGREG, columns=5)
    if p is not None and r is not None:
        tr = charts_text("train_logreg")
        reached, final = st.columns(2)
        reached.metric(t("train_logreg.reached"), r.reached if r.reached >= 0 else t("train_logreg.never"))
        final.metric(
            t("train_logreg.final"),
            f"{r.accuracy[-1]:.1%}",
            t("train_logreg.after", steps=r.steps),
            delta_color="off",
            delta_arrow="off",
        )
        step = index_slider("train_logreg.step", t("train_logreg.step"), r.steps, r.steps)
        figure(train_charts.logreg_boundary(r, step, tr), "train_logreg.caption_boundary", key="train_logreg.boundary")
        figure(train_charts.logreg_curves(r, tr), "train_logreg.caption_curves", key="train_logreg.curves")
    code_panel(train_logreg.LOGREG, p)
    predict(train_logreg.WIDE_CLUSTERS)


@st.fragment
def optim() -> None:
    p, results = run_experiment(train_optim.OPTIM, columns=4)  # one cached run per optimizer, unpacked into the builders
    if p is not None and results is not None:
        tr = charts_text("train_optim")
        figure(train_charts.optim_paths(tr, *results), "train_optim.caption_paths", key="train_optim.paths")
        figure(train_charts.optim_loss(tr, *results), "train_optim.caption_loss", key="train_optim.loss")
        table(train_charts.optim_table(tr, *results), "train_optim.caption_table")
        if p.mode == "best":
            figure(train_charts.optim_sweep(tr, *results), "train_optim.caption_sweep", key="train_optim.sweep")
    code_panel(train_optim.OPTIM, p)
    predict(train_optim.WINNER)


@st.fragment
def sched() -> None:
    p, r = run_experiment(train_sched.SCHED, columns=4)
    if p is not None and r is not None:
        tr = charts_text("train_sched")
        if r.warning:
            torch_says(r.warning)
        with_schedule, constant = st.columns(2)
        with_schedule.metric(t("train_sched.final_scheduled"), f"{r.loss[-1]:.4g}")
        constant.metric(t("train_sched.final_constant"), f"{r.baseline[-1]:.4g}")
        figure(runs_charts.sched_figure(r, tr), "train_sched.caption", key="train_sched.fig")
        table(runs_charts.sched_groups(r, tr), "train_sched.caption_groups")
    code_panel(train_sched.SCHED, p)
    predict(train_sched.WRONG_ORDER)


@st.fragment
def freeze() -> None:
    p, r = run_experiment(train_freeze.FREEZE, columns=4)
    if p is not None and r is not None:
        tr = charts_text("train_freeze")
        table(runs_charts.freeze_table(r, tr), "train_freeze.caption_table")
        figure(runs_charts.freeze_figure(r, tr), "train_freeze.caption_fig", key="train_freeze.fig")
    code_panel(train_freeze.FREEZE, p)
    predict(train_freeze.ZERO_GRAD_MOVES)


@st.fragment
def repro() -> None:
    p, r = run_experiment(train_repro.REPRO, columns=5)
    if p is not None and r is not None:
        tr = charts_text("train_repro")
        diff, default, chosen = st.columns(3)
        diff.metric(
            t("train_repro.max_diff"),
            f"{r.max_diff:g}",
            t("train_repro.identical" if r.identical else "train_repro.differ"),
            delta_color="off",
            delta_arrow="off",
        )
        default.metric(t("train_repro.seconds_default"), f"{r.seconds_default * 1e3:.3g} ms")
        chosen.metric(
            t("train_repro.seconds_mode", mode=p.mode),
            f"{r.seconds_mode * 1e3:.3g} ms",
            f"×{r.seconds_mode / r.seconds_default:.2f}",
            delta_color="off",
            delta_arrow="off",
        )
        figure(runs_charts.repro_figure(r, tr), "train_repro.caption", key="train_repro.fig", device=r.device)
    code_panel(train_repro.REPRO, p)
    predict(train_repro.SAME_SEED)


lesson_page(
    "training",
    TABS,
    {"linreg": linreg, "logreg": logreg, "optim": optim, "sched": sched, "freeze": freeze, "repro": repro},
)
