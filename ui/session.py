"""Per-session classroom guards: the action rate limit, and the notice for a student moved to another replica."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import timedelta

import streamlit as st
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.runtime import Runtime
from streamlit.runtime.app_session import AppSession

from core.config import CONFIG
from core.ratelimit import NewestWins, TokenBucket
from ui.i18n import t
from ui.run import session_id

REPLICA_COOKIE = "torchlab_replica"  # set by nginx (deploy/nginx.conf): the replica that served this browser
_LOG = logging.getLogger(__name__)
HANG_UP_SECONDS = 10.0  # after closing a flooding session's websocket, its messages are ignored this long
_CLOSING: set[asyncio.Task[None]] = set()
_THROTTLED: set[str] = set()  # sessions whose reruns waited since their page last said so (event loop writes, pages read)


def throttle_actions() -> None:
    """Hold every session to TORCHLAB_RATE reruns per second (TORCHLAB_BURST at once), where its messages arrive.

    A rerun request makes Streamlit stop the session's running script and start another, so a
    client that sends them as fast as its socket allows (55,748 in two minutes, measured) starved
    every other student even when each script stopped at its first line. The limit therefore sits
    in front of Streamlit's handling of the message: past the rate, a session's newest rerun waits
    for its turn and older waiting ones are dropped (each carries the page's whole state, so the
    newest supersedes them). Streamlit offers no hook here; this wraps AppSession.handle_backmsg
    once per process, and the page then tells the student (rate_notice).
    """
    if getattr(AppSession.handle_backmsg, "_torchlab_throttle", False):
        return
    original = AppSession.handle_backmsg

    def handle_backmsg(session: AppSession, msg: BackMsg) -> None:
        if msg.WhichOneof("type") != "rerun_script":
            original(session, msg)
            return
        if time.monotonic() < session.__dict__.get("_torchlab_hung_up", 0.0):
            return  # its websocket is closing; if it comes back, it starts afresh after HANG_UP_SECONDS
        gate = session.__dict__.get("_torchlab_actions")
        if gate is None:
            later = asyncio.get_running_loop().call_later
            gate = session.__dict__["_torchlab_actions"] = NewestWins(TokenBucket(CONFIG.rate, CONFIG.burst), later)
        if not gate.offer(lambda: original(session, msg)):
            _THROTTLED.add(session.id)
            if gate.flooding:
                session.__dict__["_torchlab_hung_up"] = time.monotonic() + HANG_UP_SECONDS
                session.__dict__.pop("_torchlab_actions")
                _hang_up(session.id)

    handle_backmsg._torchlab_throttle = True  # type: ignore[attr-defined]
    AppSession.handle_backmsg = handle_backmsg  # type: ignore[method-assign,assignment]


def _hang_up(sid: str) -> None:
    """Close the websocket of a session that sends reruns faster than any person can (policy violation, 1008).

    Throttled messages still cost the event loop their parsing: one client sending 14,500 reruns a
    second took a whole core and pushed everyone's p95 to seconds. Streamlit has no public way to
    close a client's connection, so this reaches the Starlette websocket of its session client.
    """
    client = Runtime.instance().get_client(sid)
    websocket = getattr(client, "_websocket", None)
    if websocket is not None and hasattr(websocket, "close"):
        _LOG.warning("closing session %s: it sends reruns faster than a person can", sid)
        task = asyncio.get_running_loop().create_task(websocket.close(code=1008))
        _CLOSING.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_CLOSING.discard)


def rate_notice() -> None:
    """Tell a student whose reruns had to wait (throttle_actions) to slow down; their settings are kept."""
    sid = session_id()
    if sid in _THROTTLED:
        _THROTTLED.discard(sid)
        st.warning(t("run.rate_limited"), icon=":material/speed:")


def replica_notice() -> None:
    """Tell a student, once, that their replica stopped and this one restored the page from its link."""
    here = os.environ.get("TORCHLAB_REPLICA", "")
    if not here or st.session_state.get("_replica_checked"):
        return
    st.session_state["_replica_checked"] = True
    came_from = st.context.cookies.get(REPLICA_COOKIE)
    if came_from and came_from != here:
        st.info(t("run.moved"), icon=":material/sync_alt:")


@st.fragment(run_every=timedelta(hours=1))
def rerun_on_reconnect() -> None:
    """Draw nothing; its timer makes the browser rerun the page whenever its websocket reconnects.

    Streamlit's frontend, on reconnecting, asks for a script run only when it has an auto-rerun
    fragment (or a run was under way): otherwise it assumes the server kept the session. A replica
    that took over from a dead one has no such session, so without this the page would sit there
    until the student's next action, which the new session would then undo by seeding its widgets
    from the URL. With it, the new replica runs the page at once: the student sees their lesson
    restored from the link and the moved notice right away. The hourly fragment run itself is empty.
    """
