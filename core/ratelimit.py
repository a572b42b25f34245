"""A token bucket: how a student's session is held to a sustainable rate of actions."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allow bursts of up to `burst` actions, refilled at `rate` actions per second."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def now(self) -> float:
        """Return the bucket's clock."""
        return self._clock()

    def allow(self) -> bool:
        """Return whether one more action may run now, and take its token if so."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_seconds(self) -> float:
        """Return how long until the next action is allowed (0 when it is now)."""
        return max(0.0, (1 - self._tokens) / self.rate) if self.rate > 0 else float("inf")


class NewestWins:
    """Pass actions on at the bucket's rate; past it, keep only the newest action and pass it on when allowed.

    A student's browser sends a rerun for every change, and each one carries the whole state of the
    page, so an older waiting rerun is superseded by a newer one: dropping it loses nothing, while
    dropping the newest would leave the page stale. `later(delay, fn)` schedules fn (the event loop's
    call_later).
    """

    def __init__(
        self, bucket: TokenBucket, later: Callable[[float, Callable[[], None]], object], flood_per_second: float = 100.0
    ) -> None:
        self.bucket, self._later = bucket, later
        self._waiting: Callable[[], None] | None = None
        self.deferred = 0  # actions that had to wait (then ran, or were superseded)
        self.flood_per_second = flood_per_second
        self._second, self._in_second = 0.0, 0

    @property
    def flooding(self) -> bool:
        """Return whether more actions had to wait in the last second than a person could send (a script sends them)."""
        return self._in_second > self.flood_per_second

    def offer(self, action: Callable[[], None]) -> bool:
        """Run `action` now and return True, or keep it as the one to run when allowed and return False."""
        if self._waiting is None and self.bucket.allow():
            action()
            return True
        self.deferred += 1
        now = self.bucket.now()
        if now - self._second >= 1.0:
            self._second, self._in_second = now, 0
        self._in_second += 1
        if self._waiting is None:
            self._later(self.bucket.wait_seconds(), self._flush)
        self._waiting = action
        return False

    def _flush(self) -> None:
        if self._waiting is None:
            return
        if self.bucket.allow():
            action, self._waiting = self._waiting, None
            action()
        else:
            self._later(self.bucket.wait_seconds(), self._flush)
