"""TorchLab router: page config, language, class seat and signed links, sidebar, navigation. No lesson content lives here."""

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.heap import freeze_loaded
from core.lessons import LESSONS
from ui.classroom import apply_link, restore_seat, seat_box, start_heartbeat, teacher_visibility
from ui.i18n import choose_language, lang, t
from ui.routing import leave_pages_folder_mode, pages_for
from ui.session import rate_notice, replica_notice, rerun_on_reconnect, throttle_actions
from ui.sidebar import device_box

leave_pages_folder_mode(router=True)  # a fresh server's first runs: route through this script, not straight to pages/
throttle_actions()  # once per process: reruns beyond a student's rate wait, newest first
st.set_page_config(page_title="TorchLab", page_icon="🔥", layout="wide")
choose_language()
restore_seat()  # a student's class seat: from the session, else the URL's signed token
teacher = teacher_visibility()  # links and dashboard are listed for the teacher; their URLs answer everyone (with a refusal)


def sections() -> dict[str, list[StreamlitPage]]:
    home = st.Page("pages/home.py", title=t("nav.home"), default=True)
    lessons = [st.Page(lesson.page, title=t(f"nav.{lesson.slug}"), url_path=lesson.slug) for lesson in LESSONS]
    classroom = [
        st.Page("pages/join.py", title=t("nav.join"), url_path="join"),
        st.Page("pages/teacher.py", title=t("nav.teacher"), url_path="teacher"),
        st.Page("pages/links.py", title=t("nav.links"), url_path="links", visibility=teacher),
        st.Page("pages/dashboard.py", title=t("nav.dashboard"), url_path="dashboard", visibility=teacher),
    ]
    return {t("nav.start"): [home], t("nav.lessons"): lessons, t("nav.classroom"): classroom}


page = st.navigation(pages_for(lang(), teacher == "visible", sections))
device_box()
seat_box()
replica_notice()
rate_notice()
apply_link()  # a teacher's signed link: its hidden and locked controls, before the page draws them
rerun_on_reconnect()
start_heartbeat()  # once per process: this replica's counters to the classroom database
freeze_loaded()  # once per process: full garbage collections skip what start-up loaded (core.heap)
page.run()
