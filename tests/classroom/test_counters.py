"""The runner's counters for the dashboard: runs, cache, waits at the device gate, errors by kind."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from core import runner
from core.experiment import ExperimentError
from core.gate import DeviceGate
from core.params import Params
from core.runner import Counters


def test_counts_and_windows() -> None:
    now = [100.0]
    c = Counters(window=60, error_window=600, clock=lambda: now[0])
    c.count_run()
    c.count_cache(True)
    c.count_cache(False)
    c.count_cache(True)
    c.wait_started(1)
    c.wait_started(1)
    now[0] = 102.5
    snap = c.snapshot()
    assert snap["queue_now"] == 1 and snap["longest_wait_s"] == 2.5
    c.wait_ended(1)
    c.wait_ended(1)
    c.count_error("timeout")
    c.count_error("timeout")
    c.count_error("oom")
    snap = c.snapshot()
    assert (snap["runs"], snap["cache_hits"], snap["cache_misses"], snap["waits"], snap["queue_now"]) == (1, 2, 1, 1, 0)
    assert snap["errors"] == {"timeout": 2, "oom": 1} == snap["recent_errors"]
    now[0] = 200
    snap = c.snapshot()
    assert snap["runs_last_minute"] == 0 and snap["longest_wait_s"] == 0 and snap["runs"] == 1
    now[0] = 800
    assert c.snapshot()["recent_errors"] == {} and c.snapshot()["errors"] == {"timeout": 2, "oom": 1}


@dataclass(frozen=True)
class Nothing(Params):
    pass


def test_execute_counts_runs_waits_and_errors(tmp_path: object) -> None:
    gate = DeviceGate(1, tmp_path / "gate")  # type: ignore[operator]
    before = runner.COUNTERS.snapshot()
    release = threading.Event()

    def slow(p: Nothing, ctx: runner.RunContext) -> int:
        release.wait(10)
        return 1

    def fail(p: Nothing, ctx: runner.RunContext) -> int:
        raise RuntimeError("boom")

    first = threading.Thread(target=lambda: runner.execute(slow, Nothing(), gate=gate))
    first.start()
    time.sleep(0.3)
    waited = threading.Event()
    second = threading.Thread(
        target=lambda: runner.execute(lambda p, c: 2, Nothing(), gate=gate, on_wait=lambda _: waited.set())
    )
    second.start()
    assert waited.wait(10)
    assert runner.COUNTERS.snapshot()["queue_now"] >= 1
    release.set()
    first.join()
    second.join()
    with pytest.raises(ExperimentError):
        runner.execute(fail, Nothing(), gate=gate)
    after = runner.COUNTERS.snapshot()
    assert after["runs"] - before["runs"] == 3
    assert after["waits"] - before["waits"] >= 1
    assert after["errors"].get("runtime", 0) - before["errors"].get("runtime", 0) == 1
