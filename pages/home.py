"""Home: what TorchLab is, the lessons, and what the server computes on."""

import streamlit as st

from core.lessons import LESSONS
from ui.i18n import prose, t
from ui.routing import leave_pages_folder_mode
from ui.sidebar import device_summary

leave_pages_folder_mode()
st.title(t("home.title"))
prose("home")
st.subheader(t("home.lessons"))
for lesson in LESSONS:
    st.page_link(lesson.page, label=f"**{t(f'nav.{lesson.slug}')}** — {t(f'nav.{lesson.slug}_desc')}")
st.subheader(t("home.server"))
st.markdown(device_summary())
