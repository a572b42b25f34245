"""Lesson 1 — Tensors and memory: creation, shapes, the memory-layout inspector, broadcasting,
indexing, in-place ops, NumPy sharing and dtype conversions."""

import streamlit as st

from core.lessons.tensors import TABS
from core.lessons.tensors import broadcast as tensors_broadcast
from core.lessons.tensors import charts as tensors_charts
from core.lessons.tensors import create as tensors_create
from core.lessons.tensors import dtype as tensors_dtype
from core.lessons.tensors import index as tensors_index
from core.lessons.tensors import inplace as tensors_inplace
from core.lessons.tensors import layout as tensors_layout
from core.lessons.tensors import loop as tensors_loop
from core.lessons.tensors import numpy_sharing as tensors_numpy
from core.lessons.tensors import pitfalls as tensors_pitfalls
from core.lessons.tensors import reduce as tensors_reduce
from core.lessons.tensors import shape as tensors_shape
from ui.i18n import t
from ui.panels import charts_text, figure, lesson_page, table, torch_says
from ui.run import code_panel, predict, run_experiment


def vs_theory(value: float, theory: float | None) -> str | None:
    """Return a metric's delta: how far a sample statistic is from its true value (None when there is none)."""
    return None if theory is None else f"{value - theory:+.3g} vs {theory:.4g}"


@st.fragment
def create() -> None:
    p, r = run_experiment(tensors_create.CREATE)
    if r is not None and r.torch_error:
        torch_says(r.torch_error)
    elif r is not None and r.fn == "empty":
        st.info(t("create.empty_note", nbytes=r.nbytes, shape=r.shape))
    elif r is not None:
        caption = "create.caption_random" if r.counts.size else "create.caption_values"
        figure(tensors_charts.creation_figure(r, charts_text("create")), caption, key="create.fig")
        shape, mean, std, nbytes = st.columns(4)
        shape.metric(t("create.shape"), str(r.shape), help=f"dtype={r.dtype}, {r.nbytes:,} bytes")
        mean.metric(t("create.sample_mean"), f"{r.mean:.4g}", vs_theory(r.mean, r.theory_mean), delta_color="off")
        std.metric(t("create.sample_std"), f"{r.std:.4g}", vs_theory(r.std, r.theory_std), delta_color="off")
        nbytes.metric(t("create.bytes"), f"{r.nbytes:,}")
    code_panel(tensors_create.CREATE, p)


@st.fragment
def shape() -> None:
    p, r = run_experiment(tensors_shape.SHAPE)
    if r is not None:
        if r.torch_error:
            torch_says(r.torch_error)
        grids = tensors_charts.shape_grids(r)
        figure(tensors_charts.grids_figure(grids, t("shape.grid_title")), "shape.caption", key="shape.fig")
        table(tensors_charts.facts_table([r.input, *r.outputs], charts_text("shape")))
    code_panel(tensors_shape.SHAPE, p)
    predict(tensors_shape.VIEW_T)


@st.fragment
def layout() -> None:
    p, r = run_experiment(tensors_layout.LAYOUT)
    if p is not None and r is not None:
        tr = charts_text("layout")
        if r.edit_error:
            torch_says(r.edit_error)
        line = "layout.edit_line" if p.edit_op == "set" else "layout.edit_line_add"
        st.markdown(t(line, target=p.edit_target, pos=r.edit_position, value=p.edit_value))
        figure(tensors_charts.storage_figure(r, tr), "layout.caption", key="layout.fig")
        table(tensors_charts.layout_table(r, tr))
        grids = tensors_charts.layout_grids(r)
        figure(tensors_charts.grids_figure(grids, t("layout.grid_title")), "layout.grid_caption", key="layout.grids")
    code_panel(tensors_layout.LAYOUT, p)
    predict(tensors_layout.STRIDE_T)


@st.fragment
def broadcast() -> None:
    p, r = run_experiment(tensors_broadcast.BROADCAST, columns=2)
    if p is not None and r is not None:
        table(tensors_charts.broadcast_table(r, charts_text("broadcast")), "broadcast.table_caption")
        if r.torch_error:
            torch_says(r.torch_error)
        else:
            st.markdown(t("broadcast.result_line", shape=r.result_shape, sa=r.stride_a, sb=r.stride_b))
            grids = tensors_charts.broadcast_grids(r, p.shape_a, p.shape_b)
            if grids:
                figure(tensors_charts.grids_figure(grids, t("broadcast.grid_title")), "broadcast.caption", key="broadcast.fig")
    code_panel(tensors_broadcast.BROADCAST, p)
    predict(tensors_broadcast.BROADCAST_SHAPE)


@st.fragment
def index() -> None:
    p, r = run_experiment(tensors_index.INDEX)
    if p is not None and r is not None:
        st.code(r.expr, language="python")
        if r.torch_error:
            torch_says(r.torch_error)
        grids = tensors_charts.index_grids(r, charts_text("index"))
        figure(tensors_charts.grids_figure(grids, t("index.grid_title")), f"index.caption_{p.op}", key="index.fig")
    code_panel(tensors_index.INDEX, p)


