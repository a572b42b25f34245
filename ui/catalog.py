"""The lessons that exist: slug, page script and icon. Titles and one-liners live in ui.toml (nav.*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    slug: str
    script: str
    icon: str
    tabs: tuple[str, ...]  # one per experiment group; names are keys of <slug>.tabs in ui.toml


TENSORS = Lesson(
    "tensors", "pages/tensors.py", ":material/grid_on:",
    ("create", "shape", "layout", "broadcast", "index", "inplace", "numpy", "dtype", "pitfalls"),
)  # fmt: skip
LESSONS = (TENSORS,)
