"""Streamlit glue of the classroom: the student's seat, recorded predictions, teacher sign-in, signed links, heartbeat.

The data lives in classroom.store (SQLAlchemy); this module only decides what a session sees.
A student's seat lives in the Streamlit session and in the URL as a signed `?seat=` token, so a
reload (a new session) finds it again. Why the URL and not a cookie: Streamlit has no server-side
way to set a cookie, the token needs no component or JavaScript, and each browser tab keeps its
own seat (two students sharing one computer, one per tab). The cost: whoever gets a student's URL
answers as that student, which is why the token names only a seat and never grants teacher rights.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import secrets as token_source
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import pandas as pd
import segno
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from classroom import heartbeat, links
from classroom.auth import FailureLimiter, check_password
from classroom.db import data_dir
from classroom.store import ClassInfo, ClassroomError, Seat, Store, default_store
from core.runner import COUNTERS, memory_in_use
from ui.i18n import t
from ui.widgets import LINK_KEY

SEAT_PARAM = "seat"
SEAT_KEY = "_classroom_seat"
TEACHER_KEY = "_classroom_teacher"
SESSION_FAILURES = FailureLimiter(limit=5, window=300)  # wrong passwords one session may try per 5 minutes
ADDRESS_FAILURES = FailureLimiter(limit=20, window=300)  # per client address (a school shares one)
LINK_SECRET_FILE = "link-secret"
_LOG = logging.getLogger(__name__)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
_HEARTBEAT_FAILED = False  # set once the database could not be opened for the heartbeat
_SESSION_CLASSES: dict[str, int] = {}  # session id -> class id of its seat (for "students connected")
_REGISTRY_LOCK = threading.Lock()


def store() -> Store:
    """Return the classroom store of this process (SQLite file or TORCHLAB_DATABASE_URL), migrated on first use."""
    return default_store()


def store_or_explain() -> Store | None:
    """Return the store, or None after showing (translated) that the classroom database cannot be opened."""
    try:
        return default_store()
    except (OSError, SQLAlchemyError):
        _LOG.exception("the classroom database cannot be opened")
        st.error(t("classroom.no_database"), icon=":material/database:")
        return None


def session_id() -> str:
    """Return this session's id ('' outside a session)."""
    ctx = get_script_run_ctx()
    return "" if ctx is None else ctx.session_id


# ------------------------------------------------------------------------------------------------
# Secrets: from .streamlit/secrets.toml or the environment, never from the repository


def secret_section(name: str) -> dict[str, Any]:
    """Return one table of .streamlit/secrets.toml ({} when there is no such file or table)."""
    try:
        section = st.secrets.get(name)
    except FileNotFoundError:  # no secrets.toml at all (StreamlitSecretNotFoundError is one)
        return {}
    return dict(section) if isinstance(section, Mapping) else {}


def teacher_hash() -> str:
    """Return the teacher password's hash: TORCHLAB_TEACHER_PASSWORD_HASH, else [teacher] password_hash."""
    return os.environ.get("TORCHLAB_TEACHER_PASSWORD_HASH", "").strip() or str(
        secret_section("teacher").get("password_hash", "")
    )


def teacher_emails() -> set[str]:
    """Return the e-mail addresses that are teachers when signing in through st.login ([teacher] emails)."""
    emails = secret_section("teacher").get("emails", [])
    return {str(e).strip().lower() for e in emails} if isinstance(emails, list) else set()


def oidc_configured() -> bool:
    """Return whether st.login can sign teachers in: an [auth] section and a list of teacher e-mails."""
    return bool(secret_section("auth")) and bool(teacher_emails())


def link_secret() -> bytes | None:
    """Return the key that signs links and seat tokens: TORCHLAB_LINK_SECRET or [torchlab] link_secret.

    Without one, a single-host server (SQLite) makes its own, random, in its data folder (0600,
    git-ignored); replicas on several hosts (PostgreSQL) must share a configured one, so there it is None.
    """
    configured = os.environ.get("TORCHLAB_LINK_SECRET", "").strip() or str(secret_section("torchlab").get("link_secret", ""))
    if configured:
        return configured.encode("utf-8")
    if os.environ.get("TORCHLAB_DATABASE_URL"):
        return None
    path = data_dir() / LINK_SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(token_source.token_hex(32))
    text = path.read_text(encoding="ascii").strip()
    return text.encode("ascii") if text else None


