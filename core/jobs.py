"""A run on a thread of its own, so that the page can draw its progress and a Stop button while it works.

The page's script thread starts a Job and polls it: the queue place and the fraction done are plain
attributes the run's callbacks set, and `stop` is the event the Stop button sets. A click on Stop
interrupts the page's script (Streamlit reruns it), but not the job: the rerun finds the same job in
the student's session, sees it end at its next step, and shows what it computed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

R = TypeVar("R")


class Job(Generic[R]):
    """One run of `work(job)` on a daemon thread: its progress, queue place, stop event, and result or error."""

    def __init__(self, key: str, work: Callable[[Job[R]], R]) -> None:
        self.key = key
        self.stop = threading.Event()
        self.fraction = 0.0
        self.position: int | None = None  # the place in the device queue while it waits, else None
        self._result: R | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(work,), name=f"torchlab-job {key[:60]}", daemon=True)
        self._thread.start()

    def _main(self, work: Callable[[Job[R]], R]) -> None:
        try:
            self._result = work(self)
        except BaseException as e:  # handed to whoever waits for the result, which re-raises it there
            self._error = e
        finally:
            self._done.set()

    def waiting(self, position: int) -> None:
        """Record the place in the device queue (the run's on_wait callback)."""
        self.position = position

    def progressing(self, fraction: float) -> None:
        """Record the fraction done (the run's on_progress callback); the run has left the queue."""
        self.position = None
        self.fraction = fraction

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for the run to end; return whether it has."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopped(self) -> bool:
        """Whether Stop was pressed: the result, if any, holds only the steps taken before it."""
        return self.stop.is_set()

    def result(self) -> R:
        """Return the run's result, or raise its error; the run must have ended."""
        if not self.done:
            raise RuntimeError("the job is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
