"""Wall-time helpers for tests that compare two timings taken in the same run (never against a fixed limit)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def least_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Return the least wall time of `repeats` calls of fn after one warm-up call.

    The least is the call the shared machine disturbed least, so a ratio of two such figures is stable.
    """
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
