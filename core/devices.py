"""Experiments of the "Devices and many GPUs" lesson: each is Params, Result, run_* and code_*.

1. facts        - what the server computes on, and what `.to(...)`, `.cuda()` and `.cpu()` cost.
2. dataparallel - nn.DataParallel simulated on one device (scatter, replicate, gather): why the mean
                  of the per-replica mean losses is not the batch mean when the batch splits unevenly.
3. pipeline     - model parallelism over two devices: stage times measured here, then the timing
                  model of the two-stage pipeline for every micro-batch (split) size.
4. checkpoint   - save a (DataParallel-wrapped) model's state_dict, load it with map_location, and
                  what load_state_dict reports when the "module." prefix does not match.

Results hold numpy arrays and plain Python values only, so they can be cached and shared. Random
numbers come from ctx.generator; modules are built on the meta device first (torch's constructors
would draw from the global RNG) and their weights drawn from the generator. Parts that exist only
on a CUDA device are None elsewhere; each Result that has such parts lists them in `gpu_only`.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from core.measure import Timing, time_call
from core.params import InvalidParams, Params, bounds, choices
from core.runner import RunContext, cpu_model
from core.tensors import Experiment

MB = 2**20
GB = 1e9  # transfer rates are in GB/s of 10^9 bytes, as PCIe and NVLink figures are quoted
CPU = torch.device("cpu")


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def _numpy(t: torch.Tensor) -> np.ndarray:
    """Return a CPU float64 numpy copy of t."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


