"""Run experiments safely for a whole class: budget, device, seeded RNG, device gate, deadline, errors.

Every page calls `execute(run_fn, params)`; this is the one place where classroom safety lives.
Configuration comes from environment variables, read once (see Config.from_env). The process-wide
state lives here too: the device gate (shared with every process of the host through files, see
core.gate) and the class-wide result cache (bounded in bytes, see core.cache).
"""

from __future__ import annotations

import functools
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from core.cache import ResultCache
from core.experiment import ExperimentError, RunContext, first_line
from core.gate import DeviceGate, OwnerBusy, default_folder
from core.params import InvalidParams, Params

__all__ = ["CONFIG", "DEVICE", "GATE", "RESULTS", "Config", "ExperimentError", "RunContext", "execute"]

R = TypeVar("R")
P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class Config:
    """Server settings, from TORCHLAB_* environment variables."""

    device: str = "auto"  # auto | cpu | cuda
    max_mb: int = 512  # memory one experiment may allocate
    max_gwork: float = 150.0  # work one experiment may do, in 10**9 multiply-adds (Params.estimate_work): ~15 s of a core
    gpu_slots: int = 4  # experiments admitted on the GPU at once
    threads: int = 1  # torch intra-op threads per process
    run_seconds: float = 20.0  # wall-time limit of one run
    cache_mb: int = 256  # the class-wide result cache's size
    lock_dir: str = ""  # the device gate's folder; processes sharing a device share it ("" = a folder in /tmp)
    rate: float = 2.0  # actions per second a session may sustain
    burst: int = 12  # actions a session may take at once

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        """Read the TORCHLAB_* variables (README, "Configuration"); bad values keep defaults, numbers are clamped."""
        env = dict(os.environ) if env is None else env
        base = cls()

        def number(name: str, default: float, lo: float, hi: float) -> float:
            try:
                value = float(env.get(name, default))
            except ValueError:
                return default
            return min(max(value, lo), hi)

        device = env.get("TORCHLAB_DEVICE", base.device).strip().lower()
        return cls(
            device=device if device in ("auto", "cpu", "cuda") else base.device,
            max_mb=int(number("TORCHLAB_MAX_MB", base.max_mb, 1, 1 << 20)),
            max_gwork=number("TORCHLAB_MAX_GWORK", base.max_gwork, 0.001, 1e6),
            gpu_slots=int(number("TORCHLAB_GPU_SLOTS", base.gpu_slots, 1, 64)),
            threads=int(number("TORCHLAB_THREADS", base.threads, 1, 256)),
            run_seconds=number("TORCHLAB_RUN_SECONDS", base.run_seconds, 0.1, 3600),
            cache_mb=int(number("TORCHLAB_CACHE_MB", base.cache_mb, 1, 1 << 20)),
            lock_dir=env.get("TORCHLAB_LOCK_DIR", base.lock_dir).strip(),
            rate=number("TORCHLAB_RATE", base.rate, 0.1, 1000),
            burst=int(number("TORCHLAB_BURST", base.burst, 1, 10000)),
        )

    def pick_device(self) -> torch.device:
        """Return cuda when enabled and present, else cpu."""
        if self.device in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")


CONFIG = Config.from_env()
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


DEVICE = CONFIG.pick_device()
GATE = DeviceGate(_default_slots(DEVICE), Path(CONFIG.lock_dir or default_folder()) / DEVICE.type)
RESULTS = ResultCache(CONFIG.cache_mb * 2**20)


def execute(
    run_fn: Callable[[P, RunContext], R],
    params: P,
    *,
    exclusive: bool = False,
    on_wait: Callable[[int], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    owner: str | None = None,
    device: torch.device | None = None,
    gate: DeviceGate | None = None,
    config: Config | None = None,
) -> R:
    """Validate params, check the memory budget, then run run_fn on the device under the gate.

    `on_wait(position)` hears the place in the queue; `on_progress(fraction)` hears what the run
    reports through ctx.progress. `owner` (a student's session) may have one exclusive run queued
    at a time: a second is refused with ExperimentError('one_queued'). Raises InvalidParams for bad
    params, ExperimentError for a refused or failed run. Any RuntimeError or out-of-memory error from torch becomes
    ExperimentError, the memory is released, and the next run works.
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
    try:
        with gate.hold(exclusive=exclusive, on_wait=on_wait, owner=owner):
            generator = torch.Generator(device=device).manual_seed(seed)
            deadline = time.monotonic() + config.run_seconds
            ctx = RunContext(device, generator, deadline, max_bytes, on_progress, config.run_seconds)
            return _run_guarded(run_fn, params, ctx)
    except OwnerBusy:
        raise ExperimentError("one_queued") from None


def _run_guarded(run_fn: Callable[[P, RunContext], R], params: P, ctx: RunContext) -> R:
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