# ------------------------------------------------------------------------------------------------
# The student's seat


def current_seat() -> Seat | None:
    """Return the seat of this session's student, or None (not in a class)."""
    seat = st.session_state.get(SEAT_KEY)
    return seat if isinstance(seat, Seat) else None


def take_seat(seat: Seat) -> None:
    """Put this session in a seat and the seat's signed token in the URL."""
    st.session_state[SEAT_KEY] = seat
    secret = link_secret()
    if secret:
        st.query_params[SEAT_PARAM] = links.seat_token(seat.student_id, seat.class_id, secret)


def leave_seat() -> None:
    """Take this session out of its class (its recorded answers stay)."""
    st.session_state.pop(SEAT_KEY, None)
    st.query_params.pop(SEAT_PARAM, None)
    with _REGISTRY_LOCK:
        _SESSION_CLASSES.pop(session_id(), None)


def restore_seat() -> None:
    """Find this session's seat (session, else the URL's signed token); keep its token in the URL; note it for the dashboard."""
    seat = current_seat()
    token = st.query_params.get(SEAT_PARAM)
    secret = link_secret() if seat is not None or token else None  # a session outside any class touches no file
    if seat is None and token:
        ids = links.read_seat_token(token, secret) if secret else None
        db = store_or_explain() if ids else None
        found = db.seat(ids[0]) if db is not None and ids else None
        if found is not None and ids is not None and found.class_id == ids[1]:
            seat = found
            st.session_state[SEAT_KEY] = seat
        else:
            st.query_params.pop(SEAT_PARAM, None)
            st.warning(t("classroom.seat_lost"), icon=":material/person_off:")
    if seat is not None and secret:
        wanted = links.seat_token(seat.student_id, seat.class_id, secret)
        if token != wanted:
            st.query_params[SEAT_PARAM] = wanted
    sid = session_id()
    with _REGISTRY_LOCK:
        if seat is None:
            _SESSION_CLASSES.pop(sid, None)
        elif sid:
            _SESSION_CLASSES[sid] = seat.class_id


def seat_box() -> None:
    """Say in the sidebar which class this student is in, under which nickname (escaped), with a way to leave."""
    seat = current_seat()
    if seat is None:
        return
    st.sidebar.caption(t("classroom.in_class", code=seat.code))
    st.sidebar.text(seat.nickname)  # st.text: a nickname is never read as markdown or HTML
    if st.sidebar.button(t("classroom.leave"), key="classroom.leave", icon=":material/logout:"):
        leave_seat()
        st.rerun()


def join_class(code: str, nickname: str) -> str | None:
    """Seat this session in the class with this code; return the translated reason when it cannot."""
    db = store_or_explain()
    if db is None:
        return t("classroom.errors.unavailable")
    try:
        seat = db.join(code, nickname)
    except ClassroomError as e:
        return t(f"classroom.errors.{e.key}")
    except ValueError as e:  # nickname.NicknameError
        return t(f"classroom.errors.{getattr(e, 'key', 'nickname_empty')}", most=24)
    take_seat(seat)
    return None


# ------------------------------------------------------------------------------------------------
# Predictions in a class


def class_answers(lesson: str, name: str, labels: Mapping[str, str], submitted: str | None, right: str | None) -> None:
    """In a class: record a just-committed guess (the first one only), then show how the class answered so far.

    `labels` maps each option to what the student read; `submitted` is the label just committed
    (None on other reruns), `right` the option the experiment gave (None when its run failed).
    Outside a class this draws nothing.
    """
    seat = current_seat()
    db = None if seat is None else store_or_explain()
    if seat is None or db is None:
        return
    if submitted is not None:
        option = next((o for o, label in labels.items() if label == submitted), submitted)
        status = db.record(seat, lesson, name, option, None if right is None else option == right)
        if status == "already":
            st.caption(t("classroom.first_answer_counts"))
        elif status == "closed":
            st.warning(t("classroom.not_recorded"), icon=":material/lock:")
    mine = db.answer_of(seat, name)
    if mine is None:
        return  # the class's answers are shown only after the student committed their own
    counts = db.distribution(seat.class_id, name)
    answer_chart(labels, counts)
    st.caption(t("classroom.class_answered", count=sum(counts.values()), yours=labels.get(mine, mine)))