def _linear(n_in: int, n_out: int, g: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> nn.Linear:
    """Return an nn.Linear whose weight is N(0, 1/n_in) drawn from g and whose bias is zero."""
    # Meta first: nn.Linear's constructor would draw its default weights from the global RNG.
    layer = nn.Linear(n_in, n_out, device="meta", dtype=dtype).to_empty(device=device)
    nn.init.normal_(layer.weight, 0.0, 1 / math.sqrt(n_in), generator=g)
    nn.init.zeros_(layer.bias)
    return layer


# --------------------------------------------------------------------------------------------
# 1. Device facts and the cost of moving a tensor


@dataclass(frozen=True)
class FactsParams(Params):
    size_mb: int = field(default=16, metadata=bounds(1, 256))  # MiB of float32 in the demo tensor x
    min_run_time: float = field(default=0.05, metadata=bounds(0.01, 0.5, 0.01))  # seconds of timing per call
    seed: int = _seed()

    def roles(self) -> dict[str, str]:
        """Return the fields the page shows: the seed only fills x, whose values no copy depends on."""
        return {"size_mb": "size_mb", "min_run_time": "min_run_time"}

    def numel(self) -> int:
        """Return the number of float32 elements of x."""
        return self.size_mb * MB // 4

    def estimate_bytes(self) -> int:
        # x, its float64 copy (twice x) while it is timed, and on CUDA a pinned copy of x.
        return 4 * self.size_mb * MB


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

    gpu_only: ClassVar[tuple[str, ...]] = ("to_cuda", "dot_cuda", "pinned_to_cuda", "back_to_cpu", "cuda_same_object")


def _gpus() -> tuple[GpuFacts, ...]:
    """Return the properties of every visible GPU (none without CUDA)."""
    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(GpuFacts(i, str(props.name), int(props.total_memory), (int(props.major), int(props.minor)),
                            int(props.multi_processor_count)))  # fmt: skip
    return tuple(out)


def _transfer(call: str, fn: Callable[[], torch.Tensor], x: torch.Tensor, device: torch.device, p: FactsParams) -> Transfer:
    """Return fn's timing; `copies` says whether its result is new memory rather than x itself."""
    result = fn()
    copies = result is not x and result.data_ptr() != x.data_ptr()
    del result
    t: Timing = time_call(fn, device, p.min_run_time)
    return Transfer(call, copies, t.median, t.iqr, x.nbytes / t.median / GB if copies else None)


def run_facts(p: FactsParams, ctx: RunContext) -> FactsResult:
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
    cuda_parts: dict[str, Any] = dict.fromkeys(FactsResult.gpu_only)
    if ctx.device.type == "cuda":
        dev = ctx.device
        ctx.check_deadline()
        cuda_parts["to_cuda"] = _transfer(f'x.to("{dev}")', lambda: x.to(dev), x, dev, p)
        ctx.check_deadline()
        cuda_parts["dot_cuda"] = _transfer("x.cuda()", lambda: x.cuda(dev), x, dev, p)
        ctx.check_deadline()
        # Page-locked host memory lets the copy engine read x directly (no staging copy) and asynchronously.
        pinned = x.pin_memory()
        cuda_parts["pinned_to_cuda"] = _transfer(f'x_pinned.to("{dev}", non_blocking=True)',
                                                 lambda: pinned.to(dev, non_blocking=True), pinned, dev, p)  # fmt: skip
        ctx.check_deadline()
        y = x.to(dev)
        cuda_parts["back_to_cpu"] = _transfer("y.cpu()", lambda: y.cpu(), y, dev, p)
        cuda_parts["cuda_same_object"] = y.to(dev) is y
    return FactsResult(
        str(ctx.device), cpu_model(), os.cpu_count() or 1, torch.get_num_threads(), torch.__version__,
        torch.cuda.is_available(), torch.version.cuda, _gpus(), x.numel(), x.nbytes, same_object, same_ptr,
        to_cpu, to_float64, clone, **cuda_parts,
    )  # fmt: skip


def code_facts(p: FactsParams) -> str:
    """Return a script that prints the device facts and times the same .to(...) calls."""
    return f"""import os

import torch
from torch.utils import benchmark


def seconds_per_call(fn):
    fn()  # warm up: the first call pays for allocation
    timer = benchmark.Timer(stmt="fn()", globals={{"fn": fn}}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time={p.min_run_time!r}).median  # synchronises CUDA around its blocks


def report(call, fn, x, copies=True):
    s = seconds_per_call(fn)
    rate = f"{{x.nbytes / s / 1e9:.2f}} GB/s" if copies else "nothing copied"
    print(f"{{call}}: {{s * 1e3:.4f}} ms per call, {{rate}}")


print("torch", torch.__version__, "threads", torch.get_num_threads(), "cores", os.cpu_count())
print("cuda available", torch.cuda.is_available(), "cuda version", torch.version.cuda)
for i in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(i)
    print(f"gpu {{i}}: {{props.name}}, {{props.total_memory}} bytes, capability {{props.major}}.{{props.minor}}, "
          f"{{props.multi_processor_count}} multiprocessors")

g = torch.Generator().manual_seed({p.seed})
x = torch.rand({p.numel()}, generator=g)  # {p.size_mb} MiB of float32 on the CPU
print("numel", x.numel(), "bytes", x.nbytes)
same = x.to("cpu")  # already there: .to returns x itself, nothing is copied
print("x.to('cpu') is x:", same is x, "same data_ptr:", same.data_ptr() == x.data_ptr())
print("x.to(torch.float64) copies:", x.to(torch.float64).data_ptr() != x.data_ptr())
print("x.clone() copies:", x.clone().data_ptr() != x.data_ptr())
report("x.to('cpu')", lambda: x.to("cpu"), x, copies=False)
report("x.to(torch.float64)", lambda: x.to(torch.float64), x)
report("x.clone()", lambda: x.clone(), x)

if torch.cuda.is_available():
    y = x.to("cuda")  # a copy on the GPU
    print("y.device", y.device, "y.to('cuda') is y:", y.to("cuda") is y)
    pinned = x.pin_memory()  # page-locked: the GPU's copy engine reads it directly
    report("x.to('cuda')", lambda: x.to("cuda"), x)
    report("x.cuda()", lambda: x.cuda(), x)
    report("x_pinned.to('cuda', non_blocking=True)", lambda: pinned.to("cuda", non_blocking=True), x)
    report("y.cpu()", lambda: y.cpu(), x)
"""


# --------------------------------------------------------------------------------------------
# 2. DataParallel by simulation: scatter, replicate, gather


SEEDS_LOSSES = (0.3, 0.2, 0.8)  # the notes' per-sample losses (from the discussion in pytorch issue #9811)
DP_FEATURES, DP_CLASSES = 8, 4  # the tiny model of the seed-generated case: nn.Linear(8, 4)


@dataclass(frozen=True)
class DPParams(Params):
    seeds_example: bool = True  # the notes' losses [0.3, 0.2, 0.8]; off: a real model on a random batch
    batch: int = field(default=3, metadata=bounds(1, 64))  # N, samples in the batch (seed-generated case)
    replicas: int = field(default=2, metadata=bounds(1, 8))  # G, the GPUs DataParallel would use
    seed: int = _seed()

    def roles(self) -> dict[str, str]:
        """Return the fields this case reads: the notes' example fixes the batch and draws nothing."""
        if self.seeds_example:
            return {"seeds_example": "seeds_example", "replicas": "replicas"}
        return {s.name: s.name for s in self.specs()}

    def n(self) -> int:
        """Return the batch size N of this case."""
        return len(SEEDS_LOSSES) if self.seeds_example else self.batch

    def estimate_bytes(self) -> int:
        return 1 << 16  # a 64 x 8 batch and a 36-parameter model


@dataclass(frozen=True)
class DPResult:
    seeds_example: bool
    batch: int  # N
    replicas: int  # G asked for
    chunk_sizes: tuple[int, ...]  # samples each replica gets, as DataParallel's scatter splits dim 0; len <= G
    losses: np.ndarray  # (N,) per-sample losses, float64
    replica_means: np.ndarray  # (k,) each replica's mean loss: what a module returning loss.mean() gives
    replica_sums: np.ndarray  # (k,) each replica's summed loss
    mean_of_means: float  # gather the k means, then .mean(): DataParallel + loss.mean() in the loop
    global_mean: float  # the whole batch's mean loss on one device
    weighted_mean: float  # fix 1: sum_i n_i * mean_i / N
    sum_then_divide: float  # fix 2: replicas return sums (or per-sample losses), reduce once: sum / N
    even_split: bool  # every replica got as many samples: then mean_of_means == global_mean
    naive_weights: np.ndarray  # (N,) d mean_of_means / d loss_j = 1 / (k n_i): each sample's weight
    global_weights: np.ndarray  # (N,) d global_mean / d loss_j = 1 / N
    # The model case (empty / None for the notes' example): gradients w.r.t. weight then bias, flattened.
    grad_full: np.ndarray  # (P,) of the global mean on one device
    grad_weighted: np.ndarray  # (P,) of the size-weighted mean of replica means
    grad_naive: np.ndarray  # (P,) of the mean of replica means
    grad_diff_weighted: float | None  # max |grad_weighted - grad_full|: rounding only
    grad_diff_naive: float | None  # max |grad_naive - grad_full|: 0 only for an even split


def scatter_sizes(n: int, replicas: int) -> list[int]:
    """Return the chunk sizes DataParallel's scatter gives a batch of n on `replicas` devices.

    Its scatter calls tensor.chunk(len(devices)) along dim 0: chunks of ceil(n / replicas), the last
    one smaller, and fewer chunks than devices when they run out (n=5 on 4: [2, 2, 1]); DataParallel
    then replicates the module to only as many devices as there are chunks.
    """
    size = math.ceil(n / replicas)
    return [min(size, n - start) for start in range(0, n, size)]


def dp_reductions(chunks: Sequence[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (mean of replica means, size-weighted mean of replica means, sum of replica sums / n)."""
    means = torch.stack([c.mean() for c in chunks])
    sizes = torch.tensor([c.numel() for c in chunks], dtype=means.dtype, device=means.device)
    sums = torch.stack([c.sum() for c in chunks])
    return means.mean(), (sizes * means).sum() / n, sums.sum() / n


def _grads(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """Return d loss / d params, flattened and concatenated in parameter order."""
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])


def run_dataparallel(p: DPParams, ctx: RunContext) -> DPResult:
    """Return each replica's share and mean loss, the reductions, and (model case) their gradients.

    The replicas are simulated on one device: DataParallel's replicas are copies of the same
    parameters, and its backward sums their gradients into the original, which is what autograd
    does here when every chunk goes through the one module.
    """
    n, g, dev = p.n(), ctx.generator, ctx.device
    params: list[nn.Parameter] = []
    if p.seeds_example:
        losses = torch.tensor(SEEDS_LOSSES, dtype=torch.float64, device=dev)
        chunks = list(losses.chunk(p.replicas))  # the scatter
        full = losses.mean()  # one device, the whole batch
    else:
        # float64 so that the fixes agree with one device to rounding (1e-17), not to float32 noise.
        net = _linear(DP_FEATURES, DP_CLASSES, g, dev, torch.float64)
        X = torch.randn(n, DP_FEATURES, generator=g, device=dev, dtype=torch.float64)
        y = torch.randint(0, DP_CLASSES, (n,), generator=g, device=dev)
        # Each replica computes the per-sample losses of its chunk; DataParallel scatters X and y alike.
        pairs = zip(X.chunk(p.replicas), y.chunk(p.replicas), strict=True)
        chunks = [F.cross_entropy(net(Xi), yi, reduction="none") for Xi, yi in pairs]
        losses = torch.cat(chunks)  # what gathering per-sample losses would give
        params = list(net.parameters())
        full = F.cross_entropy(net(X), y)  # one device, the whole batch
    naive, weighted, divided = dp_reductions(chunks, n)
    grads: tuple[np.ndarray, ...] = (np.zeros(0),) * 3
    if params:
        grads = tuple(_numpy(_grads(loss, params)) for loss in (full, weighted, naive))
    # Each sample's weight in a reduction is its derivative w.r.t. that sample's loss.
    leaf = losses.detach().clone().requires_grad_()
    naive_weights = torch.autograd.grad(dp_reductions(leaf.chunk(p.replicas), n)[0], leaf)[0]
    sizes = tuple(c.numel() for c in chunks)
    full_g, weighted_g, naive_g = grads
    return DPResult(
        p.seeds_example, n, p.replicas, sizes, _numpy(losses), _numpy(torch.stack([c.mean() for c in chunks])),
        _numpy(torch.stack([c.sum() for c in chunks])), float(naive.item()), float(full.item()),
        float(weighted.item()), float(divided.item()), len(set(sizes)) == 1, _numpy(naive_weights),
        np.full(n, 1 / n), full_g, weighted_g, naive_g,
        float(np.abs(weighted_g - full_g).max()) if params else None,
        float(np.abs(naive_g - full_g).max()) if params else None,
    )  # fmt: skip


def code_dataparallel(p: DPParams) -> str:
    """Return a script that scatters the batch as DataParallel does and prints every reduction."""
    if p.seeds_example:
        make = f"""losses = torch.tensor({list(SEEDS_LOSSES)}, dtype=torch.float64)  # per-sample losses of one batch
chunks = list(losses.chunk(G))  # DataParallel's scatter: tensor.chunk(number of GPUs) along dim 0
global_mean = losses.mean()  # one device, the whole batch
"""
        grads = ""
        real_dp = """

class MeanLoss(nn.Module):
    def forward(self, losses):
        return losses.mean()  # each replica returns the mean loss of its chunk


if torch.cuda.device_count() >= G >= 2:  # the real thing: DataParallel on G GPUs gathers one mean per replica
    dp = nn.DataParallel(MeanLoss(), device_ids=list(range(G)))
    print("real DataParallel replica means:", dp(losses.to("cuda:0")).tolist())
"""
    else:
        make = f"""g = torch.Generator().manual_seed({p.seed})
net = nn.Linear({DP_FEATURES}, {DP_CLASSES}, dtype=torch.float64)
nn.init.normal_(net.weight, 0.0, 1 / math.sqrt({DP_FEATURES}), generator=g)  # weights from g: reproducible
nn.init.zeros_(net.bias)
X = torch.randn(N, {DP_FEATURES}, generator=g, dtype=torch.float64)
y = torch.randint(0, {DP_CLASSES}, (N,), generator=g)
# Each replica gets a chunk of X and y (DataParallel's scatter) and computes its per-sample losses.
chunks = [F.cross_entropy(net(Xi), yi, reduction="none") for Xi, yi in zip(X.chunk(G), y.chunk(G))]
losses = torch.cat(chunks)  # what gathering per-sample losses would give
global_mean = F.cross_entropy(net(X), y)  # one device, the whole batch
"""
        grads = """

def grad(loss):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)])


