"""The lessons that exist: slug, page script and icon. Titles and one-liners live in ui.toml (nav.*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    slug: str
    script: str
    icon: str


LESSONS = (Lesson("tensors", "pages/tensors.py", ":material/grid_on:"),)
