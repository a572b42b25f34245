"""Nicknames: what a student types, cleaned to 1-24 characters of any script, or refused with a message key."""

from __future__ import annotations

import re
import unicodedata

MAX_LEN = 24
MAX_RAW = 4096  # longer input is refused unread (a 10 kB paste is not a nickname)
_TAG = re.compile(r"<[^>]*>?")  # an HTML/XML tag, also one cut off at the end
_SPACE = re.compile(r"\s+")
# Cc: control, Cf: format (zero-width, bidi embeddings/overrides U+202A-U+202E and isolates
# U+2066-U+2069), Cs: lone surrogates, Co: private use, Cn: unassigned.
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn"}


class NicknameError(ValueError):
    """A nickname that cannot be used; `key` names the translated message."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def clean(raw: str) -> str:
    """Return the nickname NFC-normalised, without markup, control or format characters, spaces collapsed.

    Raises NicknameError('nickname_empty') when nothing is left and ('nickname_long') past 24 characters.
    """
    if len(raw) > MAX_RAW:
        raise NicknameError("nickname_long")
    text = unicodedata.normalize("NFC", raw)
    text = "".join(c for c in text if unicodedata.category(c) not in _DROPPED or c in "\t\n")
    text = _TAG.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        raise NicknameError("nickname_empty")
    if len(text) > MAX_LEN:
        raise NicknameError("nickname_long")
    return text


def with_suffix(name: str, n: int) -> str:
    """Return the n-th variant of a taken nickname: 'Ann (2)', shortening the name so it stays within MAX_LEN."""
    if n <= 1:
        return name
    suffix = f" ({n})"
    return name[: MAX_LEN - len(suffix)].rstrip() + suffix
