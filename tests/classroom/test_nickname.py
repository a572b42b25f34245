"""Nicknames: any script, no markup or invisible characters, 1-24 characters."""

from __future__ import annotations

import pytest

from classroom.nickname import MAX_LEN, NicknameError, clean, with_suffix


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ann", "Ann"),
        ("  李雷  ", "李雷"),
        ("مريم", "مريم"),
        ("Zoë", "Zoë"),
        ("Zoe\u0308", "Zoë"),  # NFC: one character, not two
        ("<b>Bold</b> Ben", "Bold Ben"),
        ("<img src=x onerror=alert(1)>Eve", "Eve"),
        ("Eve<script", "Eve"),
        ("evil\u202eedoc", "eviledoc"),
        ("\u2066iso\u2069late", "isolate"),
        ("zero\u200bwidth", "zerowidth"),
        ("tab\tand\nnew  line", "tab and new line"),
        ("bell\x07\x00", "bell"),
        ("**md** _x_", "**md** _x_"),  # kept as typed: pages render nicknames escaped, never as markdown
    ],
)
def test_clean(raw: str, expected: str) -> None:
    assert clean(raw) == expected


@pytest.mark.parametrize(
    ("raw", "key"), [("", "nickname_empty"), ("\u202a\u202b", "nickname_empty"), ("y" * 25, "nickname_long")]
)
def test_refused(raw: str, key: str) -> None:
    with pytest.raises(NicknameError) as e:
        clean(raw)
    assert e.value.key == key


def test_suffix_keeps_the_limit() -> None:
    assert with_suffix("Ann", 1) == "Ann"
    assert with_suffix("Ann", 12) == "Ann (12)"
    assert len(with_suffix("z" * MAX_LEN, 123)) == MAX_LEN
