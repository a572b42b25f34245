"""What the speed lesson's experiments share: the two timed operations, their FLOPs and the device helpers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from core.config import CONFIG
from core.params import InvalidParams
from core.runner import cpu_model

CPU = torch.device("cpu")
OPS = ("matmul", "conv2d")
# The conv2d family of the lesson: one image, 64 -> 64 channels, 3x3 kernel, padding 1 (output side =
# input side). `size` is the input side. 64 channels keep it compute-bound enough for a GPU to show.
CONV_CHANNELS = 64
CONV_KERNEL = 3


def flops(op: str, size: int) -> int:
    """Return the floating-point operations of one call (a multiply-add counts 2).

    matmul: an n x n by n x n product, 2 n^3. conv2d: 2 * N * C_out * H_out * W_out * C_in * kh * kw
    with N = 1, C_in = C_out = CONV_CHANNELS, H_out = W_out = size. Bias-free, as FlopCounterMode counts.
    """
    if op == "matmul":
        return 2 * size**3
    return 2 * 1 * CONV_CHANNELS * size * size * CONV_CHANNELS * CONV_KERNEL * CONV_KERNEL


def largest_size(op: str, max_flops: float) -> int:
    """Return the largest size whose one call does at most max_flops (0 when even size 1 does more)."""
    lo, hi = 0, 1 << 16
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if flops(op, mid) <= max_flops:
            lo = mid
        else:
            hi = mid - 1
    return lo


def footprint_bytes(op: str, size: int, element_size: int) -> int:
    """Return the bytes of one call's operands and result."""
    if op == "matmul":
        return 3 * size * size * element_size
    c, k = CONV_CHANNELS, CONV_KERNEL
    # input, output, weight, and as much again for the convolution's workspace (cuDNN, oneDNN)
    return 2 * (2 * c * size * size + c * c * k * k) * element_size


def operands(
    op: str, size: int, dtype: torch.dtype, device: torch.device, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the two inputs of one call, drawn from g on device: (A, B) or (image, weight)."""
    if op == "matmul":
        a = torch.randn(size, size, generator=g, device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g, device=device, dtype=dtype)
        return a, b
    c, k = CONV_CHANNELS, CONV_KERNEL
    x = torch.randn(1, c, size, size, generator=g, device=device, dtype=dtype)
    w = torch.randn(c, c, k, k, generator=g, device=device, dtype=dtype)
    return x, w / math.sqrt(c * k * k)  # unit-variance outputs: float16 stays far from overflow


def op_call(op: str, a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Return the call to time: a @ b, or conv2d(a, b) with padding that keeps the side."""
    if op == "matmul":
        return lambda: a @ b
    return lambda: F.conv2d(a, b, padding=CONV_KERNEL // 2)


def operands_context(op: str) -> dict[str, Any]:
    """Return the template values that write an op's operands and call: the conv2d family's shape and weight scale."""
    c, k = CONV_CHANNELS, CONV_KERNEL
    return {"op": op, "channels": c, "kernel": k, "padding": k // 2, "weight_scale": repr(math.sqrt(c * k * k))}


def sync(device: torch.device) -> None:
    """Wait for every kernel queued on device (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """Return the GPU's name on CUDA, else the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


@contextmanager
def backend_flags(device: torch.device, *, cudnn_benchmark: bool | None = None, tf32: bool | None = None) -> Iterator[None]:
    """Set cudnn.benchmark and/or both TF32 switches for the with-block on CUDA; restore them after.

    They are process-wide: these experiments are exclusive (alone on the device), so no other run
    sees them. On the CPU they change nothing, so they are left alone (CPU runs may overlap in one process).
    """
    if device.type != "cuda":
        yield
        return
    cuda_backend, cudnn = torch.backends.cuda, torch.backends.cudnn
    saved = (cudnn.benchmark, cuda_backend.matmul.allow_tf32, cudnn.allow_tf32)
    try:
        if cudnn_benchmark is not None:
            cudnn.benchmark = cudnn_benchmark
        if tf32 is not None:
            cuda_backend.matmul.allow_tf32 = tf32
            cudnn.allow_tf32 = tf32
        yield
    finally:
        cudnn.benchmark, cuda_backend.matmul.allow_tf32, cudnn.allow_tf32 = saved


def cpu_threads_limit() -> int:
    """Return the most CPU threads a run may use: the server's TORCHLAB_THREADS (CONFIG.threads, 1 by default)."""
    return CONFIG.threads


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the with-block with torch's intra-op CPU threads set to n, and restore the process's count after.

    torch.set_num_threads is process-wide. Only an exclusive experiment may call this: the device gate
    then runs nothing else in this process (nor in any process sharing the device), so no other run sees
    the count, and the runner's start-up value (CONFIG.threads) is back before the gate is released.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def check_increasing(name: str, values: tuple[int, ...]) -> None:
    """Raise InvalidParams(name, 'not_increasing') unless values rise strictly (a sweep, in order)."""
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidParams(name, "not_increasing")
