"""Memory and time experiments of the "Gradient accumulation" lesson: each is Params, Result, run_* and code_*.

1. memory - one effective step of `batch` samples split into k micro-batches, for each k: the
            activations one micro-batch keeps for backward (about 1/k of the full batch's), and
            the time per step and per sample.
2. savers - one training step in fp32, under bf16 / fp16 autocast, and with activation
            checkpointing: saved activations, time, loss, and how far each gradient is from fp32's.

Both are timing experiments: the page runs them with `execute(..., exclusive=True)`, alone on the
device. The memory figure everywhere is "bytes of activations saved for backward, counted with
saved-tensor hooks" (core.measure.saved_activation_bytes: each storage once, parameters
excluded), which the CPU can report; on CUDA the runs also report the caching allocator's peak
and the bytes allocated before the step (core.measure.cuda_peak_bytes).

What the hooks count was checked against the process's malloc statistics (tests): the tensors
that hooks report are the ones that stay allocated between forward and backward. With
non-reentrant checkpointing (torch 2.13) every checkpointed segment stores its input with
`ctx.save_for_backward` *outside* its own hooks, so our outer hooks see exactly what is kept
(the segment inputs), while the tensors saved inside the segment go to checkpoint's inner hooks
and are not kept: they are recomputed during backward. That recomputation briefly holds one
segment's saved tensors again; `recompute_bytes` reports them for the largest segment. (Each
checkpoint call also stashes the RNG state, about 5 KiB on the CPU: not an activation, not counted.)
Checkpointing a single (Linear, ReLU) block saves nothing here, because such a block keeps only its
input and output, which its neighbours keep anyway: hence `blocks_per_checkpoint`, default 2.

The model and data are core.accumulation's (ModelSpec, build_model, make_teacher, make_batch),
without a norm layer. Every k and every mode starts from the same generator state, so a run of
one k (or one mode) gives exactly the numbers of that k inside a run of many.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.accumulation import (
    CHANNELS,
    CLASSES,
    IN_FEATURES,
    MODELS,
    SIDE,
    ModelSpec,
    build_model,
    make_batch,
    make_teacher,
    model_code,
)
from core.measure import Timing, cuda_peak_bytes, saved_activation_bytes, time_call
from core.params import InvalidParams, Params, bounds, choices, shape_spec
from core.runner import RunContext
from core.tensors import Experiment

LR = 0.01  # plain SGD: the optimizer has no state, so memory is parameters + gradients + activations
# The work limit's model of one CPU thread (measured on the lesson's MLP and CNN, fp32, torch 2.13):
MACS_PER_SECOND = 25e9  # multiply-adds per second of the forward and backward passes (measured 30 to 45e9)
LAYER_SECONDS = 1e-4  # fixed cost of one layer's forward and backward per micro-batch (measured 60 to 100 us)
WEIGHT_SECONDS = 5e-9  # per weight and micro-batch: small micro-batches pass over the weights memory-bound (measured)
CALLS = 4  # steps a timed k or mode costs at least: the measured step, the warm-up, the block-size estimate, a block
MAX_WORK_SECONDS = 0.75  # one step of every k (or mode), estimated: the run's work beyond the timer's min_run_time
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fp32", "bf16", "fp16", "checkpoint")
MODE_COST = {"fp32": 1.0, "bf16": 2.0, "fp16": 1.0, "checkpoint": 4 / 3}  # relative step cost (checkpoint: one more forward)


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def _min_run_time() -> Any:
    """Return a field for the seconds torch.utils.benchmark times each k or mode."""
    return field(default=0.2, metadata=bounds(0.05, 1.0, 0.05))


def forward_macs(spec: ModelSpec) -> int:
    """Return the multiply-adds of one sample's forward pass through the network."""
    w, d = spec.width, spec.depth
    if spec.model == "mlp":
        return IN_FEATURES * w + (d - 1) * w * w + w * CLASSES
    return SIDE * SIDE * 9 * (CHANNELS * w + (d - 1) * w * w) + w * CLASSES