@st.fragment
def reduce() -> None:
    p, r = run_experiment(tensors_reduce.REDUCE)
    if p is not None and r is not None:
        expr, back = tensors_reduce.reduce_expr(p), tensors_reduce.back_expr(p)
        st.code(expr, language="python")
        grids = tensors_charts.reduce_grids(r, expr, back)
        figure(tensors_charts.grids_figure(grids, t("reduce.grid_title")), f"reduce.caption_{p.op}", key="reduce.fig")
        if p.op != "clamp":
            table(tensors_charts.reduce_table(r, back, charts_text("reduce")), "reduce.table_caption")
            if r.back_drop_error:
                torch_says(r.back_drop_error)
    code_panel(tensors_reduce.REDUCE, p)
    predict(tensors_reduce.SUM_SHAPE)


@st.fragment
def loop() -> None:
    p, r = run_experiment(tensors_loop.LOOP)
    if p is not None and r is not None:
        figure(tensors_charts.loop_figure(r, charts_text("loop")), "loop.caption", key="loop.fig", threads=r.threads)
        loop_x, list_x, diff = st.columns(3)
        loop_x.metric(t("loop.tensor_loop_x"), f"{r.speedup('tensor_loop'):,.0f}×")
        list_x.metric(t("loop.list_loop_x"), f"{r.speedup('list_loop'):,.1f}×")
        diff.metric(t("loop.max_diff"), f"{r.max_diff:.3g}")
    code_panel(tensors_loop.LOOP, p)
    predict(tensors_loop.LOOP_FACTOR)


def reduce_and_loop() -> None:
    """The reduce tab holds two experiments: dim/keepdim/clamp on the grid, then the loop timed against one call."""
    reduce()
    st.subheader(t("loop.heading"))
    loop()


@st.fragment
def inplace() -> None:
    p, r = run_experiment(tensors_inplace.INPLACE)
    if p is not None and r is not None:
        st.code(tensors_inplace.inplace_statement(p), language="python")
        if r.torch_error:
            torch_says(r.torch_error)
        same, new_bytes, alias = st.columns(3)
        same.metric(t("inplace.same_storage"), t("yes") if r.same_storage else t("no"))
        new_bytes.metric(t("inplace.new_bytes"), f"{r.new_bytes:,}")
        alias.metric(t("inplace.alias_changed"), t("yes") if r.alias_changed() else t("no"))
        table(tensors_charts.inplace_table(r, charts_text("inplace")), "inplace.caption")
    code_panel(tensors_inplace.INPLACE, p)
    predict(tensors_inplace.INT_INPLACE)


@st.fragment
def numpy() -> None:
    p, r = run_experiment(tensors_numpy.NUMPY, columns=4)
    if p is not None and r is not None:
        shares, other, copied = st.columns(3)
        shares.metric(t("numpy.shares"), t("yes") if r.shares else t("no"))
        other.metric(t("numpy.other_after"), f"{r.other_after:g}")
        copied.metric(t("numpy.copied"), f"{r.copied_bytes:,}")
        figure(tensors_charts.numpy_figure(r, charts_text("numpy")), "numpy.caption", key="numpy.fig", n=p.n)
    code_panel(tensors_numpy.NUMPY, p)


@st.fragment
def dtype() -> None:
    p, r = run_experiment(tensors_dtype.DTYPE)
    if p is not None and r is not None:
        table(tensors_charts.dtype_table(r, p.src, p.dst, charts_text("dtype")), "dtype.caption")
        nbytes, time, same = st.columns(3)
        nbytes.metric(t("dtype.bytes"), f"{r.bytes_src} → {r.bytes_dst}")
        spread = t("dtype.spread", spread=f"{r.spread_us / 2:,.1f}")
        time.metric(t("dtype.time", n=f"{p.n:,}"), f"{r.time_us:,.1f} µs", spread, delta_color="off", delta_arrow="off")
        same.metric(t("dtype.same_object"), t("yes") if r.same_object else t("no"))
    code_panel(tensors_dtype.DTYPE, p)


def pitfall_steps(prefix: str, setup: str, steps: tuple[tensors_pitfalls.StepOutcome, ...]) -> None:
    """Show a live pitfall: the setup, then each statement with what torch printed, warned or raised, and why."""
    if setup:
        st.code(setup, language="python")
    for step in steps:
        st.code(step.code, language="python")
        if step.warning:
            st.warning(t(f"{prefix}.warned", message=step.warning), icon=":material/warning:")
        if step.error:
            torch_says(step.error)
        if step.output is not None:
            st.code(f"print({step.show})\n{step.output}", language="text")
        st.caption(t(f"{prefix}.steps.{step.key}"))


@st.fragment
def pitfalls() -> None:
    p, r = run_experiment(tensors_pitfalls.TENSOR_PITFALL)
    if r is not None:
        pitfall_steps("tensor_pitfalls", r.setup, r.steps)
    code_panel(tensors_pitfalls.TENSOR_PITFALL, p)


lesson_page(
    "tensors",
    TABS,
    {
        "create": create,
        "shape": shape,
        "layout": layout,
        "broadcast": broadcast,
        "index": index,
        "reduce": reduce_and_loop,
        "inplace": inplace,
        "numpy": numpy,
        "dtype": dtype,
        "pitfalls": pitfalls,
    },
)