full = grad(global_mean)
print("max |grad diff| size-weighted vs one device:", (grad(weighted) - full).abs().max().item())
print("max |grad diff| mean of means vs one device:", (grad(mean_of_means) - full).abs().max().item())
"""
        real_dp = """

class WithLoss(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, X, y):
        return F.cross_entropy(self.net(X), y)  # each replica returns the mean loss of its chunk


if torch.cuda.device_count() >= G >= 2:  # the real thing: DataParallel on G GPUs gathers one mean per replica
    dp = nn.DataParallel(WithLoss(net).to("cuda:0"), device_ids=list(range(G)))
    print("real DataParallel replica means:", dp(X.to("cuda:0"), y.to("cuda:0")).tolist())
"""
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn

N, G = {p.n()}, {p.replicas}  # batch size, GPUs
{make}print("chunk sizes:", [c.numel() for c in chunks])  # fewer than G chunks when they run out
print("per-sample losses:", losses.tolist())
means = torch.stack([c.mean() for c in chunks])  # what each replica's loss.mean() returns
sizes = torch.tensor([c.numel() for c in chunks], dtype=torch.float64)
mean_of_means = means.mean()  # DataParallel gathers the replica means; loss.mean() averages them
weighted = (sizes * means).sum() / N  # fix 1: weight each replica's mean by its share of the batch
divided = torch.stack([c.sum() for c in chunks]).sum() / N  # fix 2: replicas return sums, divide once
print("replica means:", means.tolist())
print("mean of replica means:", mean_of_means.item())
print("global mean:", global_mean.item())
print("size-weighted mean:", weighted.item())
print("sum of sums / N:", divided.item())
leaf = losses.detach().clone().requires_grad_()
weights = torch.autograd.grad(torch.stack([c.mean() for c in leaf.chunk(G)]).mean(), leaf)[0]
print("each sample's weight in the mean of means:", weights.tolist(), "instead of 1/N =", 1 / N){grads}{real_dp}"""


