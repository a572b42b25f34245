"""The classroom store on SQLite and on a real PostgreSQL: classes, seats, answers recorded once, export, heartbeats."""

from __future__ import annotations

import csv
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from classroom.db import STEPS, SchemaVersion, make_engine, migrate
from classroom.nickname import NicknameError
from classroom.store import CODE_ALPHABET, CODE_LEN, ClassroomError, Store


def test_migration_is_idempotent_and_safe_when_replicas_start_together(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(8)]
    start = threading.Barrier(len(engines))

    def start_replica(engine: Engine) -> int:
        start.wait()
        return migrate(engine)

    with ThreadPoolExecutor(len(engines)) as pool:
        versions = list(pool.map(start_replica, engines))
    assert versions == [len(STEPS)] * len(engines)
    assert migrate(engines[0]) == len(STEPS)
    with engines[0].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SchemaVersion)).scalar_one() == len(STEPS)
    for engine in engines:
        engine.dispose()


def test_a_class_gets_a_short_unique_code_found_in_any_case(store: Store) -> None:
    classes = [store.create_class(f"Class {i}", "en") for i in range(30)]
    codes = {c.code for c in classes}
    assert len(codes) == 30
    assert all(len(code) == CODE_LEN and set(code) <= set(CODE_ALPHABET) for code in codes)
    first = classes[0]
    assert store.class_by_code(first.code.lower()) == store.class_by_code(f" {first.code[:3]}-{first.code[3:]} ")
    assert store.class_by_code(first.code) is not None and store.class_by_code(first.code).name == "Class 0"  # type: ignore[union-attr]
    assert store.class_by_code("' OR 1=1 --") is None
    assert store.class_by_code("") is None
    assert [c.name for c in store.classes()][:2] == ["Class 29", "Class 28"]
    with pytest.raises(ClassroomError):
        store.create_class("   ", "en")


def test_duplicate_nicknames_get_a_suffix(store: Store) -> None:
    klass = store.create_class("Physics", "zh")
    names = [store.join(klass.code, nickname).nickname for nickname in ["Ann", "Ann", " Ann ", "<b>Ann</b>", "李雷", "李雷"]]
    assert names == ["Ann", "Ann (2)", "Ann (3)", "Ann (4)", "李雷", "李雷 (2)"]
    long = "x" * 24
    assert store.join(klass.code, long).nickname == long
    assert store.join(klass.code, long).nickname == "x" * 20 + " (2)"
    assert store.student_count(klass.id) == 8


def test_many_students_with_one_nickname_joining_at_once_all_get_seats(store: Store) -> None:
    klass = store.create_class("Rush", "en")
    with ThreadPoolExecutor(16) as pool:
        seats = list(pool.map(lambda _: store.join(klass.code, "Sam"), range(40)))
    assert len({s.nickname for s in seats}) == 40
    assert len({s.student_id for s in seats}) == 40


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("", "nickname_empty"),
        ("   ", "nickname_empty"),
        ("<script></script>", "nickname_empty"),
        ("\u202e\u2066\u200b", "nickname_empty"),
        ("a" * 10_000, "nickname_long"),
        ("b" * 25, "nickname_long"),
    ],
)
def test_hostile_nicknames_are_refused_and_change_nothing(store: Store, raw: str, key: str) -> None:
    klass = store.create_class("Safe", "en")
    with pytest.raises(NicknameError) as refused:
        store.join(klass.code, raw)
    assert refused.value.key == key
    assert store.student_count(klass.id) == 0


def test_sql_looking_text_is_only_ever_data(store: Store) -> None:
    klass = store.create_class("Robert'); DROP TABLE classes;--", "en")
    seat = store.join(klass.code, "x'); DROP TABLE s;--")
    assert seat.nickname == "x'); DROP TABLE s;--"
    assert store.record(seat, "tensors", "view_t", "' OR '1'='1", None) == "recorded"
    assert store.distribution(klass.id, "view_t") == {"' OR '1'='1": 1}
    assert store.class_by_code(klass.code).name == "Robert'); DROP TABLE classes;--"  # type: ignore[union-attr]
    assert store.student_count(klass.id) == 1


