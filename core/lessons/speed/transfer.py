"""Copies: torch.tensor (copies) vs torch.as_tensor / torch.from_numpy (share), and host <-> device copies:
pageable vs pinned, blocking vs non_blocking.

The page sweeps `sizes` one size at a time (`sweep="sizes"`); each part has the structure of the whole.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.speed.common import CPU, check_increasing, device_name
from core.measure import one_call_seconds, time_call
from core.params import InvalidParams, Params, bounds, shape_spec

TRANSFER_SIZES = tuple(4096 * 4**k for k in range(8))  # 4 KB .. 64 MB
NUMPY_METHODS = ("tensor", "as_tensor", "from_numpy")
GPU_METHODS = ("h2d_pageable", "h2d_pinned", "h2d_pinned_non_blocking", "d2h")
TRANSFER_MAX_TOTAL = 2**30  # bytes over all sizes: each is copied several times per method
RETURN_CALLS = 5  # non_blocking calls timed on the host clock per size
# Bytes touched per byte of a size, at most: the array (1); torch.tensor's copy checked (1) and timed (time_call's
# fewest calls, 3); on CUDA pinning (1), the device copy (1), 3 per copy method (12), the .to calls timed on the
# host clock (2 * RETURN_CALLS).
TOUCHES_PER_BYTE = 1 + 1 + 3 + 1 + 1 + 3 * len(GPU_METHODS) + 2 * RETURN_CALLS


@dataclass(frozen=True)
class TransferParams(Params):
    # bytes, one copy per size
    sizes: tuple[int, ...] = field(default=TRANSFER_SIZES, metadata=shape_spec(max_dims=12, lo=1024, hi=2**28, sep=","))
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.1, 0.01))  # benchmark seconds per size and method

    def validate(self) -> None:
        super().validate()
        check_increasing("sizes", self.sizes)
        if sum(self.sizes) > TRANSFER_MAX_TOTAL:
            raise InvalidParams("sizes", "too_much_data", max_mb=TRANSFER_MAX_TOTAL // 2**20)

    def estimate_bytes(self) -> int:
        # the array, a torch.tensor copy, a pinned copy, the device copy and a copy back
        return 5 * max(self.sizes)

    def estimate_work(self) -> float:
        """Return the bytes copied at most, one element operation each (benchmark's blocks are bounded in seconds)."""
        return float(TOUCHES_PER_BYTE * sum(self.sizes))


@dataclass(frozen=True)
class TransferResult:
    sizes: np.ndarray  # (k,) int64 bytes (uint8 arrays: one byte per element)
    numpy_methods: tuple[str, ...]  # NUMPY_METHODS: axis 0 below
    numpy_seconds: np.ndarray  # (3, k) median seconds per call (torch.utils.benchmark)
    shares_memory: np.ndarray  # (3, k) bool: np.shares_memory(array, result.numpy())
    same_data_ptr: np.ndarray  # (3, k) bool: result.data_ptr() == array.ctypes.data
    tensor_gbps: np.ndarray  # (k,) GB/s (1e9 bytes) of torch.tensor, the one that copies: size / seconds
    device_name: str | None  # the GPU's name; None without CUDA
    gpu_methods: tuple[str, ...]  # GPU_METHODS: axis 0 below
    gpu_seconds: np.ndarray | None  # (4, k) median seconds per copy, synchronised around benchmark blocks
    gpu_gbps: np.ndarray | None  # (4, k) size / gpu_seconds / 1e9
    pin_seconds: np.ndarray | None  # (k,) one tensor.pin_memory(): pinning has a price, paid once per buffer
    return_seconds: np.ndarray | None  # (2, k) host seconds until .to(cuda) returns: (blocking, non_blocking), pinned
    gpu_only: tuple[str, ...]  # ("host_device",) without CUDA


def run(p: TransferParams, ctx: RunContext) -> TransferResult:
    """Time numpy -> torch conversions (and check which share memory), and host <-> device copies on CUDA."""
    device, cuda, k = ctx.device, ctx.device.type == "cuda", len(p.sizes)
    numpy_seconds, shares, same_ptr = np.zeros((3, k)), np.zeros((3, k), bool), np.zeros((3, k), bool)
    gpu_seconds = np.zeros((len(GPU_METHODS), k)) if cuda else None
    pin_seconds = np.zeros(k) if cuda else None
    return_seconds = np.zeros((2, k)) if cuda else None
    for i, size in enumerate(p.sizes):
        ctx.check_deadline()
        array = np.resize(np.arange(256, dtype=np.uint8), size)  # no randomness needed: bytes are bytes
        makers = [partial(torch.tensor, array), partial(torch.as_tensor, array), partial(torch.from_numpy, array)]
        for m, make in enumerate(makers):
            t = make()
            shares[m, i] = np.shares_memory(array, t.numpy())
            same_ptr[m, i] = t.data_ptr() == array.ctypes.data
            del t
            numpy_seconds[m, i] = time_call(make, CPU, p.min_run_time).median
        if gpu_seconds is not None and pin_seconds is not None and return_seconds is not None:
            gpu_seconds[:, i], pin_seconds[i], return_seconds[:, i] = _time_copies(device, array, p.min_run_time, ctx)
    sizes = np.array(p.sizes, dtype=np.int64)
    return TransferResult(
        sizes=sizes,
        numpy_methods=NUMPY_METHODS,
        numpy_seconds=numpy_seconds,
        shares_memory=shares,
        same_data_ptr=same_ptr,
        tensor_gbps=sizes / numpy_seconds[0] / 1e9,
        device_name=device_name(device) if cuda else None,
        gpu_methods=GPU_METHODS,
        gpu_seconds=gpu_seconds,
        gpu_gbps=None if gpu_seconds is None else sizes / gpu_seconds / 1e9,
        pin_seconds=pin_seconds,
        return_seconds=return_seconds,
        gpu_only=() if cuda else ("host_device",),
    )


def _time_copies(
    device: torch.device, array: np.ndarray, min_run_time: float, ctx: RunContext
) -> tuple[list[float], float, list[float]]:
    """Return one size's seconds per GPU_METHODS, one pin_memory(), and .to's return (blocking, non_blocking)."""
    host = torch.from_numpy(array)  # pageable: the driver stages it through a pinned buffer of its own
    pinned_box: list[torch.Tensor] = []  # page-locked: the GPU's copy engine reads it directly (DMA)
    pin_seconds = one_call_seconds(lambda: pinned_box.append(host.pin_memory()), device)
    pinned = pinned_box[0]
    on_device = pinned.to(device)
    copies: list[Callable[[], torch.Tensor]] = [
        lambda: host.to(device),
        lambda: pinned.to(device),
        lambda: pinned.to(device, non_blocking=True),
        lambda: on_device.to(CPU),
    ]
    seconds = []
    for copy in copies:
        ctx.check_deadline()
        seconds.append(time_call(copy, device, min_run_time).median)
    return_seconds = []
    for non_blocking in (False, True):
        returns = []
        for _ in range(RETURN_CALLS):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            pinned.to(device, non_blocking=non_blocking)  # non_blocking returns once the copy is queued
            returns.append(time.perf_counter() - t0)
        torch.cuda.synchronize(device)
        return_seconds.append(statistics.median(returns))
    return seconds, pin_seconds, return_seconds


def context(p: TransferParams, device_type: str) -> dict[str, Any]:
    """Return the values transfers.py.j2 reads (the script picks its device itself)."""
    return {"sizes": list(p.sizes), "min_run_time": repr(p.min_run_time)}


def shown(r: TransferResult) -> list[float | str]:
    """Return what the page shows that the script prints: per size and conversion, whether the tensor shares the array."""
    return [
        f"size {size} {name}: shares {bool(r.shares_memory[m, i])} same data_ptr {bool(r.same_data_ptr[m, i])}"
        for i, size in enumerate(r.sizes.tolist())
        for m, name in enumerate(r.numpy_methods)
    ]


def as_tensor_answer(parts: Sequence[TransferResult]) -> str:
    """Return 'shares' when torch.as_tensor of the numpy array shared its memory, else 'copies'."""
    return "shares" if parts[0].shares_memory[NUMPY_METHODS.index("as_tensor"), 0] else "copies"


TRANSFER = Experiment(
    "transfer",
    TransferParams,
    run,
    script="transfers.py.j2",
    context=context,
    exclusive=True,
    sweep="sizes",
    shown=shown,
    examples=(TransferParams(sizes=(1024, 65536), min_run_time=0.01),),
)
# t = torch.as_tensor(a) for a numpy array a on the CPU: does t copy the data?
# A sweep: the answer gets the list of the parts' results (Prediction types it as one Result).
AS_TENSOR: Prediction[TransferParams, Any] = Prediction(
    "as_tensor", TRANSFER, TransferParams(sizes=(1 << 20,)), options=("copies", "shares"), answer=as_tensor_answer
)
