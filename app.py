"""TorchLab router: page config, language, classroom guards, sidebar, navigation. No lesson content lives here."""

import streamlit as st

from core.lessons import LESSONS
from ui.i18n import choose_language, t
from ui.routing import leave_pages_folder_mode
from ui.session import rate_notice, replica_notice, rerun_on_reconnect, throttle_actions
from ui.sidebar import device_box

leave_pages_folder_mode()  # a fresh server's first run: route through this script, not straight to pages/
throttle_actions()  # once per process: reruns beyond a student's rate wait, newest first
st.set_page_config(page_title="TorchLab", page_icon="🔥", layout="wide")
choose_language()
home = st.Page("pages/home.py", title=t("nav.home"), default=True)
lessons = [st.Page(lesson.page, title=t(f"nav.{lesson.slug}"), url_path=lesson.slug) for lesson in LESSONS]
page = st.navigation({t("nav.start"): [home], t("nav.lessons"): lessons})
device_box()
replica_notice()
rate_notice()
rerun_on_reconnect()
page.run()