# --------------------------------------------------------------------------------------------
# 3. Model parallelism and pipelining: two stages, a split-size slider


PIPE_CLASSES = 10  # outputs of the last layer
ACTIVATION_BYTES = 4  # float32: what crosses the link per number between the stages


@dataclass(frozen=True)
class PipeParams(Params):
    batch: int = field(default=512, metadata=bounds(1, 512))
    split_size: int = field(default=32, metadata=bounds(1, 512))  # micro-batch size; above the batch: one chunk
    width: int = field(default=256, metadata=bounds(16, 1024))  # hidden units of the MLP
    transfer_gbps: float = field(default=16.0, metadata=bounds(0.1, 1000.0))  # link between the devices, GB/s
    min_run_time: float = field(default=0.02, metadata=bounds(0.01, 0.1, 0.01))  # seconds of timing per size
    seed: int = _seed()

    def estimate_bytes(self) -> int:
        weights = 3 * self.width * self.width + self.width * PIPE_CLASSES
        # Weights, the batch, and the activations of a few layers of the largest chunk.
        return 4 * (weights + 6 * self.batch * self.width) + (1 << 16)


@dataclass(frozen=True)
class PipeResult:
    device: str  # where the stage times were measured; both simulated devices are taken to be this fast
    batch: int
    width: int
    transfer_gbps: float
    # The measured stage times (forward, no grad), seconds per call, at every size the curve needs.
    measured_sizes: np.ndarray  # (s,) int: chunk sizes measured (candidate splits and their remainders)
    stage1_s: np.ndarray  # (s,) first half: Linear-ReLU-Linear-ReLU
    stage2_s: np.ndarray  # (s,) second half: Linear-ReLU-Linear(width, 10)
    overhead_s: tuple[float, float]  # per-call overhead of each stage: its time for a one-sample chunk
    per_sample_s: tuple[float, float]  # (T(batch) - T(1)) / (batch - 1) of each stage; 0 for batch 1
    # The curve over the candidate split sizes (powers of two up to the batch, the chosen split, the batch).
    splits: np.ndarray  # (k,) int, ascending
    chunks: np.ndarray  # (k,) int: m = ceil(batch / split)
    total_s: np.ndarray  # (k,) modelled time of the pipelined forward pass of the whole batch
    utilisation: np.ndarray  # (k,) busy time of the two devices / (2 * total)
    split_size: int  # the chosen split, at most the batch
    chosen_total_s: float
    best_split: int  # the split of the least total time
    best_total_s: float
    no_pipeline_s: float  # T1(batch) + transfer(batch) + T2(batch): model parallel without micro-batches
    single_device_s: float  # T1(batch) + T2(batch): the whole model on one device