def answer_chart(labels: Mapping[str, str], counts: Mapping[str, int]) -> None:
    """Draw how many chose each option, every option shown (also those nobody chose), in the options' order.

    A plain Vega-Lite spec, not st.bar_chart: that builds an Altair chart, 110 ms a call here
    against 5 ms, and a whole class answering at once pays it once per student.
    """
    order = list(labels) + [c for c in counts if c not in labels]
    option, students = t("classroom.option"), t("classroom.students")
    frame = pd.DataFrame({option: [labels.get(o, o) for o in order], students: [counts.get(o, 0) for o in order]})
    spec = {
        "description": t("classroom.chart_description"),
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": option, "type": "nominal", "sort": None, "title": option},
            "x": {"field": students, "type": "quantitative", "title": students, "axis": {"tickMinStep": 1, "format": "d"}},
        },
    }
    st.vega_lite_chart(frame, spec, height=40 + 28 * len(order))


# ------------------------------------------------------------------------------------------------
# Teachers


def client_address() -> str:
    """Return the client's address: behind our nginx (a loopback peer) its X-Real-IP, else the peer's own."""
    peer = st.context.ip_address or ""
    if peer in ("127.0.0.1", "::1", ""):
        forwarded = st.context.headers.get("X-Real-IP", "") if st.context.headers else ""
        return forwarded.strip()[:64] or peer or "unknown"
    return peer


def is_teacher() -> bool:
    """Return whether this session signed in as the teacher (password, or st.login with a teacher's e-mail)."""
    if st.session_state.get(TEACHER_KEY):
        return True
    if oidc_configured() and st.user.is_logged_in:
        if st.user.get("email_verified") is False:  # a provider that says so; many never send the claim
            return False
        return str(st.user.get("email", "")).lower() in teacher_emails()
    return False


def teacher_visibility() -> Literal["visible", "hidden"]:
    """Return whether the teacher-only pages are listed in the navigation for this session."""
    return "visible" if is_teacher() else "hidden"


def require_teacher() -> None:
    """Stop the page unless the teacher is signed in and the classroom database opens: say why (translated) otherwise."""
    if is_teacher():
        if store_or_explain() is None:
            st.stop()
        return
    password, oidc = bool(teacher_hash()), oidc_configured()
    if not password and not oidc:
        st.error(t("teacher.not_configured"), icon=":material/key_off:")
        st.markdown(t("teacher.how_to_configure"))
        st.stop()
    st.warning(t("teacher.only"), icon=":material/lock:")
    if password:
        _password_form()
    if oidc:
        st.button(t("teacher.sign_in_oidc"), on_click=st.login, icon=":material/login:")
        if st.user.is_logged_in:
            st.error(t("teacher.not_a_teacher"))
    st.stop()


def _password_form() -> None:
    with st.form("teacher.sign_in_form"):
        password = st.text_input(t("teacher.password"), type="password", max_chars=1024, key="teacher.password")
        submitted = st.form_submit_button(t("teacher.sign_in"), icon=":material/login:")
    if not submitted:
        return
    keys = (f"session:{session_id()}", f"address:{client_address()}")
    wait = max(SESSION_FAILURES.retry_after(keys[0]), ADDRESS_FAILURES.retry_after(keys[1]))
    if wait > 0:
        st.error(t("teacher.too_many", seconds=math.ceil(wait)), icon=":material/timer:")
    elif check_password(teacher_hash(), password):
        st.session_state[TEACHER_KEY] = True
        st.rerun()
    else:
        SESSION_FAILURES.failed(keys[0])
        ADDRESS_FAILURES.failed(keys[1])
        st.error(t("teacher.wrong_password"), icon=":material/error:")


