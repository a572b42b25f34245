"""Shared test set-up: one torch thread per test process, test artefacts folder, no action rate limit."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Tests fire reruns faster than a student would (browser tests move one widget after another), so
# the per-session action limit is lifted for the servers they start; the limit itself is tested on
# its own (tests/core/test_cache.py, and a hog against a real server in tests/load/test_smoke.py).
os.environ.setdefault("TORCHLAB_RATE", "1000")
os.environ.setdefault("TORCHLAB_BURST", "100000")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Return test-artifacts/ (git-ignored), created on demand."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
