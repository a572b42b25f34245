"""Class data: classes and join codes, seats, recorded predictions, CSV export, replica heartbeats.

Every query is built with SQLAlchemy's expression language (bound parameters only). A prediction
is written once per (class, student, prediction): the unique constraint and an insert that does
nothing on conflict make the first answer the recorded one, also when two replicas race.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from classroom import nickname
from classroom.db import Answer, ClassRoom, Replica, Student, database_url, engine_for, writing

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from a projector
CODE_LEN = 6
MAX_NAME = 80
MAX_SUFFIX = 500  # a class of more students than this with one nickname gets a refusal, not a loop
STATES = ("open", "closed")


class ClassroomError(Exception):
    """Something a student or teacher asked that cannot be done; `key` names the translated message."""

    def __init__(self, key: str, **info: Any) -> None:
        self.key = key
        self.info = info
        super().__init__(key)


@dataclass(frozen=True)
class ClassInfo:
    """A class as the pages see it."""

    id: int
    code: str
    name: str
    lang: str
    state: str
    created_at: float


@dataclass(frozen=True)
class Seat:
    """A student's place in a class."""

    class_id: int
    student_id: int
    nickname: str
    code: str


@dataclass(frozen=True)
class ReplicaBeat:
    """One replica's last heartbeat."""

    replica_id: str
    heartbeat_at: float
    sessions: int
    class_sessions: dict[int, int]
    counters: dict[str, Any]


def normal_code(code: str) -> str:
    """Return a join code as stored: upper case, without spaces and dashes (at most 32 characters read)."""
    return "".join(c for c in code[:32].upper() if c.isalnum() and c.isascii())


def _info(row: sa.Row[Any]) -> ClassInfo:
    return ClassInfo(row.id, row.code, row.name, row.lang, row.state, row.created_at)


