"""Lesson 8 — Datasets and loaders: which sample lands in which batch, collate_fn, workers and throughput, worker seeds."""

import streamlit as st

from core.lessons.data import TABS
from core.lessons.data import batches as data_batches
from core.lessons.data import charts as data_charts
from core.lessons.data import collate as data_collate
from core.lessons.data import datasets as data_sets
from core.lessons.data import seeds as data_seeds
from core.lessons.data import workers as data_workers
from core.lessons.data.common import worker_cap
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import charts_text, figure, lesson_page, table, torch_says
from ui.run import code_panel, predict, run_experiment


@experiment_block(data_sets.SETS, columns=5)
def sets(p: data_sets.SetsParams, r: data_sets.SetsResult) -> None:
    table(data_charts.datasets_table(r, charts_text("data_sets")), "data_sets.table_caption")
    st.markdown(t("data_sets.timing", seconds=f"{r.pass_seconds:.3f}", expected=f"{r.expected_seconds:.3f}"))


@experiment_block(data_batches.BATCHES, data_batches.DROP_LAST, data_batches.THIRD_BATCH, columns=4)
def batches(p: data_batches.BatchesParams, r: data_batches.BatchesResult) -> None:
    tr = charts_text("data_batches")
    dropped = r.per_epoch - sum(r.batch_sizes[0])
    st.markdown(t("data_batches.summary", batches=r.n_batches, per_epoch=r.per_epoch, dropped=dropped))
    figure(data_charts.batch_grid(r, tr), "data_batches.caption", key="data_batches.grid")
    if r.sampler == "weighted":
        table(data_charts.class_counts_table(r, tr), "data_batches.counts_caption")


@experiment_block(data_collate.COLLATE, data_collate.PADDED_SHAPE, columns=4)
def collate(p: data_collate.CollateParams, r: data_collate.CollateResult) -> None:
    tr = charts_text("data_collate")
    if r.default_error:
        torch_says(r.default_error)
    table(data_charts.collate_table(r, tr), "data_collate.table_caption")
    figure(data_charts.padded_figure(r, tr), "data_collate.caption", key="data_collate.fig")


@st.fragment
def workers() -> None:
    """The worker cap above the widgets, then throughput per worker count (one isolated run each) and the clean-up."""
    st.caption(t("data_workers.cap", cap=worker_cap()))
    p, parts = run_experiment(data_workers.WORKERS, columns=4)
    if parts is not None:
        r = data_workers.combine(parts)
        tr = charts_text("data_workers")
        figure(data_charts.throughput_figure(r, tr), "data_workers.caption", key="data_workers.fig", cores=r.cores)
        table(data_charts.seconds_table(r, tr))
        for warning in r.warnings:
            torch_says(warning)
        st.markdown(t("data_workers.cleanup", started=len(r.worker_pids), left=r.left_running))
    code_panel(data_workers.WORKERS, p)
    predict(data_workers.TWO_WORKERS)


# one isolated run per mode
@experiment_block(data_seeds.SEEDS, data_seeds.GLOBAL_RNG, data_seeds.SHARED_EPOCHS, columns=4)
def seeds(p: data_seeds.SeedsParams, parts: list[data_seeds.SeedsResult]) -> None:
    tr = charts_text("data_seeds")
    for r in parts:
        verdict = "same" if r.same_across_workers[0] else "different"
        st.markdown(f"**{t(f'data_seeds.modes_choices.{r.modes[0]}')}** — {t(f'data_seeds.verdict_{verdict}')}")
        table(data_charts.draws_table(r, 0, tr))
    st.caption(t("data_seeds.caption"))


lesson_page(
    "data",
    TABS,
    {"sets": sets, "batches": batches, "collate": collate, "workers": workers, "seeds": seeds},
)