def split_sizes(batch: int, split: int) -> list[int]:
    """Return the micro-batch sizes of X.split(split) for a batch of `batch`: full chunks, then the rest."""
    full, rest = divmod(batch, split)
    return [split] * full + ([rest] if rest else [])


def pipeline_time(
    sizes: Sequence[int], stage1: Callable[[int], float], stage2: Callable[[int], float], link: Callable[[int], float]
) -> float:
    """Return when the last micro-batch leaves stage 2 of the two-device pipeline.

    The schedule of PyTorch's model-parallel tutorial: device 1 runs stage 1 on the micro-batches one
    after another; each output crosses the link to device 2 (a copy engine, so it overlaps with
    compute), and device 2 runs stage 2 on each chunk once it has arrived and the previous chunk is
    done. Each of the three resources (device 1, link, device 2) takes the chunks in order, one at a
    time, so for chunk i of n_i samples

        done1_i = done1_{i-1} + T1(n_i)
        link_i  = max(done1_i, link_{i-1}) + C(n_i)
        done2_i = max(link_i, done2_{i-1}) + T2(n_i)

    and the result is done2 of the last chunk. For m equal chunks this is the flow-shop formula
    T1 + C + T2 + (m - 1) * max(T1, C, T2): the first chunk fills the pipeline, then the slowest
    resource sets the pace; with C = 0 it is T1 + (m - 1) * max(T1, T2) + T2.
    """
    done1 = link_done = done2 = 0.0
    for n in sizes:
        done1 += stage1(n)
        link_done = max(done1, link_done) + link(n)
        done2 = max(link_done, done2) + stage2(n)
    return done2


def equal_chunks_time(t1: float, c: float, t2: float, m: int) -> float:
    """Return T1 + C + T2 + (m - 1) max(T1, C, T2): pipeline_time for m chunks of one size."""
    return t1 + c + t2 + (m - 1) * max(t1, c, t2)


def transfer_seconds(n: int, width: int, gbps: float) -> float:
    """Return the time the link needs for n samples' activations (n x width float32) at gbps GB/s."""
    return n * width * ACTIVATION_BYTES / (gbps * GB)


def candidate_splits(batch: int, split_size: int) -> list[int]:
    """Return the split sizes of the curve: powers of two up to the batch, the chosen split, the batch."""
    powers = {2**k for k in range(batch.bit_length()) if 2**k <= batch}
    return sorted(powers | {min(split_size, batch), batch})


def sizes_to_measure(batch: int, splits: Sequence[int]) -> list[int]:
    """Return every chunk size the curve needs: each split and the remainder it leaves."""
    return sorted({n for s in splits for n in split_sizes(batch, s)})


@dataclass(frozen=True)
class PipeCurve:
    """The modelled pipeline time for each candidate split (see pipeline_time)."""

    splits: np.ndarray
    chunks: np.ndarray
    total_s: np.ndarray
    utilisation: np.ndarray


def pipeline_curve(
    batch: int, splits: Sequence[int], stage1: Mapping[int, float], stage2: Mapping[int, float], link: Callable[[int], float]
) -> PipeCurve:
    """Return the total time and utilisation of the pipeline for each split, from stage times per chunk size."""
    totals, busy = [], []
    for s in splits:
        sizes = split_sizes(batch, s)
        total = pipeline_time(sizes, stage1.__getitem__, stage2.__getitem__, link)
        totals.append(total)
        busy.append(sum(stage1[n] + stage2[n] for n in sizes) / (2 * total))
    chunks = [math.ceil(batch / s) for s in splits]
    return PipeCurve(np.array(splits), np.array(chunks), np.array(totals), np.array(busy))


