"""Running experiments from a page: widgets, the class-wide cache (core.runner.RESULTS), queue, progress, errors.

A page's experiment block is `p, r = run_experiment(EXPERIMENT)`, its charts, `code_panel(EXPERIMENT, p)`
and `predict(PREDICTION)`, inside an `st.fragment` so that moving a slider reruns that block only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import runner
from core.experiment import Experiment, ExperimentError, Prediction, RunContext
from core.params import InvalidParams, Params
from ui.classroom import class_answers
from ui.i18n import has, t
from ui.panels import ask, script_box
from ui.widgets import error_text, param_widgets

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
        return runner.execute(run_fn, params, exclusive=exclusive, on_wait=on_wait, on_progress=on_progress, owner=session_id())
    finally:
        notice.empty()
        bar.empty()


def run_cached(
    run_fn: Callable[[P, RunContext], R], params: P | None, *, exclusive: bool = False, prefix: str = ""
) -> R | None:
    """Run (or fetch from the class-wide cache) one experiment; show a translated error and return None on failure."""
    if params is None:
        return None
    computed = False

    def compute() -> R:
        nonlocal computed
        computed = True
        return _compute(run_fn, params, exclusive)

    try:
        with st.spinner(t("run.running")):
            result = runner.RESULTS.get_or_run(cache_key(run_fn, params), compute)
        runner.COUNTERS.count_cache(hit=not computed)
        return result
    except InvalidParams as e:
        st.error(error_text(e, prefix), icon=":material/warning:")
    except ExperimentError as e:
        st.error(t(f"errors.{e.key}", **e.info), icon=":material/block:")
    return None


def run_parts(
    run_fn: Callable[[P, RunContext], R], parts: Sequence[P], progress_key: str, *, exclusive: bool = False, prefix: str = ""
) -> list[R] | None:
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


def run_experiment(experiment: Experiment[P, R], columns: int = 3) -> tuple[P | None, Any]:
    """Draw an experiment's widgets (kept in the URL), run it through the cache, and return (params, result).

    A sweep experiment runs one cached part per element of its sweep field under a progress bar
    and returns the list of results. Either item is None when the settings are invalid or the run
    failed; the page then has nothing to draw (the error is already shown).
    """
    p = param_widgets(experiment.params, experiment.name, columns=columns)
    if p is None:
        return None, None
    return p, result_of(experiment, p)


def result_of(experiment: Experiment[P, R], p: P) -> Any:
    """Run (or fetch) one experiment for p; a sweep gives the list of its parts' results. None on failure."""
    if experiment.sweep is None:
        return run_cached(experiment.run, p, exclusive=experiment.exclusive, prefix=experiment.name)
    parts = [replace(p, **{experiment.sweep: (value,)}) for value in getattr(p, experiment.sweep)]
    return run_parts(
        experiment.run, parts, f"{experiment.name}.progress", exclusive=experiment.exclusive, prefix=experiment.name
    )


def code_panel(experiment: Experiment[P, R], p: P | None) -> None:
    """Show the experiment's runnable script for p on this server's device, with a .py download."""
    if p is not None:
        script_box(experiment.write_script(p, runner.DEVICE.type), experiment.filename)


def predict(prediction: Prediction[Any, Any]) -> None:
    """Ask a predict-then-run question; its answer comes from running the experiment with the question's settings.

    The question is a fragment of its own: committing an answer reruns the question box only (the
    answer's check, its recording in a class, the class's answers), not the experiment block
    around it, so a whole class answering at once costs the server little.
    """
    _question(prediction)


@st.fragment
def _question(prediction: Prediction[Any, Any]) -> None:
    experiment = prediction.experiment
    result = result_of(experiment, prediction.params)
    answer = None if result is None else prediction.answer(result)
    question = prediction.question or f"{experiment.name}.predict_q"
    why = prediction.why or f"{experiment.name}.predict_why"
    labels = {option: t(f"{experiment.name}.{option}", default=option) for option in prediction.options}
    lesson = lesson_of(prediction)
    ask(
        prediction.name,
        t(question),
        list(labels.values()),
        None if answer is None else labels[answer],
        t(why) if has(why) else "",
        after=lambda guess: class_answers(lesson, prediction.name, labels, guess, answer),
    )


def lesson_of(prediction: Prediction[Any, Any]) -> str:
    """Return the slug of the lesson a prediction belongs to (its experiment lives in core.lessons.<slug>)."""
    parts = prediction.experiment.run.__module__.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["core", "lessons"] else parts[-1]
