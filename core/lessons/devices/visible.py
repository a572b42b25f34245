"""CUDA_VISIBLE_DEVICES renumbers the GPUs a process sees: a child process reports device_count() and current_device().

A child Python process started with CUDA_VISIBLE_DEVICES set reports what it sees: the visible GPUs are
renumbered from 0, so current_device() is 0 and no set_device is needed. Beside it, the renumbering CUDA
documents (visible_order), computed for a server with any number of GPUs, so a CPU-only server can show what a
GPU server would.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, ExperimentError, RunContext
from core.params import Params, bounds, choices

VISIBLE = ("unset", "0", "1", "1,0", "0,1", "none")  # none: CUDA_VISIBLE_DEVICES="" hides every GPU
CHILD_SECONDS = 20.0  # the child imports torch (a second or two) and on a GPU creates a CUDA context


def visible_order(visible: str, physical: int) -> tuple[int, ...]:
    """Return the physical GPU behind cuda:0, cuda:1, ... for CUDA_VISIBLE_DEVICES=`visible` on a server of `physical` GPUs.

    CUDA's documented rule: the listed devices become visible in the listed order, renumbered from 0;
    an invalid index hides itself and every index after it. "unset" shows all, "none" (the empty string) none.
    """
    if visible == "unset":
        return tuple(range(physical))
    out: list[int] = []
    for index in [] if visible == "none" else [int(s) for s in visible.split(",")]:
        if index >= physical or index in out:
            break
        out.append(index)
    return tuple(out)


@dataclass(frozen=True)
class VisibleParams(Params):
    visible: str = field(default="1", metadata=choices(*VISIBLE))  # CUDA_VISIBLE_DEVICES for the child process
    physical: int = field(default=4, metadata=bounds(1, 8))  # GPUs of the server the renumbering table imagines

    def estimate_work(self) -> float:
        return 1e6  # a child process importing torch: seconds of one core, counted by the wall-time limit


@dataclass(frozen=True)
class VisibleResult:
    visible: str
    env_value: str | None  # what the child's CUDA_VISIBLE_DEVICES was (None: unset)
    parent_count: int  # torch.cuda.device_count() in this server's process
    parent_names: tuple[str, ...]
    child_available: bool  # torch.cuda.is_available() in the child
    child_count: int  # torch.cuda.device_count() in the child
    child_current: int | None  # torch.cuda.current_device() in the child; None where it has no GPU
    child_names: tuple[str, ...]  # torch.cuda.get_device_name(i) in the child, i = 0, 1, ...
    child_order: tuple[int, ...]  # visible_order(visible, parent_count): the physical GPU behind each child index
    physical: int
    model_order: tuple[int, ...]  # visible_order(visible, physical): the same rule on the imagined server


CHILD = """
import json, torch
count = torch.cuda.device_count()
print(json.dumps({
    "available": torch.cuda.is_available(),
    "count": count,
    "current": torch.cuda.current_device() if count else None,
    "names": [torch.cuda.get_device_name(i) for i in range(count)],
}))
"""


@functools.cache
def child_report(env_value: str | None) -> dict[str, Any]:
    """Return what a Python child started with CUDA_VISIBLE_DEVICES=env_value (None: unset) reports about CUDA.

    Cached per value for the life of the server: the GPUs a process can see do not change while it runs, and
    each child costs a second or two of a core to import torch (and on a GPU a CUDA context).
    """
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if env_value is not None:
        env["CUDA_VISIBLE_DEVICES"] = env_value
    env["OMP_NUM_THREADS"] = "1"
    # A fixed program and a value from a fixed list: nothing the student typed reaches the child.
    command = [sys.executable, "-c", CHILD]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_SECONDS, check=True)
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def run_visible(p: VisibleParams, ctx: RunContext) -> VisibleResult:
    """Start a Python child with CUDA_VISIBLE_DEVICES set and return what it and this process see."""
    env_value = None if p.visible == "unset" else ("" if p.visible == "none" else p.visible)
    try:
        child = child_report(env_value)
    except subprocess.TimeoutExpired:
        raise ExperimentError("timeout", seconds=CHILD_SECONDS) from None
    except subprocess.CalledProcessError as e:
        last = ((e.stderr or "").strip().splitlines() or ["the child process failed"])[-1]
        raise ExperimentError("runtime", detail=last[:300]) from None
    ctx.check_deadline()
    parent_count = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    return VisibleResult(
        visible=p.visible,
        env_value=env_value,
        parent_count=parent_count,
        parent_names=tuple(torch.cuda.get_device_name(i) for i in range(parent_count)),
        child_available=bool(child["available"]),
        child_count=int(child["count"]),
        child_current=None if child["current"] is None else int(child["current"]),
        child_names=tuple(str(n) for n in child["names"]),
        child_order=visible_order(p.visible, parent_count),
        physical=p.physical,
        model_order=visible_order(p.visible, p.physical),
    )


def visible_context(p: VisibleParams, device_type: str) -> Mapping[str, Any]:
    """Return the values devices_visible.py.j2 reads."""
    env_value = None if p.visible == "unset" else ("" if p.visible == "none" else p.visible)
    return {"env_value": env_value, "env_repr": repr(env_value)}


def visible_shown(r: VisibleResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the child's count, current device and names."""
    out: list[float | str] = [f"child: device_count {r.child_count}, current_device {r.child_current}"]
    out += [f"child cuda:{i} = {name}" for i, name in enumerate(r.child_names)]
    return out


VISIBLE_DEVICES = Experiment(
    "visible",
    VisibleParams,
    run_visible,
    script="devices_visible.py.j2",
    context=visible_context,
    # One child at a time: each imports torch (a core for a second or two) and on a GPU takes a CUDA context.
    exclusive=True,
    shown=visible_shown,
    examples=(VisibleParams(visible="none"),),
)
