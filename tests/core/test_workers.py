"""Experiment runs in worker processes (core.workers): the same results as in the server process, progress,
Stop, errors carried back as the page would meet them, and a worker that dies or hangs is replaced.

The run functions below are module-level so that a worker can import them by name, as it imports a lesson's.
"""

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.load import process_tree, sample_tree
from core import runner, workers
from core.config import Config
from core.gate import DeviceGate
from core.lessons.init import signal as init_signal
from core.params import InvalidParams, Params, bounds
from core.runner import ExperimentError, RunContext, execute
from core.workers import WorkerPool, poolable
from ui.i18n import strings


@dataclass(frozen=True)
class Steps(Params):
    n: int = field(default=5, metadata=bounds(0, 10**6))


def counted(p: Steps, ctx: RunContext) -> dict[str, object]:
    """Report progress per step; stop early when asked; say which process ran."""
    done = 0
    for done in range(1, p.n + 1):
        if ctx.stop_requested():
            break
        ctx.check_deadline()
        ctx.progress(done, p.n)
        time.sleep(0.01)
    return {"done": done, "pid": os.getpid(), "draw": torch.randn(3, generator=ctx.generator).tolist()}


def refused(p: Steps, ctx: RunContext) -> None:
    raise ExperimentError("budget", needed_mb=p.n, max_mb=1)


def invalid(p: Steps, ctx: RunContext) -> None:
    raise InvalidParams("n", "too_big", hi=1)


def buggy(p: Steps, ctx: RunContext) -> None:
    raise KeyError("a bug")


def dies(p: Steps, ctx: RunContext) -> None:
    os._exit(3)  # the kernel killing a worker for its memory looks the same from the server


def hangs(p: Steps, ctx: RunContext) -> None:
    time.sleep(3600)  # one long operation that never checks the deadline


@pytest.fixture
def gate(tmp_path: Path) -> DeviceGate:
    return DeviceGate(slots=2, folder=tmp_path)


@pytest.fixture
def pooled() -> Iterator[Config]:
    """A configuration whose runs go to worker processes (one per device slot); they stop after the test."""
    yield dataclasses.replace(Config(), run_processes=-1)
    runner.close_pools()  # no test after this one finds our workers among its process's children


def run(fn, p: Params, config: Config, gate: DeviceGate, **kw):  # type: ignore[no-untyped-def]
    return execute(fn, p, config=config, gate=gate, device=torch.device("cpu"), **kw)


def test_the_server_setting_reads_auto_a_count_or_zero() -> None:
    assert Config.from_env({}).run_processes == -1 == Config.from_env({"TORCHLAB_RUN_PROCESSES": " Auto "}).run_processes
    assert Config.from_env({"TORCHLAB_RUN_PROCESSES": "0"}).run_processes == 0 == Config().run_processes
    assert Config.from_env({"TORCHLAB_RUN_PROCESSES": "3"}).run_processes == 3
    assert Config.from_env({"TORCHLAB_RUN_PROCESSES": "999"}).run_processes == 64
    assert Config.from_env({"TORCHLAB_RUN_PROCESSES": "junk"}).run_processes == 0  # unreadable: in-process


def test_only_module_level_functions_are_sent_to_workers() -> None:
    def local(p: Steps, ctx: RunContext) -> None:
        return None

    assert poolable(counted) and poolable(init_signal.run)
    assert not poolable(local) and not poolable(lambda p, ctx: None)


def test_a_run_in_a_worker_gives_what_it_gives_in_the_server_process(pooled: Config, gate: DeviceGate) -> None:
    p = init_signal.SignalParams(depth=6, width=32, batch=16, seeds=2, seed=4)
    there = run(init_signal.run, p, pooled, gate)
    here = run(init_signal.run, p, dataclasses.replace(pooled, run_processes=0), gate)
    for a, b in zip(there.runs, here.runs, strict=True):
        np.testing.assert_array_equal(a.act_std_seeds, b.act_std_seeds)
        np.testing.assert_array_equal(a.grad_std_seeds, b.grad_std_seeds)
        np.testing.assert_array_equal(a.hist_counts, b.hist_counts)
    progress: list[float] = []
    result = run(counted, Steps(n=4), pooled, gate, on_progress=progress.append)
    assert result["pid"] != os.getpid() and result["done"] == 4
    assert progress == [0.25, 0.5, 0.75, 1.0]
    assert result["draw"] == torch.randn(3, generator=torch.Generator().manual_seed(0)).tolist()  # the seed went along


def test_stop_reaches_the_run_in_its_worker(pooled: Config, gate: DeviceGate) -> None:
    stop = threading.Event()
    seen: list[float] = []

    def progress(fraction: float) -> None:  # Stop is pressed once the run has taken five steps
        seen.append(fraction)
        if len(seen) == 5:
            stop.set()

    result = run(counted, Steps(n=100_000), pooled, gate, stop=stop, on_progress=progress)
    assert 5 <= result["done"] < 100_000
    assert run(counted, Steps(n=3), pooled, gate)["done"] == 3  # the next run starts unstopped


