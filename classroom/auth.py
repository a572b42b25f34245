"""Teacher sign-in: argon2 password hashes, constant-time checks, and a limit on failed attempts.

`python -m classroom.auth hash` asks for a password and prints the `[teacher]` section of
.streamlit/secrets.toml that holds its hash (the password itself is never stored).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id, the library's current parameters
MAX_PASSWORD = 1024  # longer input is refused before hashing (argon2 would hash megabytes too)


def hash_password(password: str) -> str:
    """Return the argon2id hash of a password (a fresh salt each time)."""
    if not password:
        raise ValueError("an empty password cannot be a teacher password")
    return _HASHER.hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    """Return whether password matches the stored argon2 hash (argon2 compares in constant time); False for a bad hash."""
    if not stored_hash or not password or len(password) > MAX_PASSWORD:
        return False
    try:
        return _HASHER.verify(stored_hash.strip(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class FailureLimiter:
    """Counts failed sign-ins per key (a session, a client address): past `limit` within `window` seconds, refuse.

    Only failures count; the key is free again once its oldest failure is older than the window.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, key: str) -> float:
        """Return the seconds until key may try again (0 when it may now)."""
        with self._lock:
            now = self.clock()
            failures = self._recent(key, now)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, failures[0] + self.window - now)

    def forget(self) -> None:
        """Forget every failure (a test's fresh start)."""
        with self._lock:
            self._failures.clear()

    def failed(self, key: str) -> None:
        """Count one failed attempt for key."""
        with self._lock:
            now = self.clock()
            self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget keys with nothing recent, so hostile clients cannot grow this
                for stale in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                    del self._failures[stale]


def secrets_snippet(password_hash: str) -> str:
    """Return the .streamlit/secrets.toml lines that configure the teacher password."""
    return f'[teacher]\npassword_hash = "{password_hash}"\n'


def main(argv: Sequence[str] | None = None) -> int:
    """`hash`: read a password (twice on a terminal, once from a pipe) and print the secrets.toml section."""
    parser = argparse.ArgumentParser(prog="python -m classroom.auth", description=__doc__)
    parser.add_argument("command", choices=["hash"])
    parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Teacher password: ")
        if getpass.getpass("Again: ") != password:
            print("The two passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("An empty password cannot be a teacher password.", file=sys.stderr)
        return 1
    print(secrets_snippet(hash_password(password)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
