"""Run generated Python scripts as real, separate processes, quickly.

The tests check that every code snippet the app shows runs on its own and prints what the experiment
found. Each script needs a process of its own (its own exit code, stdout, stderr and module globals),
but starting a fresh interpreter per script pays torch's import (seconds) every time. So a driver
interpreter imports torch once and then forks one child per script: each child is a real process that
inherits the already imported modules, runs the script as __main__ and writes what it printed and its
exit code to files next to it. The scripts are split over a few such drivers running side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Run as `python -c DRIVER [--warm-up] PATH...`: each PATH gets PATH.out, PATH.err and PATH.rc.
DRIVER = """
import contextlib, io, os, runpy, sys, traceback
import numpy, torch
paths = sys.argv[1:]
if paths[:1] == ["--warm-up"]:  # backward(gradient) first imports half a second of modules: once, here
    paths = paths[1:]
    with contextlib.redirect_stdout(io.StringIO()):
        t = torch.ones(2, requires_grad=True)
        print(t, (t * t).backward(torch.ones_like(t)), t.grad)
for path in paths:
    pid = os.fork()
    if pid == 0:
        for fd, suffix in ((1, ".out"), (2, ".err")):
            os.dup2(os.open(path + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        code = 0
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(path + ".rc", "w") as f:
        f.write(str(os.waitstatus_to_exitcode(status)))
"""


@dataclass(frozen=True)
class Ran:
    """What one script did: its exit code and everything it printed."""

    rc: int
    out: str
    err: str


def script_env() -> dict[str, str]:
    """The environment the scripts run in: without PYTHONPATH, so that they cannot lean on the project,
    and with one thread, as the runner uses, so that float sums add up in the same order."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}


def run_scripts(
    sources: dict[str, str], folder: Path, workers: int = 2, timeout: float = 120, warm_up: bool = False
) -> dict[str, Ran]:
    """Write each source to its own file in folder, run them all, and return name -> what it did.

    The files are numbered (script_0.py, ...) rather than named after the keys, which may be any text.
    Run folder is the working directory; pick one without the project in it, so the scripts must stand
    alone. The scripts are split over `workers` forking drivers side by side, each given `timeout`
    seconds for its share; warm_up runs one backward pass in each driver before it forks.
    """
    paths = {name: folder / f"script_{i}.py" for i, name in enumerate(sources)}
    for name, path in paths.items():
        path.write_text(sources[name], encoding="utf-8")
    options = ["--warm-up"] if warm_up else []
    batches = [batch for k in range(workers) if (batch := [str(p) for p in list(paths.values())[k::workers]])]

    def run_batch(batch: list[str]) -> None:
        subprocess.run(
            [sys.executable, "-c", DRIVER, *options, *batch], cwd=folder, env=script_env(), timeout=timeout, check=True
        )

    with ThreadPoolExecutor(max_workers=max(1, len(batches))) as pool:
        list(pool.map(run_batch, batches))

    def read(path: Path, suffix: str) -> str:
        return Path(f"{path}{suffix}").read_text(encoding="utf-8")

    return {name: Ran(int(read(p, ".rc")), read(p, ".out"), read(p, ".err")) for name, p in paths.items()}


NUMBER = r"-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"  # a number as a script prints it


def after(out: str, prefix: str) -> str:
    """Return the rest of the first printed line that starts with prefix."""
    for line in out.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise AssertionError(f"no line starts with {prefix!r} in {out!r}")


def numbers(text: str) -> list[float]:
    """Return every number in text, in order."""
    return [float(v) for v in re.findall(NUMBER, text)]
