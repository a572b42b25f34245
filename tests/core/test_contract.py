"""The experiment contract, checked for every experiment of every lesson in LESSONS.

- the registry: unique names (URL prefixes), defaults that validate, a template per experiment,
  at least two predictions per lesson;
- any Params, valid or hostile, runs or is refused with a message key (hypothesis), under a small
  work and memory budget so that costly settings are refused by `estimate_work`/`estimate_bytes`;
- every URL value a student could type, Unicode digits included, is read or reported, never raised;
- the same settings give the same numbers, also from eight threads at once;
- every script (defaults and examples) runs on its own and prints the numbers the page shows;
- every prediction's answer is computed by its experiment and is one of its options.

Per-lesson test modules keep only theory checks; adding a lesson to LESSONS puts it under all of this.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.experiment import Experiment, Prediction
from core.lessons import LESSONS
from core.params import InvalidParams, Params
from core.runner import Config, ExperimentError, execute
from tests.params_strategies import any_params, assert_same, assert_same_from_threads, check_runs_or_refused, run_cpu
from tests.scripts import Ran, numbers, run_scripts

CPU = torch.device("cpu")
EXPERIMENTS = [experiment for lesson in LESSONS for experiment in lesson.experiments]
PREDICTIONS = [prediction for lesson in LESSONS for prediction in lesson.predictions]
# Hypothesis draws any valid size; what would take more than a moment is refused by the runner's
# budget check, so the property also tests that each estimate_work / estimate_bytes is honest.
SMALL = Config(max_mb=64, max_gwork=0.05, run_seconds=60)
# Every example run is quick; the scripts of the defaults and examples run as separate processes.
CASES = [(e, p) for e in EXPERIMENTS for p in (e.params(), *e.examples)]


def name_of(value: Any) -> str:
    if isinstance(value, Experiment | Prediction):
        return value.name
    return type(value).__name__


def case_id(case: tuple[Experiment[Any, Any], Params]) -> str:
    experiment, p = case
    defaults = experiment.params()
    changed = [f"{s.name}={getattr(p, s.name)}" for s in p.specs() if getattr(p, s.name) != getattr(defaults, s.name)]
    return f"{experiment.name}(" + ",".join(changed) + ")"


def result_type(experiment: Experiment[Any, Any]) -> type:
    """Return the class the experiment's run function says it returns."""
    return typing.get_type_hints(experiment.run)["return"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# The registry


def test_experiment_names_are_unique_across_lessons() -> None:
    names = [e.name for e in EXPERIMENTS]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert len(LESSONS) >= 6


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.slug)
def test_a_lesson_declares_tabs_experiments_and_predictions(lesson: Any) -> None:
    assert len(set(lesson.tabs)) == len(lesson.tabs) and "pitfalls" in lesson.tabs
    assert lesson.experiments, lesson.slug
    assert len(lesson.predictions) >= 2, f"{lesson.slug} needs at least two predict-then-run questions"
    assert {p.experiment.name for p in lesson.predictions} <= {e.name for e in EXPERIMENTS}
    assert (Path(__file__).resolve().parents[2] / lesson.page).is_file()


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=name_of)
def test_defaults_and_examples_are_valid_and_write_a_script(experiment: Experiment[Any, Any]) -> None:
    for p in (experiment.params(), *experiment.examples):
        p.validate()
        assert type(p) is experiment.params
        script = experiment.write_script(p, "cpu")
        compile(script, experiment.filename, "exec")  # it is Python
        assert "{{" not in script and "{%" not in script
        if experiment.exclusive:  # a timing script times with the page's CPU threads, or its numbers do not compare
            assert f"torch.set_num_threads({torch.get_num_threads()})" in script
    assert experiment.filename.endswith(".py")
    if experiment.sweep is not None:
        assert any(s.name == experiment.sweep and s.kind in ("strs", "ints") for s in experiment.params.specs())