def _pipe_stages(width: int, g: torch.Generator, device: torch.device) -> tuple[nn.Sequential, nn.Sequential]:
    """Return the two halves of a 4-layer MLP: Linear-ReLU-Linear-ReLU and Linear-ReLU-Linear(width, 10)."""
    stage1 = nn.Sequential(_linear(width, width, g, device), nn.ReLU(), _linear(width, width, g, device), nn.ReLU())
    stage2 = nn.Sequential(_linear(width, width, g, device), nn.ReLU(), _linear(width, PIPE_CLASSES, g, device))
    return stage1, stage2


def run_pipeline(p: PipeParams, ctx: RunContext) -> PipeResult:
    """Return the measured stage times per chunk size and the modelled pipeline time for each split."""
    stage1, stage2 = _pipe_stages(p.width, ctx.generator, ctx.device)
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    splits = candidate_splits(p.batch, p.split_size)
    t1: dict[int, float] = {}
    t2: dict[int, float] = {}
    with torch.no_grad():
        measured = sizes_to_measure(p.batch, splits)
        for done, n in enumerate(measured):
            ctx.check_deadline()
            ctx.progress(done, len(measured))
            x = X[:n]
            h = stage1(x)
            t1[n] = time_call(partial(stage1, x), ctx.device, p.min_run_time).median
            t2[n] = time_call(partial(stage2, h), ctx.device, p.min_run_time).median

    def link(n: int) -> float:
        return transfer_seconds(n, p.width, p.transfer_gbps)

    curve = pipeline_curve(p.batch, splits, t1, t2, link)
    best = int(np.argmin(curve.total_s))
    chosen = min(p.split_size, p.batch)
    sizes = sorted(t1)
    per_sample = tuple((t[p.batch] - t[1]) / (p.batch - 1) if p.batch > 1 else 0.0 for t in (t1, t2))
    return PipeResult(
        str(ctx.device), p.batch, p.width, p.transfer_gbps, np.array(sizes), np.array([t1[n] for n in sizes]),
        np.array([t2[n] for n in sizes]), (t1[1], t2[1]), (per_sample[0], per_sample[1]), curve.splits,
        curve.chunks, curve.total_s, curve.utilisation, chosen, float(curve.total_s[splits.index(chosen)]),
        int(curve.splits[best]), float(curve.total_s[best]), t1[p.batch] + link(p.batch) + t2[p.batch],
        t1[p.batch] + t2[p.batch],
    )  # fmt: skip


def code_pipeline(p: PipeParams) -> str:
    """Return a script that times both stages per chunk size and prints the modelled pipeline curve."""
    return f"""import math
import time

import torch
from torch import nn
from torch.utils import benchmark

batch, width, split_size = {p.batch}, {p.width}, {p.split_size}
gbps = {p.transfer_gbps!r}  # assumed link between the two devices, GB/s (PCIe 4.0 x16 is about 16 to 32)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
g = torch.Generator().manual_seed({p.seed})


def linear(n_in, n_out):
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, 1 / math.sqrt(n_in), generator=g)
    nn.init.zeros_(layer.bias)
    return layer


stage1 = nn.Sequential(linear(width, width), nn.ReLU(), linear(width, width), nn.ReLU()).to(device)
stage2 = nn.Sequential(linear(width, width), nn.ReLU(), linear(width, {PIPE_CLASSES})).to(device)
X = torch.randn(batch, width, generator=g).to(device)


def seconds_per_call(fn):
    fn()
    timer = benchmark.Timer(stmt="fn()", globals={{"fn": fn}}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time={p.min_run_time!r}).median


def split_sizes(s):  # what X.split(s) gives: full chunks, then the rest
    return [s] * (batch // s) + ([batch % s] if batch % s else [])


splits = sorted({{2**k for k in range(batch.bit_length()) if 2**k <= batch}} | {{min(split_size, batch), batch}})
T1, T2 = {{}}, {{}}
with torch.no_grad():
    for n in sorted({{n for s in splits for n in split_sizes(s)}}):
        x = X[:n]
        h = stage1(x)
        T1[n] = seconds_per_call(lambda: stage1(x))
        T2[n] = seconds_per_call(lambda: stage2(h))
        print(f"measured chunk {{n}}: stage 1 {{T1[n] * 1e6:.1f}} us, stage 2 {{T2[n] * 1e6:.1f}} us")


def link(n):
    return n * width * 4 / (gbps * 1e9)  # float32 activations crossing to the second device


def pipeline_time(s):
    # Device 1, the link and device 2 each take the chunks in order, one at a time.
    done1 = link_done = done2 = 0.0
    for n in split_sizes(s):
        done1 += T1[n]
        link_done = max(done1, link_done) + link(n)
        done2 = max(link_done, done2) + T2[n]
    return done2


for s in splits:
    print(f"split {{s}}: {{math.ceil(batch / s)}} chunks, total {{pipeline_time(s) * 1e3:.4f}} ms")
best = min(splits, key=pipeline_time)
print(f"best split {{best}}; no pipelining {{(T1[batch] + link(batch) + T2[batch]) * 1e3:.4f}} ms, "
      f"one device {{(T1[batch] + T2[batch]) * 1e3:.4f}} ms")

if torch.cuda.device_count() >= 2:  # the real thing: stage 1 on cuda:0, stage 2 on cuda:1
    stage1.to("cuda:0")
    stage2.to("cuda:1")
    X0 = X.to("cuda:0")
    s = min(split_size, batch)

    def pipelined():
        chunks = iter(X0.split(s))
        prev = stage1(next(chunks)).to("cuda:1")
        outs = []
        for nxt in chunks:
            outs.append(stage2(prev))  # queued on cuda:1 ...
            prev = stage1(nxt).to("cuda:1")  # ... while cuda:0 works on the next chunk
        outs.append(stage2(prev))
        return torch.cat(outs)

    def wall(fn, repeat=20):  # benchmark.Timer would synchronise cuda:0 only
        with torch.no_grad():
            fn()
            torch.cuda.synchronize("cuda:0")
            torch.cuda.synchronize("cuda:1")
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            torch.cuda.synchronize("cuda:0")
            torch.cuda.synchronize("cuda:1")
        return (time.perf_counter() - start) / repeat

    print(f"two GPUs, split {{s}}: measured {{wall(pipelined) * 1e3:.4f}} ms")
"""


