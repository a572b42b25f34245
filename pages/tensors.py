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
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import Metric, charts_text, figure, lesson_page, metrics, pitfall_steps, table, torch_says, yes_no


def vs_theory(value: float, theory: float | None) -> str | None:
    """Return a metric's delta: how far a sample statistic is from its true value (None when there is none)."""
    return None if theory is None else f"{value - theory:+.3g} vs {theory:.4g}"


@experiment_block(tensors_create.CREATE)
def create(p: tensors_create.CreateParams, r: tensors_create.CreateResult) -> None:
    if r.torch_error:
        torch_says(r.torch_error)
    elif r.fn == "empty":
        st.info(t("create.empty_note", nbytes=r.nbytes, shape=r.shape))
    else:
        caption = "create.caption_random" if r.counts.size else "create.caption_values"
        figure(tensors_charts.creation_figure(r, charts_text("create")), caption, key="create.fig")
        metrics(
            Metric(t("create.shape"), str(r.shape), help=f"dtype={r.dtype}, {r.nbytes:,} bytes"),
            Metric(t("create.sample_mean"), f"{r.mean:.4g}", vs_theory(r.mean, r.theory_mean), arrow=True),
            Metric(t("create.sample_std"), f"{r.std:.4g}", vs_theory(r.std, r.theory_std), arrow=True),
            Metric(t("create.bytes"), f"{r.nbytes:,}"),
        )


@experiment_block(tensors_shape.SHAPE, tensors_shape.VIEW_T)
def shape(p: tensors_shape.ShapeParams, r: tensors_shape.ShapeResult) -> None:
    if r.torch_error:
        torch_says(r.torch_error)
    grids = tensors_charts.shape_grids(r)
    figure(tensors_charts.grids_figure(grids, t("shape.grid_title")), "shape.caption", key="shape.fig")
    table(tensors_charts.facts_table([r.input, *r.outputs], charts_text("shape")))


@experiment_block(tensors_layout.LAYOUT, tensors_layout.STRIDE_T)
def layout(p: tensors_layout.LayoutParams, r: tensors_layout.LayoutResult) -> None:
    tr = charts_text("layout")
    if r.edit_error:
        torch_says(r.edit_error)
    line = "layout.edit_line" if p.edit_op == "set" else "layout.edit_line_add"
    st.markdown(t(line, target=p.edit_target, pos=r.edit_position, value=p.edit_value))
    figure(tensors_charts.storage_figure(r, tr), "layout.caption", key="layout.fig")
    table(tensors_charts.layout_table(r, tr))
    grids = tensors_charts.layout_grids(r)
    figure(tensors_charts.grids_figure(grids, t("layout.grid_title")), "layout.grid_caption", key="layout.grids")


@experiment_block(tensors_broadcast.BROADCAST, tensors_broadcast.BROADCAST_SHAPE, columns=2)
def broadcast(p: tensors_broadcast.BroadcastParams, r: tensors_broadcast.BroadcastResult) -> None:
    table(tensors_charts.broadcast_table(r, charts_text("broadcast")), "broadcast.table_caption")
    if r.torch_error:
        torch_says(r.torch_error)
    else:
        st.markdown(t("broadcast.result_line", shape=r.result_shape, sa=r.stride_a, sb=r.stride_b))
        grids = tensors_charts.broadcast_grids(r, p.shape_a, p.shape_b)
        if grids:
            figure(tensors_charts.grids_figure(grids, t("broadcast.grid_title")), "broadcast.caption", key="broadcast.fig")


@experiment_block(tensors_index.INDEX)
def index(p: tensors_index.IndexParams, r: tensors_index.IndexResult) -> None:
    st.code(r.expr, language="python")
    if r.torch_error:
        torch_says(r.torch_error)
    grids = tensors_charts.index_grids(r, charts_text("index"))
    figure(tensors_charts.grids_figure(grids, t("index.grid_title")), f"index.caption_{p.op}", key="index.fig")


