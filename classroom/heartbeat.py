"""Each replica writes its counters and connected sessions to the classroom database every few seconds.

One daemon thread per process; the dashboard sums the replicas whose heartbeat is fresh.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from classroom.store import Store

INTERVAL_S = 3.0  # how often a replica writes its heartbeat
FRESH_S = 3 * INTERVAL_S  # a replica silent for longer is left out of the dashboard's sums
_LOG = logging.getLogger(__name__)
_STARTED: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()

Sample = Callable[[], tuple[int, Mapping[int, int], Mapping[str, Any]]]  # () -> (sessions, class id -> sessions, counters)


def replica_id() -> str:
    """Return this replica's name: TORCHLAB_REPLICA (deploy/replicas.py sets r0, r1...), else host:pid."""
    return os.environ.get("TORCHLAB_REPLICA") or f"{socket.gethostname()}:{os.getpid()}"


def beat_once(store: Store, name: str, sample: Sample) -> None:
    """Write one heartbeat of this replica."""
    sessions, per_class, counters = sample()
    store.heartbeat(name, sessions, per_class, counters)


def start(store: Store, sample: Sample, name: str | None = None, interval: float = INTERVAL_S) -> bool:
    """Start the heartbeat thread of replica `name` (once per process: later calls do nothing); return whether it started."""
    name = name or replica_id()
    with _LOCK:
        if name in _STARTED:
            return False

        def loop() -> None:
            while True:
                try:
                    beat_once(store, name, sample)
                except Exception:  # the database may be away for a moment: log it, keep beating
                    _LOG.exception("replica %s could not write its heartbeat", name)
                time.sleep(interval)

        thread = threading.Thread(target=loop, name=f"torchlab-heartbeat-{name}", daemon=True)
        _STARTED[name] = thread
        thread.start()
        return True