# --------------------------------------------------------------------------------------------
# 4. Checkpoints: the "module." prefix and map_location


CKPT_IN, CKPT_HIDDEN, CKPT_OUT, CKPT_BATCH = 6, 8, 3, 16
PREFIX = "module."
STRIPS = ("none", "consume_prefix", "load_into_module", "save_module")


@dataclass(frozen=True)
class CkptParams(Params):
    wrap: bool = True  # the model was wrapped in nn.DataParallel when it was saved
    map_location: str = field(default="cpu", metadata=choices("cpu", "same"))  # "same": where it was saved
    # How the prefix is dealt with: not at all; consume_prefix_in_state_dict_if_present on the loaded
    # dict; load into an nn.DataParallel wrapper of the new model (the notes' way); save model.module.state_dict().
    strip: str = field(default="none", metadata=choices(*STRIPS))
    seed: int = _seed()

    def validate(self) -> None:
        super().validate()
        if self.strip == "save_module" and not self.wrap:
            raise InvalidParams("strip", "needs_wrap")

    def estimate_bytes(self) -> int:
        return 1 << 16  # a 6-8-3 MLP, a batch of 16, and the checkpoint


@dataclass(frozen=True)
class CkptResult:
    wrap: bool
    map_location: str
    strip: str
    device: str  # where the model was when it was saved (the run's device)
    dp_device_ids: tuple[int, ...]  # nn.DataParallel's device_ids; empty without GPUs: it then calls the module
    wrapper_matches: bool | None  # the wrapper's output equals the module's (None: not wrapped)
    saved_call: str  # what was saved: "model.state_dict()" or "model.module.state_dict()"
    saved_keys: tuple[str, ...]
    saved_devices: tuple[str, ...]  # device of each saved tensor
    saved_shapes: tuple[tuple[int, ...], ...]
    file_bytes: int  # size of the checkpoint torch.save wrote
    loaded_devices: tuple[str, ...]  # device of each tensor torch.load returned (map_location applied)
    fixed_keys: tuple[str, ...]  # the keys given to load_state_dict (after consume_prefix when chosen)
    target_keys: tuple[str, ...]  # the keys the receiving model's state_dict has
    missing_keys: tuple[str, ...]  # as load_state_dict(strict=False) reports them
    unexpected_keys: tuple[str, ...]
    strict_error: str | None  # torch's message from load_state_dict(strict=True); None: it loaded
    model_keys: tuple[str, ...]  # the plain model's keys (no prefix)
    equal_per_key: tuple[bool, ...]  # each of model_keys: the new model's value equals the saved one
    all_equal: bool


def _ckpt_model(g: torch.Generator, device: torch.device) -> nn.Sequential:
    """Return Linear(6, 8) - BatchNorm1d(8) - ReLU - Linear(8, 3) with every parameter N(0, 0.5^2) from g.

    Biases and the norm's affine parameters are random too, so that a parameter the load did not
    reach differs from the saved one instead of being a zero or a one in both models.
    """
    layers = [nn.Linear(CKPT_IN, CKPT_HIDDEN, device="meta"), nn.BatchNorm1d(CKPT_HIDDEN, device="meta"), nn.ReLU(),
              nn.Linear(CKPT_HIDDEN, CKPT_OUT, device="meta")]  # fmt: skip
    model = nn.Sequential(*layers).to_empty(device=device)
    norm = model[1]
    assert isinstance(norm, nn.BatchNorm1d)
    norm.reset_running_stats()  # mean 0, variance 1, no batches seen: what a fresh BatchNorm1d holds
    for param in model.parameters():
        nn.init.normal_(param, 0.0, 0.5, generator=g)
    return model


