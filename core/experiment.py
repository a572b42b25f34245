"""The experiment contract: RunContext, ExperimentError, Experiment and Prediction. Importing this has no side effects.

A lesson's experiment module declares its Params, its Result (plain CPU data), `run(p, ctx)` and
one `Experiment`; its predict-then-run questions are `Prediction`s whose answer is computed from
the experiment's own Result. `core.runner.execute` runs them; the UI, the tests and the benchmarks
all read the same declarations through `core.lessons.LESSONS`.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import jinja2
import torch

from core.params import Params

P = TypeVar("P", bound=Params)
R = TypeVar("R")


class ExperimentError(Exception):
    """A run that failed in a way the student should be told about; `key` is a message key."""

    def __init__(self, key: str, **info: Any) -> None:
        self.key = key
        self.info: dict[str, Any] = info
        super().__init__(f"{key}: {info}")


@dataclass
class RunContext:
    """What a run function gets besides its params: device, seeded generator, deadline, budget, progress."""

    device: torch.device
    generator: torch.Generator
    deadline: float  # time.monotonic() after which the run stops
    max_bytes: int
    on_progress: Callable[[float], None] | None = None
    seconds: float = 0.0  # the wall-time limit the deadline came from (said in the timeout message)
    stop: threading.Event | None = None  # set when the student presses Stop (only for `stoppable` experiments)

    def progress(self, done: int, total: int) -> None:
        """Report that `done` of `total` parts of the run are finished (the page draws a bar)."""
        if self.on_progress is not None and total > 0:
            self.on_progress(min(1.0, done / total))

    def stop_requested(self) -> bool:
        """Return True once the student asked the run to stop: a stoppable run then returns what it has so far."""
        return self.stop is not None and self.stop.is_set()

    def check_deadline(self) -> None:
        """Raise ExperimentError('timeout') once the run's wall-time limit has passed (call in loops)."""
        if time.monotonic() > self.deadline:
            raise ExperimentError("timeout", seconds=self.seconds)


@dataclass(frozen=True)
class Experiment(Generic[P, R]):
    """One experiment: its name (URL prefix and strings table), Params class, run function and script.

    `script` is a Jinja2 template in the `scripts/` folder beside the module that defines `run`;
    `context(p, device_type)` builds the values it reads. `exclusive` runs time things and run
    alone on the device. `sweep` names a tuple field the page splits into one cached run per
    element (a progress bar moves as each finishes). `shown(result)` lists what the page shows
    that the script must print for the same params: numbers (found among the script's printed
    numbers, to 1e-6 relative) and text (found verbatim). `examples` are notable settings besides
    the defaults: the contract tests run each (determinism, scripts, shown numbers). A `stoppable`
    run checks `ctx.stop_requested()` between its steps and then returns the steps it has taken:
    the page offers a Stop button while it runs and shows such a partial result without caching it.
    """

    name: str
    params: type[P]
    run: Callable[[P, Any], R]
    script: str
    context: Callable[[P, str], Mapping[str, Any]]
    exclusive: bool = False
    sweep: str | None = None
    shown: Callable[[R], Sequence[float | str]] | None = field(default=None, compare=False)
    examples: tuple[P, ...] = ()
    stoppable: bool = False

    @property
    def filename(self) -> str:
        """Return the name the script downloads as (`signal_flow.py` for `signal_flow.py.j2`)."""
        return self.script.removesuffix(".j2")

    def write_script(self, p: P, device_type: str = "cpu") -> str:
        """Return the standalone script that reproduces this experiment for p on a device of this type.

        Besides the experiment's own context, every template may read `threads`: the CPU threads
        this process runs experiments with (a timing script sets the same, so its numbers compare).
        """
        context = {"threads": torch.get_num_threads(), **self.context(p, device_type)}
        return _template(self.run.__module__, self.script).render(**context)


@dataclass(frozen=True)
class Prediction(Generic[P, R]):
    """A predict-then-run question: the experiment run with `params` answers it, through `answer(result)`.

    `options` and the answer are option keys; the page shows `t("<experiment>.<option>")` when that
    string exists, else the option itself (a number, a shape). `question` and `why` are string keys.
    """

    name: str
    experiment: Experiment[P, R]
    params: P
    options: tuple[str, ...]
    answer: Callable[[Any], str] = field(compare=False)  # gets the Result, or the list of them for a sweep
    question: str = ""
    why: str = ""


@functools.cache
def _template(module: str, name: str) -> jinja2.Template:
    """Return the compiled template `name` from the scripts/ folder of module's package (compiled once)."""
    package = module.rpartition(".")[0]
    folder = Path(importlib.import_module(package).__file__ or "").parent / "scripts"
    return _environment(str(folder)).get_template(name)


@functools.cache
def _environment(folder: str) -> jinja2.Environment:
    """Return the Jinja2 environment of one scripts folder: undefined names fail, Python's own blank lines kept."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Python source, not HTML
    )


def to_numpy(t: torch.Tensor, float64: bool = False) -> Any:
    """Return a CPU numpy copy of t, detached (as float64 when asked), safe to keep after the tensor is gone."""
    t = t.detach()
    return (t.to("cpu", torch.float64) if float64 else t.cpu()).numpy().copy()


def first_line(error: BaseException, limit: int = 400) -> str:
    """Return an error's message, first line and at most `limit` characters, as a student would read it."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__
