"""The classroom pages through AppTest in both languages: joining, recorded predictions, teacher pages, signed links, dashboard.

Each test has its own SQLite database (TORCHLAB_DATA_DIR in a temporary folder), link secret and
teacher password; the storage itself is tested on SQLite and PostgreSQL in test_store.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from classroom import links
from classroom.auth import hash_password
from classroom.store import Store, default_store
from core.lessons import LESSONS
from ui.classroom import ADDRESS_FAILURES, SESSION_FAILURES

ROOT = Path(__file__).resolve().parents[2]
HAN = re.compile(r"[\u4e00-\u9fff]")
LANGS = ["en", "zh"]
SECRET = "test-link-secret"
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh classroom database, link secret and teacher password for the app under test."""
    monkeypatch.setenv("TORCHLAB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHLAB_DATABASE_URL", raising=False)
    monkeypatch.setenv("TORCHLAB_LINK_SECRET", SECRET)
    monkeypatch.setenv("TORCHLAB_TEACHER_PASSWORD_HASH", PASSWORD_HASH)
    SESSION_FAILURES.forget()  # AppTest gives every session the same id: each test starts with no failed sign-ins
    ADDRESS_FAILURES.forget()
    yield default_store()


def open_app(page: str, lang: str, query: dict[str, str] | None = None) -> AppTest:
    """Run the app with ?lang= and the query, switch to the page, and return it rendered."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update({"lang": lang, **(query or {})})
    at.run()
    if page != "pages/home.py":
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def submit(at: AppTest, form: str) -> None:
    """Click the submit button of a form and rerun."""
    next(b for b in at.get("button") if b.proto.form_id == form).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def texts(elements: Any) -> list[str]:
    return [str(e.value) for e in elements]


def in_language(lang: str, text: str) -> bool:
    return bool(HAN.search(text)) == (lang == "zh")


def join(at: AppTest, code: str, nickname: str) -> None:
    at.text_input(key="join.code").set_value(code)
    at.text_input(key="join.nickname").set_value(nickname)
    submit(at, "join.form")


def sign_in(at: AppTest, password: str = PASSWORD) -> None:
    at.text_input(key="teacher.password").set_value(password)
    submit(at, "teacher.sign_in_form")


# ------------------------------------------------------------------------------------------------
# Students


@pytest.mark.parametrize("lang", LANGS)
def test_a_student_joins_with_the_code_from_the_link_and_a_nickname(store: Store, lang: str) -> None:
    klass = store.create_class("Physics", lang)
    store.join(klass.code, "Ann")
    at = open_app("pages/join.py", lang, {"code": klass.code.lower()})
    assert in_language(lang, at.title[0].value)
    assert at.text_input(key="join.code").value == klass.code.lower()
    join(at, klass.code.lower(), " <b>Ann</b>\u202e ")
    assert not at.error, texts(at.error)
    seat = at.session_state["_classroom_seat"]
    assert seat.nickname == "Ann (2)" and seat.class_id == klass.id
    assert "Ann (2)" in texts(at.text)  # shown as plain text, never markdown
    token = at.query_params["seat"][0] if isinstance(at.query_params["seat"], list) else at.query_params["seat"]
    assert links.read_seat_token(token, SECRET.encode()) == (seat.student_id, klass.id)
    assert any(in_language(lang, s) for s in texts(at.success))


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(
    ("code", "nickname", "key"),
    [
        ("ZZZZZZ", "Ann", "unknown_code"),
        ("' OR 1=1; --", "Ann", "unknown_code"),
        ("CLOSED", "Ann", "class_closed"),
        ("OPEN", "<script></script><b></b>", "nickname_empty"),
        ("OPEN", "\u202e\u2066\u200b", "nickname_empty"),
        ("OPEN", "n" * 10_000, "nickname_long"),
    ],
)
def test_bad_codes_and_hostile_nicknames_get_a_translated_message_and_change_nothing(
    store: Store, lang: str, code: str, nickname: str, key: str
) -> None:
    open_class, closed = store.create_class("Open", "en"), store.create_class("Closed", "en")
    store.set_state(closed.id, "closed")
    code = {"OPEN": open_class.code, "CLOSED": closed.code}.get(code, code)
    at = open_app("pages/join.py", lang)
    join(at, code, nickname)
    assert len(at.error) == 1 and in_language(lang, at.error[0].value), texts(at.error)
    from ui.i18n import strings

    assert at.error[0].value == strings(lang)[f"classroom.errors.{key}"].format(most=24)
    assert "_classroom_seat" not in at.session_state
    assert store.student_count(open_class.id) == 0 and store.student_count(closed.id) == 0


def test_the_seat_survives_a_reload_and_a_forged_one_is_dropped(store: Store) -> None:
    klass = store.create_class("Physics", "en")
    seat = store.join(klass.code, "Ann")
    token = links.seat_token(seat.student_id, seat.class_id, SECRET.encode())
    at = open_app("pages/home.py", "en", {"seat": token})
    assert at.session_state["_classroom_seat"] == seat
    assert "Ann" in texts(at.sidebar.text)
    student, class_id, mac = token.split(".")
    forged = open_app("pages/home.py", "en", {"seat": f"{int(student) + 1}.{class_id}.{mac}"})
    assert "_classroom_seat" not in forged.session_state
    assert len(forged.warning) == 1 and "seat" not in forged.query_params


def _answer(at: AppTest, key: str, choice: str) -> None:
    at.radio(key=f"predict.{key}.guess").set_value(choice)
    next(b for b in at.get("button") if f"predict.{key}" in str(b.proto.form_id)).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("lang", LANGS)
def test_a_committed_prediction_is_recorded_once_and_the_class_answers_are_shown(store: Store, lang: str) -> None:
    klass = store.create_class("Physics", lang)
    classmate = store.join(klass.code, "Bob")
    store.record(classmate, "tensors", "stride_t", "(7, 1)", False)
    seat = store.join(klass.code, "Ann")
    token = links.seat_token(seat.student_id, seat.class_id, SECRET.encode())
    at = open_app("pages/tensors.py", lang, {"tab": "layout", "seat": token})
    assert not at.get("vega_lite_chart"), "the class's answers appear only after answering"
    _answer(at, "stride_t", "(1, 7)")
    assert store.distribution(klass.id, "stride_t") == {"(1, 7)": 1, "(7, 1)": 1}
    assert len(at.get("vega_lite_chart")) == 1
    assert any("2" in c and in_language(lang, c) for c in texts(at.caption))
    _answer(at, "stride_t", "(7, 1)")  # changing one's mind after seeing the answer is not recorded
    assert store.distribution(klass.id, "stride_t") == {"(1, 7)": 1, "(7, 1)": 1}
    assert store.answer_of(seat, "stride_t") == "(1, 7)"


def test_outside_a_class_nothing_is_recorded(store: Store) -> None:
    klass = store.create_class("Physics", "en")
    at = open_app("pages/tensors.py", "en", {"tab": "layout"})
    _answer(at, "stride_t", "(1, 7)")
    assert any("Right" in s for s in texts(at.success))
    assert store.distributions(klass.id) == {} and not at.get("vega_lite_chart")


# ------------------------------------------------------------------------------------------------
# Teachers


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("page", ["pages/teacher.py", "pages/links.py", "pages/dashboard.py"])
def test_a_student_calling_a_teacher_page_gets_a_translated_refusal(store: Store, lang: str, page: str) -> None:
    store.create_class("Physics", "en")
    at = open_app(page, lang)
    assert len(at.warning) == 1 and in_language(lang, at.warning[0].value)
    assert at.text_input(key="teacher.password").value == ""
    assert not at.get("code") and not at.get("download_button") and not at.get("metric")
    sign_in(at, "wrong")
    assert len(at.error) == 1 and in_language(lang, at.error[0].value)
    assert len(store.classes()) == 1


@pytest.mark.parametrize("lang", LANGS)
def test_without_a_credential_the_teacher_pages_say_how_to_configure_one(
    store: Store, monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    monkeypatch.delenv("TORCHLAB_TEACHER_PASSWORD_HASH")
    at = open_app("pages/teacher.py", lang)
    assert len(at.error) == 1 and in_language(lang, at.error[0].value)
    assert any("classroom.auth hash" in m for m in texts(at.markdown))
    assert not at.text_input


def test_wrong_passwords_are_rate_limited_per_session(store: Store) -> None:
    at = open_app("pages/teacher.py", "en")
    for _ in range(5):
        sign_in(at, "guess")
        assert "Wrong password" in at.error[0].value
    sign_in(at)  # even the right one waits now
    assert "Too many" in at.error[0].value
    assert "_classroom_teacher" not in at.session_state


@pytest.mark.parametrize("lang", LANGS)
def test_the_teacher_creates_closes_clears_and_exports_a_class(store: Store, lang: str) -> None:
    at = open_app("pages/teacher.py", lang)
    sign_in(at)
    assert at.session_state["_classroom_teacher"] is True
    at.text_input(key="teacher.class_name").set_value("Physics <b>1</b>")
    submit(at, "teacher.new_class")
    (klass,) = store.classes()
    assert klass.name == "Physics <b>1</b>" and klass.state == "open"
    assert any(klass.code in s for s in texts(at.success))
    join_url = at.get("code")[0].value
    assert parse_qs(urlsplit(join_url).query)["code"] == [klass.code] and urlsplit(join_url).path.endswith("/join")
    assert len(at.get("image")) == 1  # the QR code
    store.record(store.join(klass.code, "Ann"), "init", "fan_in", "x", True)
    at.button(key=f"teacher.close.{klass.id}").click()
    at.run()
    assert store.class_by_code(klass.code).state == "closed"  # type: ignore[union-attr]
    at.button(key=f"teacher.reopen.{klass.id}").click()
    at.run()
    assert store.class_by_code(klass.code).state == "open"  # type: ignore[union-attr]
    assert at.button(key=f"teacher.clear.{klass.id}").disabled
    at.checkbox(key=f"teacher.sure.{klass.id}").check()
    at.run()
    at.button(key=f"teacher.clear.{klass.id}").click()
    at.run()
    assert store.student_count(klass.id) == 0 and store.distributions(klass.id) == {}
    assert at.get("download_button") and all(d.proto.ignore_rerun for d in at.get("download_button"))  # no rerun


# ------------------------------------------------------------------------------------------------
# Signed links


@pytest.mark.parametrize("lang", LANGS)
def test_the_link_builder_signs_the_chosen_modes(store: Store, lang: str) -> None:
    klass = store.create_class("Physics", "en")
    at = open_app("pages/links.py", lang)
    sign_in(at)
    assert in_language(lang, at.title[0].value)
    at.selectbox(key="links.lesson").select_index([lesson.slug for lesson in LESSONS].index("tensors"))
    at.run()
    at.selectbox(key="links.exp.tensors").select_index(0)  # create
    at.run()
    at.select_slider(key="create.n").set_value(500)
    at.radio(key="links.mode.create.n").set_value("locked")
    at.radio(key="links.mode.create.seed").set_value("hidden")
    at.selectbox(key="links.class").select_index(1)  # the first class after "no class"
    at.run()
    assert not at.exception
    url = at.get("code")[0].value
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path.endswith("/tensors") and query["create.n"] == "500" and query["tab"] == "create"
    spec = links.verify(query[links.PARAM], SECRET.encode())
    assert spec is not None and spec.class_code == klass.code and spec.lang == lang
    assert spec.controls["n"] == links.Control("locked", "500")
    assert spec.controls["seed"].mode == "hidden" and spec.controls["fn"].mode == "free"


def _link(spec: links.LinkSpec) -> dict[str, str]:
    return links.link_query(spec, links.sign(spec, SECRET.encode()))


LOCKED = links.LinkSpec(
    "tensors", "create", "create", "en", "", {"n": links.Control("locked", "500"), "fn": links.Control("hidden", "rand")}
)


@pytest.mark.parametrize("lang", LANGS)
def test_a_locked_value_wins_over_an_edited_url(store: Store, lang: str) -> None:
    query = {**_link(LOCKED), "lang": lang, "create.n": "7", "create.fn": "zeros"}
    at = open_app("pages/tensors.py", lang, query)
    n = at.select_slider(key="create.n")
    assert n.value == 500 and n.disabled
    assert "create.fn" not in {w.key for w in at.selectbox}
    assert any("(500,)" in str(m.value) for m in at.get("metric"))
    assert len(at.info) >= 1 and all(in_language(lang, i.value) for i in at.info)
    assert at.query_params["create.n"] in ("500", ["500"])


@pytest.mark.parametrize("lang", LANGS)
def test_a_forged_link_opens_unsigned_with_a_notice(store: Store, lang: str) -> None:
    query = _link(LOCKED)
    query[links.PARAM] = query[links.PARAM][:-2]
    at = open_app("pages/tensors.py", lang, {**query, "lang": lang, "create.n": "7"})
    assert len(at.warning) == 1 and in_language(lang, at.warning[0].value)
    n = (
        at.number_input(key="create.n")
        if any(w.key == "create.n" for w in at.number_input)
        else at.select_slider(key="create.n")
    )
    assert not n.disabled and n.value == 7


def test_a_link_for_another_class_does_not_carry_into_this_one(store: Store) -> None:
    mine, other = store.create_class("Mine", "en"), store.create_class("Other", "en")
    seat = store.join(mine.code, "Ann")
    spec = links.LinkSpec("tensors", "create", "create", "en", other.code, LOCKED.controls)
    query = {**_link(spec), "seat": links.seat_token(seat.student_id, seat.class_id, SECRET.encode()), "create.n": "7"}
    at = open_app("pages/tensors.py", "en", query)
    assert any("another class" in w.value for w in at.warning)
    assert at.session_state["_classroom_seat"].class_id == mine.id
    assert not at.select_slider(key="create.n").disabled


# ------------------------------------------------------------------------------------------------
# Dashboard


@pytest.mark.parametrize("lang", LANGS)
def test_the_dashboard_sums_the_replicas_and_shows_the_class_answers(store: Store, lang: str) -> None:
    klass = store.create_class("Physics", "en")
    for i, choice in enumerate(["(1, 7)", "(1, 7)", "(7, 1)"]):
        store.record(store.join(klass.code, f"s{i}"), "tensors", "stride_t", choice, choice == "(1, 7)")
    base = {
        "cache_hits": 3,
        "cache_misses": 1,
        "runs_last_minute": 10,
        "queue_now": 1,
        "memory_kind": "rss",
        "memory_bytes": 2**30,
    }
    store.heartbeat("rA", 5, {klass.id: 4}, {**base, "longest_wait_s": 1.5, "recent_errors": {"timeout": 2}})
    store.heartbeat(
        "rB", 3, {klass.id: 2, klass.id + 1: 7}, {**base, "longest_wait_s": 0.5, "recent_errors": {"timeout": 1, "oom": 1}}
    )
    at = open_app("pages/dashboard.py", lang)
    sign_in(at)
    metrics = [m.value for m in at.get("metric")]
    assert metrics[:4] == ["6", "20", "75%", "2"], metrics
    assert metrics[4:] == ["8", "2"]
    assert len(at.get("vega_lite_chart")) == 1
    assert any("3" in c and in_language(lang, c) for c in texts(at.caption))
    frames = at.dataframe
    assert len(frames) == 2 and sorted(frames[1].value.iloc[:, 1]) == [1, 3]


@pytest.mark.parametrize("lang", LANGS)
def test_without_a_database_the_lessons_work_and_the_classroom_says_why(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lang: str
) -> None:
    monkeypatch.setenv("TORCHLAB_DATABASE_URL", f"postgresql://nobody@/torchlab?host={tmp_path / 'no-server-here'}")
    at = open_app("pages/tensors.py", lang, {"tab": "layout"})
    assert not at.error and at.get("plotly_chart")
    at = open_app("pages/join.py", lang)
    join(at, "ABCDEF", "Ann")
    assert [in_language(lang, e.value) for e in at.error] == [True, True]  # what happened, and what it means for the student
    at = open_app("pages/teacher.py", lang)
    sign_in(at)
    assert len(at.error) == 1 and in_language(lang, at.error[0].value)
    assert not at.get("expander")
