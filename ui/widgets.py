"""Widgets built from a Params declaration, kept in sync with the URL.

Each field `name` of an experiment `prefix` is the widget key and URL key `prefix.name`. When the
session has no value for it yet, the value comes from the URL (bad values: default + warning).
A teacher hides controls with `?_hide=prefix.name,prefix2` (a whole experiment by its prefix).
A teacher's signed link (ui.classroom.apply_link) fixes controls for the session: a hidden one is
not drawn, a locked one is drawn disabled, and both keep the teacher's value whatever the URL says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import streamlit as st

from core.config import CONFIG
from core.params import FieldSpec, InvalidParams, Params, decode, encode, parse_ints
from ui.i18n import has, t

P = TypeVar("P", bound=Params)

FLOAT_SLIDER_STOPS = 100  # a float field with no declared step moves in 1/100 of its range


def field_label(prefix: str, name: str) -> str:
    """Return the translated label of a field."""
    return t(f"{prefix}.{name}", default=name)


def error_text(e: InvalidParams, prefix: str) -> str:
    """Return a translated sentence for an InvalidParams, naming the field."""
    return t(f"errors.{e.key}", field=field_label(prefix, e.field), **e.info)


def _hidden(prefix: str, name: str) -> bool:
    hide = st.query_params.get("_hide", "")
    flags = {h.strip() for h in hide.split(",")}
    return f"{prefix}.{name}" in flags or prefix in flags


LINK_KEY = "_link_controls"  # session state: experiment prefix -> {field: (mode, value text)}, set by ui.classroom


def link_controls(prefix: str) -> dict[str, tuple[str, str]]:
    """Return the controls of an experiment that a verified teacher link fixed: field -> (hidden | locked, value text)."""
    fixed = st.session_state.get(LINK_KEY, {})
    return dict(fixed.get(prefix, {})) if isinstance(fixed, dict) else {}


def _pin_fixed(cls: type[Params], prefix: str, fixed: dict[str, tuple[str, str]]) -> None:
    """Give each fixed control the teacher's value; say once when the URL asked for another one."""
    noticed: set[str] = st.session_state.setdefault("_link_noticed", set())
    for spec in cls.specs():
        if spec.name not in fixed:
            continue
        key = f"{prefix}.{spec.name}"
        try:
            value = decode(spec, fixed[spec.name][1])
        except InvalidParams:
            continue  # a value this version cannot read: the control stays free
        url = st.query_params.get(key)
        if url is not None and url != fixed[spec.name][1] and key not in noticed:
            noticed.add(key)
            st.info(t("links.locked_kept", field=field_label(prefix, spec.name)), icon=":material/lock:")
        st.session_state[key] = _widget_value(spec, value)


def _widget_value(spec: FieldSpec, value: Any) -> Any:
    if spec.kind == "ints":
        return encode(spec, value)
    if spec.kind == "strs":
        return list(value)
    return value


def _seed_from_url(cls: type[P], prefix: str) -> None:
    """Put the URL's values (or defaults) into session state for fields that have none yet."""
    keys = {s.name: f"{prefix}.{s.name}" for s in cls.specs()}
    if all(k in st.session_state for k in keys.values()):
        return
    params, rejected = cls.from_query(st.query_params.to_dict(), prefix)
    if rejected:
        st.session_state[f"_rejected.{prefix}"] = rejected
    for spec in cls.specs():
        st.session_state.setdefault(keys[spec.name], _widget_value(spec, getattr(params, spec.name)))


def _relink(cls: type[Params], prefix: str, name: str) -> None:
    """After a choice changes, load the fields that depend on it (`Params.linked`, e.g. sizes per op)."""
    specs = {s.name: s for s in cls.specs()}
    for other, value in cls.linked(name, st.session_state[f"{prefix}.{name}"]).items():
        st.session_state[f"{prefix}.{other}"] = _widget_value(specs[other], value)


