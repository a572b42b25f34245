"""Run experiments safely for a whole class: budget, device, seeded RNG, device gate, deadline, errors.

Every page calls `execute(run_fn, params)`; this is the one place where classroom safety lives.
Configuration comes from environment variables, read once (core.config); this module applies it. The process-wide
state lives here too: the device gate (shared with every process of the host through files, see
core.gate) and the class-wide result cache (bounded in bytes, see core.cache).
"""

from __future__ import annotations

import functools
import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import torch

from core.cache import ResultCache
from core.config import CONFIG, Config
from core.experiment import ExperimentError, RunContext, first_line
from core.gate import DeviceGate, OwnerBusy, default_folder
from core.params import InvalidParams, Params
from core.workers import Task, WorkerPool, poolable

__all__ = ["CONFIG", "COUNTERS", "DEVICE", "GATE", "RESULTS", "Config", "Counters", "ExperimentError", "RunContext", "execute"]

R = TypeVar("R")
P = TypeVar("P", bound=Params)
Q = ParamSpec("Q")

torch.set_num_threads(CONFIG.threads)


def available_cpus() -> int:
    """Return the cores this process may use: its CPU affinity, capped by a cgroup quota (a container's CPU limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _default_slots(device: torch.device) -> int:
    if device.type == "cuda":
        return CONFIG.gpu_slots
    # Each CPU run uses CONFIG.threads threads; more runs than cores only thrash.
    return max(1, available_cpus() // CONFIG.threads)


# About what 10**9 units of Params.estimate_work take on one core (bench/work.py measures 0.05-0.4 s
# across experiments): the device gate admits shared runs by arrival plus this estimate.
SECONDS_PER_GWORK = 0.1

DEVICE = CONFIG.pick_device()
GATE = DeviceGate(_default_slots(DEVICE), Path(CONFIG.lock_dir or default_folder()) / DEVICE.type)
RESULTS = ResultCache(CONFIG.cache_mb * 2**20)


class Counters:
    """This process's counts for the teacher's dashboard: runs, cache hits and misses, queue waits, errors by kind.

    Thread-safe; `snapshot()` is what a replica's heartbeat writes to the classroom database. Rates
    ("in the last minute") come from timestamps kept for `window` seconds, recent errors for `error_window`.
    """

    def __init__(self, window: float = 60.0, error_window: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.error_window = error_window
        self.clock = clock
        self._lock = threading.Lock()
        self.runs = self.hits = self.misses = self.waits = 0
        self.errors: dict[str, int] = {}
        self._recent_runs: deque[float] = deque()
        self._recent_waits: deque[tuple[float, float]] = deque()  # (ended at, seconds waited)
        self._recent_errors: deque[tuple[float, str]] = deque()
        self._waiting: dict[int, float] = {}  # wait id -> started at

    def count_run(self) -> None:
        """Count one run that got the device."""
        with self._lock:
            self.runs += 1
            self._recent_runs.append(self.clock())

    def count_cache(self, hit: bool) -> None:
        """Count one lookup of the class-wide result cache."""
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def wait_started(self, wait_id: int) -> None:
        """Note that a run began waiting for the device gate (repeated calls for one wait count once)."""
        with self._lock:
            self._waiting.setdefault(wait_id, self.clock())

    def wait_ended(self, wait_id: int) -> None:
        """Note that a run stopped waiting (it got the device, or gave up); nothing when it never waited."""
        with self._lock:
            started = self._waiting.pop(wait_id, None)
            if started is not None:
                now = self.clock()
                self.waits += 1
                self._recent_waits.append((now, now - started))

    def count_error(self, kind: str) -> None:
        """Count one refused or failed run by its message key (budget, timeout, oom, runtime...)."""
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self._recent_errors.append((self.clock(), kind))

    def snapshot(self) -> dict[str, Any]:
        """Return the counts as plain JSON data, with the last minute's runs and longest wait, and recent errors."""
        with self._lock:
            now = self.clock()
            while self._recent_runs and self._recent_runs[0] < now - self.window:
                self._recent_runs.popleft()
            while self._recent_waits and self._recent_waits[0][0] < now - self.window:
                self._recent_waits.popleft()
            while self._recent_errors and self._recent_errors[0][0] < now - self.error_window:
                self._recent_errors.popleft()
            longest = max([w for _, w in self._recent_waits] + [now - t for t in self._waiting.values()], default=0.0)
            recent: dict[str, int] = {}
            for _, kind in self._recent_errors:
                recent[kind] = recent.get(kind, 0) + 1
            return {
                "runs": self.runs,
                "runs_last_minute": len(self._recent_runs),
                "cache_hits": self.hits,
                "cache_misses": self.misses,
                "waits": self.waits,
                "queue_now": len(self._waiting),
                "longest_wait_s": round(longest, 3),
                "errors": dict(self.errors),
                "recent_errors": recent,
            }


COUNTERS = Counters()


def memory_in_use(device: torch.device | None = None) -> tuple[str, int]:
    """Return (what, bytes): the CUDA memory torch holds on a GPU server, else this process's resident memory."""
    device = device or DEVICE
    if device.type == "cuda":
        return "cuda", int(torch.cuda.memory_allocated(device))
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
        return "rss", pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return "rss", 0