def test_errors_come_back_as_the_page_would_meet_them(pooled: Config, gate: DeviceGate) -> None:
    with pytest.raises(ExperimentError) as refusal:
        run(refused, Steps(n=7), pooled, gate)
    assert (refusal.value.key, refusal.value.info) == ("budget", {"needed_mb": 7, "max_mb": 1})
    with pytest.raises(InvalidParams) as bad:
        run(invalid, Steps(), pooled, gate)
    assert (bad.value.field, bad.value.key, bad.value.info) == ("n", "too_big", {"hi": 1})
    with pytest.raises(RuntimeError, match="KeyError"):
        run(buggy, Steps(), pooled, gate)
    with pytest.raises(ExperimentError) as timeout:
        run(counted, Steps(n=10**6), dataclasses.replace(pooled, run_seconds=0.3), gate)
    assert timeout.value.key == "timeout"
    assert run(counted, Steps(n=2), pooled, gate)["done"] == 2


def test_a_worker_that_dies_or_hangs_is_replaced(pooled: Config, gate: DeviceGate, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run(counted, Steps(n=1), pooled, gate)["pid"]
    with pytest.raises(ExperimentError) as died:
        run(dies, Steps(), pooled, gate)
    assert died.value.key == "worker_lost"
    assert all(strings(language).get("errors.worker_lost") for language in ("en", "zh")), "said in both languages"
    monkeypatch.setattr(workers, "KILL_GRACE_SECONDS", 0.5)
    with pytest.raises(ExperimentError) as hung:
        run(hangs, Steps(), dataclasses.replace(pooled, run_seconds=0.5), gate)
    assert hung.value.key == "timeout"
    # One run at a time takes the worker that served last: the first one died, the second was killed,
    # and a third, new one serves every run after them.
    pids = {run(counted, Steps(n=1), pooled, gate)["pid"] for _ in range(4)}
    assert len(pids) == 1 and before not in pids and os.getpid() not in pids


def test_a_page_rerun_while_waiting_leaves_the_worker_to_finish_and_serve_again() -> None:
    pool = WorkerPool(1, threads=1)
    task = workers.Task(__name__, "counted", Steps(n=200), 0, "cpu", 1 << 20, 30.0)

    def rerun(fraction: float) -> None:
        raise KeyboardInterrupt  # what Streamlit raises in a script thread told to rerun, in spirit

    try:
        with pytest.raises(KeyboardInterrupt):
            pool.run(task, on_progress=rerun)
        short = workers.Task(__name__, "counted", Steps(n=2), 0, "cpu", 1 << 20, 30.0)
        assert pool.run(short)["done"] == 2  # the abandoned run was told to stop and its worker serves again
    finally:
        pool.close()


SERVER_THAT_DIES = """
import threading, time
from core.workers import Task, WorkerPool
from tests.core.test_workers import Steps
pool = WorkerPool(2, threads=1)
long = Task("tests.core.test_workers", "counted", Steps(n=60000), 0, "cpu", 1 << 20, 900.0)  # 10 minutes of steps
going = threading.Event()
threading.Thread(target=pool.run, args=(long, lambda f: going.set()), daemon=True).start()  # going when the server dies
going.wait()
pool.run(Task("tests.core.test_workers", "counted", Steps(n=1), 0, "cpu", 1 << 20, 60.0))  # a second worker, idle after
print("ready", flush=True)
time.sleep(600)
"""


def test_workers_end_when_their_server_is_killed() -> None:
    """A server killed with SIGKILL (the kernel's OOM killer, a crashed replica) leaves no worker behind:
    an idle worker and one in the middle of a run both end once their socket closes."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    server = subprocess.Popen([sys.executable, "-c", SERVER_THAT_DIES], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        workers_then = set(process_tree([server.pid])) - {server.pid}
        assert len(workers_then) == 2
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 120  # a wait for an event, not a speed limit: the interrupted run had minutes to go
    while (left := process_tree(list(workers_then))) and time.monotonic() < deadline:  # zombies count as gone
        time.sleep(0.05)
    assert not left, f"workers left running: {left}"


def rss_mib(pid: int) -> float:
    """Return a process's resident memory in MiB (a worker has no children of its own)."""
    return sample_tree([pid], 0.0).rss_bytes / 2**20


def test_a_worker_gives_back_the_memory_its_run_freed() -> None:
    """Without malloc_trim a worker kept the C heap its runs freed: +76 MiB after this one (378 -> 454), +14 with it."""
    pool = WorkerPool(1, threads=1)
    quick = workers.Task(__name__, "counted", Steps(n=1), 0, "cpu", 1 << 20, 30.0)
    deep = init_signal.SignalParams(depth=40, width=512)
    try:
        pid = pool.run(quick)["pid"]
        before = rss_mib(pid)
        pool.run(workers.Task(init_signal.run.__module__, "run", deep, 0, "cpu", 1 << 30, 120.0))
        assert pool.run(quick)["pid"] == pid  # the worker trims before it takes the next run
        assert rss_mib(pid) - before < 40, f"{before:.0f} MiB before the run, {rss_mib(pid):.0f} MiB after"
    finally:
        pool.close()
