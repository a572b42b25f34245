"""Server settings from TORCHLAB_* environment variables, read once at import; importing this sets nothing.

core.runner applies them (thread count, device gate, budgets); lessons and widgets that need a limit
(the CPU threads a run may use, the budgets a slider stops at) read them here without the runner's
start-up side effects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["CONFIG", "Config"]


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
    max_workers: int = 4  # DataLoader worker processes one run may start (the data lesson)
    # Processes computing experiments: -1 ("auto", the variable's default) one per device slot; 0, a
    # Config built in code (tests, benchmarks), in the calling process.
    run_processes: int = 0

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
            max_workers=int(number("TORCHLAB_MAX_WORKERS", base.max_workers, 0, 64)),
            run_processes=-1
            if env.get("TORCHLAB_RUN_PROCESSES", "auto").strip().lower() == "auto"
            else int(number("TORCHLAB_RUN_PROCESSES", base.run_processes, 0, 64)),
        )

    def pick_device(self) -> torch.device:
        """Return cuda when enabled and present, else cpu."""
        if self.device in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")


CONFIG = Config.from_env()
