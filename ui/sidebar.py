"""The sidebar's facts about the server: what it computes on."""

from __future__ import annotations

import streamlit as st

from core.config import CONFIG
from core.runner import device_facts
from ui.i18n import t


def device_summary() -> str:
    """Return one translated line naming the device the experiments run on."""
    facts = device_facts()
    if facts["kind"] == "cuda":
        return t("device.gpu", name=facts["name"], memory=facts["memory_gb"], capability=facts["capability"])
    return t("device.cpu", name=facts["name"], cores=facts["cores"], threads=facts["threads"])


def device_box() -> None:
    """Show the device line and the per-experiment memory budget in the sidebar."""
    st.sidebar.caption(t("device.heading"))
    st.sidebar.markdown(device_summary())
    st.sidebar.caption(t("device.budget", max_mb=CONFIG.max_mb, seconds=CONFIG.run_seconds))
