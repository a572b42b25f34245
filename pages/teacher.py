"""Classroom — the teacher's classes: create one (join code, link, QR), close or reopen it, clear it, export its answers."""

from datetime import datetime

import streamlit as st

from ui.classroom import labeller, page_url, plain, require_teacher, show_link, sign_out_button, store
from ui.i18n import LANGS, t
from ui.routing import leave_pages_folder_mode

leave_pages_folder_mode()
st.title(t("teacher.title"))
require_teacher()
sign_out_button()
builder, dashboard = st.columns(2)
builder.page_link("pages/links.py", label=t("nav.links"), icon=":material/link:")
dashboard.page_link("pages/dashboard.py", label=t("nav.dashboard"), icon=":material/monitoring:")

with st.form("teacher.new_class", clear_on_submit=True):
    st.subheader(t("teacher.new_class"))
    name = st.text_input(t("teacher.class_name"), max_chars=80, key="teacher.class_name")
    class_lang = st.selectbox(
        t("teacher.class_lang"), list(LANGS), format_func=labeller(list(LANGS), LANGS.__getitem__), key="teacher.class_lang"
    )
    if st.form_submit_button(t("teacher.create"), icon=":material/add:"):
        if name.strip():
            created = store().create_class(name, class_lang)
            st.success(t("teacher.created", code=created.code), icon=":material/check_circle:")
        else:
            st.error(t("classroom.errors.class_name_empty"))

classes = store().classes()
if not classes:
    st.info(t("teacher.no_classes"))
for klass in classes:
    count = store().student_count(klass.id)
    title = f"{plain(klass.name)} · {klass.code} · {t(f'teacher.state_{klass.state}')} · {t('teacher.students', count=count)}"
    with st.expander(title, expanded=klass is classes[0]):
        st.caption(t("teacher.join_link"))
        show_link(page_url("join", {"code": klass.code, "lang": klass.lang}), t("teacher.qr_join", code=klass.code))
        toggle, clear, export = st.columns(3)
        if klass.state == "open":
            if toggle.button(t("teacher.close"), key=f"teacher.close.{klass.id}", icon=":material/lock:"):
                store().set_state(klass.id, "closed")
                st.rerun()
        elif toggle.button(t("teacher.reopen"), key=f"teacher.reopen.{klass.id}", icon=":material/lock_open:"):
            store().set_state(klass.id, "open")
            st.rerun()
        sure = clear.checkbox(t("teacher.clear_confirm"), key=f"teacher.sure.{klass.id}")
        if clear.button(t("teacher.clear"), key=f"teacher.clear.{klass.id}", disabled=not sure, icon=":material/delete:"):
            st.success(t("teacher.cleared", count=store().clear(klass.id)))
        stamp = datetime.now().strftime("%Y%m%d-%H%M")
        export.download_button(
            t("teacher.export"),
            store().export_csv(klass.id),
            file_name=f"torchlab-{klass.code}-{stamp}.csv",
            mime="text/csv",
            key=f"teacher.export.{klass.id}",
            icon=":material/download:",
            on_click="ignore",
        )