def _insert(conn: Connection, table: Any) -> Any:
    """Return the dialect's INSERT (it knows ON CONFLICT) for table."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _csv_cell(text: str) -> str:
    """Return text safe for a spreadsheet: a cell starting like a formula is quoted with an apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class Store:
    """The classroom's data, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # Classes -------------------------------------------------------------------------------------

    def create_class(self, name: str, lang: str) -> ClassInfo:
        """Create an open class with a fresh join code; the name is cleaned like a nickname (up to 80 characters)."""
        name = " ".join(name.split())[:MAX_NAME]
        if not name:
            raise ClassroomError("class_name_empty")
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LEN))
            try:
                with writing(self.engine) as conn:
                    row = conn.execute(
                        sa.insert(ClassRoom)
                        .values(code=code, name=name, lang=lang, state="open", created_at=time.time())
                        .returning(ClassRoom.id)
                    ).scalar_one()
                return ClassInfo(row, code, name, lang, "open", time.time())
            except IntegrityError:
                continue  # the code was taken: draw another
        raise ClassroomError("code_space_full")

    def classes(self) -> list[ClassInfo]:
        """Return every class, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ClassRoom).order_by(ClassRoom.created_at.desc(), ClassRoom.id.desc())).all()
        return [_info(r) for r in rows]

    def class_by_code(self, code: str) -> ClassInfo | None:
        """Return the class with this join code (any case, spaces ignored), or None."""
        code = normal_code(code)
        if not code:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ClassRoom).where(ClassRoom.code == code)).one_or_none()
        return None if row is None else _info(row)

    def class_by_id(self, class_id: int) -> ClassInfo | None:
        """Return the class with this id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ClassRoom).where(ClassRoom.id == class_id)).one_or_none()
        return None if row is None else _info(row)

    def set_state(self, class_id: int, state: str) -> None:
        """Open or close a class: a closed class takes no new students and records no answers."""
        if state not in STATES:
            raise ValueError(state)
        with writing(self.engine) as conn:
            conn.execute(sa.update(ClassRoom).where(ClassRoom.id == class_id).values(state=state))

    def clear(self, class_id: int) -> int:
        """Remove a class's students and their answers (the class and its code stay); return how many students went."""
        with writing(self.engine) as conn:
            conn.execute(sa.delete(Answer).where(Answer.class_id == class_id))
            gone = conn.execute(sa.delete(Student).where(Student.class_id == class_id)).rowcount
        return int(gone or 0)

    # Students ------------------------------------------------------------------------------------

    def join(self, code: str, raw_nickname: str) -> Seat:
        """Seat a student in the open class with this code; a taken nickname gets ' (2)', ' (3)'...

        Raises ClassroomError('unknown_code' | 'class_closed') or nickname.NicknameError.
        """
        name = nickname.clean(raw_nickname)
        klass = self.class_by_code(code)
        if klass is None:
            raise ClassroomError("unknown_code")
        if klass.state != "open":
            raise ClassroomError("class_closed")
        n = 1
        while n <= MAX_SUFFIX:
            try:
                with writing(self.engine) as conn:
                    taken = set(conn.execute(sa.select(Student.nickname).where(Student.class_id == klass.id)).scalars())
                    while nickname.with_suffix(name, n) in taken:
                        n += 1
                    chosen = nickname.with_suffix(name, n)
                    sid = conn.execute(
                        sa.insert(Student)
                        .values(class_id=klass.id, nickname=chosen, joined_at=time.time())
                        .returning(Student.id)
                    ).scalar_one()
                return Seat(klass.id, sid, chosen, klass.code)
            except IntegrityError:
                n += 1  # another replica took the same name between our read and our insert
        raise ClassroomError("nickname_taken")

    def seat(self, student_id: int) -> Seat | None:
        """Return a student's seat (None when the class was cleared)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(Student.class_id, Student.id, Student.nickname, ClassRoom.code)
                .join(ClassRoom, ClassRoom.id == Student.class_id)
                .where(Student.id == student_id)
            ).one_or_none()
        return None if row is None else Seat(row[0], row[1], row[2], row[3])

    def student_count(self, class_id: int) -> int:
        """Return how many students joined a class."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(Student.class_id == class_id)).scalar_one())

    # Answers -------------------------------------------------------------------------------------

    def record(self, seat: Seat, lesson: str, prediction: str, choice: str, correct: bool | None) -> str:
        """Record a committed prediction once: 'recorded', 'already' (an earlier answer stands) or 'closed'.

        One statement does it: an INSERT ... SELECT that finds the class open, doing nothing when
        this student's answer to this prediction exists (the unique constraint decides, also
        between replicas). Only when nothing was written does a second query tell why.
        """
        values: dict[str, sa.ColumnElement[Any]] = {
            "class_id": sa.literal(seat.class_id),
            "student_id": sa.literal(seat.student_id),
            "lesson": sa.literal(lesson[:40]),
            "prediction": sa.literal(prediction[:80]),
            "choice": sa.literal(choice[:80]),
            "correct": sa.literal(correct, sa.Boolean()),
            "answered_at": sa.literal(time.time()),
        }
        source = sa.select(*list(values.values())).where(ClassRoom.id == seat.class_id, ClassRoom.state == "open")
        try:
            with self.engine.begin() as conn:
                stmt = _insert(conn, Answer).from_select(list(values), source)
                stmt = stmt.on_conflict_do_nothing(index_elements=["class_id", "student_id", "prediction"])
                if conn.execute(stmt.returning(Answer.id)).scalar_one_or_none() is not None:
                    return "recorded"
        except IntegrityError:
            return "closed"  # the seat was removed (class cleared) while the student answered
        return "already" if self.answer_of(seat, prediction) is not None else "closed"

    def answer_of(self, seat: Seat, prediction: str) -> str | None:
        """Return the student's recorded choice for a prediction, or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(Answer.choice).where(
                    Answer.class_id == seat.class_id, Answer.student_id == seat.student_id, Answer.prediction == prediction
                )
            ).scalar_one_or_none()

    def distribution(self, class_id: int, prediction: str) -> dict[str, int]:
        """Return how many students of the class chose each option of one prediction."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Answer.choice, sa.func.count())
                .where(Answer.class_id == class_id, Answer.prediction == prediction)
                .group_by(Answer.choice)
            ).all()
        return {choice: int(count) for choice, count in rows}

    def distributions(self, class_id: int) -> dict[tuple[str, str], dict[str, int]]:
        """Return every answered prediction of a class, keyed (lesson, prediction): choice -> count."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Answer.lesson, Answer.prediction, Answer.choice, sa.func.count())
                .where(Answer.class_id == class_id)
                .group_by(Answer.lesson, Answer.prediction, Answer.choice)
            ).all()
        out: dict[tuple[str, str], dict[str, int]] = {}
        for lesson, prediction, choice, count in rows:
            out.setdefault((lesson, prediction), {})[choice] = int(count)
        return out

    def export_csv(self, class_id: int) -> str:
        """Return the class's answers as CSV: nickname, lesson, prediction, choice, correct, answered at (UTC)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Student.nickname, Answer.lesson, Answer.prediction, Answer.choice, Answer.correct, Answer.answered_at)
                .join(Student, Student.id == Answer.student_id)
                .where(Answer.class_id == class_id)
                .order_by(Answer.answered_at, Answer.id)
            ).all()
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["nickname", "lesson", "prediction", "choice", "correct", "answered_at_utc"])
        for name, lesson, prediction, choice, correct, at in rows:
            when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
            writer.writerow(
                [_csv_cell(name), lesson, prediction, _csv_cell(choice), "" if correct is None else int(correct), when]
            )
        return out.getvalue()

    # Replicas ------------------------------------------------------------------------------------

    def heartbeat(self, replica_id: str, sessions: int, class_sessions: Mapping[int, int], counters: Mapping[str, Any]) -> None:
        """Write this replica's counters and connected sessions (an upsert by replica id)."""
        values = {
            "replica_id": replica_id[:80],
            "heartbeat_at": time.time(),
            "sessions": sessions,
            "class_sessions": json.dumps({str(k): v for k, v in class_sessions.items()}),
            "counters": json.dumps(counters, sort_keys=True),
        }
        with self.engine.begin() as conn:
            stmt = _insert(conn, Replica).values(**values)
            update = {k: stmt.excluded[k] for k in ("heartbeat_at", "sessions", "class_sessions", "counters")}
            conn.execute(stmt.on_conflict_do_update(index_elements=[Replica.replica_id], set_=update))

    def replicas(self, fresh_within: float) -> list[ReplicaBeat]:
        """Return the replicas whose last heartbeat is at most fresh_within seconds old."""
        since = time.time() - fresh_within
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(Replica).where(Replica.heartbeat_at >= since).order_by(Replica.replica_id)).all()
            return [
                ReplicaBeat(
                    r.replica_id,
                    r.heartbeat_at,
                    r.sessions,
                    {int(k): int(v) for k, v in json.loads(r.class_sessions).items()},
                    json.loads(r.counters),
                )
                for r in rows
            ]


def default_store() -> Store:
    """Return the store on TORCHLAB_DATABASE_URL (or the SQLite file), migrated, one engine per process."""
    return Store(engine_for(database_url()))
