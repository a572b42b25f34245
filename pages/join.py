"""Classroom — join a class with its code and a nickname (optional: every lesson works without a class)."""

import streamlit as st

from ui.classroom import current_seat, join_class, leave_seat
from ui.i18n import t
from ui.routing import leave_pages_folder_mode

leave_pages_folder_mode()
st.title(t("join.title"))
seat = current_seat()
if seat is not None:
    st.success(t("join.already", code=seat.code), icon=":material/groups:")
    st.text(seat.nickname)  # plain text: a nickname is never rendered as markdown or HTML
    st.page_link("pages/home.py", label=t("join.to_lessons"), icon=":material/school:")
    if st.button(t("classroom.leave"), key="join.leave", icon=":material/logout:"):
        leave_seat()
        st.rerun()
    st.stop()

st.markdown(t("join.intro"))
if "join.code" not in st.session_state:
    st.session_state["join.code"] = (st.query_params.get("code") or st.session_state.get("_join_code", ""))[:12]
with st.form("join.form"):
    st.text_input(t("join.code"), key="join.code", max_chars=12, help=t("join.code_help"))
    st.text_input(t("join.nickname"), key="join.nickname", max_chars=64, help=t("join.nickname_help"))
    submitted = st.form_submit_button(t("join.submit"), icon=":material/group_add:")
if submitted:
    problem = join_class(st.session_state["join.code"], st.session_state["join.nickname"])
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        st.query_params.pop("code", None)
        st.rerun()