def _counting_errors(fn: Callable[Q, R]) -> Callable[Q, R]:
    """Return fn, counting every refusal and failure it raises by kind in COUNTERS (the teacher's dashboard)."""

    @functools.wraps(fn)
    def counted(*args: Q.args, **kwargs: Q.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ExperimentError as e:
            COUNTERS.count_error(e.key)
            raise
        except InvalidParams:
            COUNTERS.count_error("invalid_params")
            raise

    return counted


@_counting_errors
def execute(
    run_fn: Callable[[P, RunContext], R],
    params: P,
    *,
    exclusive: bool = False,
    on_wait: Callable[[int], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    owner: str | None = None,
    stop: threading.Event | None = None,
    device: torch.device | None = None,
    gate: DeviceGate | None = None,
    config: Config | None = None,
) -> R:
    """Validate params, check the memory budget, then run run_fn on the device under the gate.

    The run computes in a worker process (core.workers) when config.run_processes asks for them and
    run_fn is a module-level function; otherwise in the calling thread. Either way it behaves alike.

    `on_wait(position)` hears the place in the queue; `on_progress(fraction)` hears what the run
    reports through ctx.progress. `owner` (a student's session) may have one exclusive run queued
    at a time: a second is refused with ExperimentError('one_queued'). `stop`, once set, tells a
    stoppable run (ctx.stop_requested) to return what it has computed so far. Raises InvalidParams for bad
    params, ExperimentError for a refused or failed run. Any RuntimeError or out-of-memory error from torch becomes
    ExperimentError, the memory is released, and the next run works. Refusals and failures are counted.
    """
    config = config or CONFIG
    device = device or DEVICE
    gate = gate or GATE
    params.validate()
    max_bytes = config.max_mb * 2**20
    needed = params.estimate_bytes()
    if needed > max_bytes:
        raise ExperimentError("budget", needed_mb=round(needed / 2**20, 1), max_mb=config.max_mb)
    work = params.estimate_work() / 1e9
    if work > config.max_gwork:
        raise ExperimentError("work_budget", needed=float(f"{work:.3g}"), most=config.max_gwork)
    seed = int(getattr(params, "seed", 0))
    wait_id = id(object())

    def waiting(position: int) -> None:
        COUNTERS.wait_started(wait_id)
        if on_wait is not None:
            on_wait(position)

    try:
        with gate.hold(exclusive=exclusive, on_wait=waiting, owner=owner, seconds=work * SECONDS_PER_GWORK):
            COUNTERS.wait_ended(wait_id)
            COUNTERS.count_run()
            pool = _pool(config, gate)
            if pool is not None and poolable(run_fn):
                task = Task(run_fn.__module__, run_fn.__qualname__, params, seed, device.type, max_bytes, config.run_seconds)
                return cast(R, pool.run(task, on_progress, stop))
            generator = torch.Generator(device=device).manual_seed(seed)
            deadline = time.monotonic() + config.run_seconds
            ctx = RunContext(device, generator, deadline, max_bytes, on_progress, config.run_seconds, stop)
            return run_guarded(run_fn, params, ctx)
    except OwnerBusy:
        raise ExperimentError("one_queued") from None
    finally:
        COUNTERS.wait_ended(wait_id)  # a run that gave up waiting (deadline, refusal) stops counting as queued


_POOLS: dict[int, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(config: Config, gate: DeviceGate) -> WorkerPool | None:
    """Return the worker processes that compute runs (config.run_processes), or None to run in this thread."""
    size = gate.slots if config.run_processes < 0 else config.run_processes
    if size <= 0:
        return None
    with _POOLS_LOCK:
        if size not in _POOLS:
            _POOLS[size] = WorkerPool(size, config.threads)
            _POOLS[size].start()
        return _POOLS[size]


def close_pools() -> None:
    """Stop the worker processes of every pool (they start again when a run needs them)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def run_guarded(run_fn: Callable[[P, RunContext], R], params: P, ctx: RunContext) -> R:
    """Run; turn torch's RuntimeError and out-of-memory errors into ExperimentError after freeing memory."""
    failure: ExperimentError | None = None
    try:
        return run_fn(params, ctx)
    except (ExperimentError, InvalidParams):
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as e:
        failure = ExperimentError("oom", detail=first_line(e, 300))
    except RuntimeError as e:
        failure = ExperimentError("runtime", detail=first_line(e, 300))
    finally:
        # The exception (and the frames holding tensors) is gone here, so memory can go back.
        if failure is not None:
            gc.collect()
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
    assert failure is not None
    raise failure


def device_facts(device: torch.device | None = None) -> dict[str, str]:
    """Return what the server computes on: device kind and name, memory, threads."""
    device = device or DEVICE
    facts = {"kind": device.type, "threads": str(torch.get_num_threads()), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts["name"] = props.name
        facts["memory_gb"] = f"{props.total_memory / 2**30:.1f}"
        facts["capability"] = f"{props.major}.{props.minor}"
    else:
        facts["name"] = cpu_model()
        facts["cores"] = str(os.cpu_count() or 1)
    return facts


@functools.cache
def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or what platform knows (read once: shown on every rerun)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if CONFIG.run_processes != 0:
    _pool(CONFIG, GATE)  # the server's workers start with it, in the background
