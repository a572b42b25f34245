"""The class-wide result cache: bounded in bytes, LRU, time to live, one computation per key, frozen results;
and the token bucket that limits a session's actions."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from core.cache import ResultCache, nbytes
from core.ratelimit import NewestWins, TokenBucket


@dataclass(frozen=True)
class Result:
    values: np.ndarray
    label: str


def result(mib: float, label: str = "r") -> Result:
    return Result(np.zeros(int(mib * 2**20) // 8), label)


def test_size_counts_array_and_frame_data_once() -> None:
    a = np.zeros(1000)
    assert 8000 <= nbytes(a) < 8200
    assert 8000 <= nbytes((a, a[:10], a)) < 8600  # a view and a repeat keep no more data alive
    frame = pd.DataFrame({"x": np.zeros(1000), "name": ["abc"] * 1000})
    assert nbytes(frame) == int(frame.memory_usage(deep=True).sum())
    assert nbytes(result(1)) > 2**20


def test_the_cache_stays_under_its_byte_budget_and_drops_the_least_recently_used() -> None:
    cache = ResultCache(max_bytes=10 * 2**20)
    for i in range(30):
        cache.get_or_run(f"k{i}", lambda: result(1))
        if i == 5:
            cache.get_or_run("k0", lambda: pytest.fail("k0 should still be cached"))
    stats = cache.stats()
    assert stats.bytes <= 10 * 2**20 and stats.entries == 9 and stats.evictions == 21
    assert cache.get_or_run("k29", lambda: result(0, "new")).label == "r"  # the newest stayed
    assert cache.get_or_run("k1", lambda: result(0, "new")).label == "new"  # the oldest went


def test_entry_count_and_age_are_bounded_too() -> None:
    now = [0.0]
    cache = ResultCache(max_bytes=2**30, max_entries=3, ttl=10, clock=lambda: now[0])
    for i in range(5):
        cache.get_or_run(f"k{i}", lambda: result(0))
    assert cache.stats().entries == 3
    now[0] = 11
    assert cache.get_or_run("k4", lambda: result(0, "fresh")).label == "fresh"


def test_a_result_too_large_to_share_is_returned_but_not_kept() -> None:
    cache = ResultCache(max_bytes=4 * 2**20, max_share=0.25)
    assert cache.get_or_run("big", lambda: result(2)).values.size == 2**18
    assert cache.stats().entries == 0 and cache.stats().too_large == 1


def test_cached_arrays_are_read_only() -> None:
    cache = ResultCache(max_bytes=2**30)
    r = cache.get_or_run("k", lambda: result(0.01))
    with pytest.raises(ValueError):
        r.values[0] = 1


def test_errors_are_not_cached() -> None:
    cache = ResultCache(max_bytes=2**30)
    with pytest.raises(RuntimeError):
        cache.get_or_run("k", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert cache.get_or_run("k", lambda: result(0, "ok")).label == "ok"


def test_students_asking_for_the_same_key_at_once_share_one_computation() -> None:
    cache = ResultCache(max_bytes=2**30)
    calls: list[int] = []

    def slow() -> Result:
        calls.append(1)
        time.sleep(0.2)
        return result(0)

    threads = [threading.Thread(target=cache.get_or_run, args=("same", slow)) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(calls) == 1 and cache.stats().hits >= 19


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_seconds() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.allow() and not bucket.allow()
    now[0] = 100
    assert sum(bucket.allow() for _ in range(10)) == 3  # never more than the burst


def test_newest_wins_passes_a_burst_then_the_rate_and_runs_only_the_newest_waiting_action() -> None:
    now, timers, ran = [0.0], [], []
    gate = NewestWins(TokenBucket(rate=2, burst=3, clock=lambda: now[0]), lambda delay, fn: timers.append((now[0] + delay, fn)))
    results = [gate.offer(lambda i=i: ran.append(i)) for i in range(10)]  # ten reruns sent at once
    assert results == [True] * 3 + [False] * 7 and ran == [0, 1, 2]
    assert len(timers) == 1 and gate.deferred == 7
    now[0], fn = timers.pop()
    assert now[0] == pytest.approx(0.5)
    fn()
    assert ran == [0, 1, 2, 9]  # 3..8 were superseded by 9: it carries the page's latest state
    assert gate.offer(lambda: ran.append(10)) is False  # still over the rate: waits its turn
    now[0], fn = timers.pop()
    fn()
    assert ran[-1] == 10 and not timers


def test_newest_wins_tells_a_flood_from_a_fast_student() -> None:
    now = [0.0]
    gate = NewestWins(TokenBucket(rate=2, burst=3, clock=lambda: now[0]), lambda delay, fn: None, flood_per_second=100)
    for i in range(40):  # a student holding an arrow key: ~30 reruns a second
        now[0] = i / 30
        gate.offer(lambda: None)
    assert not gate.flooding
    for i in range(500):  # a script: 500 in a tenth of a second
        now[0] = 2 + i / 5000
        gate.offer(lambda: None)
    assert gate.flooding
