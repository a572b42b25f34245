"""Honest measurements shared by the lessons that chart memory and time.

- `saved_activation_bytes(fn, exclude)`: the bytes autograd keeps for backward while fn runs,
  counted with saved-tensor hooks (each storage once; parameters excluded: they exist anyway).
  This is what a CPU can tell us about activation memory.
- `cuda_peak_bytes(fn, device)`: the CUDA caching allocator's peak during fn. The statistics are
  per device, not per caller, so call it only inside an exclusive run (`execute(exclusive=True)`).
- `time_call(fn, device, min_run_time)`: torch.utils.benchmark's blocked_autorange, which
  synchronises CUDA around its blocks; the median and the spread of the per-call times.
- `one_call_seconds(fn, device)`: the wall time of exactly one call, synchronised before and after
  on CUDA, for when each call is the measurement (a cold first call, cuDNN autotuning per shape).

Everything returns plain Python numbers, never tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils import benchmark


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    """Return (address, bytes) of t's storage: two views of one storage give the same key."""
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def saved_activation_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Return the bytes of the distinct storages autograd saves for backward while fn() runs.

    Storages of `exclude` (pass the model's parameters) are not counted: saving a weight for
    backward keeps a reference, not a copy. Storages saved twice are counted once. Pass the
    forward pass only: a backward inside fn frees storages whose addresses may then be reused.
    """
    skip = {_storage_key(t) for t in exclude}
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            key = _storage_key(t)
            if key not in skip:
                seen[key] = key[1]
        # Detached: a saved output that referred to its own grad_fn would form a cycle that keeps
        # the whole graph alive when no backward ever runs (the garbage collector cannot free it).
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> tuple[int, int]:
    """Return (bytes allocated before fn, the allocator's peak during fn) on a CUDA device."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return before, torch.cuda.max_memory_allocated(device)


@dataclass(frozen=True)
class Timing:
    """Per-call times of one function, measured in blocks by torch.utils.benchmark."""

    median: float  # seconds per call
    iqr: float  # interquartile range of the block means, seconds
    times: tuple[float, ...]  # seconds per call, one per measured block
    calls: int  # calls in all

    @property
    def spread(self) -> tuple[float, float]:
        """Return the 25th and 75th percentiles of the per-block times, seconds."""
        q25, q75 = np.percentile(np.asarray(self.times), [25, 75])
        return float(q25), float(q75)


def time_call(fn: Callable[[], object], device: torch.device, min_run_time: float = 0.2) -> Timing:
    """Return fn's time per call by torch.utils.benchmark.Timer.blocked_autorange (CUDA is synchronised)."""
    fn()  # warm up: the first call pays for allocation, autotuning and lazy initialisation
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(float(m.median), float(m.iqr), tuple(float(t) for t in m.times), len(m.times) * m.number_per_run)


def one_call_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Return the seconds one call of fn takes, with CUDA synchronised before and after (a cold call counts as it is)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