def _number(spec: FieldSpec, key: str, label: str, help_text: str | None, hi: float, disabled: bool = False) -> None:
    """Draw a numeric field: a number box for seeds and exact values, a ladder or a plain slider for the rest.

    A value the URL brought that is not one of the ladder's stops becomes a stop of its own, so
    any in-range link keeps working; `hi` is the field's bound given the other fields.
    """
    meta = spec.meta
    lo = meta["lo"]
    number = int if spec.kind == "int" else float
    if meta.get("seed") or meta.get("exact"):
        step = 1 if spec.kind == "int" else _float_step(float(lo), float(hi))
        st.number_input(
            label,
            number(lo),
            number(hi),
            step=number(step),
            key=key,
            help=help_text,
            format=None if spec.kind == "int" else "%g",
            disabled=disabled,
        )
    elif "ladder" in meta:
        stops = sorted({number(v) for v in meta["ladder"] if v <= hi} | {number(st.session_state[key])})
        st.select_slider(label, stops, key=key, help=help_text, format_func=lambda v: f"{v:g}", disabled=disabled)
    elif spec.kind == "int":
        # Streamlit refuses a slider whose ends are equal: a bound the other fields pin to lo shows lo..lo+1, disabled.
        top, off = max(int(hi), int(lo) + 1), disabled or int(hi) <= int(lo)
        st.slider(label, int(lo), top, int(st.session_state[key]), key=key, help=help_text, disabled=off)
    else:
        step = float(meta["step"]) if meta.get("step") else (float(hi) - float(lo)) / FLOAT_SLIDER_STOPS
        value = float(st.session_state[key])
        st.slider(label, float(lo), float(hi), value, step=step, key=key, help=help_text, format="%g", disabled=disabled)


def _float_step(lo: float, hi: float) -> float:
    """Return a number box's step: the smallest order of magnitude of a positive range, else 1/1000 of it."""
    return 10 ** math.floor(math.log10(lo)) if lo > 0 else (hi - lo) / 1000


def _draw(cls: type[Params], spec: FieldSpec, prefix: str, label_key: str, current: Params, disabled: bool = False) -> None:
    key = f"{prefix}.{spec.name}"
    label = t(f"{prefix}.{label_key}", default=label_key)
    help_text = t(f"{prefix}.{label_key}_help") if has(f"{prefix}.{label_key}_help") else None
    meta = spec.meta
    hi = current.upper_bound(spec) if spec.kind in ("int", "float") else None
    # The slider also stops where the run, the other fields as they are, would exceed the runner's
    # memory or work budget: a student is never offered a value the runner then refuses.
    budget = current.budget_bound(spec, CONFIG.max_mb * 2**20, CONFIG.max_gwork * 1e9)
    if budget is not None:
        hi = budget if hi is None else min(hi, budget)
        # Only a link (or a default) can hold a value past it: the other sliders stop where this one fits.
        if st.session_state[key] > budget:
            st.warning(t("widgets.over_budget", field=label, value=f"{st.session_state[key]:g}", most=f"{budget:g}"))
    if hi is None:
        hi = meta.get("hi", 0)
    else:
        # A slider whose bound moved is a new widget to Streamlit (max_value is part of its id) and would
        # restart at its minimum: hand it its value again through session state, brought within the bound.
        st.session_state[key] = min(st.session_state[key], hi)

    option_label = _labeller(f"{prefix}.{spec.name}_choices", meta.get("choices", ()))

    if spec.kind == "bool":
        st.toggle(label, key=key, help=help_text, disabled=disabled)
    elif spec.kind == "str" and "choices" in meta:
        st.selectbox(
            label,
            meta["choices"],
            key=key,
            help=help_text,
            format_func=option_label,
            on_change=_relink,
            args=(cls, prefix, spec.name),
            disabled=disabled,
        )
    elif spec.kind == "strs":
        st.multiselect(label, meta["choices"], key=key, help=help_text, format_func=option_label, disabled=disabled)
    elif spec.kind in ("int", "float"):
        _number(spec, key, label, help_text, hi, disabled)
    elif spec.kind == "str":
        area = st.text_area if _wide(spec) else st.text_input
        area(label, key=key, help=help_text, max_chars=int(meta.get("max_len", 40)), disabled=disabled)
    else:
        default_help = t("widgets.list_help") if meta.get("sep") == "," else t("widgets.shape_help")
        st.text_input(label, key=key, help=help_text or default_help, max_chars=80, disabled=disabled)


def _labeller(table: str, options: Iterable[str]) -> Callable[[str], str]:
    """Return a format_func: option -> its translated label, looked up now, in this run's language.

    A label given back to it maps to itself, so a value that is already a label stays readable.
    """
    labels = {option: t(f"{table}.{option}", default=option) for option in options}
    return lambda option: labels.get(option, option)


def _wide(spec: FieldSpec) -> bool:
    """Free text longer than a word gets a full-width text area."""
    return spec.kind == "str" and spec.meta.get("max_len", 0) > 60


