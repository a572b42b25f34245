"""CPU threads in the CPU-vs-GPU comparison: chosen by the student up to the server's limit, used, said, restored, scripted.

The limit is the server's TORCHLAB_THREADS (core.runner.CONFIG.threads). Here it is raised to 2 by
patching the lesson's view of the config, so a choice below it and one above it can both be tried.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.lessons.speed import common, scaling
from core.lessons.speed.scaling import ScalingParams
from core.params import InvalidParams
from core.runner import CONFIG, Config, execute

CPU = torch.device("cpu")


@pytest.fixture
def two_threads_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "CONFIG", Config(threads=2))


def test_the_default_is_the_servers_count_and_the_slider_stops_there() -> None:
    p = ScalingParams()
    assert p.threads == CONFIG.threads == common.cpu_threads_limit()
    spec = next(s for s in ScalingParams.specs() if s.name == "threads")
    assert p.upper_bound(spec) == CONFIG.threads
    with pytest.raises(InvalidParams) as refused:
        dataclasses.replace(p, threads=CONFIG.threads + 1).validate()
    assert refused.value.field == "threads" and refused.value.key == "out_of_range"


def test_a_choice_within_the_limit_is_used_for_the_cpu_side_and_the_count_restored(two_threads_allowed: None) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    real = scaling.time_call

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scaling, "time_call", spy)
        r = execute(scaling.run, ScalingParams(sizes=(16, 32), min_run_time=0.01, threads=2), device=CPU)
    assert seen == [2, 2] and r.cpu_threads == 2
    assert torch.get_num_threads() == before
    with pytest.raises(InvalidParams):
        ScalingParams(threads=3).validate()


def test_the_count_is_restored_when_the_run_fails(two_threads_allowed: None) -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), common.cpu_threads(2):
        assert torch.get_num_threads() == 2
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_the_script_sets_the_chosen_count_and_says_it(two_threads_allowed: None) -> None:
    p = ScalingParams(threads=2)
    for device_type in ("cpu", "cuda"):
        script = scaling.SCALING.write_script(p, device_type)
        assert "torch.set_num_threads(2)" in script and 'print("cpu threads"' in script
    r = execute(scaling.run, dataclasses.replace(p, sizes=(16,), min_run_time=0.01), device=CPU)
    assert "cpu threads 2" in scaling.shown(r)


def test_merging_refuses_points_timed_with_different_thread_counts() -> None:
    sizes = np.array([16])
    one = scaling.Measured("matmul", "float32", sizes, "cpu", np.array([1e-3]), np.zeros(1), None, None, None, False, 1)
    two = dataclasses.replace(one, sizes=np.array([32]), cpu_threads=2)
    with pytest.raises(ValueError, match="threads"):
        scaling.merge_scaling([scaling.scaling_result(one), scaling.scaling_result(two)])
    merged = scaling.merge_scaling(
        [scaling.scaling_result(one), scaling.scaling_result(dataclasses.replace(two, cpu_threads=1))]
    )
    assert merged.cpu_threads == 1