def _devices(state: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(str(t.device) for t in state.values())


def run_checkpoint(p: CkptParams, ctx: RunContext) -> CkptResult:
    """Return what was saved, what torch.load gave back, and what load_state_dict made of it."""
    g, dev = ctx.generator, ctx.device
    model = _ckpt_model(g, dev)
    X = torch.randn(CKPT_BATCH, CKPT_IN, generator=g, device=dev)
    with torch.no_grad():
        model(X)  # one training-mode forward: the BatchNorm running statistics are no longer the defaults
    model.eval()
    dp_ids: tuple[int, ...] = ()
    matches: bool | None = None
    state = model.state_dict()
    if p.wrap:
        wrapper = nn.DataParallel(model)
        dp_ids = tuple(int(i) for i in wrapper.device_ids)
        with torch.no_grad():
            # Without GPUs (device_ids empty) or with one, DataParallel calls the module itself.
            matches = bool(torch.allclose(wrapper(X), model(X), rtol=1e-5, atol=1e-6))
        # The wrapper's keys are the module's with "module." in front; model.module.state_dict() has none.
        state = wrapper.module.state_dict() if p.strip == "save_module" else wrapper.state_dict()
    buffer = io.BytesIO()  # in memory: no path a student controls, and nothing unpickled but tensors
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, map_location="cpu" if p.map_location == "cpu" else None, weights_only=True)
    loaded_devices = _devices(loaded)
    if p.strip == "consume_prefix":
        consume_prefix_in_state_dict_if_present(loaded, PREFIX)
    # The new model lives on the CPU: the lesson's case is a checkpoint from a GPU server opened on a laptop.
    target = _ckpt_model(g, dev).to(CPU)
    receiver: nn.Module = nn.DataParallel(target) if p.strip == "load_into_module" else target
    strict_error = None
    try:
        copy.deepcopy(receiver).load_state_dict(loaded)
    except RuntimeError as e:
        strict_error = str(e).strip()
    report = receiver.load_state_dict(loaded, strict=False)
    own = model.state_dict()
    new = target.state_dict()
    equal = tuple(bool(torch.equal(new[k], v.to(CPU))) for k, v in own.items())
    return CkptResult(
        p.wrap, p.map_location, p.strip, str(dev), dp_ids, matches,
        "model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()", tuple(state),
        _devices(state), tuple(tuple(t.shape) for t in state.values()), buffer.getbuffer().nbytes, loaded_devices,
        tuple(loaded), tuple(receiver.state_dict()), tuple(report.missing_keys), tuple(report.unexpected_keys),
        strict_error, tuple(own), equal, all(equal),
    )  # fmt: skip


def code_checkpoint(p: CkptParams) -> str:
    """Return a script that saves, loads and repairs the checkpoint as the page does, printing each step."""
    map_location = '"cpu"' if p.map_location == "cpu" else "None"
    wrap = (
        "model = nn.DataParallel(model)  # without GPUs it just calls the module; the keys gain 'module.'\n" if p.wrap else ""
    )
    saved = "model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()"
    fix = {
        "none": "",
        "consume_prefix": 'consume_prefix_in_state_dict_if_present(state, "module.")  # strip the prefix in place\n',
        "load_into_module": "",
        "save_module": "",
    }[p.strip]
    receiver = "nn.DataParallel(new)" if p.strip == "load_into_module" else "new"
    return f"""import io

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
g = torch.Generator().manual_seed({p.seed})


def make_model():
    hidden = {CKPT_HIDDEN}
    model = nn.Sequential(nn.Linear({CKPT_IN}, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, {CKPT_OUT}))
    for param in model.parameters():  # every parameter from g: reproducible, and unlike the other model's
        nn.init.normal_(param, 0.0, 0.5, generator=g)
    return model


model = make_model().to(device)
with torch.no_grad():
    model(torch.randn({CKPT_BATCH}, {CKPT_IN}, generator=g).to(device))  # updates the BatchNorm running statistics
plain = model
{wrap}saved = {saved}
print("saved keys:", list(saved))
print("saved devices:", [str(t.device) for t in saved.values()])
buffer = io.BytesIO()
torch.save(saved, buffer)
print("file bytes:", buffer.getbuffer().nbytes)
buffer.seek(0)
state = torch.load(buffer, map_location={map_location}, weights_only=True)  # weights_only: tensors, no code
print("loaded devices:", [str(t.device) for t in state.values()])
{fix}new = make_model()  # on the CPU, with other weights
receiver = {receiver}
print("keys given:", list(state))
print("keys expected:", list(receiver.state_dict()))
try:
    receiver.load_state_dict(state)
    print("strict load: ok")
except RuntimeError as e:
    print("strict load:", str(e).splitlines()[0])
report = receiver.load_state_dict(state, strict=False)
print("missing keys:", report.missing_keys)
print("unexpected keys:", report.unexpected_keys)
equal = [torch.equal(new.state_dict()[k], v.cpu()) for k, v in plain.state_dict().items()]
print("equal per key:", equal)
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "facts": Experiment(FactsParams, run_facts, code_facts),
    "dataparallel": Experiment(DPParams, run_dataparallel, code_dataparallel),
    "pipeline": Experiment(PipeParams, run_pipeline, code_pipeline),
    "checkpoint": Experiment(CkptParams, run_checkpoint, code_checkpoint),
}