def saved_bytes_per_sample(spec: ModelSpec) -> int:
    """Return the fp32 bytes autograd keeps per sample: each layer's input, each ReLU's output, log-probs, label.

    Linear / Conv2d save their input (the previous ReLU's output, which that ReLU also saves: one
    storage), ReLU saves its output, the head saves its input, log_softmax its output, nll_loss the
    int64 label. This is the estimate's figure; the tests derive it again on their own.
    """
    w, d = spec.width, spec.depth
    if spec.model == "mlp":
        floats = IN_FEATURES + d * w + CLASSES
    else:
        floats = CHANNELS * SIDE * SIDE + d * w * SIDE * SIDE + w + CLASSES  # + the pooled features
    return 4 * floats + 8


def _micro_batch_seconds(spec: ModelSpec) -> float:
    """Return the estimated cost of one micro-batch's forward and backward beyond its multiply-adds, seconds."""
    return (spec.depth + 2) * LAYER_SECONDS + spec.parameter_count() * WEIGHT_SECONDS


def _transient_bytes_per_sample(spec: ModelSpec) -> int:
    """Return the bytes per sample alive briefly besides the saved ones: a pre-activation and two gradients.

    The CNN adds a convolution workspace as large as an unfolded input (9 x channels x pixels).
    """
    per_layer = spec.width * (1 if spec.model == "mlp" else SIDE * SIDE)
    return 4 * per_layer * (3 if spec.model == "mlp" else 12)


def _check_work(p: MemoryParams | SaversParams, least_batch: int = 8) -> None:
    """Raise InvalidParams('batch' or 'width', 'too_much_work', max=...) if p.work_seconds() is too much.

    The field named is the one the student can lower to fit: the batch when a batch of at least
    least_batch fits at this width, else the width; max is its largest value that fits.
    """
    if p.work_seconds() <= MAX_WORK_SECONDS:
        return

    def fits(batch: int, width: int) -> bool:
        return dataclasses.replace(p, batch=batch, width=width).work_seconds() <= MAX_WORK_SECONDS

    lo, hi = least_batch, p.batch  # the work grows with the batch: bisect for the largest that fits
    if fits(lo, p.width):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid, p.width) else (lo, mid)
        raise InvalidParams("batch", "too_much_work", max=lo)
    for width in range(p.width - 8, 7, -8):
        if fits(p.batch, width):
            raise InvalidParams("width", "too_much_work", max=width)
    raise InvalidParams("batch", "too_much_work", max=least_batch)


def _parameter_bytes(net: nn.Module) -> int:
    """Return the bytes of the network's parameters."""
    return sum(t.numel() * t.element_size() for t in net.parameters())


def _gradient_bytes(net: nn.Module) -> int:
    """Return the bytes of the gradients the parameters hold now."""
    return sum(t.grad.numel() * t.grad.element_size() for t in net.parameters() if t.grad is not None)