def sign_out_button() -> None:
    """Offer the signed-in teacher a way to sign out (of the st.login account too)."""
    st.sidebar.button(t("teacher.sign_out"), key="teacher.sign_out", icon=":material/logout:", on_click=_sign_out)


def _sign_out() -> None:
    """Forget the password sign-in; with st.login, send the browser to /auth/logout, which deletes the identity cookie.

    A callback, so the run that follows already draws the signed-out page, and no st.rerun: a rerun
    empties the queue of messages to the browser, st.logout's redirect included, and the cookie
    left behind would sign the teacher in again at the next page load.
    """
    st.session_state.pop(TEACHER_KEY, None)
    if oidc_configured() and st.user.is_logged_in:
        st.logout()


# ------------------------------------------------------------------------------------------------
# Links


def base_url() -> str:
    """Return scheme://host of the address the browser used ('' when unknown, e.g. under AppTest)."""
    url = st.context.url or ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def page_url(path: str, query: Mapping[str, str]) -> str:
    """Return the full address of one of the app's pages with a query string."""
    return f"{base_url()}/{path.lstrip('/')}?{urlencode(query)}"


def qr_png(text: str) -> bytes:
    """Return a QR code of text as PNG bytes (error correction M, 6 px modules)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=6, border=2)
    return out.getvalue()


def show_link(url: str, caption: str) -> None:
    """Show a link as copyable text (st.code has a copy button) and as a QR code."""
    st.code(url, language=None, wrap_lines=True)
    st.image(qr_png(url), caption=caption, width=220)


def apply_link() -> None:
    """Apply a teacher's signed `_link`: fix its hidden and locked controls for this session, or say why not.

    A forged, truncated or edited token is treated as an unsigned link (everything free) with a
    notice; so is a link made for another class than the student's. A link for a class the
    student has not joined offers the join page with its code filled in. The token is checked
    once per session; its notice stays while the address carries it.
    """
    token = st.query_params.get(links.PARAM)
    if not token:
        return
    verdicts: dict[str, str] = st.session_state.setdefault("_link_verdicts", {})
    if token not in verdicts:
        verdicts[token] = _judge_link(token)
    verdict = verdicts[token]
    if verdict == "invalid":
        st.warning(t("links.invalid"), icon=":material/gpp_bad:")
    elif verdict == "other_class":
        st.warning(t("links.other_class"), icon=":material/gpp_bad:")
    elif verdict.startswith("join:"):
        st.info(t("links.join_first", code=verdict.removeprefix("join:")), icon=":material/group_add:")
        st.page_link("pages/join.py", label=t("nav.join"), icon=":material/group_add:")


def _judge_link(token: str) -> str:
    """Verify a link token and fix its controls when it applies; return 'ok', 'invalid', 'other_class' or 'join:<code>'."""
    secret = link_secret()
    spec = links.verify(token, secret) if secret else None
    if spec is None:
        return "invalid"
    seat = current_seat()
    if spec.class_code and seat is not None and seat.code != spec.class_code:
        return "other_class"
    fixed: dict[str, dict[str, tuple[str, str]]] = st.session_state.setdefault(LINK_KEY, {})
    fixed[spec.experiment] = {name: (c.mode, c.value) for name, c in spec.fixed().items()}
    if spec.class_code and seat is None:
        st.session_state["_join_code"] = spec.class_code
        return f"join:{spec.class_code}"
    return "ok"


# ------------------------------------------------------------------------------------------------
# Counters across replicas


def _sample() -> tuple[int, dict[int, int], dict[str, Any]]:
    """Return (connected sessions, sessions per class, counters) of this process, for its heartbeat."""
    live: set[str] | None = None
    if Runtime.exists():
        manager = getattr(Runtime.instance(), "_session_mgr", None)
        if manager is not None:
            live = {info.session.id for info in manager.list_active_sessions()}
    with _REGISTRY_LOCK:
        if live is not None:
            for gone in [sid for sid in _SESSION_CLASSES if sid not in live]:
                del _SESSION_CLASSES[gone]
        per_class: dict[int, int] = {}
        for class_id in _SESSION_CLASSES.values():
            per_class[class_id] = per_class.get(class_id, 0) + 1
    counters = COUNTERS.snapshot()
    counters["memory_kind"], counters["memory_bytes"] = memory_in_use()
    return (len(live) if live is not None else len(_SESSION_CLASSES)), per_class, counters


def start_heartbeat() -> None:
    """Start this replica's heartbeat thread (once per process; not under AppTest, which has no server to report).

    A classroom database that cannot be opened (a read-only disk, PostgreSQL away) is logged and
    the lessons go on: they never need it.
    """
    global _HEARTBEAT_FAILED
    if _HEARTBEAT_FAILED or not Runtime.exists() or type(Runtime.instance()) is not Runtime:  # AppTest's runtime is a mock
        return
    try:
        heartbeat.start(store(), _sample)
    except (OSError, SQLAlchemyError):
        _HEARTBEAT_FAILED = True
        _LOG.exception("the classroom database could not be opened: no dashboard counters from this replica")


def plain(text: str) -> str:
    """Return text with markdown's special characters escaped, for labels that Streamlit renders as markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True)