@experiment_block(tensors_reduce.REDUCE, tensors_reduce.SUM_SHAPE)
def reduce(p: tensors_reduce.ReduceParams, r: tensors_reduce.ReduceResult) -> None:
    expr, back = tensors_reduce.reduce_expr(p), tensors_reduce.back_expr(p)
    st.code(expr, language="python")
    grids = tensors_charts.reduce_grids(r, expr, back)
    figure(tensors_charts.grids_figure(grids, t("reduce.grid_title")), f"reduce.caption_{p.op}", key="reduce.fig")
    if p.op != "clamp":
        table(tensors_charts.reduce_table(r, back, charts_text("reduce")), "reduce.table_caption")
        if r.back_drop_error:
            torch_says(r.back_drop_error)


@experiment_block(tensors_loop.LOOP, tensors_loop.LOOP_FACTOR)
def loop(p: tensors_loop.LoopParams, r: tensors_loop.LoopResult) -> None:
    figure(tensors_charts.loop_figure(r, charts_text("loop")), "loop.caption", key="loop.fig", threads=r.threads)
    metrics(
        Metric(t("loop.tensor_loop_x"), f"{r.speedup('tensor_loop'):,.0f}×"),
        Metric(t("loop.list_loop_x"), f"{r.speedup('list_loop'):,.1f}×"),
        Metric(t("loop.max_diff"), f"{r.max_diff:.3g}"),
    )


def reduce_and_loop() -> None:
    """The reduce tab holds two experiments: dim/keepdim/clamp on the grid, then the loop timed against one call."""
    reduce()
    st.subheader(t("loop.heading"))
    loop()


@experiment_block(tensors_inplace.INPLACE, tensors_inplace.INT_INPLACE)
def inplace(p: tensors_inplace.InplaceParams, r: tensors_inplace.InplaceResult) -> None:
    st.code(tensors_inplace.inplace_statement(p), language="python")
    if r.torch_error:
        torch_says(r.torch_error)
    metrics(
        Metric(t("inplace.same_storage"), yes_no(r.same_storage)),
        Metric(t("inplace.new_bytes"), f"{r.new_bytes:,}"),
        Metric(t("inplace.alias_changed"), yes_no(r.alias_changed())),
    )
    table(tensors_charts.inplace_table(r, charts_text("inplace")), "inplace.caption")


@experiment_block(tensors_numpy.NUMPY, columns=4)
def numpy(p: tensors_numpy.NumpyParams, r: tensors_numpy.NumpyResult) -> None:
    metrics(
        Metric(t("numpy.shares"), yes_no(r.shares)),
        Metric(t("numpy.other_after"), f"{r.other_after:g}"),
        Metric(t("numpy.copied"), f"{r.copied_bytes:,}"),
    )
    figure(tensors_charts.numpy_figure(r, charts_text("numpy")), "numpy.caption", key="numpy.fig", n=p.n)


@experiment_block(tensors_dtype.DTYPE)
def dtype(p: tensors_dtype.DtypeParams, r: tensors_dtype.DtypeResult) -> None:
    table(tensors_charts.dtype_table(r, p.src, p.dst, charts_text("dtype")), "dtype.caption")
    metrics(
        Metric(t("dtype.bytes"), f"{r.bytes_src} → {r.bytes_dst}"),
        Metric(t("dtype.time", n=f"{p.n:,}"), f"{r.time_us:,.1f} µs", t("dtype.spread", spread=f"{r.spread_us / 2:,.1f}")),
        Metric(t("dtype.same_object"), yes_no(r.same_object)),
    )


@experiment_block(tensors_pitfalls.TENSOR_PITFALL)
def pitfalls(p: tensors_pitfalls.TensorPitfallParams, r: tensors_pitfalls.PitfallResult) -> None:
    pitfall_steps("tensor_pitfalls", r.setup, r.steps)


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