def charts_cuda_peaks(experiment: Experiment[Any, Any]) -> bool:
    """Return whether the experiment's Result carries the CUDA allocator's peak (a field named *cuda_peak*)."""
    result_type = typing.get_type_hints(experiment.run)["return"]
    return any("cuda_peak" in f.name for f in dataclasses.fields(result_type))


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=name_of)
def test_the_cuda_script_prints_what_the_page_charts_on_a_gpu(experiment: Experiment[Any, Any]) -> None:
    # A GPU server's page charts torch.cuda.max_memory_allocated for these; the script written for
    # that server prints it too, and never asks for a CPU-only autocast or GradScaler.
    for p in (experiment.params(), *experiment.examples):
        script = experiment.write_script(p, "cuda")
        compile(script, experiment.filename, "exec")
        assert 'autocast("cpu"' not in script and 'GradScaler("cpu")' not in script
        if charts_cuda_peaks(experiment):
            assert "max_memory_allocated" in script
    assert any(charts_cuda_peaks(e) for e in EXPERIMENTS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_cuda_scripts_run_on_a_gpu(tmp_path: Path) -> None:
    sources = {e.name: e.write_script(e.params(), "cuda") for e in EXPERIMENTS}
    ran = run_scripts(sources, tmp_path, workers=1, timeout=1800)
    failed = {name: r.err[-800:] for name, r in ran.items() if r.rc != 0}
    assert not failed, failed
    for e in EXPERIMENTS:
        if charts_cuda_peaks(e):
            assert "max_memory_allocated" in ran[e.name].out or "cuda peak" in ran[e.name].out, e.name


# --------------------------------------------------------------------------------------------
# Any params run or are refused


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=name_of)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(experiment: Experiment[Any, Any], data: st.DataObject) -> None:
    p = data.draw(any_params(experiment.params))
    check_runs_or_refused(experiment.run, p, result_type(experiment), config=SMALL)


# What a student might type into a link for a number: Unicode and full-width digits, separators,
# signs, exponents, junk. Each is read as a plain number or reported; nothing raises.
TYPED = ["²", "①", "٣", "１２", "1_0", "+5", "-3", "1e3", "0x10", "٣.٥", "1,5", " 7 ", "", "NaN", "-inf", "9" * 60]
NOT_NUMBERS = {"²", "①", "٣", "１２", "1_0", "0x10", "٣.٥", "1,5", "", "NaN", "-inf"}


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=name_of)
def test_any_typed_url_value_is_read_or_reported(experiment: Experiment[Any, Any]) -> None:
    cls = experiment.params
    for spec in cls.specs():
        for raw in TYPED:
            p, rejected = cls.from_query({f"{experiment.name}.{spec.name}": raw}, experiment.name)
            p.validate()
            reported = {r.field for r in rejected}
            if spec.kind in ("int", "float") and raw in NOT_NUMBERS:
                assert spec.name in reported, (spec.name, raw)
                assert getattr(p, spec.name) == getattr(cls(), spec.name)
            assert len(rejected) == len(reported), f"each field is reported once: {rejected}"


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=name_of)
def test_a_link_made_from_params_gives_the_same_params(experiment: Experiment[Any, Any]) -> None:
    for p in (experiment.params(), *experiment.examples):
        again, rejected = experiment.params.from_query(p.to_query(experiment.name), experiment.name)
        assert rejected == [] and again == p


# --------------------------------------------------------------------------------------------
# Same settings, same numbers


DETERMINISTIC = [(e, p) for e, p in CASES if not e.exclusive]  # exclusive runs time things: times differ


@pytest.mark.parametrize("case", DETERMINISTIC, ids=case_id)
def test_same_params_same_result(case: tuple[Experiment[Any, Any], Params]) -> None:
    experiment, p = case
    assert_same(run_cpu(experiment.run, p), run_cpu(experiment.run, p))


def test_same_results_from_eight_threads_at_once() -> None:
    assert_same_from_threads([(e.run, p) for e, p in DETERMINISTIC])


