"""Experiment runs in worker processes, so that a run's Python never waits for the server's GIL.

Torch releases the GIL inside every operation and takes it back after. In the server process the
GIL is also what every student's page script runs on, so under a class's load each of a run's many
small operations waited its turn behind page scripts: a 0.2 s init signal run took 2.4 s beside one
busy Python thread (sys.getswitchinterval() is 5 ms), and runs under 50 students took 2.5x their
CPU time in wall time. A worker process has a GIL of its own.

A `WorkerPool` keeps up to `size` processes (`python -m core.workers`, started fresh rather than
forked, so no server threads or locks are inherited), each serving one run at a time over a
socket. The device gate stays in the server process: a run gets its place there first, then a
free worker. What crosses the socket is ours: the run function (by module and name), the
validated Params, the seed, the time limit and budget; back come progress fractions and the result,
or the run's ExperimentError or InvalidParams. A Stop is a message that sets the worker's flag,
which the run reads through ctx.stop_requested(). A worker that dies (killed by the kernel for
memory, or a crash inside torch) is replaced and the run fails with ExperimentError("worker_lost"); a
run still going `KILL_GRACE_SECONDS` past its time limit (stuck inside one operation) is killed too.
A run's time starts when its worker starts it (a new worker first imports torch and the lessons).

Results are unpickled from the worker, which only ever sends what our own run functions return;
nothing a student sends is unpickled (Params are validated dataclasses the server built).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import multiprocessing.connection
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.experiment import ExperimentError, RunContext
from core.heap import freeze_loaded
from core.params import InvalidParams

ROOT = Path(__file__).resolve().parent.parent  # the project: workers import core from here
KILL_GRACE_SECONDS = 5.0  # past its deadline a run that has not stopped by itself is killed
# Workers compute at a lower priority than the server process: a page rerun (tens of ms) goes ahead of
# a long run for the core they share, and the run takes what the pages leave.
WORKER_NICE = 10
POLL_SECONDS = 0.05  # how often the server side looks at Stop while a run is out


def _malloc_trim() -> Callable[[], None]:
    """Return a function that gives the C heap's free memory back to the system (glibc's malloc_trim; else nothing).

    glibc keeps what a run freed for later allocations: after one init signal run of 90 layers of
    1,024 a worker stayed at 745 MiB instead of 291 MiB, and every worker of a server ends up at the
    size of the largest run it ever did. Trimming after each run took 1.5 ms after a 0.16 s run
    and 34 ms after that 9 s one.
    """
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return lambda: None
    return lambda: trim(0)


@dataclass(frozen=True)
class Task:
    """One run, as a worker receives it."""

    module: str
    name: str
    params: Any
    seed: int
    device: str
    max_bytes: int
    seconds: float


def poolable(run_fn: Callable[..., Any]) -> bool:
    """Return whether a worker can find `run_fn` by its module and name (a module-level function)."""
    module, name = getattr(run_fn, "__module__", None), getattr(run_fn, "__qualname__", "")
    if not module or not name.isidentifier():
        return False
    try:
        return getattr(importlib.import_module(module), name, None) is run_fn
    except ImportError:
        return False


class _Worker:
    """One worker process (`python -m core.workers FD`) and the server's end of its socket."""

    def __init__(self, threads: int) -> None:
        mine, theirs = socket.socketpair()
        path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
        env = dict(os.environ, PYTHONPATH=path, TORCHLAB_RUN_PROCESSES="0")  # a worker computes itself: no workers of its own
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.workers", str(theirs.fileno()), str(threads)],
            cwd=ROOT,
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = multiprocessing.connection.Connection(mine.detach())

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.conn.close()


