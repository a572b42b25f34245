"""Lesson 3 — nn.Module inside: members, the module tree, LeNet shapes, hooks, train/eval, state_dict, custom layers."""

import streamlit as st

from core.lessons.modules import TABS
from core.lessons.modules import charts as modules_charts
from core.lessons.modules import custom as modules_custom
from core.lessons.modules import hooks as modules_hooks
from core.lessons.modules import lenet as modules_lenet
from core.lessons.modules import members as modules_members
from core.lessons.modules import modes as modules_modes
from core.lessons.modules import state as modules_state
from core.lessons.modules import tree as modules_tree
from ui.i18n import t
from ui.panels import charts_text, figure, graph, lesson_page, table, torch_says
from ui.run import code_panel, predict, run_experiment


def fixed(value: float, digits: int = 3) -> str:
    """Return value with `digits` decimals, without the minus sign of a value that rounds to zero."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


@st.fragment
def members() -> None:
    p, r = run_experiment(modules_members.MEMBERS, columns=2)
    if r is not None:
        table(modules_charts.members_table(r, charts_text("mod_members")), "mod_members.table_caption")
        st.markdown(
            t(
                "mod_members.lists",
                parameters=", ".join(r.parameter_names) or "—",
                buffers=", ".join(r.buffer_names) or "—",
                keys=", ".join(r.state_dict_keys) or "—",
                count=r.n_parameters,
            )
        )
        st.code(r.module_repr, language="text")
        st.caption(t("mod_members.repr_caption"))
    code_panel(modules_members.MEMBERS, p)
    predict(modules_members.NONPERSISTENT)


@st.fragment
def tree() -> None:
    p, r = run_experiment(modules_tree.TREE, columns=3)
    if p is not None and r is not None:
        tr = charts_text("mod_tree")
        caption = t(f"mod_tree.caption_{p.walk}", count=len(r.visit_names), step=r.step)
        graph(lambda ids: modules_charts.tree_dot(r, tr, ids=ids), caption)
        table(modules_charts.visits_table(r, tr))
        table(modules_charts.builds_table(r, tr), "mod_tree.builds_caption")
    code_panel(modules_tree.TREE, p)
    predict(modules_tree.CHILDREN_COUNT)


@st.fragment
def lenet() -> None:
    p, r = run_experiment(modules_lenet.LENET, columns=4)
    if r is not None:
        tr = charts_text("mod_lenet")
        total, arriving, expected = st.columns(3)
        total.metric(t("mod_lenet.total"), f"{r.total:,}")
        arriving.metric(t("mod_lenet.arriving"), f"{r.arriving:,}" if r.arriving else "—")
        expected.metric(t("mod_lenet.fc1_in"), f"{r.fc1_in:,}")
        if r.error:
            torch_says(r.error)
            st.markdown(t("mod_lenet.failed", layer=r.failed_at))
        if r.failed_at == "fc1":
            sizes = r.fitting_sizes
            if sizes:
                st.markdown(t("mod_lenet.fits", fc1_in=r.fc1_in, lo=sizes[0], hi=sizes[-1], arriving=r.arriving))
            else:
                st.markdown(t("mod_lenet.fits_none", fc1_in=r.fc1_in, arriving=r.arriving))
        table(modules_charts.lenet_table(r, tr), "mod_lenet.table_caption")
        figure(modules_charts.lenet_bars(r, tr), "mod_lenet.bars_caption", key="mod_lenet.bars")
    code_panel(modules_lenet.LENET, p)
    predict(modules_lenet.SHAPE_AT_28)
    predict(modules_lenet.CONV2_PARAMS)


@st.fragment
def hooks() -> None:
    p, r = run_experiment(modules_hooks.HOOKS, columns=3)
    if r is not None:
        tr = charts_text("mod_hooks")
        figure(modules_charts.hooks_timeline(r, tr), "mod_hooks.timeline_caption", key="mod_hooks.timeline", removed=r.removed)
        table(modules_charts.hooks_table(r, tr))
        if r.hist_layers:
            figure(modules_charts.activation_histograms(r, tr), "mod_hooks.hist_caption", key="mod_hooks.hist")
        else:
            st.info(t("mod_hooks.no_forward"))
    code_panel(modules_hooks.HOOKS, p)
    predict(modules_hooks.STEP2_CALLS)


@st.fragment
def modes() -> None:
    p, r = run_experiment(modules_modes.MODES, columns=3)
    if p is not None and r is not None:
        tr = charts_text("mod_modes")
        st.markdown(f"**{t('mod_modes.dropout_heading')}**")
        zeroed, scale, mean, identity = st.columns(4)
        zeroed.metric(
            t("mod_modes.zeroed"),
            f"{r.zeroed_fraction:.3f}",
            t("mod_modes.expected", value=f"{r.p:g}"),
            delta_color="off",
            delta_arrow="off",
        )
        scale.metric(
            t("mod_modes.scale"),
            f"{r.kept_scale:.4g}",
            t("mod_modes.expected", value=f"{1 / (1 - r.p):.4g}"),
            delta_color="off",
            delta_arrow="off",
        )
        mean.metric(t("mod_modes.train_mean"), f"{r.train_mean:.3f}")
        identity.metric(t("mod_modes.eval_change"), f"{r.eval_max_change:g}")
        figure(modules_charts.dropout_strip(r, tr), "mod_modes.strip_caption", key="mod_modes.strip")
        st.markdown(f"**{t('mod_modes.bn_heading')}**")
        train_col, eval_col, summary_col = st.columns(3)
        train_col.metric(
            t("mod_modes.train_out"),
            fixed(r.train_out_mean),
            t("mod_modes.std", value=fixed(r.train_out_std)),
            delta_color="off",
            delta_arrow="off",
        )
        eval_col.metric(
            t("mod_modes.eval_out"),
            fixed(r.eval_out_mean),
            t("mod_modes.std", value=fixed(r.eval_out_std)),
            delta_color="off",
            delta_arrow="off",
        )
        summary_col.metric(
            t("mod_modes.after_summary"),
            fixed(r.summary_eval_mean),
            t("mod_modes.running_now", value=fixed(float(r.summary_running_means[-1]))),
            delta_color="off",
            delta_arrow="off",
        )
        figure(
            modules_charts.running_figure(r, tr),
            "mod_modes.running_caption",
            key="mod_modes.running",
            momentum=p.momentum,
        )
    code_panel(modules_modes.MODES, p)
    predict(modules_modes.EVAL_STATS)


@st.fragment
def state() -> None:
    p, r = run_experiment(modules_state.STATE, columns=3)
    if r is not None:
        st.markdown(f"**{t('mod_state.roundtrip_heading')}**")
        if r.prefixed_error:
            torch_says(r.prefixed_error)
            st.markdown(t("mod_state.prefix_hint"))
        else:
            st.metric(t("mod_state.roundtrip"), f"{r.roundtrip_max_diff:g}")
        st.markdown(f"**{t('mod_state.changed_heading')}**")
        table(modules_charts.keys_table(r, charts_text("mod_state")), "mod_state.keys_caption")
        if r.strict_error:
            st.markdown(t("mod_state.strict_true"))
            torch_says(r.strict_error)
        else:
            st.success(t("mod_state.strict_loaded"))
        if r.loose_error:
            st.markdown(t("mod_state.strict_false_error"))
            torch_says(r.loose_error)
        else:
            st.markdown(
                t(
                    "mod_state.strict_false",
                    missing=", ".join(r.missing) or "—",
                    unexpected=", ".join(r.unexpected) or "—",
                )
            )
        st.markdown(f"**{t('mod_state.weights_only_heading')}**")
        if r.weights_only_error:
            torch_says(r.weights_only_error)
        else:
            st.success(t("mod_state.weights_only_ok"))
        st.markdown(t("mod_state.trusted", kind=r.loaded_type, device=r.loaded_device))
    code_panel(modules_state.STATE, p)
    predict(modules_state.LOOSE_WIDER)


@st.fragment
def custom() -> None:
    p, r = run_experiment(modules_custom.CUSTOM, columns=4)
    if r is not None:
        functional, centered, same = st.columns(3)
        functional.metric(t("mod_custom.functional"), f"{r.functional_max_diff:g}")
        centered.metric(
            t("mod_custom.centered"),
            f"{r.centered_out_mean:.2g}",
            t("mod_custom.input_mean", value=f"{r.centered_in_mean:.3g}"),
            delta_color="off",
            delta_arrow="off",
        )
        same.metric(t("mod_custom.same_forward"), f"{r.same_forward_diff:g}")
        st.markdown(t("mod_custom.state", names=", ".join(r.module_state)))
        table(modules_charts.mylinear_table(r, charts_text("mod_custom")), "mod_custom.table_caption")
        st.markdown(t("mod_custom.typo"))
        torch_says(r.typo_error)
        st.markdown(t("mod_custom.all_buffers"))
        torch_says(r.buffers_error)
    code_panel(modules_custom.CUSTOM, p)
    predict(modules_custom.DATA_GRAD)


lesson_page(
    "modules",
    TABS,
    {"members": members, "tree": tree, "lenet": lenet, "hooks": hooks, "modes": modes, "state": state, "custom": custom},
)
