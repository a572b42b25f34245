"""Routing guard: every run of the app goes through app.py's router, also a fresh server's first."""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def leave_pages_folder_mode() -> None:
    """Make sure app.py routes this run: on a fresh server, drop Streamlit's old pages-folder mode and rerun.

    With a `pages/` folder beside app.py, Streamlit 1.67 runs a fresh server's very first script
    run in its old multipage mode (`PagesManager.uses_pages_directory`): it runs the page script
    straight from `pages/`, without app.py's language, sidebar and navigation. app.py and every
    page call this first: the flag goes off for the whole process (as st.navigation would set it)
    and the run starts again through app.py, on the same page (a page's hash is its URL path).
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