def preset_picker(prefix: str, presets: Mapping[str, Params]) -> None:
    """Draw a choice of ready-made settings; picking one loads all its fields into the widgets."""

    def load() -> None:
        chosen = presets.get(str(st.session_state.get(f"{prefix}._preset")))
        if chosen is not None:
            for spec in type(chosen).specs():
                st.session_state[f"{prefix}.{spec.name}"] = _widget_value(spec, getattr(chosen, spec.name))

    st.selectbox(
        t(f"{prefix}.preset"),
        list(presets),
        index=None,
        key=f"{prefix}._preset",
        on_change=load,
        format_func=_labeller(f"{prefix}.preset_choices", presets),
        placeholder=t("widgets.preset_placeholder"),
    )


def index_slider(key: str, label: str, count: int, default: int) -> int:
    """A slider over 0..count kept in the URL under `key` (a value the URL gives out of range is clamped)."""
    if key not in st.session_state:
        st.session_state[key] = _url_int(key, 0, count, default)
    st.session_state[key] = min(st.session_state[key], count)
    value = int(st.slider(label, 0, max(count, 1), st.session_state[key], key=key, disabled=count == 0))
    if st.query_params.get(key) != str(value):
        st.query_params[key] = str(value)
    return value


def _url_int(key: str, lo: int, hi: int, default: int) -> int:
    """Return the URL's integer under key, read by the Params codec and clamped to lo..hi; default when unreadable."""
    spec = FieldSpec(key, "int", default, {"lo": lo, "hi": hi})
    try:
        value = decode(spec, st.query_params.get(key, str(default)))
    except InvalidParams:
        return default
    return min(max(int(value), lo), hi)


def _read(spec: FieldSpec, prefix: str) -> Any:
    raw = st.session_state[f"{prefix}.{spec.name}"]
    if spec.kind == "ints":
        return parse_ints(spec, str(raw))
    if spec.kind == "strs":
        return tuple(raw)
    if spec.kind == "float":
        return float(raw)
    return raw


def param_widgets(cls: type[P], prefix: str, columns: int = 3) -> P | None:
    """Draw the widgets of an experiment and return its Params, or None (with an error shown).

    Only the fields the current settings use are drawn (Params.roles(), when defined). The URL
    is updated to hold every field, so a copied link reproduces the experiment.
    """
    _seed_from_url(cls, prefix)
    fixed = link_controls(prefix)
    _pin_fixed(cls, prefix, fixed)
    for r in st.session_state.pop(f"_rejected.{prefix}", []):
        if r.field in fixed:
            continue  # the teacher's value is used, and the notice above said so
        st.warning(
            t(
                "url.rejected",
                field=field_label(prefix, r.field),
                reason=t(f"errors.{r.key}", field=field_label(prefix, r.field), **r.info),
            )
        )
    try:
        values = {s.name: _read(s, prefix) for s in cls.specs()}
        current = cls(**values)
    except InvalidParams as e:
        values, current = {}, cls()
        error: InvalidParams | None = e
    else:
        error = None
    roles = current.roles()
    shown = [
        s for s in cls.specs() if s.name in roles and not _hidden(prefix, s.name) and fixed.get(s.name, ("",))[0] != "hidden"
    ]
    locked = {name for name, (mode, _) in fixed.items() if mode == "locked"}
    for spec in (s for s in shown if _wide(s)):
        _draw(cls, spec, prefix, roles[spec.name], current, spec.name in locked)
    narrow = [s for s in shown if not _wide(s)]
    per_row = min(columns, max(1, len(narrow)))
    for start in range(0, len(narrow), per_row):
        # One row of columns per `per_row` controls, aligned at the bottom: a toggle (no label above it)
        # stays level with the inputs of its own row instead of stacking up at the top of its column.
        row = st.columns(per_row, vertical_alignment="bottom")
        for col, spec in zip(row, narrow[start : start + per_row], strict=False):
            with col:
                _draw(cls, spec, prefix, roles[spec.name], current, spec.name in locked)
    if error is None:
        try:
            current = cls(**{s.name: _read(s, prefix) for s in cls.specs()})  # a moved bound (hi_of) may have lowered a value
            current.validate()
        except InvalidParams as e:
            error = e
    if error is not None:
        st.error(error_text(error, prefix), icon=":material/warning:")
        return None
    for key, text in current.to_query(prefix).items():
        if st.query_params.get(key) != text:
            st.query_params[key] = text
    return current
