"""Memory that does not come back: `total_loss += loss` keeps every step's graph alive; `loss.item()` does not.

A loop of `steps` steps runs a small MLP (Linear, ReLU, Linear, ReLU, Linear(width, 1), MSE loss) and
adds each step's loss to a running total in one of three ways. After every step the run counts what
is still held:

- the bytes of the tensors autograd saved for backward that are still alive, over every step so far.
  Each saved tensor is packed by a saved-tensor hook that keeps only a weak reference to it, so a
  tensor counts exactly as long as some graph still holds it (parameters excluded: saving a weight
  keeps a reference, not a copy). This is what a CPU can tell us, and it is exact;
- the autograd nodes reachable from the total (the graph it drags along);
- on CUDA, torch.cuda.memory_allocated (live tensors) and memory_reserved (what the caching allocator
  keeps from the driver), above the loop's start.

At the end it deletes the loop's names (`del loss, total_loss`) and, on CUDA, calls empty_cache, and
reads both counters again. With `phase="training"` each step also runs backward and an SGD step:
backward frees the saved tensors, so the bytes go back, but `total_loss += loss` still chains every
step's nodes together.
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.params import Params, bounds, choices, ladder, seed_field

WAYS = ("tensor", "item", "detach")  # total_loss += loss / loss.item() / loss.detach()
PHASES = ("validation", "training")  # forward only (no torch.no_grad) / forward, backward and an SGD step
LAYERS = 3  # Linear layers of the MLP: width -> width -> width -> 1
LR = 0.01


@dataclass(frozen=True)
class LeakParams(Params):
    steps: int = field(default=20, metadata=bounds(1, 50))
    width: int = field(default=256, metadata=ladder(16, 512))
    batch: int = field(default=64, metadata=ladder(8, 256))
    phase: str = field(default="validation", metadata=choices(*PHASES))
    seed: int = seed_field()

    def step_bytes(self) -> int:
        """Return the bytes one step's graph saves: X and both ReLU outputs (batch x width), output and target (batch x 1)."""
        return (3 * self.batch * self.width + 2 * self.batch) * 4

    def estimate_bytes(self) -> int:
        weights = (2 * self.width * (self.width + 1) + self.width + 1) * 4
        # one way's graphs at a time (the ways run one after another), gradients, and one step's forward temporaries
        return 2 * weights + (self.steps + 2) * self.step_bytes()

    def estimate_work(self) -> float:
        """Return the multiply-adds of every step of the three ways (a training step costs about three forwards)."""
        forward = self.batch * (2 * self.width * self.width + self.width)
        return len(WAYS) * self.steps * forward * (3 if self.phase == "training" else 1)


@dataclass(frozen=True)
class LeakResult:
    ways: tuple[str, ...]  # WAYS: axis 0
    steps: np.ndarray  # (n,) int64: 1..steps
    phase: str
    step_bytes: int  # what one step's graph saves (LeakParams.step_bytes): the predicted growth per step
    kept_bytes: np.ndarray  # (3, n) int64: saved tensors still alive after each step (loss of that step still named)
    graph_nodes: np.ndarray  # (3, n) int64: autograd nodes reachable from total_loss (0 when it has no graph)
    after_del_bytes: np.ndarray  # (3,) int64: saved tensors alive after `del loss, total_loss`
    total_loss: np.ndarray  # (3,) float64: the total each way reached (the same number three ways)
    total_requires_grad: tuple[bool, ...]  # whether total_loss was a tensor that requires grad, per way
    # CUDA only (None on the CPU), bytes above the loop's start:
    cuda_allocated: np.ndarray | None  # (3, n) torch.cuda.memory_allocated after each step
    cuda_reserved: np.ndarray | None  # (3, n) torch.cuda.memory_reserved after each step
    cuda_after_del: np.ndarray | None  # (3, 2): allocated, reserved after the del
    cuda_after_empty_cache: np.ndarray | None  # (3, 2): allocated, reserved after torch.cuda.empty_cache()
    device: str
    gpu_only: tuple[str, ...]  # ("cuda_memory",) on the CPU


