"""Device facts: what the server computes on, and what `.to(...)`, `.cuda()` and `.cpu()` cost on a tensor x."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.devices.common import CPU, GB, MB, OPS_PER_TIMED_SECOND, TIMED_CALLS
from core.measure import time_call
from core.params import Params, bounds, ladder, seed_field
from core.runner import cpu_model

# The parts only a CUDA device has; FactsResult.gpu_only names them when the run had none.
CUDA_PARTS = ("to_cuda", "dot_cuda", "pinned_to_cuda", "back_to_cpu", "cuda_same_object")
CPU_TIMINGS = 3  # x.to("cpu"), x.to(torch.float64), x.clone()
CUDA_TIMINGS = 4  # x.to("cuda"), x.cuda(), x_pinned.to("cuda", non_blocking=True), y.cpu()


@dataclass(frozen=True)
class FactsParams(Params):
    size_mb: int = field(default=16, metadata=ladder(1, 256))  # MiB of float32 in the demo tensor x
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.5, 0.01))  # seconds of timing per call
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields the page shows: the seed only fills x, whose values no copy depends on."""
        return {"size_mb": "size_mb", "min_run_time": "min_run_time"}

    def numel(self) -> int:
        """Return the number of float32 elements of x."""
        return self.size_mb * MB // 4

    def estimate_bytes(self) -> int:
        """Return x, its float64 copy (twice x) while it is timed, and on CUDA a pinned copy of x."""
        return 4 * self.size_mb * MB

    def estimate_work(self) -> float:
        """Return the elements a CUDA run (the costlier) copies: x's fill and moves, every timing's calls and seconds."""
        timings = CPU_TIMINGS + CUDA_TIMINGS
        # Filling x, moving it to the CPU, pinning it, y = x.to(dev); each timing's probe call and its fixed calls.
        fixed = self.numel() * (4 + timings * (1 + TIMED_CALLS))
        return fixed + timings * self.min_run_time * OPS_PER_TIMED_SECOND


@dataclass(frozen=True)
class GpuFacts:
    """One visible GPU, from torch.cuda.get_device_properties."""

    index: int
    name: str
    total_memory: int  # bytes
    capability: tuple[int, int]  # (major, minor) compute capability
    multiprocessors: int  # streaming multiprocessors (SMs)


@dataclass(frozen=True)
class Transfer:
    """One timed call on the demo tensor x."""

    call: str  # the expression timed, as the script writes it
    copies: bool  # the result is new memory; False: the call returned x itself
    seconds: float  # median time per call
    iqr: float  # interquartile range of the block means, seconds
    gbps: float | None  # x.nbytes / seconds / 1e9: bytes of x moved per second; None when nothing is copied


@dataclass(frozen=True)
class FactsResult:
    device: str  # where this server runs experiments ("cpu" or "cuda")
    cpu_model: str
    cores: int  # os.cpu_count()
    threads: int  # torch.get_num_threads(): intra-op threads one run uses
    torch_version: str
    cuda_available: bool  # torch.cuda.is_available()
    cuda_version: str | None  # torch.version.cuda; None in a CPU build
    gpus: tuple[GpuFacts, ...]  # every visible GPU; empty without CUDA
    numel: int  # elements of x (float32)
    nbytes: int  # bytes of x
    same_object: bool  # x.to("cpu") is x: a tensor already there is returned, not copied
    same_data_ptr: bool  # x.to("cpu").data_ptr() == x.data_ptr()
    to_cpu: Transfer  # x.to("cpu") on a CPU tensor: no copy
    to_float64: Transfer  # x.to(torch.float64): a new tensor of twice the bytes
    clone: Transfer  # x.clone(): a copy in the same place
    # CUDA only (None unless the run's device is CUDA):
    to_cuda: Transfer | None  # x.to("cuda"): host to device over PCIe / NVLink-C2C
    dot_cuda: Transfer | None  # x.cuda(): the same copy by its older name
    pinned_to_cuda: Transfer | None  # page-locked x, .to("cuda", non_blocking=True)
    back_to_cpu: Transfer | None  # y.cpu() for y = x.to("cuda"): device to host
    cuda_same_object: bool | None  # y.to("cuda") is y
    gpu_only: tuple[str, ...]  # the CUDA parts that did not run here: CUDA_PARTS on the CPU, () on a GPU


def _gpus() -> tuple[GpuFacts, ...]:
    """Return the properties of every visible GPU (none without CUDA)."""
    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        capability = (int(props.major), int(props.minor))
        out.append(GpuFacts(i, str(props.name), int(props.total_memory), capability, int(props.multi_processor_count)))
    return tuple(out)


def _transfer(call: str, fn: Callable[[], torch.Tensor], x: torch.Tensor, device: torch.device, p: FactsParams) -> Transfer:
    """Return fn's timing; `copies` says whether its result is new memory rather than x itself."""
    result = fn()
    copies = result is not x and result.data_ptr() != x.data_ptr()
    del result
    t = time_call(fn, device, p.min_run_time)
    return Transfer(call, copies, t.median, t.iqr, x.nbytes / t.median / GB if copies else None)


