"""Per-session classroom guards: the action rate limit, and the notice for a student moved to another replica."""

from __future__ import annotations

import os
from datetime import timedelta

import streamlit as st

from core.ratelimit import TokenBucket
from core.runner import CONFIG
from ui.i18n import t

REPLICA_COOKIE = "torchlab_replica"  # set by nginx (deploy/nginx.conf): the replica that served this browser


def within_rate() -> bool:
    """Return whether this session may run now; otherwise show the translated rate-limit notice.

    Each run of the script takes a token from the session's bucket (TORCHLAB_RATE per second,
    TORCHLAB_BURST at once), so a student who fires actions as fast as the socket allows costs
    the server a warning, not a page, while everyone else keeps their latency.
    """
    bucket = st.session_state.get("_rate")
    if bucket is None:
        bucket = st.session_state["_rate"] = TokenBucket(CONFIG.rate, CONFIG.burst)
    if bucket.allow():
        return True
    st.warning(t("run.rate_limited"), icon=":material/speed:")
    return False


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
