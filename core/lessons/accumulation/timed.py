"""What the two timed experiments (memory, savers) share: the time model of the work limit and the measurements.

The memory figure everywhere is "bytes of activations saved for backward, counted with saved-tensor
hooks" (core.measure.saved_activation_bytes: each storage once, parameters excluded), which the CPU
can report; on CUDA the runs also report the caching allocator's peak and the bytes allocated before
the step (core.measure.cuda_peak_bytes). What the hooks count was checked against the process's
malloc statistics (tests): the tensors that hooks report are the ones that stay allocated between
forward and backward. Both experiments time through core.measure and run alone on the device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from core.experiment import RunContext
from core.lessons.accumulation.model import (
    CHANNELS,
    CLASSES,
    IN_FEATURES,
    SIDE,
    ModelSpec,
    build_model,
    make_batch,
    make_teacher,
)
from core.measure import Timing, saved_activation_bytes
from core.params import InvalidParams, bounds

LR = 0.01  # plain SGD: the optimizer has no state, so memory is parameters + gradients + activations
# The work limit's model of one CPU thread (measured on the lesson's MLP and CNN, fp32, torch 2.13):
MACS_PER_SECOND = 25e9  # multiply-adds per second of the forward and backward passes (measured 30 to 45e9)
LAYER_SECONDS = 1e-4  # fixed cost of one layer's forward and backward per micro-batch (measured 60 to 100 us)
WEIGHT_SECONDS = 5e-9  # per weight and micro-batch: small micro-batches pass over the weights memory-bound (measured)
CALLS = 4  # steps a timed k or mode costs at least: the measured step, the warm-up, the block-size estimate, a block
MAX_WORK_SECONDS = 0.75  # one step of every k (or mode), estimated: the run's work beyond the timer's min_run_time


def min_run_time_field() -> Any:
    """Return a field for the seconds torch.utils.benchmark times each k or mode."""
    return dataclasses.field(default=0.2, metadata=bounds(0.05, 1.0, 0.05))


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


def micro_batch_seconds(spec: ModelSpec) -> float:
    """Return the estimated cost of one micro-batch's forward and backward beyond its multiply-adds, seconds."""
    return (spec.depth + 2) * LAYER_SECONDS + spec.parameter_count() * WEIGHT_SECONDS


def transient_bytes_per_sample(spec: ModelSpec) -> int:
    """Return the bytes per sample alive briefly besides the saved ones: a pre-activation and two gradients.

    The CNN adds a convolution workspace as large as an unfolded input (9 x channels x pixels).
    """
    per_layer = spec.width * (1 if spec.model == "mlp" else SIDE * SIDE)
    return 4 * per_layer * (3 if spec.model == "mlp" else 12)


class TimedParams(Protocol):
    """The Params of a timed experiment, as the work limit sees them."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def batch(self) -> int: ...

    @property
    def width(self) -> int: ...

    def work_seconds(self) -> float: ...


T = TypeVar("T", bound=TimedParams)


def macs_of_seconds(seconds: float) -> float:
    """Return the multiply-adds one CPU thread does in `seconds` of the time model, CALLS steps over."""
    return CALLS * seconds * MACS_PER_SECOND


def check_work(p: T, least_batch: int = 8) -> None:
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


def parameter_bytes(net: nn.Module) -> int:
    """Return the bytes of the network's parameters."""
    return sum(t.numel() * t.element_size() for t in net.parameters())


def gradient_bytes(net: nn.Module) -> int:
    """Return the bytes of the gradients the parameters hold now."""
    return sum(t.grad.numel() * t.grad.element_size() for t in net.parameters() if t.grad is not None)


def setup(
    spec: ModelSpec, batch: int, state: torch.Tensor, ctx: RunContext
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """Return the network and a batch X, y, drawn from ctx.generator reset to `state` (same for every k and mode)."""
    ctx.generator.set_state(state)
    net = build_model(spec, ctx.generator, ctx.device)
    teacher = make_teacher(ctx.generator, ctx.device)
    X, y = make_batch(spec, batch, teacher, ctx.generator, ctx.device)
    return net, X, y


def run_saving(fn: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Return fn()'s output and the bytes autograd saved for backward while it ran (exclude's storages not counted)."""
    out: list[torch.Tensor] = []
    saved = saved_activation_bytes(lambda: out.append(fn()), exclude)
    return out[0], saved


def block_times(t: Timing) -> np.ndarray:
    """Return the per-block seconds per call as a float64 array."""
    return np.array(t.times, dtype=np.float64)


def measure_context(min_run_time: float) -> dict[str, Any]:
    """Return what `scripts/_measure.py.j2` reads: saved_bytes(fn, exclude) and seconds_per_step(step)."""
    return {"min_run_time": repr(min_run_time)}


def weight_copy_bytes(fn: Callable[[], torch.Tensor], net: nn.Module) -> int:
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


def relative_error(net: nn.Module, reference: list[torch.Tensor]) -> float:
    """Return ||g - g_ref|| / ||g_ref|| over all weights, in float64 one weight at a time (no float64 copy of all)."""
    grads = [t.grad for t in net.parameters() if t.grad is not None]
    diff = sum(float(torch.linalg.vector_norm(g.double() - r.double()) ** 2) for g, r in zip(grads, reference, strict=True))
    norm = sum(float(torch.linalg.vector_norm(r.double()) ** 2) for r in reference)
    return math.sqrt(diff / norm)
