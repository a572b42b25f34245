"""Lesson 5 — Training loops: regression you can watch, optimizers on surfaces, schedules, freezing, reproducibility."""

from core.lessons.training import TABS
from core.lessons.training import charts as train_charts
from core.lessons.training import charts_runs as runs_charts
from core.lessons.training import freeze as train_freeze
from core.lessons.training import linreg as train_linreg
from core.lessons.training import logreg as train_logreg
from core.lessons.training import optim as train_optim
from core.lessons.training import repro as train_repro
from core.lessons.training import sched as train_sched
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import Metric, charts_text, figure, lesson_page, metrics, table, torch_says
from ui.widgets import index_slider


@experiment_block(train_linreg.LINREG, train_linreg.LR_TOO_BIG, columns=5)
def linreg(p: train_linreg.LinregParams, r: train_linreg.LinregResult) -> None:
    tr = charts_text("train_linreg")
    metrics(
        Metric(t("train_linreg.iters"), r.iters if r.stopped else t("train_linreg.not_stopped", iters=r.iters)),
        Metric("w", f"{r.w[-1]:.4g}", t("train_linreg.pitfall_value", value=f"{r.pitfall_w[-1]:.4g}")),
        Metric("b", f"{r.b[-1]:.4g}", t("train_linreg.pitfall_value", value=f"{r.pitfall_b[-1]:.4g}")),
    )
    step = index_slider("train_linreg.step", t("train_linreg.step"), r.iters, r.iters)
    figure(train_charts.linreg_fit(r, step, tr), "train_linreg.caption_fit", key="train_linreg.fit")
    figure(train_charts.linreg_loss(r, p.threshold, tr), "train_linreg.caption_loss", key="train_linreg.loss")
    figure(train_charts.linreg_surface(r, tr), "train_linreg.caption_surface", key="train_linreg.surface")


@experiment_block(train_logreg.LOGREG, train_logreg.WIDE_CLUSTERS, columns=5)
def logreg(p: train_logreg.LogregParams, r: train_logreg.LogregResult) -> None:
    tr = charts_text("train_logreg")
    metrics(
        Metric(t("train_logreg.reached"), r.reached if r.reached >= 0 else t("train_logreg.never")),
        Metric(t("train_logreg.final"), f"{r.accuracy[-1]:.1%}", t("train_logreg.after", steps=r.steps)),
    )
    step = index_slider("train_logreg.step", t("train_logreg.step"), r.steps, r.steps)
    figure(train_charts.logreg_boundary(r, step, tr), "train_logreg.caption_boundary", key="train_logreg.boundary")
    figure(train_charts.logreg_curves(r, tr), "train_logreg.caption_curves", key="train_logreg.curves")


# one cached run per optimizer, unpacked into the builders
@experiment_block(train_optim.OPTIM, train_optim.WINNER, columns=4)
def optim(p: train_optim.OptimParams, results: list[train_optim.OptimResult]) -> None:
    tr = charts_text("train_optim")
    figure(train_charts.optim_paths(tr, *results), "train_optim.caption_paths", key="train_optim.paths")
    figure(train_charts.optim_loss(tr, *results), "train_optim.caption_loss", key="train_optim.loss")
    table(train_charts.optim_table(tr, *results), "train_optim.caption_table")
    if p.mode == "best":
        figure(train_charts.optim_sweep(tr, *results), "train_optim.caption_sweep", key="train_optim.sweep")


@experiment_block(train_sched.SCHED, train_sched.WRONG_ORDER, columns=4)
def sched(p: train_sched.SchedParams, r: train_sched.SchedResult) -> None:
    tr = charts_text("train_sched")
    if r.warning:
        torch_says(r.warning)
    metrics(
        Metric(t("train_sched.final_scheduled"), f"{r.loss[-1]:.4g}"),
        Metric(t("train_sched.final_constant"), f"{r.baseline[-1]:.4g}"),
    )
    figure(runs_charts.sched_figure(r, tr), "train_sched.caption", key="train_sched.fig")
    table(runs_charts.sched_groups(r, tr), "train_sched.caption_groups")


@experiment_block(train_freeze.FREEZE, train_freeze.ZERO_GRAD_MOVES, columns=4)
def freeze(p: train_freeze.FreezeParams, r: train_freeze.FreezeResult) -> None:
    tr = charts_text("train_freeze")
    table(runs_charts.freeze_table(r, tr), "train_freeze.caption_table")
    figure(runs_charts.freeze_figure(r, tr), "train_freeze.caption_fig", key="train_freeze.fig")


@experiment_block(train_repro.REPRO, train_repro.SAME_SEED, columns=5)
def repro(p: train_repro.ReproParams, r: train_repro.ReproResult) -> None:
    tr = charts_text("train_repro")
    verdict = t("train_repro.identical" if r.identical else "train_repro.differ")
    ratio = f"×{r.seconds_mode / r.seconds_default:.2f}"
    metrics(
        Metric(t("train_repro.max_diff"), f"{r.max_diff:g}", verdict),
        Metric(t("train_repro.seconds_default"), f"{r.seconds_default * 1e3:.3g} ms"),
        Metric(t("train_repro.seconds_mode", mode=p.mode), f"{r.seconds_mode * 1e3:.3g} ms", ratio),
    )
    figure(runs_charts.repro_figure(r, tr), "train_repro.caption", key="train_repro.fig", device=r.device)


lesson_page(
    "training",
    TABS,
    {"linreg": linreg, "logreg": logreg, "optim": optim, "sched": sched, "freeze": freeze, "repro": repro},
)
