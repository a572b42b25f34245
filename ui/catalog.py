"""The lessons that exist: slug, page script and tabs. Titles and one-liners live in ui.toml (nav.*)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Lesson:
    slug: str
    old_script: str
    tabs: tuple[str, ...]  # one per experiment group; names are keys of <slug>.tabs in ui.toml

    @property
    def script(self) -> str:
        """The lesson's page: pages/<slug>.py once the lesson has moved there (transitional)."""
        new = f"pages/{self.slug}.py"
        return new if (ROOT / new).exists() else self.old_script


TENSORS = Lesson(
    "tensors",
    "views/tensors.py",
    ("create", "shape", "layout", "broadcast", "index", "inplace", "numpy", "dtype", "pitfalls"),
)
AUTOGRAD = Lesson(
    "autograd",
    "views/autograd.py",
    ("graph", "backward", "accumulate", "retain", "detach", "nograd", "hooks", "custom", "pitfalls"),
)
INIT = Lesson("init", "views/init.py", ("dist", "fans", "signal", "train", "pitfalls"))
ACCUMULATION = Lesson("accumulation", "views/accumulation.py", ("equiv", "norm", "curves", "memory", "savers", "pitfalls"))
SPEED = Lesson("speed", "views/speed.py", ("timing", "scaling", "cudnn", "footprint", "transfer", "pitfalls"))
DEVICES = Lesson("devices", "views/devices.py", ("facts", "dataparallel", "pipeline", "checkpoint", "pitfalls"))
LESSONS = (TENSORS, AUTOGRAD, INIT, ACCUMULATION, SPEED, DEVICES)