def test_closed_or_unknown_classes_take_nobody(store: Store) -> None:
    klass = store.create_class("Done", "en")
    seat = store.join(klass.code, "Early")
    store.set_state(klass.id, "closed")
    with pytest.raises(ClassroomError) as closed:
        store.join(klass.code, "Late")
    assert closed.value.key == "class_closed"
    assert store.record(seat, "init", "fan_in", "a", True) == "closed"
    assert store.distributions(klass.id) == {}
    with pytest.raises(ClassroomError) as unknown:
        store.join("ZZZZZZ9", "Someone")
    assert unknown.value.key == "unknown_code"
    store.set_state(klass.id, "open")
    assert store.record(seat, "init", "fan_in", "a", True) == "recorded"


def test_an_answer_is_recorded_once_and_later_changes_are_not(store: Store) -> None:
    klass = store.create_class("Once", "en")
    ann, bob = store.join(klass.code, "Ann"), store.join(klass.code, "Bob")
    assert store.record(ann, "tensors", "view_t", "grows", False) == "recorded"
    assert store.record(ann, "tensors", "view_t", "same", True) == "already"
    assert store.record(bob, "tensors", "view_t", "same", True) == "recorded"
    assert store.answer_of(ann, "view_t") == "grows"
    assert store.distribution(klass.id, "view_t") == {"grows": 1, "same": 1}
    assert store.distributions(klass.id) == {("tensors", "view_t"): {"grows": 1, "same": 1}}
    other = store.create_class("Other", "en")
    assert store.distribution(other.id, "view_t") == {}


def test_a_hundred_students_answering_within_a_second_are_all_recorded(store: Store) -> None:
    klass = store.create_class("Load", "en")
    seats = [store.join(klass.code, f"s{i}") for i in range(100)]
    start = threading.Barrier(50)

    def answer(i: int) -> list[str]:
        start.wait()
        seat = seats[i]
        return [
            store.record(seat, "init", "relu_xavier", "same", True),
            store.record(seat, "init", "relu_xavier", "grows", False),
        ]

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(answer, range(100)))
    assert [o[0] for o in outcomes] == ["recorded"] * 100
    assert [o[1] for o in outcomes] == ["already"] * 100
    assert store.distribution(klass.id, "relu_xavier") == {"same": 100}


def test_clearing_a_class_removes_its_students_and_answers_only(store: Store) -> None:
    a, b = store.create_class("A", "en"), store.create_class("B", "en")
    sa_, sb = store.join(a.code, "Ann"), store.join(b.code, "Ann")
    store.record(sa_, "init", "fan_in", "x", None)
    store.record(sb, "init", "fan_in", "y", None)
    assert store.clear(a.id) == 1
    assert store.student_count(a.id) == 0 and store.distributions(a.id) == {}
    assert store.seat(sa_.student_id) is None
    assert store.record(sa_, "init", "fan_in", "x", None) == "closed"
    assert store.distributions(b.id) == {("init", "fan_in"): {"y": 1}}
    assert store.class_by_code(a.code) is not None
    assert store.join(a.code, "Ann").nickname == "Ann"


def test_export_is_csv_a_spreadsheet_cannot_run(store: Store) -> None:
    klass = store.create_class("Export", "zh")
    for name, choice in [("=HYPERLINK(1)", "grows"), ("李雷", "same"), ('Quote " me, ok', "+1")]:
        store.record(store.join(klass.code, name), "init", "relu_xavier", choice, choice == "same")
    rows = list(csv.reader(io.StringIO(store.export_csv(klass.id))))
    assert rows[0] == ["nickname", "lesson", "prediction", "choice", "correct", "answered_at_utc"]
    assert [r[0] for r in rows[1:]] == ["'=HYPERLINK(1)", "李雷", 'Quote " me, ok']
    assert [r[3] for r in rows[1:]] == ["grows", "same", "'+1"]
    assert [r[4] for r in rows[1:]] == ["0", "1", "0"]
    assert all(r[5].endswith("+00:00") for r in rows[1:])


def test_heartbeats_upsert_per_replica_and_stale_ones_drop_out(store: Store) -> None:
    store.heartbeat("r0", 3, {1: 2}, {"runs": 5})
    store.heartbeat("r1", 1, {1: 1}, {"runs": 2})
    store.heartbeat("r0", 4, {1: 3}, {"runs": 7})
    beats = store.replicas(fresh_within=60)
    assert [(b.replica_id, b.sessions, b.class_sessions, b.counters) for b in beats] == [
        ("r0", 4, {1: 3}, {"runs": 7}),
        ("r1", 1, {1: 1}, {"runs": 2}),
    ]
    time.sleep(0.05)
    assert store.replicas(fresh_within=0.01) == []
