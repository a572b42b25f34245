"""Running experiments from a page: the class-wide cache (core.runner.RESULTS), the queue notice and the error box."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import runner
from core.params import InvalidParams, Params
from core.runner import ExperimentError, RunContext
from ui.i18n import t
from ui.widgets import error_text

P = TypeVar("P", bound=Params)
R = TypeVar("R")


def cache_key(run_fn: Callable[..., Any], params: Params) -> str:
    """Return the text that identifies one experiment run: function, every param, device kind."""
    fields = "&".join(f"{k}={v}" for k, v in sorted(params.to_query("p").items()))
    return f"{run_fn.__module__}.{run_fn.__qualname__}?{fields}@{runner.DEVICE.type}"


def session_id() -> str | None:
    """Return the id of the student's session (the owner of its runs at the device gate), or None outside one."""
    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def _compute(run_fn: Callable[[P, RunContext], R], params: P, exclusive: bool) -> R:
    """Run one experiment now, showing the queue place while it waits and a bar while it reports progress."""
    notice, bar = st.empty(), st.empty()

    def on_wait(position: int) -> None:
        notice.info(t("run.queue", position=position), icon=":material/hourglass_top:")

    def on_progress(fraction: float) -> None:
        notice.empty()
        bar.progress(fraction, text=t("run.progress", percent=round(100 * fraction)))

    try:
        return runner.execute(run_fn, params, exclusive=exclusive, on_wait=on_wait, on_progress=on_progress,
                              owner=session_id())  # fmt: skip
    finally:
        notice.empty()
        bar.empty()


def run_cached(run_fn: Callable[[P, RunContext], R], params: P | None, *, exclusive: bool = False,
               prefix: str = "") -> R | None:  # fmt: skip
    """Run (or fetch from the class-wide cache) one experiment; show a translated error and return None on failure."""
    if params is None:
        return None
    try:
        with st.spinner(t("run.running")):
            return runner.RESULTS.get_or_run(cache_key(run_fn, params), lambda: _compute(run_fn, params, exclusive))
    except InvalidParams as e:
        st.error(error_text(e, prefix), icon=":material/warning:")
    except ExperimentError as e:
        st.error(t(f"errors.{e.key}", **e.info), icon=":material/block:")
    return None


def run_parts(run_fn: Callable[[P, RunContext], R], parts: Sequence[P], progress_key: str, *, exclusive: bool = False,
              prefix: str = "") -> list[R] | None:  # fmt: skip
    """Run several cached experiments in turn under a progress bar; return all results, or None once one fails.

    Long work is split into parts (one initialization, one k, one size...) so that the bar moves
    as each finishes and each part is cached on its own.
    """
    bar = st.progress(0.0, text=t(progress_key, done=0, total=len(parts)))
    results: list[R] = []
    for part in parts:
        r = run_cached(run_fn, part, exclusive=exclusive, prefix=prefix)
        if r is None:
            bar.empty()
            return None
        results.append(r)
        bar.progress(len(results) / len(parts), text=t(progress_key, done=len(results), total=len(parts)))
    bar.empty()
    return results
