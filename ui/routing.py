"""Routing guard: every run of the app goes through app.py's router, also a fresh server's first."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.navigation.page import StreamlitPage
from streamlit.runtime.pages_manager import PagesManager

ROUTED = "_routed_by_app"  # session state: app.py has run in this session (so the process left pages-folder mode)


def leave_pages_folder_mode(router: bool = False) -> None:
    """Make sure app.py routes this run: on a fresh server, drop Streamlit's old pages-folder mode and rerun.

    With a `pages/` folder beside app.py, Streamlit 1.67 runs a fresh server's very first script
    run in its old multipage mode (`PagesManager.uses_pages_directory`): it runs the page script
    straight from `pages/`, without app.py's language, sidebar and navigation. app.py (router=True)
    and every page call this first: the flag goes off for the whole process (as st.navigation would
    set it) and the run starts again through app.py, on the same page (a page's hash is its URL path).

    Sessions that opened together on a fresh server all started in that mode, but only the first
    to get here saw the flag still on. A page therefore also reruns when app.py has not yet run in
    its session (the others of the first wave); once app.py has run, the flag is off for good.
    """
    if router:
        st.session_state[ROUTED] = True
    if PagesManager.uses_pages_directory or not st.session_state.get(ROUTED):
        PagesManager.uses_pages_directory = False
        st.rerun()


PAGES = "_torchlab_pages"  # session state: (language, teacher) -> the navigation's sections of st.Page objects


Sections = dict[str, list[StreamlitPage]]


def pages_for(language: str, teacher: bool, build: Callable[[], Sections]) -> Sections:
    """Return the navigation's sections, built once per session, language and role (the last ones are kept).

    Each st.Page resolves its file's real path on disk when it is made: for fifteen pages that was
    about 7% of a cached rerun's time under a class's load, for objects that never change.
    """
    kept: dict[tuple[str, bool], Sections] = st.session_state.setdefault(PAGES, {})
    key = (language, teacher)
    if key not in kept:
        kept.clear()
        kept[key] = build()
    return kept[key]
