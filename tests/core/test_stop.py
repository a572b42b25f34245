"""Stop: a stoppable run ends at its next step once asked and returns the steps it took, equal to the full run's first
steps; the Job that carries a run off the page's thread reports progress, the queue place, its result and its error."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from core.experiment import ExperimentError, RunContext
from core.jobs import Job
from core.lessons import LESSONS
from core.lessons.training import linreg as train_linreg
from core.lessons.training import logreg as train_logreg
from core.lessons.training import optim as train_optim
from core.lessons.training import repro as train_repro
from core.lessons.training.linreg import LinregParams
from core.lessons.training.logreg import LogregParams
from core.lessons.training.optim import OptimParams
from core.lessons.training.repro import ReproParams
from core.runner import execute
from tests.params_strategies import CPU, run_cpu

STOPPABLE = [e for lesson in LESSONS for e in lesson.experiments if e.stoppable]


def stopped_after_first_progress(run_fn: Any, params: Any) -> Any:
    """Run on the CPU and press Stop as soon as the run first reports progress."""
    stop = threading.Event()
    return execute(run_fn, params, device=CPU, stop=stop, on_progress=lambda _: stop.set())


def test_the_training_lessons_long_runs_are_stoppable() -> None:
    assert {e.name for e in STOPPABLE} >= {"train_linreg", "train_logreg", "train_optim", "train_repro"}


@pytest.mark.parametrize("experiment", STOPPABLE, ids=lambda e: e.name)
def test_a_stoppable_run_asks_whether_to_stop(experiment: Any) -> None:
    """Each stoppable experiment reads the stop flag at its defaults (a Stop button that nothing reads would be a lie)."""
    asked = 0

    class CountingEvent(threading.Event):
        def is_set(self) -> bool:
            nonlocal asked
            asked += 1
            return super().is_set()

    execute(experiment.run, experiment.params(), device=CPU, stop=CountingEvent())
    assert asked > 0


def test_a_stopped_logistic_regression_is_the_full_runs_first_steps() -> None:
    p = LogregParams(stop_early=False, max_steps=400)
    full = run_cpu(train_logreg.run, p)
    part = stopped_after_first_progress(train_logreg.run, p)
    assert part.steps == 1 < full.steps == 400  # progress is first told at step 0; the run stops after step 1
    for name in ("loss", "accuracy", "bias", "weight"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[: part.steps + 1])


def test_a_stopped_linear_regression_keeps_its_pitfall_beside_it_step_for_step() -> None:
    p = LinregParams(lr=0.001, max_iters=500)  # a slow rate: the full run needs every iteration
    full = run_cpu(train_linreg.run, p)
    part = stopped_after_first_progress(train_linreg.run, p)
    assert len(part.w) == 2 < len(full.w) and not part.stopped
    np.testing.assert_array_equal(part.loss, full.loss[:2])
    assert len(part.pitfall_w) == len(part.w)
    np.testing.assert_array_equal(part.pitfall_w, full.pitfall_w[:2])


def test_a_stopped_optimizer_race_shows_the_optimizers_raced_so_far() -> None:
    p = OptimParams(optimizers=("sgd", "momentum", "adam"))
    full = run_cpu(train_optim.run, p)
    part = stopped_after_first_progress(train_optim.run, p)
    assert part.optimizers == ("sgd",) and len(full.optimizers) == 3
    assert part.path.shape[0] == part.loss.shape[0] == part.lr.shape[0] == 1
    np.testing.assert_array_equal(part.path[0], full.path[0])


def test_a_stopped_reproducibility_run_keeps_the_seeds_it_trained() -> None:
    p = ReproParams(steps=5, n_seeds=4)
    full = run_cpu(train_repro.run, p)
    part = stopped_after_first_progress(train_repro.run, p)
    assert len(part.band) == len(part.seeds) == 1 and len(full.band) == 4
    np.testing.assert_array_equal(part.band[0], full.band[0])
    assert part.identical


def test_a_context_without_a_stop_event_never_stops() -> None:
    ctx = RunContext(CPU, torch.Generator(), float("inf"), 1 << 20)
    assert not ctx.stop_requested()


def test_a_job_reports_progress_and_returns_its_result() -> None:
    release = threading.Event()

    def work(job: Job[int]) -> int:
        job.waiting(3)
        job.progressing(0.5)
        release.wait(10)
        return 42

    job = Job("k", work)
    assert not job.wait(0.05) and not job.done
    assert job.position is None and job.fraction == 0.5
    with pytest.raises(RuntimeError):
        job.result()
    release.set()
    assert job.wait(10) and job.result() == 42 and not job.stopped


def test_a_job_stops_when_asked_and_hands_back_its_error() -> None:
    def until_stopped(job: Job[int]) -> int:
        steps = 0
        while not job.stop.wait(0.01):
            steps += 1
        return steps

    job = Job("k", until_stopped)
    job.stop.set()
    assert job.wait(10) and job.stopped and job.result() >= 0

    def failing(job: Job[int]) -> int:
        raise ExperimentError("timeout", seconds=1.0)

    job = Job("k", failing)
    assert job.wait(10)
    with pytest.raises(ExperimentError, match="timeout"):
        job.result()
