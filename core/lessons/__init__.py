"""LESSONS: the one registry of lessons that the app's navigation, the tests, the i18n checks and the benchmarks read.

Each lesson is a package `core.lessons.<slug>` exporting TABS (the page's tabs, in order),
EXPERIMENTS and PREDICTIONS. Importing one lesson package does not import the others: LESSONS is
built on first use.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.experiment import Experiment, Prediction

# In the order the sidebar lists them. Adding a lesson: its package, its page, its slug here, its prose and strings.
SLUGS = ("tensors", "autograd", "modules", "init", "training", "accumulation", "speed", "data", "devices")


@dataclass(frozen=True)
class Lesson:
    """One lesson: its slug (URL path, strings table, prose file), tabs, experiments and predictions."""

    slug: str
    tabs: tuple[str, ...]  # the page's tabs; names are keys of <slug>.tabs in lessons/<lang>/<slug>.toml
    experiments: tuple[Experiment[Any, Any], ...]
    predictions: tuple[Prediction[Any, Any], ...]

    @property
    def page(self) -> str:
        """Return the lesson's page script, relative to the project root."""
        return f"pages/{self.slug}.py"


def lesson(slug: str) -> Lesson:
    """Return the lesson whose package is core.lessons.<slug>."""
    package = importlib.import_module(f"core.lessons.{slug}")
    return Lesson(slug, tuple(package.TABS), tuple(package.EXPERIMENTS), tuple(package.PREDICTIONS))


@functools.cache
def _all() -> tuple[Lesson, ...]:
    return tuple(lesson(slug) for slug in SLUGS)


def __getattr__(name: str) -> Any:
    if name == "LESSONS":
        return _all()
    raise AttributeError(name)


if TYPE_CHECKING:
    LESSONS: tuple[Lesson, ...]
