"""Teacher sign-in: argon2 hashes from the CLI, wrong passwords and bad hashes refused, failures limited."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from classroom.auth import FailureLimiter, check_password, hash_password

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_prints_a_secrets_section_whose_hash_checks() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "classroom.auth", "hash"],
        input="correct horse\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    stored = tomllib.loads(out)["teacher"]["password_hash"]
    assert stored.startswith("$argon2id$") and "correct horse" not in out
    assert check_password(stored, "correct horse")
    assert not check_password(stored, "correct horse ")
    assert not check_password(stored, "")


def test_bad_hashes_and_huge_passwords_are_refused() -> None:
    stored = hash_password("pw")
    assert hash_password("pw") != stored  # salted
    assert not check_password("", "pw")
    assert not check_password("not a hash", "pw")
    assert not check_password(stored, "pw" * 10_000)
    assert check_password(f"  {stored}\n", "pw")


def test_failures_are_limited_per_key_and_forgotten_after_the_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("session:a") == 0
        limiter.failed("session:a")
    assert limiter.retry_after("session:a") == 60
    assert limiter.retry_after("session:b") == 0
    now[0] = 30
    assert limiter.retry_after("session:a") == 30
    now[0] = 60.5
    assert limiter.retry_after("session:a") == 0
