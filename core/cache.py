"""The class-wide result cache: bounded in bytes, entries and age, one computation per key at a time.

Every student of a class shares it, so one student's flood of distinct settings must not grow the
server without limit: entries are measured in bytes (numpy arrays, pandas frames, strings...) and
the least recently used go first once the total passes `max_bytes`. A result larger than a
`max_share` of the budget is returned but not kept. When many students ask for the same uncached
key at once, one computes and the others wait for its result (single flight).

Cached results are shared objects: their numpy arrays are made read-only, so a page that tried to
change one in place would fail loudly instead of changing every student's copy.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

R = TypeVar("R")


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and how it was used since start-up."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    too_large: int


@dataclass
class _Entry:
    value: Any
    size: int
    born: float


class ResultCache:
    """An LRU map from a run's key to its result, bounded by total bytes, entry count and time to live."""

    def __init__(
        self,
        max_bytes: int,
        max_entries: int = 512,
        ttl: float = 3600.0,
        max_share: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes, self.max_entries, self.ttl = max_bytes, max_entries, ttl
        self.max_entry_bytes = int(max_bytes * max_share)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._computing: dict[str, threading.Lock] = {}
        self._hits = self._misses = self._evictions = self._too_large = 0

    def get_or_run(self, key: str, compute: Callable[[], R]) -> R:
        """Return the cached result for `key`, or compute, keep and return it; exceptions are not cached."""
        found, value = self._get(key)
        if found:
            return value  # type: ignore[no-any-return]
        with self._lock:
            flight = self._computing.setdefault(key, threading.Lock())
        with flight:  # students asking for the same key meanwhile wait here for the first one's result
            found, value = self._get(key)
            if found:
                return value  # type: ignore[no-any-return]
            try:
                result = compute()
                self._put(key, result)
            finally:
                with self._lock:
                    self._computing.pop(key, None)
        return result

    def get(self, key: str) -> tuple[bool, Any]:
        """Return (True, the kept result) for `key`, or (False, None); counted as a hit or a miss."""
        return self._get(key)

    def __contains__(self, key: object) -> bool:
        """Return whether a result for `key` is kept (counted neither as a hit nor as a miss)."""
        with self._lock:
            return key in self._entries

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """Return the current size and the counters."""
        with self._lock:
            return CacheStats(
                len(self._entries), self._bytes, self.max_bytes, self._hits, self._misses, self._evictions, self._too_large
            )

    def _get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() - entry.born > self.ttl:
                self._drop(key)
                entry = None
            if entry is None:
                self._misses += 1
                return False, None
            self._entries.move_to_end(key)
            self._hits += 1
            return True, entry.value

    def _put(self, key: str, value: Any) -> None:
        size = nbytes(value)
        if size > self.max_entry_bytes:
            with self._lock:
                self._too_large += 1
            return
        freeze(value)
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(value, size, self._clock())
            self._bytes += size
            while self._entries and (self._bytes > self.max_bytes or len(self._entries) > self.max_entries):
                self._drop(next(iter(self._entries)))
                self._evictions += 1

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size


def nbytes(value: Any, _seen: set[int] | None = None) -> int:
    """Return about how many bytes `value` keeps alive: arrays and frames by their data, containers by their parts."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        if value.base is None:
            return sys.getsizeof(value)  # the header and the data it owns
        if isinstance(value.base, np.ndarray):
            return sys.getsizeof(value) + nbytes(value.base, seen)  # a view: its base counts once
        return sys.getsizeof(value) + value.nbytes  # memory lent by torch or a buffer: at least the data
    if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        usage = value.memory_usage(deep=True)
        return int(usage.sum() if isinstance(usage, pd.Series) else usage)
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(nbytes(k, seen) + nbytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return size + sum(nbytes(v, seen) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return size + sum(nbytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return size


def freeze(value: Any) -> None:
    """Make every numpy array reachable from a result read-only (dataclasses, tuples, lists, dicts)."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for v in value.values():
            freeze(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            freeze(v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            freeze(getattr(value, f.name))
