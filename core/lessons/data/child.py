"""DataLoader runs with worker processes, done in an isolated child process and never in the server itself.

Forking the server (many threads: Streamlit's, torch's, the device gate's) could copy a lock held by
another thread into the child and hang it. So the server starts a `forkserver` once: a fresh,
single-threaded interpreter that imports this module (and torch) up front. Each run is a process
forked from it, in a process group of its own; inside that child the DataLoader forks its workers
(safe there: the child runs one thread). The child reports progress and its result as JSON over a
pipe, and when the run ends the whole process group is killed, so no worker outlives its run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from core.experiment import ExperimentError, RunContext
from core.lessons.data.common import spend
from core.measure import one_call_seconds

Job = Callable[[dict[str, Any], Callable[[float], None]], dict[str, Any]]
# How long the child may keep running after the run's deadline before its process group is killed.
GRACE_SECONDS = 1.0


class CostlyDataset(Dataset[torch.Tensor]):
    """n items of `numel` float32 values (item i is filled with i), each costing `seconds` to fetch."""

    def __init__(self, n: int, numel: int, seconds: float, kind: str) -> None:
        self.n, self.numel, self.seconds, self.kind = n, numel, seconds, kind

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        spend(self.seconds, self.kind)
        return torch.full((self.numel,), float(i))


def throughput_job(job: dict[str, Any], progress: Callable[[float], None]) -> dict[str, Any]:
    """Time every epoch of one DataLoader setting; return seconds and samples per epoch, worker pids, torch's warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _throughput(job, progress)
    result["warnings"] = list(dict.fromkeys(str(w.message).split("\n")[0] for w in caught))
    return result


def _throughput(job: dict[str, Any], progress: Callable[[float], None]) -> dict[str, Any]:
    device = torch.device(job["device"])
    dataset = CostlyDataset(job["n"], job["numel"], job["cost_ms"] / 1000, job["cost_kind"])
    workers = job["workers"]
    extra = {"prefetch_factor": job["prefetch_factor"], "persistent_workers": job["persistent_workers"]} if workers else {}
    loader = DataLoader(
        dataset,
        batch_size=job["batch_size"],
        num_workers=workers,
        pin_memory=job["pin_memory"],  # without a GPU torch warns and ignores it: the page shows the warning
        multiprocessing_context="fork" if workers else None,
        **extra,
    )
    pids: list[int] = []
    seconds: list[float] = []
    samples: list[int] = []
    tally = {"pinned": False, "checksum": 0.0}
    total = job["epochs"] * len(loader)

    def one_epoch(epoch: int) -> int:
        """Iterate the loader once as a training loop would; return the samples it yielded."""
        iterator = iter(loader)
        pids.extend(w.pid for w in getattr(iterator, "_workers", []) if w.pid is not None)
        count = 0
        for b, X in enumerate(iterator):
            tally["pinned"] = tally["pinned"] or X.is_pinned()
            X = X.to(device, non_blocking=job["pin_memory"])  # what a training step does first
            tally["checksum"] += float(X[:, 0].sum())
            count += len(X)
            progress((epoch * len(loader) + b + 1) / total)
        return count

    for epoch in range(job["epochs"]):
        seconds.append(one_call_seconds(functools.partial(lambda e: samples.append(one_epoch(e)), epoch), device))
    # Persistent workers end with this process: multiprocessing stops its daemonic children at exit.
    return {"seconds": seconds, "samples": samples, "pids": sorted(set(pids)), **tally}


class SeedDataset(Dataset[tuple[int, int]]):
    """Items that draw their 'augmentation' at random: (worker id, a NumPy draw 0..999).

    `mode` says where the draw comes from: NumPy's global RNG ("numpy_global"), a Generator made in
    __init__ in the main process ("shared_rng": the pitfall), that Generator replaced in each worker by
    worker_init_fn ("worker_init_fn"), or a Generator made in the worker on its first item ("lazy_rng").
    """

    def __init__(self, n: int, mode: str, seed: int) -> None:
        self.n, self.mode = n, mode
        self.rng: np.random.Generator | None = np.random.default_rng(seed) if mode != "lazy_rng" else None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        info = get_worker_info()
        worker = -1 if info is None else info.id
        if self.mode == "numpy_global":
            return worker, int(np.random.randint(0, 1000))
        if self.rng is None:  # lazy_rng: made here, in the worker, from the seed torch gave this worker
            self.rng = np.random.default_rng(torch.initial_seed())
        return worker, int(self.rng.integers(0, 1000))


def reseed_worker(worker_id: int) -> None:
    """worker_init_fn: give this worker's copy of the dataset a Generator of its own, seeded base_seed + worker_id."""
    info = get_worker_info()
    assert info is not None  # called in a worker only
    info.dataset.rng = np.random.default_rng(info.seed)  # type: ignore[attr-defined]