class SavedTensors:
    """Saved-tensor hooks that keep a weak reference to every tensor autograd saves; `alive_bytes()` sums those still held."""

    def __init__(self, exclude: Sequence[torch.Tensor]) -> None:
        self.skip = {t.untyped_storage().data_ptr() for t in exclude}
        self.refs: list[weakref.ref[torch.Tensor]] = []

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        # A detached alias: the graph holds it (and nothing else does), and a saved output cannot refer to its
        # own grad_fn through it (a cycle would keep the graph alive until the garbage collector ran).
        saved = t.detach()
        if t.untyped_storage().data_ptr() not in self.skip:
            self.refs.append(weakref.ref(saved))
        return saved

    def alive_bytes(self) -> int:
        """Return the bytes of the distinct storages of saved tensors that some graph still holds."""
        storages: dict[int, int] = {}
        live = []
        for ref in self.refs:
            t = ref()
            if t is not None:
                live.append(ref)
                storage = t.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        self.refs = live
        return sum(storages.values())


def graph_nodes(t: object) -> int:
    """Return how many autograd nodes are reachable from t's grad_fn (0 for a number or a tensor without one)."""
    root = t.grad_fn if isinstance(t, torch.Tensor) else None
    seen: set[Any] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def predicted_nodes(step: int) -> int:
    """Return the nodes total_loss += loss reaches after `step` steps.

    Per step: one AddBackward0 (the +=), MseLossBackward0, and per Linear an AddmmBackward0 and a TBackward0
    (the weight's transpose), a ReluBackward0 between Linears: 3 * LAYERS + 1. Once: one AccumulateGrad
    per parameter, shared by every step's graph (2 * LAYERS).
    """
    return step * (3 * LAYERS + 1) + 2 * LAYERS


def mlp(p: LeakParams, ctx: RunContext) -> nn.Sequential:
    """Return Linear(width, width), ReLU, Linear(width, width), ReLU, Linear(width, 1), drawn from ctx.generator."""
    # Meta first: nn.Linear would draw its default weights from the global RNG, which the run does not own.
    w = p.width
    net = nn.Sequential(
        nn.Linear(w, w, device="meta"), nn.ReLU(), nn.Linear(w, w, device="meta"), nn.ReLU(), nn.Linear(w, 1, device="meta")
    ).to_empty(device=ctx.device)
    bound = 1 / math.sqrt(w)  # nn.Linear's default: weight and bias uniform in +-1/sqrt(fan_in)
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-bound, bound, generator=ctx.generator)
    return net


def cuda_bytes(device: torch.device) -> tuple[int, int]:
    """Return (memory_allocated, memory_reserved) of the device."""
    return int(torch.cuda.memory_allocated(device)), int(torch.cuda.memory_reserved(device))


