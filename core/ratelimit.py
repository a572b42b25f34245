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
