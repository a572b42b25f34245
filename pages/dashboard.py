"""Classroom — the teacher's dashboard: students connected, runs, cache, queue, memory, errors, the class's answers, live."""

from datetime import timedelta

import streamlit as st

from classroom.heartbeat import INTERVAL_S
from core.lessons import LESSONS
from ui.classroom import answer_chart, class_picker, plain, require_teacher, sign_out_button, store, totals
from ui.i18n import t
from ui.routing import leave_pages_folder_mode

leave_pages_folder_mode()
st.title(t("dashboard.title"))
require_teacher()
sign_out_button()
st.caption(t("dashboard.intro", seconds=int(INTERVAL_S)))
classes = store().classes()
klass = class_picker(classes, key="dashboard.class") if classes else None
if klass is None:
    st.info(t("teacher.no_classes"))


@st.fragment(run_every=timedelta(seconds=INTERVAL_S))
def live() -> None:
    """Draw the counters of every live replica and the class's answers; reruns on its own every few seconds."""
    now = totals(None if klass is None else klass.id)
    a, b, c, d = st.columns(4)
    a.metric(t("dashboard.students_connected"), now.class_sessions)
    b.metric(t("dashboard.runs_per_minute"), now.runs_last_minute)
    c.metric(t("dashboard.hit_rate"), "—" if now.hit_rate is None else f"{100 * now.hit_rate:.0f}%")
    d.metric(
        t("dashboard.queue"), now.queue_now, t("dashboard.longest_wait", seconds=f"{now.longest_wait_s:.1f}"), delta_color="off"
    )
    e, f = st.columns(2)
    e.metric(t("dashboard.sessions"), now.sessions)
    f.metric(t("dashboard.replicas"), now.replicas)
    st.subheader(t("dashboard.memory"))
    st.dataframe(
        {
            t("dashboard.replica"): [replica for replica, _, _ in now.memory],
            t("dashboard.memory_kind"): [t(f"dashboard.memory_{kind}", default=kind) for _, kind, _ in now.memory],
            "MiB": [round(used / 2**20, 1) for _, _, used in now.memory],
        },
        hide_index=True,
    )
    st.subheader(t("dashboard.errors"))
    if now.recent_errors:
        st.dataframe(
            {
                t("dashboard.error_kind"): [t(f"dashboard.kinds.{k}", default=k) for k in now.recent_errors],
                t("dashboard.error_count"): list(now.recent_errors.values()),
            },
            hide_index=True,
        )
    else:
        st.caption(t("dashboard.no_errors"))
    if klass is None:
        return
    st.subheader(t("dashboard.predictions", name=plain(klass.name)))
    answered = store().distributions(klass.id)
    if not answered:
        st.caption(t("dashboard.no_answers"))
    for lesson in LESSONS:
        for prediction in lesson.predictions:
            counts = answered.get((lesson.slug, prediction.name))
            if not counts:
                continue
            experiment = prediction.experiment
            st.markdown(f"**{t(f'nav.{lesson.slug}')}** · {t(prediction.question or f'{experiment.name}.predict_q')}")
            labels = {option: t(f"{experiment.name}.{option}", default=option) for option in prediction.options}
            answer_chart(labels, counts)
            st.caption(t("dashboard.answered", count=sum(counts.values())))


live()
