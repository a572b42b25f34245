"""Classroom — the link builder: a lesson's experiment with each control free, hidden or locked, signed for the class."""

import streamlit as st

from classroom import links
from core.lessons import LESSONS
from ui.classroom import class_picker, labeller, link_secret, page_url, require_teacher, show_link, sign_out_button, store
from ui.i18n import LANGS, lang, t
from ui.routing import leave_pages_folder_mode
from ui.widgets import field_label, param_widgets

leave_pages_folder_mode()
st.title(t("links.title"))
require_teacher()
sign_out_button()
secret = link_secret()
if secret is None:
    st.error(t("links.no_secret"), icon=":material/key_off:")
    st.stop()
st.markdown(t("links.intro"))

by_slug = {lesson.slug: lesson for lesson in LESSONS}
slug = st.selectbox(
    t("links.lesson"), list(by_slug), format_func=labeller(list(by_slug), lambda s: t(f"nav.{s}")), key="links.lesson"
)
lesson = by_slug[slug]
by_name = {e.name: e for e in lesson.experiments}
name = st.selectbox(
    t("links.experiment"),
    list(by_name),
    format_func=labeller(list(by_name), lambda n: t(f"{slug}.tabs.{n}", default=n)),
    key=f"links.exp.{slug}",
)
experiment = by_name[name]
tabs = [tab for tab in lesson.tabs if tab != "pitfalls"]
tab = st.selectbox(
    t("links.tab"),
    tabs,
    index=tabs.index(name) if name in tabs else 0,
    format_func=labeller(tabs, lambda n: t(f"{slug}.tabs.{n}")),
    key=f"links.tab.{slug}.{name}",
)

st.subheader(t("links.controls"))
p = param_widgets(experiment.params, experiment.name)
if p is None:
    st.stop()
modes = {}
for spec in experiment.params.specs():
    modes[spec.name] = st.radio(
        t("links.mode", field=field_label(experiment.name, spec.name)),
        links.MODES,
        format_func=labeller(links.MODES, lambda m: t(f"links.mode_{m}")),
        horizontal=True,
        key=f"links.mode.{name}.{spec.name}",
    )

link_lang = st.selectbox(
    t("links.lang"),
    list(LANGS),
    index=list(LANGS).index(lang()),
    format_func=labeller(list(LANGS), LANGS.__getitem__),
    key="links.lang",
)
klass = class_picker([c for c in store().classes() if c.state == "open"], key="links.class", allow_none=True)

values = p.to_query(experiment.name)
controls = {field: links.Control(mode, values[f"{experiment.name}.{field}"]) for field, mode in modes.items()}
spec_ = links.LinkSpec(slug, experiment.name, tab, link_lang, klass.code if klass else "", controls)
url = page_url(slug, links.link_query(spec_, links.sign(spec_, secret)))
st.subheader(t("links.link"))
show_link(url, t("links.qr"))