# --------------------------------------------------------------------------------------------
# Every script runs and prints the page's numbers


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run the script of every case once, side by side, in a folder without the project in it."""
    sources = {case_id(case): case[0].write_script(case[1], "cpu") for case in CASES}
    return run_scripts(sources, tmp_path_factory.mktemp("scripts"), workers=2, timeout=900, warm_up=True)


def shown_in(shown: Sequence[float | str], out: str) -> list[float | str]:
    """Return what the page shows that the script's output does not contain (numbers to 1e-6 relative)."""
    printed = numbers(out.lower())
    missing: list[float | str] = []
    for item in shown:
        if isinstance(item, str):
            if item not in out:
                missing.append(item)
        elif not any(_close(float(item), value) for value in printed):
            missing.append(item)
    return missing


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_script_runs_and_prints_the_pages_numbers(case: tuple[Experiment[Any, Any], Params], ran: dict[str, Ran]) -> None:
    experiment, p = case
    result = ran[case_id(case)]
    assert result.rc == 0, result.err[-3000:]
    assert experiment.shown is not None
    page = run_cpu(experiment.run, p)  # an exclusive (timing) experiment's shown() lists only what is not a time
    assert shown_in(experiment.shown(page), result.out) == []


def test_every_experiment_says_what_its_script_must_print() -> None:
    assert [e.name for e in EXPERIMENTS if e.shown is None] == []


# --------------------------------------------------------------------------------------------
# Predictions


@pytest.mark.parametrize("prediction", PREDICTIONS, ids=name_of)
def test_every_prediction_is_answered_by_its_experiment(prediction: Prediction[Any, Any]) -> None:
    prediction.params.validate()
    assert type(prediction.params) is prediction.experiment.params
    assert len(set(prediction.options)) == len(prediction.options) >= 2
    assert answer_of(prediction, prediction.params) in prediction.options


def answer_of(prediction: Prediction[Any, Any], params: Params) -> str:
    """Return the prediction's answer computed from its experiment run with params on the CPU."""
    experiment = prediction.experiment
    if experiment.sweep is None:
        return prediction.answer(execute(experiment.run, params, device=CPU))
    return prediction.answer([execute(experiment.run, part, device=CPU) for part in split_sweep(experiment, params)])


@pytest.mark.parametrize("prediction", PREDICTIONS, ids=name_of)
def test_a_predictions_answer_does_not_depend_on_luck(prediction: Prediction[Any, Any]) -> None:
    # A question is answered by reasoning, so its answer is the same for other seeds, and again on a
    # second run (a timing race decided by a noisy shared CPU would flip between runs).
    import dataclasses

    answer = answer_of(prediction, prediction.params)
    assert answer_of(prediction, prediction.params) == answer
    if any(s.name == "seed" for s in prediction.params.specs()):
        for seed in (1, 2, 3):
            assert answer_of(prediction, dataclasses.replace(prediction.params, seed=seed)) == answer, seed


def split_sweep(experiment: Experiment[Any, Any], p: Params) -> list[Params]:
    """Return the parts the page runs for a sweep experiment: one per element of the sweep field."""
    import dataclasses

    assert experiment.sweep is not None
    return [dataclasses.replace(p, **{experiment.sweep: (value,)}) for value in getattr(p, experiment.sweep)]


def test_invalid_params_are_refused_before_anything_runs() -> None:
    experiment = EXPERIMENTS[0]
    spec = next(s for s in experiment.params.specs() if s.kind in ("int", "float") and "lo" in s.meta)
    bad = experiment.params(**{spec.name: spec.meta["hi"] * 10 + 1})
    with pytest.raises(InvalidParams):
        execute(experiment.run, bad, device=CPU)


def test_the_work_budget_refuses_with_a_message_key() -> None:
    costly = max(CASES, key=lambda case: case[1].estimate_work())
    assert costly[1].estimate_work() > 0, "no experiment estimates its work"
    with pytest.raises(ExperimentError) as refused:
        execute(costly[0].run, costly[1], device=CPU, config=Config(max_gwork=costly[1].estimate_work() / 2e9))
    assert refused.value.key == "work_budget" and refused.value.info["needed"] > refused.value.info["most"] > 0