def seeds_job(job: dict[str, Any], progress: Callable[[float], None]) -> dict[str, Any]:
    """Fetch every item once per epoch through the workers; return who drew what, in the order fetched."""
    loader = DataLoader(
        SeedDataset(job["n"], job["mode"], job["seed"]),
        batch_size=None,  # one item at a time: item i is fetched by worker i % num_workers
        num_workers=job["workers"],
        worker_init_fn=reseed_worker if job["mode"] == "worker_init_fn" else None,
        generator=torch.Generator().manual_seed(job["seed"]),  # base_seed of each epoch's workers
        multiprocessing_context="fork",
    )
    rows: list[list[list[int]]] = []
    pids: list[int] = []
    for epoch in range(job["epochs"]):
        iterator = iter(loader)
        pids.extend(w.pid for w in getattr(iterator, "_workers", []) if w.pid is not None)
        rows.append([[int(v) for v in item] for item in iterator])
        progress((epoch + 1) / job["epochs"])
    return {"rows": rows, "pids": sorted(set(pids))}


JOBS: dict[str, Job] = {"throughput": throughput_job, "seeds": seeds_job}


def _child_main(name: str, job_text: str, out: Connection) -> None:
    """Run one job in this fresh child: its own process group, the server's torch threads; send progress and the result."""
    os.setpgid(0, 0)  # the server kills this group when the run ends: the workers go with it
    job = json.loads(job_text)
    torch.set_num_threads(job.pop("threads"))  # the server's own thread count, which the script sets too

    def progress(fraction: float) -> None:
        out.send_bytes(json.dumps({"progress": fraction}).encode())

    try:
        result = JOBS[name](job, progress)
        out.send_bytes(json.dumps({"result": result}).encode())
    except Exception as e:  # the run's failure is reported as text; the server turns it into a message
        out.send_bytes(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
    finally:
        out.close()


def alive(pid: int) -> bool:
    """Return whether process pid exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class _Popen(popen_forkserver.Popen):
    """multiprocessing's forkserver launch, without re-running the server's __main__ in the child.

    The stock launch tells the child to import the parent's main script again (the streamlit or
    bench command, which is slow and may not be import-safe); the job needs only this module, which
    the forkserver already imported. Otherwise this is popen_forkserver.Popen._launch of Python 3.11.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]  # the base's own
        parent_w = os.dup(w)  # the child watches this to learn that the server is gone
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Child(ForkServerProcess):
    """A forkserver process launched by _Popen."""

    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


def run_isolated(name: str, job: dict[str, Any], ctx: RunContext, part: tuple[int, int] = (0, 1)) -> tuple[dict[str, Any], int]:
    """Run JOBS[name](job) in a child forked from the forkserver; return (its result, workers still alive after it).

    Progress goes to ctx.progress as part k of `parts` (part = (k, parts)); past the deadline the
    child's whole process group is killed and ExperimentError('timeout') raised. A job that raised
    becomes ExperimentError('runtime').
    """
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload([__name__])  # the forkserver imports torch once; every run forks from it
    receive, send = mp.Pipe(duplex=False)
    job = {**job, "threads": torch.get_num_threads()}
    child = _Child(target=_child_main, args=(name, json.dumps(job), send), daemon=False)
    child.start()
    send.close()
    message: dict[str, Any] = {}
    try:
        while "result" not in message and "error" not in message:
            if time.monotonic() > ctx.deadline + GRACE_SECONDS:
                raise ExperimentError("timeout", seconds=ctx.seconds)
            if receive.poll(0.05):
                try:
                    message = json.loads(receive.recv_bytes())
                except EOFError:
                    message = {"error": f"the child process ended (exit code {child.exitcode})"}
                if "progress" in message:
                    ctx.progress(round(1000 * (part[0] + message["progress"])), 1000 * part[1])
            elif not child.is_alive() and not receive.poll():
                message = {"error": f"the child process ended (exit code {child.exitcode})"}
    finally:
        if "result" in message or "error" in message:
            child.join(timeout=5)  # it is closing its pipe and exiting; on a timeout it is killed at once below
        pids = message.get("result", {}).get("pids", [])
        left = sum(alive(pid) for pid in pids)
        _kill_group(child)
        receive.close()
    if "error" in message:
        raise ExperimentError("runtime", detail=str(message["error"])[:300])
    return message["result"], left


def _kill_group(child: Any) -> None:
    """Kill the child's process group (it and any worker it left) and reap the child."""
    if child.pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group: all ended
        os.killpg(child.pid, signal.SIGKILL)
    child.join(timeout=5)
