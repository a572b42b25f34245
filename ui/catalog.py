"""The lessons that exist: slug, page script and tabs. Titles and one-liners live in ui.toml (nav.*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    slug: str
    script: str
    tabs: tuple[str, ...]  # one per experiment group; names are keys of <slug>.tabs in ui.toml


TENSORS = Lesson(
    "tensors", "views/tensors.py",
    ("create", "shape", "layout", "broadcast", "index", "inplace", "numpy", "dtype", "pitfalls"),
)  # fmt: skip
AUTOGRAD = Lesson(
    "autograd", "views/autograd.py",
    ("graph", "backward", "accumulate", "retain", "detach", "nograd", "hooks", "custom", "pitfalls"),
)  # fmt: skip
INIT = Lesson("init", "views/init.py", ("dist", "fans", "signal", "train", "pitfalls"))
ACCUMULATION = Lesson("accumulation", "views/accumulation.py", ("equiv", "norm", "curves", "memory", "savers", "pitfalls"))
SPEED = Lesson("speed", "views/speed.py", ("timing", "scaling", "cudnn", "footprint", "transfer", "pitfalls"))
DEVICES = Lesson("devices", "views/devices.py", ("facts", "dataparallel", "pipeline", "checkpoint", "pitfalls"))
LESSONS = (TENSORS, AUTOGRAD, INIT, ACCUMULATION, SPEED, DEVICES)