def _setup(
    spec: ModelSpec, batch: int, state: torch.Tensor, ctx: RunContext
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """Return the network and a batch X, y, drawn from ctx.generator reset to `state` (same for every k and mode)."""
    ctx.generator.set_state(state)
    net = build_model(spec, ctx.generator, ctx.device)
    teacher = make_teacher(ctx.generator, ctx.device)
    X, y = make_batch(spec, batch, teacher, ctx.generator, ctx.device)
    return net, X, y


def _run_saving(fn: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Return fn()'s output and the bytes autograd saved for backward while it ran (exclude's storages not counted)."""
    out: list[torch.Tensor] = []
    saved = saved_activation_bytes(lambda: out.append(fn()), exclude)
    return out[0], saved


def _times(t: Timing) -> np.ndarray:
    """Return the per-block seconds per call as a float64 array."""
    return np.array(t.times, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# 1. memory: the same effective batch in k micro-batches


@dataclass(frozen=True)
class MemoryParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=256, metadata=bounds(8, 1024))  # B: samples per effective step
    accum_steps: tuple[int, ...] = field(default=(1, 2, 4, 8, 16), metadata=shape_spec(max_dims=8, lo=1, hi=1024, sep=","))
    width: int = field(default=256, metadata=bounds(8, 1024, 8))  # units (MLP) or channels (CNN) per hidden block
    depth: int = field(default=4, metadata=bounds(1, 8))  # hidden blocks: layer -> ReLU
    min_run_time: float = _min_run_time()
    seed: int = _seed()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no norm layer)."""
        return ModelSpec(self.model, self.width, self.depth)

    def work_seconds(self) -> float:
        """Return the estimated seconds of one effective step for every k (one CPU thread)."""
        spec = self.spec()
        compute = len(self.accum_steps) * 3 * self.batch * forward_macs(spec) / MACS_PER_SECOND
        return compute + self._fixed_seconds()

    def _fixed_seconds(self) -> float:
        """Return the estimated per-micro-batch costs of one step of every k: they grow with the number of micro-batches."""
        return sum(self.accum_steps) * _micro_batch_seconds(self.spec())

    def validate(self) -> None:
        super().validate()
        if any(k > self.batch for k in self.accum_steps):
            raise InvalidParams("accum_steps", "more_than_batch", batch=self.batch)
        if len(set(self.accum_steps)) != len(self.accum_steps):
            raise InvalidParams("accum_steps", "duplicate")
        layers = sum(self.accum_steps) * (self.depth + 2) * LAYER_SECONDS
        if layers > MAX_WORK_SECONDS / 2:
            # Many micro-batches cost time whatever their size: the number of them is what to lower.
            most = int(MAX_WORK_SECONDS / 2 / ((self.depth + 2) * LAYER_SECONDS))
            raise InvalidParams("accum_steps", "too_many_micro_batches", max=most)
        _check_work(self, least_batch=max(8, *self.accum_steps))

    def estimate_bytes(self) -> int:
        spec = self.spec()
        largest = -(-self.batch // min(self.accum_steps, default=1))  # samples of the largest micro-batch
        per_sample = saved_bytes_per_sample(spec) + _transient_bytes_per_sample(spec)
        data = 2 * self.batch * (4 * math.prod(spec.input_shape()) + 8)  # the batch and its micro-batch copies
        # Parameters, gradients and the optimizer's temporaries; the largest micro-batch's activations.
        return 12 * spec.parameter_count() + data + largest * per_sample + (1 << 20)


@dataclass(frozen=True)
class AccumMemory:
    """One k: the effective step of `batch` samples as k micro-batches."""

    accum_steps: int  # k
    micro_batches: tuple[int, ...]  # samples per micro-batch (torch.tensor_split sizes), summing to batch
    saved_bytes: int  # bytes of activations saved for backward by the largest micro-batch, counted with saved-tensor hooks:
    # the most held at once, since each micro-batch's backward frees them before the next forward
    loss: float  # the accumulated loss of the first step: sum of each micro-batch's mean loss * n_i / batch
    cuda_baseline_bytes: int | None  # CUDA: torch.cuda.memory_allocated before the step; None on the CPU
    cuda_peak_bytes: int | None  # CUDA: torch.cuda.max_memory_allocated during the step (absolute); None on the CPU
    time_median: float  # seconds per effective step (zero_grad, k forward + backward, SGD step), median
    time_iqr: float  # interquartile range of the per-block times, seconds
    times: np.ndarray  # (blocks,) seconds per step of each timed block
    time_per_sample: float  # time_median / batch, seconds


@dataclass(frozen=True)
class MemoryResult:
    model: str
    batch: int
    device: str  # "cpu" or "cuda": the CUDA fields are None on the CPU
    parameter_bytes: int  # bytes of the network's weights (float32)
    gradient_bytes: int  # bytes of their .grad after a step (the same: one float32 per weight)
    steps: tuple[AccumMemory, ...]  # one per k, in the order of accum_steps


def micro_batch_sizes(batch: int, k: int) -> tuple[int, ...]:
    """Return the sizes torch.tensor_split gives when it splits `batch` samples into k parts (larger first)."""
    return tuple(batch // k + (1 if i < batch % k else 0) for i in range(k))


def _accum_step(p: MemoryParams, k: int, state: torch.Tensor, ctx: RunContext) -> tuple[AccumMemory, int, int]:
    """Return the measurements of one k, with the parameter and gradient bytes."""
    net, X, y = _setup(p.spec(), p.batch, state, ctx)
    # Each micro-batch in storage of its own, as a data loader delivers it: a view into the whole batch
    # would keep (and be counted as) the whole batch's storage.
    micro = [(Xi.clone(), yi.clone()) for Xi, yi in zip(torch.tensor_split(X, k), torch.tensor_split(y, k), strict=True)]
    del X, y
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    weights = list(net.parameters())

    def micro_loss(Xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        # Weighted by n_i / B, the accumulated gradient is the full batch's mean-loss gradient.
        return F.cross_entropy(net(Xi), yi) * (yi.shape[0] / p.batch)

    def step() -> None:
        optimizer.zero_grad()
        for Xi, yi in micro:
            torch.autograd.backward(micro_loss(Xi, yi))  # frees this micro-batch's saved activations
        optimizer.step()

    # The first step, measured: the largest micro-batch comes first and its saved tensors are the peak.
    optimizer.zero_grad()
    loss, saved = _run_saving(partial(micro_loss, *micro[0]), exclude=weights)
    torch.autograd.backward(loss)
    losses = [loss.detach()]
    for Xi, yi in micro[1:]:
        loss = micro_loss(Xi, yi)
        torch.autograd.backward(loss)
        losses.append(loss.detach())
    optimizer.step()
    total = float(torch.stack(losses).sum().item())
    grad_bytes = _gradient_bytes(net)
    baseline = peak = None
    if ctx.device.type == "cuda":
        baseline, peak = cuda_peak_bytes(step, ctx.device)
    t = time_call(step, ctx.device, p.min_run_time)
    sizes = tuple(Xi.shape[0] for Xi, _ in micro)
    row = AccumMemory(k, sizes, saved, total, baseline, peak, t.median, t.iqr, _times(t), t.median / p.batch)
    return row, _parameter_bytes(net), grad_bytes


def run_memory(p: MemoryParams, ctx: RunContext) -> MemoryResult:
    """Time one effective step for each k and count the activations its largest micro-batch saves."""
    state = ctx.generator.get_state()
    rows = []
    param_bytes = grad_bytes = 0
    for k in p.accum_steps:
        ctx.check_deadline()
        row, param_bytes, grad_bytes = _accum_step(p, k, state, ctx)
        rows.append(row)
    return MemoryResult(p.model, p.batch, ctx.device.type, param_bytes, grad_bytes, tuple(rows))


SAVED_BYTES_CODE = '''def saved_bytes(fn, exclude):
    """Return the bytes of the distinct storages autograd saves for backward while fn() runs, except exclude's."""
    def key(t):
        return t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()

    skip = {key(t) for t in exclude}  # pass the weights: saving a weight keeps a reference, not a copy
    seen = {}

    def pack(t):
        if key(t) not in skip:
            seen[key(t)] = key(t)[1]  # views of one storage count once
        return t.detach()  # the live tensor would form a reference cycle with its grad_fn

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def seconds_per_step(step):
    step()  # warm up
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=%r).median
'''


def code_memory(p: MemoryParams) -> str:
    """Return a script that splits the batch into k micro-batches and prints saved bytes and time per step for each k."""
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark


{model_code(p.spec())}

{SAVED_BYTES_CODE % p.min_run_time}

B = {p.batch}
for accum_steps in {p.accum_steps!r}:
    g = torch.Generator().manual_seed({p.seed})  # every k starts from the same weights and data
    net = make_net(g)
    teacher = make_teacher(g)
    X, y = make_batch(B, teacher, g)
    # each micro-batch in its own storage, as a data loader would deliver it
    micro = [(Xi.clone(), yi.clone()) for Xi, yi in zip(torch.tensor_split(X, accum_steps), torch.tensor_split(y, accum_steps))]
    optimizer = torch.optim.SGD(net.parameters(), lr={LR})

    def micro_loss(Xi, yi):
        return F.cross_entropy(net(Xi), yi) * (len(yi) / B)  # weighted: the sum is the full batch's mean loss

    def step():
        optimizer.zero_grad()
        for Xi, yi in micro:
            micro_loss(Xi, yi).backward()  # accumulates into .grad and frees this micro-batch's activations
        optimizer.step()

    losses = []
    n_bytes = saved_bytes(lambda: losses.append(micro_loss(*micro[0])), list(net.parameters()))  # the largest one
    losses[0].backward()
    sizes = [len(yi) for _, yi in micro]
    print(f"accum_steps {{accum_steps}} micro-batches {{sizes}} saved activation bytes {{n_bytes}} "
          f"time per step {{seconds_per_step(step) * 1e3:.3f}} ms")
"""


# --------------------------------------------------------------------------------------------
# 2. savers: mixed precision and activation checkpointing


@dataclass(frozen=True)
class SaversParams(Params):
    model: str = field(default="mlp", metadata=choices(*MODELS))
    batch: int = field(default=256, metadata=bounds(8, 1024))
    width: int = field(default=256, metadata=bounds(8, 1024, 8))
    depth: int = field(default=4, metadata=bounds(1, 8))
    modes: tuple[str, ...] = field(default=MODES, metadata=choices(*MODES))
    # Hidden blocks per torch.utils.checkpoint call (the last segment may be shorter; more than depth is one segment).
    blocks_per_checkpoint: int = field(default=2, metadata=bounds(1, 8))
    min_run_time: float = _min_run_time()
    seed: int = _seed()

    def spec(self) -> ModelSpec:
        """Return the network these params describe (no norm layer)."""
        return ModelSpec(self.model, self.width, self.depth)

    def roles(self) -> dict[str, str]:
        """Return the fields this choice of modes reads (blocks_per_checkpoint only with checkpointing)."""
        names = [f.name for f in self.specs()]
        return {n: n for n in names if n != "blocks_per_checkpoint" or "checkpoint" in self.modes}

    def segments(self) -> tuple[int, ...]:
        """Return the hidden blocks of each checkpointed segment, e.g. (2, 2) for depth 4."""
        every = min(self.blocks_per_checkpoint, self.depth)
        return tuple(min(every, self.depth - start) for start in range(0, self.depth, every))

    def work_seconds(self) -> float:
        """Return the estimated seconds of one step of every mode plus the fp32 reference step (one CPU thread)."""
        return self._steps() * 3 * self.batch * forward_macs(self.spec()) / MACS_PER_SECOND + self._fixed_seconds()

    def _steps(self) -> float:
        """Return the full steps of compute one step of every mode costs, with the reference step (a quarter of a mode)."""
        return sum(MODE_COST[m] for m in self.modes) + 1 / CALLS

    def _fixed_seconds(self) -> float:
        """Return the estimated per-pass costs of one step of every mode and of the reference step."""
        return (len(self.modes) + 1) * _micro_batch_seconds(self.spec())

    def validate(self) -> None:
        super().validate()
        if not self.modes:
            raise InvalidParams("modes", "empty")
        _check_work(self)

    def estimate_bytes(self) -> int:
        spec = self.spec()
        per_sample = saved_bytes_per_sample(spec) + _transient_bytes_per_sample(spec)
        data = self.batch * (4 * math.prod(spec.input_shape()) + 8)
        # Parameters, gradients, the optimizer's temporaries, half-precision weight copies and the fp32
        # reference gradient; three float64 copies of the largest weight while the gradients are compared;
        # the batch's activations (a 16-bit mode keeps at most fp32's, besides its weight copies).
        w, n_in = spec.width, IN_FEATURES if spec.model == "mlp" else 9 * CHANNELS
        largest = max(n_in * w, w * w if spec.model == "mlp" else 9 * w * w, w * CLASSES)
        return 18 * spec.parameter_count() + 24 * largest + data + self.batch * per_sample + (1 << 20)


@dataclass(frozen=True)
class SaverRun:
    """One mode's training step (forward, backward, SGD step)."""

    mode: str  # one of MODES
    unavailable: str | None  # message key when this device cannot run the mode (then the numbers are 0 or nan)
    saved_bytes: int  # bytes saved for backward (activations, and autocast's half-precision weight copies), counted
    # with saved-tensor hooks: what is held between forward and backward
    weight_copy_bytes: int  # of saved_bytes, autocast's 16-bit copies of weights (bf16, fp16; else 0): activations are the rest
    recompute_bytes: int  # checkpoint: bytes the largest segment's recomputation saves again, briefly, in backward; else 0
    cuda_baseline_bytes: int | None  # CUDA: torch.cuda.memory_allocated before the step; None on the CPU
    cuda_peak_bytes: int | None  # CUDA: torch.cuda.max_memory_allocated during the step (absolute); None on the CPU
    loss: float  # cross-entropy of the first step (the same weights and batch for every mode)
    grad_rel_error: float  # ||g - g_fp32|| / ||g_fp32|| over all weights, the first step's gradient
    time_median: float  # seconds per step, median
    time_iqr: float  # interquartile range of the per-block times, seconds
    times: np.ndarray  # (blocks,) seconds per step of each timed block


@dataclass(frozen=True)
class SaversResult:
    model: str
    batch: int
    device: str  # "cpu" or "cuda": the CUDA fields are None on the CPU
    parameter_bytes: int  # bytes of the network's weights (float32 in every mode: autocast casts copies)
    segments: tuple[int, ...]  # hidden blocks per checkpointed segment
    runs: tuple[SaverRun, ...]  # one per mode, in the order of modes


def unavailable_reason(mode: str, model: str, device: torch.device) -> str | None:
    """Return why `mode` cannot run on this device (a message key), or None when it can."""
    if mode not in HALF:
        return None
    dtype = HALF[mode]
    if not torch.amp.is_autocast_available(device.type):
        return "autocast_unsupported"
    if device.type == "cuda" and mode == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16_unsupported"
    if device.type == "cpu" and model == "cnn":
        # torch 2.13's CPU float16 convolution backward is a slow reference kernel (measured 400x slower
        # than float32 at the lesson's sizes); bfloat16 is fast only where oneDNN supports it.
        if mode == "fp16":
            return "fp16_conv_slow"
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "bf16_conv_slow"
    # Autocast that does not support a dtype warns and runs in float32: check that it really casts.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device.type, dtype=dtype):
                probe = torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except RuntimeError:
        return "autocast_failed"
    return None if probe.dtype == dtype else "autocast_ignored"


def mode_loss(net: nn.Sequential, X: torch.Tensor, y: torch.Tensor, mode: str, segments: tuple[int, ...]) -> torch.Tensor:
    """Return the cross-entropy of net on X, y computed the way `mode` computes it (the forward pass only)."""
    if mode in HALF:
        with torch.autocast(X.device.type, dtype=HALF[mode]):
            return F.cross_entropy(net(X), y)  # autocast runs cross_entropy in float32
    if mode == "checkpoint":
        h, start = X, 0
        for blocks in segments:
            segment = net[3 * start : 3 * (start + blocks)]  # (layer, norm, ReLU) per hidden block
            # Keeps only the segment's input; the segment's forward runs again during backward.
            h = checkpoint(segment, h, use_reentrant=False)
            start += blocks
        return F.cross_entropy(net[3 * start :](h), y)
    return F.cross_entropy(net(X), y)


def _recompute_bytes(net: nn.Sequential, X: torch.Tensor, segments: tuple[int, ...]) -> int:
    """Return the bytes the largest segment saves when checkpoint recomputes it (its input excluded: kept anyway)."""
    weights, h, start, most = list(net.parameters()), X, 0, 0
    for blocks in segments:
        segment = net[3 * start : 3 * (start + blocks)]
        x_in = h.detach().requires_grad_(h.requires_grad)  # as checkpoint's recomputation sees it
        h, saved = _run_saving(partial(segment, x_in), exclude=[*weights, x_in])
        # Free this graph: measure's pack hook keeps the live tensors, and a saved output (ReLU's) then forms
        # a reference cycle with its grad_fn in C++ that only a backward pass breaks (gc cannot).
        torch.autograd.backward(h, torch.zeros_like(h))
        most, start = max(most, saved), start + blocks
    return most


def _weight_copy_bytes(fn: Callable[[], torch.Tensor], net: nn.Module) -> int:
    """Return the bytes of the casts of weights (not the weights themselves) that autograd saves while fn() runs.

    A saved weight copy is, through at most a view (w.t()), a cast (ToCopyBackward) of a parameter:
    its grad_fn chain reaches the parameter's AccumulateGrad node with single links only.
    """
    weights = {id(t) for t in net.parameters()}
    seen: dict[tuple[int, int], int] = {}

    def is_weight_copy(t: torch.Tensor) -> bool:
        node = t.grad_fn  # None for a parameter itself or for data
        for _ in range(4):  # at most a view or two, the cast, then the parameter's AccumulateGrad
            if node is None:
                return False
            if id(getattr(node, "variable", None)) in weights:
                return True
            links = [n for n, _ in node.next_functions if n is not None]
            node = links[0] if len(links) == 1 else None
        return False

    def pack(t: torch.Tensor) -> torch.Tensor:
        if is_weight_copy(t):
            storage = t.untyped_storage()
            seen[storage.data_ptr(), storage.nbytes()] = storage.nbytes()
        # Detached: keeping the live tensor would tie a saved output to its own grad_fn, a cycle in C++ that
        # leaks this graph (and the network) since no backward pass follows.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _grads(net: nn.Module) -> list[torch.Tensor]:
    """Return a copy of every weight's gradient (float32, on the device)."""
    return [t.grad.detach().clone() for t in net.parameters() if t.grad is not None]


def _relative_error(net: nn.Module, reference: list[torch.Tensor]) -> float:
    """Return ||g - g_ref|| / ||g_ref|| over all weights, in float64 one weight at a time (no float64 copy of all)."""
    grads = [t.grad for t in net.parameters() if t.grad is not None]
    diff = sum(float(torch.linalg.vector_norm(g.double() - r.double()) ** 2) for g, r in zip(grads, reference, strict=True))
    norm = sum(float(torch.linalg.vector_norm(r.double()) ** 2) for r in reference)
    return math.sqrt(diff / norm)


def _saver_run(p: SaversParams, mode: str, state: torch.Tensor, reference: list[torch.Tensor], ctx: RunContext) -> SaverRun:
    """Return the measurements of one mode's training step."""
    reason = unavailable_reason(mode, p.model, ctx.device)
    if reason is not None:
        return SaverRun(mode, reason, 0, 0, 0, None, None, math.nan, math.nan, math.nan, math.nan, np.zeros(0))
    net, X, y = _setup(p.spec(), p.batch, state, ctx)
    segments = p.segments()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    scaler = torch.amp.GradScaler(ctx.device.type) if mode == "fp16" else None  # fp16 gradients underflow unscaled

    def backward_and_step(loss: torch.Tensor, before_step: Callable[[], None] = lambda: None) -> None:
        if scaler is None:
            torch.autograd.backward(loss)
            before_step()
            optimizer.step()
        else:
            torch.autograd.backward(scaler.scale(loss))
            scaler.unscale_(optimizer)  # the gradients as fp32 would have them (step skips them if inf or nan)
            before_step()
            scaler.step(optimizer)
            scaler.update()

    def step() -> None:
        optimizer.zero_grad()
        backward_and_step(mode_loss(net, X, y, mode, segments))

    optimizer.zero_grad()
    loss, saved = _run_saving(partial(mode_loss, net, X, y, mode, segments), exclude=net.parameters())
    errors: list[float] = []
    backward_and_step(loss, lambda: errors.append(_relative_error(net, reference)))
    recompute = _recompute_bytes(net, X, segments) if mode == "checkpoint" else 0
    copies = _weight_copy_bytes(partial(mode_loss, net, X, y, mode, segments), net) if mode in HALF else 0
    baseline = peak = None
    if ctx.device.type == "cuda":
        baseline, peak = cuda_peak_bytes(step, ctx.device)
    t = time_call(step, ctx.device, p.min_run_time)
    return SaverRun(
        mode, None, saved, copies, recompute, baseline, peak, float(loss.item()), errors[0], t.median, t.iqr, _times(t)
    )


def run_savers(p: SaversParams, ctx: RunContext) -> SaversResult:
    """Run one training step per mode from the same weights and batch; count, time and compare each."""
    state = ctx.generator.get_state()
    net, X, y = _setup(p.spec(), p.batch, state, ctx)
    torch.autograd.backward(F.cross_entropy(net(X), y))
    reference = _grads(net)  # the fp32 gradient every mode's gradient is compared with
    param_bytes = _parameter_bytes(net)
    del net, X, y
    runs = []
    for mode in p.modes:
        ctx.check_deadline()
        runs.append(_saver_run(p, mode, state, reference, ctx))
    return SaversResult(p.model, p.batch, ctx.device.type, param_bytes, p.segments(), tuple(runs))


def code_savers(p: SaversParams) -> str:
    """Return a script that runs one training step per mode and prints saved bytes, loss, gradient error and time."""
    skip = ""
    if p.model == "cnn":
        skip = """    if mode == "fp16":
        print("fp16 skipped: torch's float16 convolution backward is very slow on a CPU")
        continue
    if mode == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():  # private: oneDNN's own check
        print("bf16 skipped: this CPU has no fast bfloat16 convolution")
        continue
"""
    return f"""import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark
from torch.utils.checkpoint import checkpoint


{model_code(p.spec())}

{SAVED_BYTES_CODE % p.min_run_time}

segments = {p.segments()!r}  # hidden blocks per checkpointed segment; each block is (layer, norm, ReLU)


def forward_loss(net, X, y, mode):
    if mode in ("bf16", "fp16"):
        with torch.autocast("cpu", dtype=torch.bfloat16 if mode == "bf16" else torch.float16):
            return F.cross_entropy(net(X), y)
    if mode == "checkpoint":
        h, start = X, 0
        for blocks in segments:
            # keeps only the segment's input; its forward runs again during backward
            h = checkpoint(net[3 * start : 3 * (start + blocks)], h, use_reentrant=False)
            start += blocks
        return F.cross_entropy(net[3 * start :](h), y)
    return F.cross_entropy(net(X), y)


def recompute_bytes(net, X):
    h, start, most = X, 0, 0
    for blocks in segments:
        segment = net[3 * start : 3 * (start + blocks)]
        x_in = h.detach().requires_grad_(h.requires_grad)
        out = []
        most = max(most, saved_bytes(lambda: out.append(segment(x_in)), [*net.parameters(), x_in]))  # x_in is kept anyway
        h, start = out[0], start + blocks
    return most


def setup():
    g = torch.Generator().manual_seed({p.seed})  # every mode starts from the same weights and data
    net = make_net(g)
    teacher = make_teacher(g)
    X, y = make_batch({p.batch}, teacher, g)
    return net, X, y


def flat_grad(net):
    return torch.cat([w.grad.flatten() for w in net.parameters()]).double()


net, X, y = setup()
F.cross_entropy(net(X), y).backward()
reference = flat_grad(net)  # the fp32 gradient

for mode in {p.modes!r}:
{skip}    net, X, y = setup()
    optimizer = torch.optim.SGD(net.parameters(), lr={LR})
    scaler = torch.amp.GradScaler("cpu") if mode == "fp16" else None  # fp16 gradients underflow unscaled
    errors = []

    def backward_and_step(loss):
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # the gradients as fp32 would have them
        if not errors:  # the first step's gradient against fp32's
            errors.append(((flat_grad(net) - reference).norm() / reference.norm()).item())
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped if a gradient is inf or nan
            scaler.update()

    def step():
        optimizer.zero_grad()
        backward_and_step(forward_loss(net, X, y, mode))

    losses = []
    n_bytes = saved_bytes(lambda: losses.append(forward_loss(net, X, y, mode)), list(net.parameters()))
    backward_and_step(losses[0])
    extra = recompute_bytes(net, X) if mode == "checkpoint" else 0

    print(f"{{mode}}: saved activation bytes {{n_bytes}} recompute bytes {{extra}} loss {{losses[0].item()}} "
          f"gradient relative error {{errors[0]}} time per step {{seconds_per_step(step) * 1e3:.3f}} ms")
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "memory": Experiment(MemoryParams, run_memory, code_memory),
    "savers": Experiment(SaversParams, run_savers, code_savers),
}
