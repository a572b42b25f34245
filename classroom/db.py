"""The classroom database: SQLAlchemy 2 models, the engine (SQLite file or PostgreSQL) and the start-up migration.

The engine comes from TORCHLAB_DATABASE_URL (e.g. postgresql://user@host/db, driven by psycopg 3);
without it, a SQLite file under TORCHLAB_DATA_DIR (default: .data/ beside the code) in WAL mode, so
several replicas on one host can share it. `migrate(engine)` brings the schema up to date; it is
idempotent and safe when two replicas start together (an advisory lock on PostgreSQL, an immediate
write transaction on SQLite).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROOT = Path(__file__).resolve().parent.parent
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another one before giving up
MIGRATION_LOCK = 0x70C41AB  # PostgreSQL advisory lock id held while migrating


class Base(DeclarativeBase):
    """Declarative base of the classroom tables."""


class SchemaVersion(Base):
    """One row per migration step applied."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    applied_at: Mapped[float]


class ClassRoom(Base):
    """A class: its join code, name, language and state (open / closed)."""

    __tablename__ = "classes"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(12), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    lang: Mapped[str] = mapped_column(sa.String(8))
    state: Mapped[str] = mapped_column(sa.String(8), default="open")
    created_at: Mapped[float]


class Student(Base):
    """A student's seat in a class: a nickname, unique within the class."""

    __tablename__ = "students"
    __table_args__ = (sa.UniqueConstraint("class_id", "nickname", name="uq_student_nickname"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    nickname: Mapped[str] = mapped_column(sa.String(48))
    joined_at: Mapped[float]


class Answer(Base):
    """A committed prediction: one per (class, student, prediction), the first one only."""

    __tablename__ = "answers"
    __table_args__ = (sa.UniqueConstraint("class_id", "student_id", "prediction", name="uq_answer_once"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id", ondelete="CASCADE"))
    lesson: Mapped[str] = mapped_column(sa.String(40))
    prediction: Mapped[str] = mapped_column(sa.String(80))
    choice: Mapped[str] = mapped_column(sa.String(80))
    correct: Mapped[bool | None]
    answered_at: Mapped[float]


class Replica(Base):
    """One replica's latest heartbeat: its counters and connected sessions (JSON text), upserted every few seconds."""

    __tablename__ = "replicas"
    replica_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    heartbeat_at: Mapped[float]
    sessions: Mapped[int]
    class_sessions: Mapped[str] = mapped_column(sa.Text)  # {"<class id>": sessions}
    counters: Mapped[str] = mapped_column(sa.Text)


def _v1(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[cast(sa.Table, model.__table__) for model in (ClassRoom, Student, Answer, Replica)])


# Ordered migration steps; step i brings the schema to version i + 1. Append, never edit.
STEPS: tuple[Callable[[Connection], None], ...] = (_v1,)


def database_url(env: dict[str, str] | None = None) -> str:
    """Return the SQLAlchemy URL: TORCHLAB_DATABASE_URL (postgresql:// means psycopg 3), else the SQLite file."""
    env = dict(os.environ) if env is None else env
    url = env.get("TORCHLAB_DATABASE_URL", "").strip()
    if url:
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url.removeprefix(plain)
        return url
    return f"sqlite:///{data_dir(env) / 'torchlab.db'}"


def data_dir(env: dict[str, str] | None = None) -> Path:
    """Return TORCHLAB_DATA_DIR (default: .data/ beside the code, git-ignored), created if missing."""
    env = dict(os.environ) if env is None else env
    folder = Path(env.get("TORCHLAB_DATA_DIR") or ROOT / ".data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_engine(url: str) -> Engine:
    """Return an engine for url; SQLite connections get WAL, a busy timeout, foreign keys and our own BEGINs."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite's own BEGIN handling is off: _on_begin says which BEGIN
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A transaction that reads and then writes must take the write lock first (IMMEDIATE): a
        # deferred one would fail with SQLITE_BUSY instead of waiting when another writer came between.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the SQLite file in WAL mode, retrying while another connection holds it.

    SQLite answers "database is locked" at once, without its busy handler, when two connections
    change a fresh file's journal mode together (replicas starting at the same moment); the mode
    is kept in the file, so only that first switch can meet another.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


@functools.cache
def engine_for(url: str) -> Engine:
    """Return the process's one engine for url (migrated on first use)."""
    engine = make_engine(url)
    migrate(engine)
    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """Yield a connection in a write transaction (IMMEDIATE on SQLite), committed on success."""
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        yield conn


def migrate(engine: Engine) -> int:
    """Apply the migration steps this database lacks, under a lock; return the schema version now."""
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        cast(sa.Table, SchemaVersion.__table__).create(conn, checkfirst=True)
        current = conn.execute(sa.select(sa.func.max(SchemaVersion.version))).scalar() or 0
        for version, step in enumerate(STEPS, start=1):
            if version > current:
                step(conn)
                conn.execute(sa.insert(SchemaVersion).values(version=version, applied_at=time.time()))
        return len(STEPS)
