"""Counters across replicas: two real `streamlit run` replicas share one classroom database; each writes its heartbeat,
and the dashboard's totals sum the students each one serves (simulated tabs speaking Streamlit's websocket protocol)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.load import Server, streamlit_server
from bench.stclient import StreamlitClient
from classroom import links
from classroom.store import default_store

SECRET = "replica-test-secret"


@pytest.fixture
def replicas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Server]]:
    """Start replicas rA and rB on one SQLite classroom database (and point this process at it too)."""
    monkeypatch.setenv("TORCHLAB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHLAB_DATABASE_URL", raising=False)
    monkeypatch.setenv("TORCHLAB_LINK_SECRET", SECRET)
    with ExitStack() as stack:
        yield [
            stack.enter_context(streamlit_server(env={**os.environ, "TORCHLAB_REPLICA": name, "PYTHONUNBUFFERED": "1"}))
            for name in ("rA", "rB")
        ]


def test_each_replica_reports_its_students_and_runs_and_the_dashboard_sums_them(replicas: list[Server]) -> None:
    from ui.classroom import totals

    store = default_store()
    klass = store.create_class("Replicas", "en")
    seats = [store.join(klass.code, f"s{i}") for i in range(3)]
    links_of = [f"/tensors?tab=create&seat={links.seat_token(s.student_id, s.class_id, SECRET.encode())}" for s in seats]

    async def students() -> None:
        tabs = [
            StreamlitClient(replicas[0].url, links_of[0]),
            StreamlitClient(replicas[0].url, links_of[1]),
            StreamlitClient(replicas[1].url, links_of[2]),
        ]
        for tab in tabs:
            result = await tab.open()
            assert not result.exceptions and not result.error_texts, result
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beats = {b.replica_id: b for b in store.replicas(fresh_within=30)}
            if (
                {"rA", "rB"} <= beats.keys()
                and [beats[r].class_sessions.get(klass.id) for r in ("rA", "rB")] == [2, 1]
                and all(beats[r].counters["runs"] >= 1 for r in ("rA", "rB"))
            ):
                break
            await asyncio.sleep(0.5)
        for tab in tabs:
            await tab.close()

    asyncio.run(students())
    beats = {b.replica_id: b for b in store.replicas(fresh_within=30)}
    assert beats["rA"].class_sessions == {klass.id: 2} and beats["rB"].class_sessions == {klass.id: 1}
    assert beats["rA"].counters["runs"] >= 1 and beats["rB"].counters["runs"] >= 1
    now = totals(klass.id)
    assert now.replicas == 2 and now.class_sessions == 3
    assert now.runs_last_minute >= 2 and now.hit_rate is not None
    assert {replica for replica, _, used in now.memory if used > 0} == {"rA", "rB"}
