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
# A card per lesson, three to a row (a row of columns each, so the cards of a row line up): a page
# link's label does not wrap, so the one-liner goes below it.
for row in range(0, len(LESSONS), 3):
    for column, (i, lesson) in zip(st.columns(3), enumerate(LESSONS[row : row + 3], start=row + 1), strict=False):
        with column.container(border=True):
            st.page_link(lesson.page, label=f"**{i}. {t(f'nav.{lesson.slug}')}**")
            st.caption(t(f"nav.{lesson.slug}_desc"))
st.subheader(t("home.server"))
st.markdown(device_summary())
