"""Lesson 1 — Tensors and memory: creation, shapes, the memory-layout inspector, broadcasting,
indexing, in-place ops, NumPy sharing and dtype conversions."""

import streamlit as st

from core import charts
from core import tensors as T
from ui.catalog import TENSORS
from ui.i18n import prose, t
from ui.panels import ask, charts_text, figure, lesson_tabs, script_box, table, torch_says
from ui.run import run_cached
from ui.widgets import param_widgets

st.title(t("nav.tensors"))
prose("tensors", "intro")
tab, panel = lesson_tabs("tensors", TENSORS.tabs)
with panel:
    prose("tensors", tab)
    if tab == "create":
        p = param_widgets(T.CreateParams, "create")
        r = run_cached(T.run_create, p, prefix="create")
        if p and r:
            if r.torch_error:
                torch_says(r.torch_error)
            elif p.fn == "empty":
                st.info(t("create.empty_note", nbytes=r.nbytes, shape=r.shape))
            else:
                figure(charts.creation_figure(r, charts_text("create")),
                       "create.caption_random" if r.counts.size else "create.caption_values", key="create.fig")  # fmt: skip
                cols = st.columns(4)
                cols[0].metric(t("create.shape"), str(r.shape), help=f"dtype={r.dtype}, {r.nbytes:,} bytes")
                cols[1].metric(t("create.sample_mean"), f"{r.mean:.4g}",
                               None if r.theory_mean is None else f"{r.mean - r.theory_mean:+.3g} vs {r.theory_mean:.4g}",
                               delta_color="off")  # fmt: skip
                cols[2].metric(t("create.sample_std"), f"{r.std:.4g}",
                               None if r.theory_std is None else f"{r.std - r.theory_std:+.3g} vs {r.theory_std:.4g}",
                               delta_color="off")  # fmt: skip
                cols[3].metric(t("create.bytes"), f"{r.nbytes:,}")
            script_box(T.code_create(p), "create.py")

    elif tab == "shape":
        p = param_widgets(T.ShapeParams, "shape")
        r = run_cached(T.run_shape, p, prefix="shape")
        if p and r:
            if r.torch_error:
                torch_says(r.torch_error)
            figure(charts.grids_figure(charts.shape_grids(r), t("shape.grid_title")), "shape.caption", key="shape.fig")
            table(charts.facts_table([r.input, *r.outputs], charts_text("shape")))
            script_box(T.code_shape(p), "shape.py")
        q = run_cached(T.run_shape, T.ShapeParams(op="view", shape=(3, 4), transposed=True, new_shape=(12,)))
        ask("view_t", t("shape.predict_q"), [t("shape.works"), t("shape.fails")],
                None if q is None else t("shape.fails") if q.torch_error else t("shape.works"), t("shape.predict_why"))

    elif tab == "layout":
        p = param_widgets(T.LayoutParams, "layout")
        r = run_cached(T.run_layout, p, prefix="layout")
        if p and r:
            tr = charts_text("layout")
            if r.edit_error:
                torch_says(r.edit_error)
            st.markdown(t("layout.edit_line", target=p.edit_target, pos=r.edit_position, value=p.edit_value))
            figure(charts.storage_figure(r, tr), "layout.caption", key="layout.fig")
            table(charts.facts_table(r.after, tr, changed=lambda f: int(r.changed(f.name).sum())))
            grids = charts.tensor_grids(r.after, lambda f: r.changed(f.name), charts.CHANGED)
            figure(charts.grids_figure(grids, t("layout.grid_title")), "layout.grid_caption", key="layout.grids")
            script_box(T.code_layout(p), "layout.py")
        q = run_cached(T.run_layout, T.LayoutParams(rows=5, cols=7, views=("t",), edit_target="x", edit_index=0))
        ask("stride_t", t("layout.predict_q"), ["(7, 1)", "(1, 7)", "(5, 1)", "(1, 5)"],
                None if q is None else str(q.before[1].stride), t("layout.predict_why"))  # fmt: skip

    elif tab == "broadcast":
        p = param_widgets(T.BroadcastParams, "broadcast", columns=2)
        r = run_cached(T.run_broadcast, p, prefix="broadcast")
        if p and r:
            tr = charts_text("broadcast")
            table(charts.broadcast_table(r, tr), "broadcast.table_caption")
            if r.torch_error:
                torch_says(r.torch_error)
            else:
                st.markdown(t("broadcast.result_line", shape=r.result_shape, sa=r.stride_a, sb=r.stride_b))
                if r.a is not None and r.b is not None and r.total is not None:
                    grids = [charts.Grid(f"a {p.shape_a}", r.a), charts.Grid(f"b {p.shape_b}", r.b),
                             charts.Grid(f"a + b {r.result_shape}", r.total)]  # fmt: skip
                    figure(charts.grids_figure(grids, t("broadcast.grid_title")), "broadcast.caption", key="broadcast.fig")
            script_box(T.code_broadcast(p), "broadcast.py")
        q = run_cached(T.run_broadcast, T.BroadcastParams(shape_a=(8, 1, 6, 1), shape_b=(7, 1, 5)))
        ask("broadcast", t("broadcast.predict_q"), ["(8, 7, 6, 5)", "(8, 1, 6, 5)", "(7, 6, 5)", t("broadcast.error")],
                None if q is None else str(q.result_shape) if q.result_shape else t("broadcast.error"))  # fmt: skip

    elif tab == "index":
        p = param_widgets(T.IndexParams, "index")
        r = run_cached(T.run_index, p, prefix="index")
        if p and r:
            st.code(r.expr, language="python")
            if r.torch_error:
                torch_says(r.torch_error)
            figure(charts.grids_figure(charts.index_grids(r, charts_text("index")), t("index.grid_title")),
                   f"index.caption_{p.op}", key="index.fig")  # fmt: skip
            script_box(T.code_index(p), "indexing.py")

    elif tab == "inplace":
        p = param_widgets(T.InplaceParams, "inplace")
        r = run_cached(T.run_inplace, p, prefix="inplace")
        if p and r:
            st.code(T.inplace_statement(p), language="python")
            if r.torch_error:
                torch_says(r.torch_error)
            cols = st.columns(3)
            cols[0].metric(t("inplace.same_storage"), t("yes") if r.same_storage else t("no"))
            cols[1].metric(t("inplace.new_bytes"), f"{r.new_bytes:,}")
            cols[2].metric(t("inplace.alias_changed"), t("yes") if (r.alias_after != r.x_before).any() else t("no"))
            table(charts.inplace_table(r, charts_text("inplace")), "inplace.caption")
            script_box(T.code_inplace(p), "inplace.py")
        q = run_cached(T.run_inplace, T.InplaceParams(form="augmented", dtype="int64", value=0.5))
        ask("int_inplace", t("inplace.predict_q"), [t("inplace.ok"), t("inplace.error")],
                None if q is None else t("inplace.error") if q.torch_error else t("inplace.ok"), t("inplace.predict_why"))

    elif tab == "numpy":
        p = param_widgets(T.NumpyParams, "numpy", columns=4)
        r = run_cached(T.run_numpy, p, prefix="numpy")
        if p and r:
            cols = st.columns(3)
            cols[0].metric(t("numpy.shares"), t("yes") if r.shares else t("no"))
            cols[1].metric(t("numpy.other_after"), f"{r.other_after:g}")
            cols[2].metric(t("numpy.copied"), f"{r.copied_bytes:,}")
            figure(charts.numpy_figure(r, charts_text("numpy")), "numpy.caption", key="numpy.fig", n=p.n)
            script_box(T.code_numpy(p), "numpy_sharing.py")

    elif tab == "dtype":
        p = param_widgets(T.DtypeParams, "dtype")
        r = run_cached(T.run_dtype, p, prefix="dtype")
        if p and r:
            table(charts.dtype_table(r, p.src, p.dst, charts_text("dtype")), "dtype.caption")
            cols = st.columns(3)
            cols[0].metric(t("dtype.bytes"), f"{r.bytes_src} → {r.bytes_dst}")
            cols[1].metric(t("dtype.time", n=f"{p.n:,}"), f"{r.time_us:,.1f} µs",
                           t("dtype.spread", spread=f"{r.spread_us / 2:,.1f}"), delta_color="off", delta_arrow="off")
            cols[2].metric(t("dtype.same_object"), t("yes") if r.same_object else t("no"))
            script_box(T.code_dtype(p), "dtype.py")
