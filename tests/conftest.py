"""Shared test set-up: one torch thread per test process, test artefacts folder, no action rate limit."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Tests fire reruns far faster than a student can (AppTest moves every widget in turn), so the
# per-session action limit is lifted here, before core.runner reads its config; the limit itself is
# tested on its own (tests/pages/test_pages.py::test_a_session_over_its_action_rate_is_told_to_wait).
os.environ.setdefault("TORCHLAB_RATE", "1000")
os.environ.setdefault("TORCHLAB_BURST", "100000")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Return test-artifacts/ (git-ignored), created on demand."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