def run(p: LeakParams, ctx: RunContext) -> LeakResult:
    """Run the loop once per way and count, after every step, the saved bytes still held and the graph's nodes."""
    device, cuda, g = ctx.device, ctx.device.type == "cuda", ctx.generator
    net = mlp(p, ctx)
    params = list(net.parameters())
    n = p.steps
    kept, nodes = np.zeros((len(WAYS), n), np.int64), np.zeros((len(WAYS), n), np.int64)
    after_del, totals = np.zeros(len(WAYS), np.int64), np.zeros(len(WAYS))
    requires_grad: list[bool] = []
    allocated = np.zeros((len(WAYS), n), np.int64) if cuda else None
    reserved = np.zeros((len(WAYS), n), np.int64) if cuda else None
    after_del_cuda = np.zeros((len(WAYS), 2), np.int64) if cuda else None
    after_empty = np.zeros((len(WAYS), 2), np.int64) if cuda else None
    start_state = g.get_state()  # every way sees the same batches and starts from the same weights
    initial = [param.detach().clone() for param in params]
    for i, way in enumerate(WAYS):
        g.set_state(start_state)
        with torch.no_grad():
            for param, value in zip(params, initial, strict=True):
                param.copy_(value)
        saved = SavedTensors(params)
        if cuda:
            # Exclusive run: nobody else's tensors come and go, and emptying the cache costs others nothing.
            gc.collect()
            torch.cuda.empty_cache()
            start = cuda_bytes(device)
        total_loss: Any = 0.0
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            for k in range(n):
                ctx.check_deadline()
                # Drawn in the loop, as a DataLoader hands them out: a batch lives only as long as something holds it.
                X = torch.randn(p.batch, p.width, generator=g, device=device)
                y = torch.randn(p.batch, 1, generator=g, device=device)
                loss = F.mse_loss(net(X), y)
                if p.phase == "training":
                    for param in params:
                        param.grad = None
                    torch.autograd.backward(loss)
                    with torch.no_grad():
                        for param in params:
                            param.sub_(LR * param.grad)  # type: ignore[operator]
                if way == "tensor":
                    total_loss += loss
                elif way == "item":
                    total_loss += loss.item()
                else:
                    total_loss += loss.detach()
                kept[i, k] = saved.alive_bytes()
                nodes[i, k] = graph_nodes(total_loss)
                if allocated is not None and reserved is not None:
                    allocated[i, k], reserved[i, k] = np.subtract(cuda_bytes(device), start)
        is_tensor = isinstance(total_loss, torch.Tensor)
        totals[i] = float(total_loss.detach()) if is_tensor else total_loss
        requires_grad.append(is_tensor and total_loss.requires_grad)
        del X, y, loss, total_loss
        after_del[i] = saved.alive_bytes()
        if after_del_cuda is not None and after_empty is not None:
            after_del_cuda[i] = np.subtract(cuda_bytes(device), start)
            torch.cuda.empty_cache()
            after_empty[i] = np.subtract(cuda_bytes(device), start)
        ctx.progress(i + 1, len(WAYS))
    return LeakResult(
        ways=WAYS,
        steps=np.arange(1, n + 1, dtype=np.int64),
        phase=p.phase,
        step_bytes=p.step_bytes(),
        kept_bytes=kept,
        graph_nodes=nodes,
        after_del_bytes=after_del,
        total_loss=totals,
        total_requires_grad=tuple(requires_grad),
        cuda_allocated=allocated,
        cuda_reserved=reserved,
        cuda_after_del=after_del_cuda,
        cuda_after_empty_cache=after_empty,
        device=device.type,
        gpu_only=() if cuda else ("cuda_memory",),
    )


def context(p: LeakParams, device_type: str) -> dict[str, Any]:
    """Return the values graph_leak.py.j2 reads, for the device the page ran on (CUDA adds the allocator's counters)."""
    return {
        "steps": p.steps,
        "width": p.width,
        "batch": p.batch,
        "training": p.phase == "training",
        "lr": LR,
        "seed": p.seed,
        "device": device_type,
        "cuda": device_type == "cuda",
    }


def shown(r: LeakResult) -> list[float | str]:
    """Return what the page shows that the script prints: per way and step the bytes held and the nodes, then after del."""
    out: list[float | str] = []
    for i, way in enumerate(r.ways):
        for k, step in enumerate(r.steps.tolist()):
            out.append(f"{way} step {step}: kept {r.kept_bytes[i, k]} B, nodes {r.graph_nodes[i, k]}")
        out.append(f"{way} after del: kept {r.after_del_bytes[i]} B")
    return out


def last_step_answer(r: LeakResult) -> str:
    """Return how the saved bytes held after the last step compare with one step's: 'one', 'all' (every step's) or 'none'."""
    held = int(r.kept_bytes[WAYS.index("tensor"), -1])
    if held == 0:
        return "none"
    return "all" if held == len(r.steps) * r.step_bytes else "one"


LEAK = Experiment(
    "leak",
    LeakParams,
    run,
    script="graph_leak.py.j2",
    context=context,
    exclusive=True,  # on CUDA the allocator's counters are per device: nobody else may allocate meanwhile
    shown=shown,
    examples=(LeakParams(steps=3, width=16, batch=8, phase="training"),),
)
# After 20 training steps (backward each step) with total_loss += loss: how much of the saved activations is still held?
TRAINING_HOLDS: Prediction[LeakParams, LeakResult] = Prediction(
    "training_holds", LEAK, LeakParams(phase="training"), options=("none", "one", "all"), answer=last_step_answer
)
