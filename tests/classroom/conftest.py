"""Storage fixtures: every storage test runs on SQLite and on a real PostgreSQL that this test session starts.

Each xdist worker starts its own throwaway cluster (tests/classroom/pg.py); each test gets a fresh
database in it. Without PostgreSQL the PostgreSQL variants skip with the reason, loudly.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from classroom.db import make_engine, migrate
from classroom.store import Store
from tests.classroom import pg

SKIP_MARK = "POSTGRESQL TESTS SKIPPED"
_NUMBERS = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """Yield the conninfo of this worker's PostgreSQL cluster (skip loudly when none can start)."""
    reason = pg.unavailable()
    if reason:
        print(f"\n{'!' * 100}\n!!! {SKIP_MARK}: {reason}\n{'!' * 100}", file=sys.stderr, flush=True)
        pytest.skip(f"{SKIP_MARK}: {reason}")
    with pg.cluster() as conninfo:
        yield conninfo


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of an empty database: a SQLite file, or a fresh database in the worker's cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'torchlab.db'}"
    conninfo = request.getfixturevalue("pg_cluster")
    return pg.fresh_database(conninfo, f"t{next(_NUMBERS)}")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """Yield a migrated engine on the test's database."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    """Return a Store on the test's database."""
    return Store(engine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat why the PostgreSQL variants were skipped at the end of the run (also under -q and xdist)."""
    reasons = {
        str(report.longrepr[2]).removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and SKIP_MARK in str(report.longrepr[2])
    }
    for reason in sorted(reasons):
        terminalreporter.write_sep("!", SKIP_MARK, red=True, bold=True)
        terminalreporter.write_line(reason, red=True, bold=True)