class WorkerPool:
    """Up to `size` worker processes that run experiments; `run` blocks the calling thread until its run ends.

    Workers start when a run needs one and end with the server process (their socket closes).
    """

    def __init__(self, size: int, threads: int) -> None:
        self.size = max(1, size)
        self.threads = threads
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0

    def run(
        self,
        task: Task,
        on_progress: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Any:
        """Run `task` in a worker and return its result, or raise what the run raised.

        If the calling thread is interrupted while it waits (a page rerun raises from on_progress),
        the run is told to stop and a helper thread waits for its end before the worker serves again.
        """
        worker = self._take()
        try:
            worker.conn.send(("run", task))
        except BaseException:
            self._discard(worker)
            raise
        try:
            kind, payload = self._follow(worker, task, on_progress, stop)
        except _Lost as lost:
            self._discard(worker)
            raise lost.error from None
        except BaseException:
            _tell_stop(worker)
            threading.Thread(target=self._drain, args=(worker, task), name="torchlab-run-drain", daemon=True).start()
            raise
        self._idle.put(worker)
        return _outcome(kind, payload)

    def close(self) -> None:
        """Stop every idle worker (busy ones stop when their pipe closes with the server)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(worker)

    def _take(self) -> _Worker:
        while True:
            if self._idle.empty() and (started := self._start_one()) is not None:
                return started
            try:
                worker = self._idle.get(timeout=1.0)
            except queue.Empty:
                continue
            if worker.alive():
                return worker
            self._discard(worker)

    def start(self) -> None:
        """Start every worker now, in the background, so that the first runs do not wait for them."""

        def start_all() -> None:
            while (worker := self._start_one()) is not None:
                self._idle.put(worker)

        threading.Thread(target=start_all, name="torchlab-run-start", daemon=True).start()

    def _start_one(self) -> _Worker | None:
        """Start one more worker if the pool has room; None when it is full."""
        with self._lock:
            if self._started >= self.size:
                return None
            self._started += 1
        try:
            return _Worker(self.threads)
        except BaseException:
            with self._lock:
                self._started -= 1
            raise

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._started -= 1

    def _drain(self, worker: _Worker, task: Task) -> None:
        """Wait for an abandoned run to end, then let its worker serve again (or replace it)."""
        try:
            self._follow(worker, task, None, None)
        except _Lost:
            self._discard(worker)
        else:
            self._idle.put(worker)

    def _follow(
        self,
        worker: _Worker,
        task: Task,
        on_progress: Callable[[float], None] | None,
        stop: threading.Event | None,
    ) -> tuple[str, Any]:
        """Relay progress and Stop until the worker answers; return its answer. Raises _Lost if the worker is gone."""
        told = False
        kill_at = float("inf")  # set when the run starts: a worker still importing torch is not late
        while True:
            if stop is not None and stop.is_set() and not told:
                told = _tell_stop(worker)
            if time.monotonic() > kill_at:
                raise _Lost(ExperimentError("timeout", seconds=task.seconds))
            try:
                message = worker.conn.recv() if worker.conn.poll(POLL_SECONDS) else None
            except (EOFError, OSError):
                message = None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(1)
            if message is None:
                if not worker.alive():
                    raise _Lost(ExperimentError("worker_lost"))
                continue
            kind, payload = message
            if kind == "started":
                kill_at = time.monotonic() + task.seconds + KILL_GRACE_SECONDS
            elif kind != "progress":
                return kind, payload
            elif on_progress is not None:
                on_progress(payload)


class _Lost(Exception):
    """The worker died or was past its deadline: it is replaced, and the run fails with `error`."""

    def __init__(self, error: ExperimentError) -> None:
        super().__init__(error.key)
        self.error = error


def _outcome(kind: str, payload: Any) -> Any:
    """Return a worker's result, or raise the error it reported as the server process would have met it."""
    if kind == "result":
        return payload
    if kind == "experiment_error":
        key, info = payload
        raise ExperimentError(key, **info)
    if kind == "invalid_params":
        field, key, info = payload
        raise InvalidParams(field, key, **info)
    raise RuntimeError(payload)  # "failure": a bug in the run, with its worker-side text


def _tell_stop(worker: _Worker) -> bool:
    """Ask the worker's run to stop (ctx.stop_requested); return whether the message went."""
    try:
        worker.conn.send(("stop", None))
    except (OSError, ValueError):
        return False
    return True


def serve(conn: multiprocessing.connection.Connection, threads: int) -> None:
    """A worker's life: run each task the server sends, reporting progress and the outcome; end when the server goes.

    A reader thread takes the server's messages: tasks go to the main thread, "stop" sets the
    running task's flag (its run reads it through ctx.stop_requested()).
    """
    from core.runner import run_guarded  # the same guard as a run in the server: torch's errors become ExperimentError

    torch.set_num_threads(threads)
    importlib.import_module("core.lessons")  # every lesson's experiments, ready before the first run
    freeze_loaded()  # full collections during a run skip torch and the lessons (core.heap)
    tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
    stop = threading.Event()
    send_lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with send_lock:
            conn.send(message)

    def read() -> None:
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                tasks.put(None)
                return
            if kind == "stop":
                stop.set()
            else:
                stop.clear()
                tasks.put(payload)

    threading.Thread(target=read, name="torchlab-run-reader", daemon=True).start()
    give_back = _malloc_trim()
    while (task := tasks.get()) is not None:
        try:
            run_fn = getattr(importlib.import_module(task.module), task.name)
            send(("started", None))
            device = torch.device(task.device)
            ctx = RunContext(
                device,
                torch.Generator(device=device).manual_seed(task.seed),
                time.monotonic() + task.seconds,  # from now: importing the run's module was not the run
                task.max_bytes,
                lambda fraction: send(("progress", fraction)),
                task.seconds,
                stop,
            )
            outcome: tuple[str, Any] = ("result", run_guarded(run_fn, task.params, ctx))
        except ExperimentError as e:
            outcome = ("experiment_error", (e.key, e.info))
        except InvalidParams as e:
            outcome = ("invalid_params", (e.field, e.key, e.info))
        except Exception as e:  # any other failure goes back to the page, as it would in-process
            outcome = ("failure", f"{type(e).__name__}: {e}")
        try:
            send(outcome)
        except (OSError, ValueError, EOFError):
            return  # the server is gone
        except Exception as e:  # a result that cannot be sent (a bug): say so instead
            send(("failure", f"the result could not be sent: {type(e).__name__}: {e}"))
        del outcome
        give_back()  # after the answer went out: the page does not wait for it


if __name__ == "__main__":
    # Ctrl-C at the server's terminal reaches its whole process group: the server decides, and a
    # worker ends when the server's end of its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICE)
    serve(multiprocessing.connection.Connection(int(sys.argv[1])), int(sys.argv[2]))
