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
from core.jobs import Job
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


JOBS = "_torchlab_jobs"  # session state: experiment name -> the Job of its stoppable run, while running or stopped
HANDOFF_S = 1.0  # a stoppable run still going after this long is drawn as progress and a Stop button instead
WATCH_S = 0.5  # how often the progress of a handed-off run is redrawn


class Running(Exception):
    """A stoppable run still going: its progress and Stop button are drawn; the page draws the result when it ends."""


class Stopped(Exception):
    """A stoppable run the student stopped; `result` holds the steps it took, shown to that student and never cached."""

    def __init__(self, result: Any) -> None:
        super().__init__("stopped")
        self.result = result


def _start_job(
    run_fn: Callable[[P, RunContext], R], params: P, exclusive: bool, key: str, after: Job[Any] | None
) -> Job[tuple[R, bool]]:
    """Start one stoppable run on a thread of its own; its result is (result, whether the run went to the end).

    The run goes through the class-wide cache inside the thread, so students asking for the same
    settings still share one run. A stopped run's partial result is handed back but never cached.
    It starts once the run it replaces (`after`, told to stop) has ended: a student has one
    exclusive run on the device at a time.
    """
    owner = session_id()

    def work(job: Job[tuple[R, bool]]) -> tuple[R, bool]:
        if after is not None:
            after.wait(runner.CONFIG.run_seconds)
        computed = False

        def compute() -> R:
            nonlocal computed
            computed = True
            result = runner.execute(
                run_fn,
                params,
                exclusive=exclusive,
                on_wait=job.waiting,
                on_progress=job.progressing,
                owner=owner,
                stop=job.stop,
            )
            if job.stopped:
                raise Stopped(result)  # leaves the cache without it
            return result

        try:
            result = runner.RESULTS.get_or_run(key, compute)
        except Stopped as stopped:
            return stopped.result, False
        runner.COUNTERS.count_cache(hit=not computed)
        return result, True

    return Job(key, work)


def _run_in_job(run_fn: Callable[[P, RunContext], R], params: P, exclusive: bool, slot: str, key: str) -> R:
    """Return a stoppable run's result; raise Running while it goes on (progress drawn), Stopped once stopped.

    The job lives in the student's session under the experiment's name, so that the reruns that
    follow find it again instead of starting another run. A stopped job's partial result stays there,
    shown on every rerun, until a setting changes or the student asks for the whole run again.
    """
    jobs: dict[str, Job[Any]] = st.session_state.setdefault(JOBS, {})
    job = jobs.get(slot)
    replaced = None
    if job is not None and job.key != key:
        job.stop.set()  # a setting changed: the old run ends at its next step, and its result is not wanted
        replaced, job = job, None
    if job is None:
        job = jobs[slot] = _start_job(run_fn, params, exclusive, key, after=replaced)
    if not job.wait(HANDOFF_S):
        _watch(slot)
        raise Running
    try:
        result, complete = job.result()
    except BaseException:
        jobs.pop(slot, None)
        raise
    if not complete:
        raise Stopped(result)
    jobs.pop(slot, None)
    return result  # type: ignore[no-any-return]


@st.fragment(run_every=WATCH_S)
def _watch(slot: str) -> None:
    """Draw a running job's queue place or progress and its Stop button; rerun the page once the job has ended.

    Streamlit never interrupts a running script for a click inside a fragment, so the run cannot be
    followed from the script that started it: the script returns, and this fragment polls instead.
    """
    job = st.session_state.get(JOBS, {}).get(slot)
    if job is None:
        return
    if job.stopped:
        job.wait(HANDOFF_S)  # a stopped run ends at its next step
    if job.done:
        st.rerun()  # the page draws the result (or the partial one)
    if job.position is not None:
        st.info(t("run.queue", position=job.position), icon=":material/hourglass_top:")
    else:
        st.progress(job.fraction, text=t("run.progress", percent=round(100 * job.fraction)))
    st.button(t("run.stop"), key=f"{slot}.stop", icon=":material/stop_circle:", help=t("run.stop_help"), on_click=job.stop.set)


def _forget_job(slot: str) -> None:
    """Drop a stopped job's partial result, so that the next run goes to the end (the Run again button)."""
    st.session_state.get(JOBS, {}).pop(slot, None)


def run_cached(
    run_fn: Callable[[P, RunContext], R],
    params: P | None,
    *,
    exclusive: bool = False,
    prefix: str = "",
    stoppable: bool = False,
) -> R | None:
    """Run (or fetch from the class-wide cache) one experiment; show a translated error and return None on failure.

    A `stoppable` run that takes more than a moment shows its progress and a Stop button and returns
    None meanwhile; the page is drawn again when it ends. Once stopped, its partial result is
    returned (with a notice and a button to run it to the end) but not cached.
    """
    if params is None:
        return None
    computed = False
    key = cache_key(run_fn, params)

    def compute() -> R:
        nonlocal computed
        computed = True
        return _compute(run_fn, params, exclusive)

    try:
        found, kept = runner.RESULTS.get(key)
        if found:  # most reruns: no spinner to draw and take down again (it cost 8% of a cached rerun)
            runner.COUNTERS.count_cache(hit=True)
            return kept  # type: ignore[no-any-return]
        with st.spinner(t("run.running")):
            if stoppable:
                return _run_in_job(run_fn, params, exclusive, prefix, key)
            result = runner.RESULTS.get_or_run(key, compute)
        runner.COUNTERS.count_cache(hit=not computed)
        return result
    except Running:
        return None
    except Stopped as e:
        st.info(t("run.stopped"), icon=":material/stop_circle:")
        st.button(t("run.again"), key=f"{prefix}.again", icon=":material/replay:", on_click=_forget_job, args=(prefix,))
        return e.result  # type: ignore[no-any-return]
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
    return p, result_of(experiment, p, stoppable=experiment.stoppable)


def result_of(experiment: Experiment[P, R], p: P, *, stoppable: bool = False) -> Any:
    """Run (or fetch) one experiment for p; a sweep gives the list of its parts' results. None on failure.

    `stoppable` offers a Stop button on an experiment that supports it; a prediction's answer never
    comes from a stopped run, so questions leave it off.
    """
    if experiment.sweep is None:
        return run_cached(experiment.run, p, exclusive=experiment.exclusive, prefix=experiment.name, stoppable=stoppable)
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
