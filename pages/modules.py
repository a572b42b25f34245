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
from ui.blocks import experiment_block
from ui.i18n import t
from ui.panels import Metric, charts_text, figure, graph, lesson_page, metrics, table, torch_says


def fixed(value: float, digits: int = 3) -> str:
    """Return value with `digits` decimals, without the minus sign of a value that rounds to zero."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


@experiment_block(modules_members.MEMBERS, modules_members.NONPERSISTENT, columns=2)
def members(p: modules_members.MembersParams, r: modules_members.MembersResult) -> None:
    table(modules_charts.members_table(r, charts_text("mod_members")), "mod_members.table_caption")
    parameters, buffers, keys = (", ".join(names) or "—" for names in (r.parameter_names, r.buffer_names, r.state_dict_keys))
    st.markdown(t("mod_members.lists", parameters=parameters, buffers=buffers, keys=keys, count=r.n_parameters))
    st.code(r.module_repr, language="text")
    st.caption(t("mod_members.repr_caption"))


@experiment_block(modules_tree.TREE, modules_tree.CHILDREN_COUNT)
def tree(p: modules_tree.TreeParams, r: modules_tree.TreeResult) -> None:
    tr = charts_text("mod_tree")
    caption = t(f"mod_tree.caption_{p.walk}", count=len(r.visit_names), step=r.step)
    graph(lambda ids: modules_charts.tree_dot(r, tr, ids=ids), caption)
    table(modules_charts.visits_table(r, tr))
    table(modules_charts.builds_table(r, tr), "mod_tree.builds_caption")


@experiment_block(modules_lenet.LENET, modules_lenet.SHAPE_AT_28, modules_lenet.CONV2_PARAMS, columns=4)
def lenet(p: modules_lenet.LeNetParams, r: modules_lenet.LeNetResult) -> None:
    tr = charts_text("mod_lenet")
    metrics(
        Metric(t("mod_lenet.total"), f"{r.total:,}"),
        Metric(t("mod_lenet.arriving"), f"{r.arriving:,}" if r.arriving else "—"),
        Metric(t("mod_lenet.fc1_in"), f"{r.fc1_in:,}"),
    )
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


@experiment_block(modules_hooks.HOOKS, modules_hooks.STEP2_CALLS)
def hooks(p: modules_hooks.HooksParams, r: modules_hooks.HooksResult) -> None:
    tr = charts_text("mod_hooks")
    figure(modules_charts.hooks_timeline(r, tr), "mod_hooks.timeline_caption", key="mod_hooks.timeline", removed=r.removed)
    table(modules_charts.hooks_table(r, tr))
    if r.hist_layers:
        figure(modules_charts.activation_histograms(r, tr), "mod_hooks.hist_caption", key="mod_hooks.hist")
    else:
        st.info(t("mod_hooks.no_forward"))


@experiment_block(modules_modes.MODES, modules_modes.EVAL_STATS)
def modes(p: modules_modes.ModesParams, r: modules_modes.ModesResult) -> None:
    tr = charts_text("mod_modes")
    st.markdown(f"**{t('mod_modes.dropout_heading')}**")
    metrics(
        Metric(t("mod_modes.zeroed"), f"{r.zeroed_fraction:.3f}", t("mod_modes.expected", value=f"{r.p:g}")),
        Metric(t("mod_modes.scale"), f"{r.kept_scale:.4g}", t("mod_modes.expected", value=f"{1 / (1 - r.p):.4g}")),
        Metric(t("mod_modes.train_mean"), f"{r.train_mean:.3f}"),
        Metric(t("mod_modes.eval_change"), f"{r.eval_max_change:g}"),
    )
    figure(modules_charts.dropout_strip(r, tr), "mod_modes.strip_caption", key="mod_modes.strip")
    st.markdown(f"**{t('mod_modes.bn_heading')}**")
    running_now = fixed(float(r.summary_running_means[-1]))
    metrics(
        Metric(t("mod_modes.train_out"), fixed(r.train_out_mean), t("mod_modes.std", value=fixed(r.train_out_std))),
        Metric(t("mod_modes.eval_out"), fixed(r.eval_out_mean), t("mod_modes.std", value=fixed(r.eval_out_std))),
        Metric(t("mod_modes.after_summary"), fixed(r.summary_eval_mean), t("mod_modes.running_now", value=running_now)),
    )
    figure(modules_charts.running_figure(r, tr), "mod_modes.running_caption", key="mod_modes.running", momentum=p.momentum)


@experiment_block(modules_state.STATE, modules_state.LOOSE_WIDER)
def state(p: modules_state.StateParams, r: modules_state.StateResult) -> None:
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
        missing, unexpected = ", ".join(r.missing) or "—", ", ".join(r.unexpected) or "—"
        st.markdown(t("mod_state.strict_false", missing=missing, unexpected=unexpected))
    st.markdown(f"**{t('mod_state.weights_only_heading')}**")
    if r.weights_only_error:
        torch_says(r.weights_only_error)
    else:
        st.success(t("mod_state.weights_only_ok"))
    st.markdown(t("mod_state.trusted", kind=r.loaded_type, device=r.loaded_device))


@experiment_block(modules_custom.CUSTOM, modules_custom.DATA_GRAD, columns=4)
def custom(p: modules_custom.CustomParams, r: modules_custom.CustomResult) -> None:
    centered_note = t("mod_custom.input_mean", value=f"{r.centered_in_mean:.3g}")
    metrics(
        Metric(t("mod_custom.functional"), f"{r.functional_max_diff:g}"),
        Metric(t("mod_custom.centered"), f"{r.centered_out_mean:.2g}", centered_note),
        Metric(t("mod_custom.same_forward"), f"{r.same_forward_diff:g}"),
    )
    st.markdown(t("mod_custom.state", names=", ".join(r.module_state)))
    table(modules_charts.mylinear_table(r, charts_text("mod_custom")), "mod_custom.table_caption")
    st.markdown(t("mod_custom.typo"))
    torch_says(r.typo_error)
    st.markdown(t("mod_custom.all_buffers"))
    torch_says(r.buffers_error)


lesson_page(
    "modules",
    TABS,
    {"members": members, "tree": tree, "lenet": lenet, "hooks": hooks, "modes": modes, "state": state, "custom": custom},
)