class Totals:
    """The dashboard's sums over the replicas with a fresh heartbeat."""

    replicas: int
    sessions: int
    class_sessions: int
    runs_last_minute: int
    hit_rate: float | None
    queue_now: int
    longest_wait_s: float
    memory: list[tuple[str, str, int]]  # (replica, kind, bytes)
    recent_errors: dict[str, int]


def totals(class_id: int | None) -> Totals:
    """Return the counters of every replica whose heartbeat is fresh, summed (the longest wait: the largest)."""
    beats = store().replicas(fresh_within=heartbeat.FRESH_S)
    hits = sum(int(b.counters.get("cache_hits", 0)) for b in beats)
    misses = sum(int(b.counters.get("cache_misses", 0)) for b in beats)
    errors: dict[str, int] = {}
    for b in beats:
        for kind, n in dict(b.counters.get("recent_errors", {})).items():
            errors[kind] = errors.get(kind, 0) + int(n)
    return Totals(
        replicas=len(beats),
        sessions=sum(b.sessions for b in beats),
        class_sessions=sum(b.class_sessions.get(class_id, 0) for b in beats) if class_id is not None else 0,
        runs_last_minute=sum(int(b.counters.get("runs_last_minute", 0)) for b in beats),
        hit_rate=hits / (hits + misses) if hits + misses else None,
        queue_now=sum(int(b.counters.get("queue_now", 0)) for b in beats),
        longest_wait_s=max((float(b.counters.get("longest_wait_s", 0.0)) for b in beats), default=0.0),
        memory=[(b.replica_id, str(b.counters.get("memory_kind", "")), int(b.counters.get("memory_bytes", 0))) for b in beats],
        recent_errors=errors,
    )


def labeller(options: Sequence[Any], label: Callable[[Any], str]) -> Callable[[Any], str]:
    """Return a format_func: option -> label, looked up now; a label given back maps to itself (as AppTest does)."""
    labels = {option: label(option) for option in options}
    return lambda option: labels.get(option, str(option))


def class_picker(classes: Sequence[ClassInfo], key: str, allow_none: bool = False) -> ClassInfo | None:
    """Draw a choice of classes (name, code, state); return the chosen one."""
    options: list[int | None] = ([None] if allow_none else []) + [c.id for c in classes]
    by_id = {c.id: c for c in classes}

    def label(class_id: int | None) -> str:
        if class_id is None:
            return t("links.no_class")
        c = by_id[class_id]
        return f"{c.name} · {c.code} · {t(f'teacher.state_{c.state}')}"

    chosen = st.selectbox(t("teacher.class"), options, format_func=labeller(options, label), key=key)
    return None if chosen is None else by_id.get(chosen)
