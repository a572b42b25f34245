"""TorchLab router: page config, language, sidebar, navigation. No lesson content lives here."""

import streamlit as st

from ui.catalog import LESSONS
from ui.i18n import choose_language, t
from ui.sidebar import device_box

st.set_page_config(page_title="TorchLab", page_icon=":material/science:", layout="wide")
choose_language()
home = st.Page("pages/home.py", title=t("nav.home"), icon=":material/home:", default=True)
lessons = [st.Page(lesson.script, title=t(f"nav.{lesson.slug}"), icon=lesson.icon, url_path=lesson.slug)
           for lesson in LESSONS]  # fmt: skip
page = st.navigation({t("nav.start"): [home], t("nav.lessons"): lessons})
device_box()
page.run()