def _cuda_parts(x: torch.Tensor, p: FactsParams, ctx: RunContext) -> dict[str, Any]:
    """Return the timed host-device copies of x and whether .to on a GPU tensor returns it (a CUDA run only)."""
    dev = ctx.device
    parts: dict[str, Any] = {}
    ctx.check_deadline()
    parts["to_cuda"] = _transfer(f'x.to("{dev}")', lambda: x.to(dev), x, dev, p)
    ctx.check_deadline()
    parts["dot_cuda"] = _transfer("x.cuda()", lambda: x.cuda(dev), x, dev, p)
    ctx.check_deadline()
    # Page-locked host memory lets the copy engine read x directly (no staging copy) and asynchronously.
    pinned = x.pin_memory()
    call = f'x_pinned.to("{dev}", non_blocking=True)'
    parts["pinned_to_cuda"] = _transfer(call, lambda: pinned.to(dev, non_blocking=True), pinned, dev, p)
    ctx.check_deadline()
    y = x.to(dev)
    parts["back_to_cpu"] = _transfer("y.cpu()", lambda: y.cpu(), y, dev, p)
    parts["cuda_same_object"] = y.to(dev) is y
    return parts


def run(p: FactsParams, ctx: RunContext) -> FactsResult:
    """Return the server's device facts and the measured cost of each .to(...) call on a CPU tensor x."""
    # x lives on the CPU whatever the device: the lesson moves it. Its values do not matter to a copy.
    x = torch.rand(p.numel(), generator=ctx.generator, device=ctx.device).to(CPU)
    same = x.to("cpu")
    same_object, same_ptr = same is x, same.data_ptr() == x.data_ptr()
    del same
    to_cpu = _transfer('x.to("cpu")', lambda: x.to("cpu"), x, CPU, p)
    ctx.check_deadline()
    to_float64 = _transfer("x.to(torch.float64)", lambda: x.to(torch.float64), x, CPU, p)
    ctx.check_deadline()
    clone = _transfer("x.clone()", lambda: x.clone(), x, CPU, p)
    on_cuda = ctx.device.type == "cuda"
    cuda_parts = _cuda_parts(x, p, ctx) if on_cuda else dict.fromkeys(CUDA_PARTS)
    return FactsResult(
        device=str(ctx.device),
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        cuda_available=torch.cuda.is_available(),
        cuda_version=torch.version.cuda,
        gpus=_gpus(),
        numel=x.numel(),
        nbytes=x.nbytes,
        same_object=same_object,
        same_data_ptr=same_ptr,
        to_cpu=to_cpu,
        to_float64=to_float64,
        clone=clone,
        **cuda_parts,
        gpu_only=() if on_cuda else CUDA_PARTS,
    )


def context(p: FactsParams, device_type: str) -> Mapping[str, Any]:
    """Return the values the script template reads (the script picks CUDA itself when there is one)."""
    return {"min_run_time": repr(p.min_run_time), "seed": p.seed, "numel": p.numel(), "size_mb": p.size_mb}


def shown(r: FactsResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: versions, sizes, which calls copy, the GPUs' properties."""
    out: list[float | str] = [
        f"torch {r.torch_version} threads",
        f"cuda available {r.cuda_available} cuda version {r.cuda_version}",
        f"cores {r.cores}",
        f"numel {r.numel} bytes {r.nbytes}",
        f"x.to('cpu') is x: {r.same_object} same data_ptr: {r.same_data_ptr}",
        f"x.to(torch.float64) copies: {r.to_float64.copies}",
        f"x.clone() copies: {r.clone.copies}",
    ]
    for gpu in r.gpus:
        major, minor = gpu.capability
        out.append(
            f"gpu {gpu.index}: {gpu.name}, {gpu.total_memory} bytes, capability {major}.{minor}, "
            f"{gpu.multiprocessors} multiprocessors"
        )
    if r.cuda_same_object is not None:
        out.append(f"y.to('cuda') is y: {r.cuda_same_object}")
    return out


FACTS = Experiment(
    "facts",
    FactsParams,
    run,
    script="devices_facts.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(FactsParams(size_mb=1, min_run_time=0.01),),
)

# A call whose cost grew with x would cost about what copying x costs: x.clone() of the same x, timed in the
# same run. x.to("cpu") copies nothing, so it stays orders of magnitude below that at any size.
COPY_FRACTION = 0.01


def to_cpu_time_answer(r: FactsResult) -> str:
    """Return "stays" when x.to("cpu") copied nothing and took under 1% of x.clone()'s time, else "grows"."""
    return "stays" if not r.to_cpu.copies and r.to_cpu.seconds < COPY_FRACTION * r.clone.seconds else "grows"


# The page shows x.to("cpu") is x at 16 MiB, with its time next to the copies'. The question asks what
# happens to that time at 4 times the size, which the student checks with the size slider.
TO_CPU_TIME = Prediction(
    "to_cpu_time_64mib",
    FACTS,
    FactsParams(size_mb=64),
    options=("stays", "grows"),
    answer=to_cpu_time_answer,
    question="facts.predict_q",
    why="facts.predict_why",
)
