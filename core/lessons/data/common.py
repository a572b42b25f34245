"""What the data lesson's experiments share: the loader's CPU generator, the per-item cost, the worker cap."""

from __future__ import annotations

import time

import torch

from core.experiment import RunContext

# Work units (core.runner: 1e10 of them are about one second of a core) per second of simulated item cost.
WORK_PER_SECOND = 1e10
COST_KINDS = ("sleep", "compute")  # waiting for a disk or network vs. using the CPU (decoding, augmenting)


def worker_cap() -> int:
    """Return the most DataLoader worker processes one run may start on this server (TORCHLAB_MAX_WORKERS)."""
    # Imported here: the isolated child process imports this module and must not set up the runner's gate.
    from core import runner

    return runner.CONFIG.max_workers


def loader_generator(ctx: RunContext) -> torch.Generator:
    """Return a CPU generator seeded like ctx.generator: a DataLoader and its samplers draw on the CPU only."""
    return torch.Generator().manual_seed(ctx.generator.initial_seed())


def spend(seconds: float, kind: str) -> None:
    """Spend `seconds` as one item's cost: asleep (I/O: the core is free) or busy on the CPU (decoding)."""
    if seconds <= 0:
        return
    if kind == "sleep":
        time.sleep(seconds)
        return
    # Busy until this thread has used `seconds` of CPU (not of wall time): when more workers than cores
    # compete, each item takes longer, as real decoding would.
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
