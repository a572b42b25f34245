"""Pieces every lesson page uses: charts with captions, rows of metrics, the code panel, predict-then-run exercises."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.charts import Figure
from ui.figures import arrow_table, specified
from ui.i18n import lang, prose, t, text_in
from ui.routing import leave_pages_folder_mode

if TYPE_CHECKING:
    from core.lessons.tensors.pitfalls import StepOutcome


def charts_text(prefix: str) -> Callable[[str], str]:
    """Return the translator core.charts expects: chart text key -> words (experiment-specific first).

    One translator per language and prefix, so a chart builder sees the same object on every
    rerun and core.memo can hand back the figure it built before.
    """
    return charts_text_in(lang(), prefix)


@functools.cache
def charts_text_in(language: str, prefix: str) -> Callable[[str], str]:
    """Return the chart translator for one language (charts_text reads the session's)."""

    def tr(key: str) -> str:
        return text_in(language, f"{prefix}.charts.{key}", default=text_in(language, f"charts.{key}"))

    return tr


def figure(fig: Figure, caption_key: str, key: str, **values: Any) -> None:
    """Show a plotly figure with a caption saying what to notice (also its accessible description)."""
    st.plotly_chart(specified(fig), key=key, config={"displaylogo": False})
    st.caption(t(caption_key, **values))


def table(df: pd.DataFrame, caption_key: str | None = None) -> None:
    """Show a read-only table, with an optional caption."""
    st.dataframe(arrow_table(df), hide_index=df.index.dtype == "int64", width="stretch")
    if caption_key:
        st.caption(t(caption_key))


@dataclass(frozen=True)
class Metric:
    """One number in a row of metrics: its label, its value and an optional grey note under it."""

    label: str
    value: str | int | float
    note: str | None = None  # grey, no arrow: what to compare the value with
    help: str | None = None
    arrow: bool = False  # the note is a signed difference: show its up or down arrow (still grey)


def metrics(*row: Metric) -> None:
    """Show metrics side by side, one column each."""
    for column, m in zip(st.columns(len(row)), row, strict=True):
        column.metric(m.label, m.value, m.note, "off", help=m.help, delta_arrow="auto" if m.arrow else "off")


def yes_no(value: bool) -> str:
    """Return "yes" or "no" in the page's language."""
    return t("yes") if value else t("no")


def torch_says(message: str) -> None:
    """Show an error PyTorch raised as part of the lesson (expected, not a failure of the app)."""
    st.warning(t("run.torch_says", message=message), icon=":material/science:")


def pitfall_steps(prefix: str, setup: str, steps: Sequence[StepOutcome]) -> None:
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


def script_box(code: str, filename: str) -> None:
    """Show the runnable script for the current settings, with a .py download."""
    with st.expander(t("code.title"), icon=":material/code:"):
        st.code(code, language="python")
        st.download_button(
            t("code.download"),
            code,
            file_name=filename,
            mime="text/x-python",
            key=f"dl.{filename}",
            icon=":material/download:",
            on_click="ignore",  # a download changes nothing on the page: no rerun
        )


def ask(
    key: str,
    question: str,
    options: Sequence[str],
    answer: str | None,
    why: str = "",
    after: Callable[[str | None], None] | None = None,
) -> str | None:
    """A predict-then-run exercise: the student commits a guess and is told at once if it was right.

    `answer` was computed by running the experiment (None if that run failed: nothing to check).
    Returns the guess committed in this run (None on other runs); `after(guess)` draws more inside
    the exercise's box (the class's answers, in a class).
    """
    with st.container(border=True):
        st.markdown(f"**{t('predict.title')}** {question}")
        with st.form(f"predict.{key}", border=False):
            guess = st.radio(t("predict.guess"), list(options), index=None, key=f"predict.{key}.guess", horizontal=True)
            checked = st.form_submit_button(t("predict.check"))
        if checked and guess is None:
            st.info(t("predict.pick_first"))
        elif checked and answer is not None:
            if guess == answer:
                st.success(t("predict.right", answer=answer) + (" " + why if why else ""), icon=":material/check_circle:")
            else:
                st.error(t("predict.wrong", guess=guess, answer=answer) + (" " + why if why else ""), icon=":material/cancel:")
        committed = str(guess) if checked and guess is not None else None
        if after is not None:
            after(committed)
    return committed


def lesson_page(slug: str, tabs: Sequence[str], blocks: Mapping[str, Callable[[], None]]) -> None:
    """Draw a lesson page: its title and introduction, its tabs, and in the open tab its prose and experiment block.

    `blocks` maps a tab to the function that draws its experiments (an st.fragment); a tab without
    one (the pitfalls) is prose only. Called once, at the end of the page script.
    """
    leave_pages_folder_mode()
    st.title(t(f"nav.{slug}"))
    prose(slug, "intro")
    tab, panel = lesson_tabs(slug, tabs)
    with panel:
        prose(slug, tab)
        if tab in blocks:
            blocks[tab]()


def lesson_tabs(slug: str, names: Sequence[str]) -> tuple[str, DeltaGenerator]:
    """Draw a lesson's tabs and return (the open tab's name, its container).

    Only the open tab's experiments run (Streamlit's lazy tabs), and `?tab=<name>` keeps the
    open tab in the URL so that a link opens the same experiment.
    """
    labels = [t(f"{slug}.tabs.{name}") for name in names]
    wanted = st.query_params.get("tab", "")
    default = labels[list(names).index(wanted)] if wanted in names else labels[0]
    tabs = st.tabs(labels, default=default, key=f"{slug}.tab", on_change="rerun")
    active = next((name for name, tab in zip(names, tabs, strict=True) if tab.open), names[0])
    if st.query_params.get("tab") != active:
        st.query_params["tab"] = active
    return active, tabs[list(names).index(active)]


def graph(draw: Callable[[str], str], caption: str) -> None:
    """Show a Graphviz graph drawn by `draw(ids)`, laid out from scratch in the browser whenever it changes.

    d3-graphviz matches the nodes of a new drawing to the old one by name and morphs them, which
    for ~200 nodes took 20-30 s (bench/graph_render.py) against ~2 s for a fresh layout. Node
    names carry a digest of the drawing, so a changed graph shares no names with the old one.
    """
    digest = hashlib.sha1(draw("n").encode("utf-8")).hexdigest()[:10]
    st.graphviz_chart(draw(f"g{digest}_"), width="stretch")
    st.caption(caption)


def gpu_note(parts: Sequence[str]) -> None:
    """Say plainly which parts of an experiment need a GPU and what they would show (nothing when all ran)."""
    if parts:
        lines = "\n".join(f"- {t(f'gpu.parts.{part}')}" for part in parts)
        st.info(f"{t('gpu.heading')}\n{lines}", icon=":material/memory:")
