"""Shared test set-up: test artefacts folder, no action rate limit, a device gate per process, AppTest routed by app.py."""

import os
import tempfile
from pathlib import Path

import pytest

import ui.figures
from bench.apptest import route_apptest_through_app

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Tests fire reruns faster than a student would (browser tests move one widget after another), so
# the per-session action limit is lifted for the servers they start; the limit itself is tested on
# its own (tests/core/test_cache.py, and a hog against a real server in tests/load/test_smoke.py).
os.environ.setdefault("TORCHLAB_RATE", "1000")
os.environ.setdefault("TORCHLAB_BURST", "100000")
# Experiments run in the test process itself (the servers tests start inherit this): tests hold its
# device gate, count its runs and stop its threads. Worker processes are tested on their own
# (tests/core/test_workers.py) and behind a real server (tests/load/test_smoke.py).
os.environ.setdefault("TORCHLAB_RUN_PROCESSES", "0")
# Each test process gets its own device gate: AppTest gives every session the same id, so two test
# processes sharing the host's gate would refuse each other's exclusive runs as "one queued". The
# gate across processes is tested on its own folders (tests/core/test_gate.py).
# xdist workers inherit the controller's environment, so each worker makes its own folder.
if "PYTEST_XDIST_WORKER" in os.environ or "TORCHLAB_LOCK_DIR" not in os.environ:
    os.environ["TORCHLAB_LOCK_DIR"] = tempfile.mkdtemp(prefix="torchlab-gate-test-")
# Likewise the class database: the servers and AppTest runs of one test process write their
# heartbeats and classes to a throwaway folder, never to the checkout's .data/.
if "PYTEST_XDIST_WORKER" in os.environ or "TORCHLAB_DATA_DIR" not in os.environ:
    os.environ["TORCHLAB_DATA_DIR"] = tempfile.mkdtemp(prefix="torchlab-data-test-")
# Charts are built without plotly's validation (core.charts.Figure); every figure the AppTest
# pages draw is validated here instead, once per figure.
ui.figures.CHECK_SPECS = True


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Return test-artifacts/ (git-ignored), created on demand."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


route_apptest_through_app()
