"""Language: which one the student reads, and every UI string from lessons/<lang>/*.toml (common + one per lesson)."""

from __future__ import annotations

import functools
import re
import string
import threading
import tomllib
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
LANGS = {"en": "English", "zh": "简体中文"}
DEFAULT = "en"


@functools.cache
def strings(lang: str) -> dict[str, str]:
    """Return every string of lessons/<lang>/*.toml (common.toml and one file per lesson), flattened to dotted keys."""
    return dict(pair for path in string_files(lang) for pair in read_strings(path))


def string_files(lang: str) -> list[Path]:
    """Return the string tables of a language: common.toml first, then the lessons' in name order."""
    return sorted((LESSONS / lang).glob("*.toml"), key=lambda path: (path.stem != "common", path.stem))


def read_strings(path: Path) -> list[tuple[str, str]]:
    """Return one TOML file's strings as (dotted key, text) pairs."""
    with open(path, "rb") as f:
        return _flatten(tomllib.load(f))


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", str(value)))
    return out


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# The language of the script run going on in this thread, as (its run context, language). A page asks
# for it through t() a hundred times a run, and each st.session_state read costs a lock and a lookup
# (7% of the server's script time under a class's load). It can only change where choose_language
# and _switched set it, which start every full run; a fragment's rerun keeps the page's language.
_RUN = threading.local()


def lang() -> str:
    """Return the language of this session ('en' or 'zh')."""
    ctx = get_script_run_ctx(suppress_warning=True)
    known = getattr(_RUN, "lang", None)
    if ctx is not None and known is not None and known[0] is ctx:
        return str(known[1])
    value = st.session_state.get("lang")
    value = value if value in LANGS else DEFAULT
    _remember(value, ctx)
    return value


def _remember(value: str, ctx: Any = None) -> None:
    """Note the language of the script run going on in this thread (ctx: its run context, when the caller has it)."""
    ctx = ctx if ctx is not None else get_script_run_ctx(suppress_warning=True)
    _RUN.lang = (ctx, value) if ctx is not None else None


def t(key: str, default: str | None = None, **values: Any) -> str:
    """Return the string for key in the session's language (English, then default, as fallbacks)."""
    text = text_in(lang(), key, default)
    return string.Formatter().vformat(text, (), _Lenient(values)) if values else text


def text_in(language: str, key: str, default: str | None = None) -> str:
    """Return the unformatted string for key in `language` (English, then default, then the key as fallbacks)."""
    text = strings(language).get(key) or strings(DEFAULT).get(key)
    if text is None:
        return key if default is None else default
    return text


def has(key: str) -> bool:
    """Return whether key has a string (in English at least)."""
    return key in strings(DEFAULT)


def from_locale(locale: str | None) -> str:
    """Map a browser locale such as 'zh-CN' or 'en-US' to a supported language."""
    return "zh" if locale and locale.lower().startswith("zh") else DEFAULT


def choose_language() -> str:
    """Resolve the session's language and draw the sidebar switch; keep ?lang= in the URL.

    A link's ?lang= wins when the session starts; otherwise the browser's locale decides.
    The choice lives in a plain session-state key (not the widget's own, which Streamlit drops
    on pages that do not draw it), so it stays when the student moves between pages.
    """
    if st.session_state.get("lang") not in LANGS:
        wanted = st.query_params.get("lang")
        st.session_state["lang"] = wanted if wanted in LANGS else from_locale(st.context.locale)
    _remember(st.session_state["lang"])
    st.session_state["lang_switch"] = st.session_state["lang"]
    st.sidebar.selectbox(
        "Language · 语言", options=list(LANGS), format_func=LANGS.__getitem__, key="lang_switch", on_change=_switched
    )
    if st.query_params.get("lang") != lang():
        st.query_params["lang"] = lang()
    return lang()


def _switched() -> None:
    st.session_state["lang"] = st.session_state["lang_switch"]
    _remember(st.session_state["lang"])


@functools.cache
def _prose(lang_code: str, slug: str) -> dict[str, str]:
    text = (LESSONS / lang_code / f"{slug}.md").read_text(encoding="utf-8")
    parts = re.split(r"^<!-- section: ([\w-]+) -->\s*$", text, flags=re.MULTILINE)
    sections = {"": parts[0].strip()}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = body.strip()
    return sections


def prose(slug: str, section: str = "") -> None:
    """Show one section of lessons/<lang>/<slug>.md (the whole file when it has no sections)."""
    st.markdown(_prose(lang(), slug).get(section, ""))
