"""Experiments of the "Automatic differentiation" lesson on autograd's mechanics.

Each experiment is Params, Result, run_* and code_*, as in core/tensors.py: gradients that
accumulate, retain_graph, detach vs .data, no_grad and friends, hooks, second derivatives with
create_graph, and a custom autograd.Function checked with gradcheck.

Results hold numpy arrays and plain Python values only, so they can be cached and shared.
A torch error that *is* the lesson (a second backward through a freed graph, an in-place change
autograd notices, gradcheck catching a wrong backward) is part of the result as `torch_error`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from core.params import InvalidParams, Params, bounds, choices
from core.runner import RunContext
from core.tensors import Experiment


def _seed() -> Any:
    """Return a field for the seed of ctx.generator."""
    return field(default=0, metadata=bounds(0, 2**31 - 1))


def _value(default: float) -> Any:
    """Return a field for a scalar input such as x or w, between -10 and 10."""
    return field(default=default, metadata=bounds(-10, 10, 0.5))


def _first_line(error: BaseException) -> str:
    """Return torch's message, first line, as a student would read it."""
    lines = str(error).strip().splitlines()
    return lines[0][:400] if lines else type(error).__name__


def _numpy(t: torch.Tensor) -> np.ndarray:
    """Return a CPU numpy copy of t (detached), safe to keep after the tensor is gone."""
    return t.detach().cpu().numpy().copy()


def _grad_of(t: torch.Tensor) -> float:
    """Return t.grad as a float (t must have a gradient)."""
    assert t.grad is not None
    return float(t.grad.item())


def _leaves(x: float, w: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return fresh leaf tensors x and w that require grad."""
    return (torch.tensor(x, requires_grad=True, device=device), torch.tensor(w, requires_grad=True, device=device))


def _backward(y: torch.Tensor, retain_graph: bool = False) -> None:
    """Call y.backward() (the typed spelling: Tensor.backward carries no type hints)."""
    torch.autograd.backward(y, retain_graph=retain_graph)


def _empty_linear(n_in: int, n_out: int, device: torch.device) -> nn.Linear:
    """Return an nn.Linear with uninitialised weights (what nn.utils.skip_init does).

    Built on the meta device first: nn.Linear would otherwise draw its weights from the global
    RNG, which the run does not own; the caller fills them from ctx.generator.
    """
    return nn.Linear(n_in, n_out, device="meta").to_empty(device=device)


def _seeds_y(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Return the seeds' expression y = (x + w) * (w + 1)."""
    return (x + w) * (w + 1)


# --------------------------------------------------------------------------------------------
# 1. Gradients accumulate


@dataclass(frozen=True)
class AccumulateParams(Params):
    k: int = field(default=4, metadata=bounds(1, 20))
    zero_grad: bool = False
    x: float = _value(2.0)
    w: float = _value(1.0)


@dataclass(frozen=True)
class AccumulateResult:
    calls: np.ndarray  # 1..k
    x_grad: np.ndarray  # x.grad measured after each call
    w_grad: np.ndarray
    x_grad_once: float  # the gradient of a single call: dy/dx = w + 1
    w_grad_once: float  # dy/dw = x + 2w + 1
    x_grad_expected: np.ndarray  # i * once without zero_grad, once with it
    w_grad_expected: np.ndarray
    y: float


def run_accumulate(p: AccumulateParams, ctx: RunContext) -> AccumulateResult:
    """Return x.grad and w.grad after each of k backward calls, with or without zeroing between them."""
    x, w = _leaves(p.x, p.w, ctx.device)
    x_grads, w_grads = [], []
    for _ in range(p.k):
        ctx.check_deadline()
        if p.zero_grad:
            x.grad, w.grad = None, None
        y = _seeds_y(x, w)  # a new graph each call: the old one was freed by backward
        _backward(y)
        x_grads.append(_grad_of(x))
        w_grads.append(_grad_of(w))
    x1, w1 = _leaves(p.x, p.w, ctx.device)
    y = _seeds_y(x1, w1)
    _backward(y)
    once_x, once_w = _grad_of(x1), _grad_of(w1)
    calls = np.arange(1, p.k + 1)
    factor = np.ones(p.k) if p.zero_grad else calls.astype(np.float64)
    return AccumulateResult(calls, np.array(x_grads), np.array(w_grads), once_x, once_w,
                            factor * once_x, factor * once_w, float(y.item()))  # fmt: skip


def code_accumulate(p: AccumulateParams) -> str:
    """Return a script that calls backward k times and prints the gradients after each call."""
    reset = (
        "    # Reset before each call. optimizer.zero_grad() does the same: it sets .grad to None.\n"
        "    x.grad = None\n    w.grad = None\n"
        if p.zero_grad
        else "    # No reset: each backward adds its gradient to what .grad already holds.\n"
    )
    return f"""import torch

x = torch.tensor({p.x!r}, requires_grad=True)
w = torch.tensor({p.w!r}, requires_grad=True)
for i in range(1, {p.k} + 1):
{reset}    y = (x + w) * (w + 1)  # rebuilt each call: backward frees the graph
    y.backward()
    print(f"call {{i}}: x.grad = {{x.grad.item()}} w.grad = {{w.grad.item()}}")

x1 = torch.tensor({p.x!r}, requires_grad=True)
w1 = torch.tensor({p.w!r}, requires_grad=True)
((x1 + w1) * (w1 + 1)).backward()
print(f"one call alone: x.grad = {{x1.grad.item()}} w.grad = {{w1.grad.item()}}")
print("theory for one call: dy/dx = w + 1, dy/dw = x + 2w + 1")
"""


# --------------------------------------------------------------------------------------------
# 2. retain_graph


@dataclass(frozen=True)
class RetainParams(Params):
    retain_graph: bool = False
    x: float = _value(2.0)
    w: float = _value(1.0)


@dataclass(frozen=True)
class RetainResult:
    y: float
    x_grad_first: float  # after the first backward
    w_grad_first: float
    x_grad_second: float | None  # after the second backward (None when it failed)
    w_grad_second: float | None
    torch_error: str | None  # the second backward's error without retain_graph


def run_retain(p: RetainParams, ctx: RunContext) -> RetainResult:
    """Return the gradients after two backward calls on one graph, or the error of the second."""
    x, w = _leaves(p.x, p.w, ctx.device)
    y = _seeds_y(x, w)
    _backward(y, retain_graph=p.retain_graph)
    first_x, first_w = _grad_of(x), _grad_of(w)
    try:
        _backward(y)
    except RuntimeError as e:
        return RetainResult(float(y.item()), first_x, first_w, None, None, _first_line(e))
    return RetainResult(float(y.item()), first_x, first_w, _grad_of(x), _grad_of(w), None)


def code_retain(p: RetainParams) -> str:
    """Return a script that calls backward twice on one graph and prints what happens."""
    return f"""import torch

x = torch.tensor({p.x!r}, requires_grad=True)
w = torch.tensor({p.w!r}, requires_grad=True)
y = (x + w) * (w + 1)  # built once
y.backward(retain_graph={p.retain_graph})
print("after the first backward:  x.grad =", x.grad.item(), " w.grad =", w.grad.item())
try:
    y.backward()  # the second call needs the values saved by the forward pass
    print("after the second backward: x.grad =", x.grad.item(), " w.grad =", w.grad.item())
except RuntimeError as e:
    print("RuntimeError:", e)
"""


# --------------------------------------------------------------------------------------------
# 3. detach vs .data


DETACH_WAYS = ("data", "detach")
DETACH_VALUES = ("arange", "linspace")  # 1, 2, ..., n as in the seeds, or n points in [-2, 2]


@dataclass(frozen=True)
class DetachParams(Params):
    way: str = field(default="data", metadata=choices(*DETACH_WAYS))
    values: str = field(default="arange", metadata=choices(*DETACH_VALUES))
    n: int = field(default=3, metadata=bounds(1, 8))


@dataclass(frozen=True)
class DetachWay:
    """What happened when c = out.data (or out.detach()) was zeroed in place before backward."""

    way: str
    out_after: np.ndarray  # out's values after c.zero_(): zeros both ways, the memory is shared
    out_version_before: int  # out._version before c.zero_()
    out_version_after: int  # .data: unchanged (own counter); detach: +1 (shared counter)
    c_version_after: int
    grad: np.ndarray | None  # a.grad after out.sum().backward(); None when backward raised
    torch_error: str | None


@dataclass(frozen=True)
class DetachResult:
    a: np.ndarray
    out: np.ndarray  # sigmoid(a) before anything was zeroed
    true_grad: np.ndarray  # sigmoid(a) * (1 - sigmoid(a)), computed without autograd
    data: DetachWay
    detach: DetachWay
    torch_error: str | None  # the chosen way's error (None for .data: it is silently wrong)

    def chosen(self, way: str) -> DetachWay:
        """Return the outcome of one way, "data" or "detach"."""
        return self.data if way == "data" else self.detach


def _detach_inputs(p: DetachParams, device: torch.device) -> torch.Tensor:
    """Return the values of a: 1, 2, ..., n (the seeds' example) or n points in [-2, 2]."""
    if p.values == "arange":
        return torch.arange(1, p.n + 1, dtype=torch.float32, device=device)
    return torch.linspace(-2, 2, p.n, device=device)


def _try_way(way: str, values: torch.Tensor) -> DetachWay:
    """Return what zeroing out.data / out.detach() in place does to the gradient of a.sigmoid()."""
    a = values.clone().requires_grad_()
    out = a.sigmoid()  # sigmoid's backward reuses its saved output: grad = out * (1 - out)
    before = out._version
    c = out.data if way == "data" else out.detach()
    c.zero_()
    after, out_after = out._version, _numpy(out)
    try:
        _backward(out.sum())
    except RuntimeError as e:
        return DetachWay(way, out_after, before, after, c._version, None, _first_line(e))
    assert a.grad is not None
    return DetachWay(way, out_after, before, after, c._version, _numpy(a.grad), None)


def run_detach(p: DetachParams, ctx: RunContext) -> DetachResult:
    """Return both ways side by side: .data's silently wrong gradient and detach's error."""
    a = _detach_inputs(p, ctx.device)
    sig = 1 / (1 + np.exp(-_numpy(a).astype(np.float64)))
    data, detach = _try_way("data", a), _try_way("detach", a)
    chosen = data if p.way == "data" else detach
    return DetachResult(_numpy(a), _numpy(a.sigmoid()), sig * (1 - sig), data, detach, chosen.torch_error)


def code_detach(p: DetachParams) -> str:
    """Return a script that zeroes sigmoid's output through .data and through detach()."""
    values = (f"torch.arange(1, {p.n} + 1, dtype=torch.float32)" if p.values == "arange"
              else f"torch.linspace(-2, 2, {p.n})")  # fmt: skip
    ways = ["data", "detach"] if p.way == "data" else ["detach", "data"]
    blocks = []
    for way in ways:
        take = "out.data" if way == "data" else "out.detach()"
        blocks.append(f"""
a = {values}.requires_grad_()
out = a.sigmoid()  # SigmoidBackward saves out: the gradient is out * (1 - out)
version = out._version
c = {take}
c.zero_()  # writes into out's memory
print("{way}: out after c.zero_() =", out.tolist())
print("{way}: out._version", version, "->", out._version, " c._version", c._version)
try:
    out.sum().backward()
    print("{way}: a.grad =", a.grad.tolist())
except RuntimeError as e:
    print("{way}: RuntimeError:", e)
""")
    return f"""import torch
{"".join(blocks)}
a = {values}
print("true gradient sigmoid(a) * (1 - sigmoid(a)) =", (a.sigmoid() * (1 - a.sigmoid())).tolist())
"""


# --------------------------------------------------------------------------------------------
# 4. no_grad, inference_mode, requires_grad_(False)


GRAD_MODES = ("grad", "no_grad", "inference_mode", "frozen")


@dataclass(frozen=True)
class NogradParams(Params):
    width: int = field(default=256, metadata=bounds(8, 1024))
    depth: int = field(default=3, metadata=bounds(1, 8))
    batch: int = field(default=64, metadata=bounds(1, 512))
    seed: int = _seed()

    def estimate_bytes(self) -> int:
        weights = self.depth * (self.width * self.width + self.width)
        # Input, every layer's linear and relu output (kept while grad mode's graph lives), one
        # output copy per mode.
        activations = (2 * self.depth + 1 + len(GRAD_MODES)) * self.batch * self.width
        return 4 * (weights + activations)


@dataclass(frozen=True)
class NogradResult:
    modes: tuple[str, ...]  # GRAD_MODES; every array below has one entry per mode
    graph_nodes: np.ndarray  # unique autograd nodes reachable from the output's grad_fn
    saved_tensors: np.ndarray  # tensors autograd saved for backward (the pack hook's calls)
    saved_bytes: np.ndarray  # bytes of the distinct storages behind them (see _SavedCounter)
    saved_weight_bytes: np.ndarray  # the part of saved_bytes that is parameter memory
    requires_grad: np.ndarray  # output.requires_grad
    max_abs_diff: np.ndarray  # max |output - grad mode's output|
    weight_bytes: int  # all parameters of the MLP
    activation_bytes: int  # one batch of activations, batch * width * 4
    output_sum: float  # sum of grad mode's output, to compare with the script


class _SavedCounter:
    """Counts what autograd saves for backward while it is the saved_tensors_hooks pack hook.

    Each saved tensor is counted once per call (`tensors`), but its bytes are those of the
    storage behind it, counted once per distinct storage (`nbytes`): a ReLU output saved by the
    ReLU and again as the next Linear's input costs memory once, and a weight saved as the view
    weight.t() holds the weight's storage, which is parameter memory (`weight_nbytes`), not new.
    """

    def __init__(self, param_storages: set[int]) -> None:
        self.param_storages = param_storages
        self.storages: dict[int, int] = {}
        self.tensors = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """Return t unchanged (kept as is for backward), after counting it."""
        self.tensors += 1
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def nbytes(self) -> int:
        """Return the bytes of the distinct storages saved so far."""
        return sum(self.storages.values())

    @property
    def weight_nbytes(self) -> int:
        """Return the part of nbytes that belongs to parameters."""
        return sum(n for ptr, n in self.storages.items() if ptr in self.param_storages)


def count_graph_nodes(t: torch.Tensor) -> int:
    """Return how many distinct autograd nodes are reachable from t.grad_fn (0 without one)."""
    seen: dict[int, Any] = {}  # id -> node; holding the node keeps its id from being reused
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(child for child, _ in node.next_functions)
    return len(seen)


def _mlp(p: NogradParams, ctx: RunContext) -> nn.Sequential:
    """Return depth x (Linear(width, width), ReLU) with weights drawn from ctx.generator."""
    layers: list[nn.Module] = []
    bound = 1 / math.sqrt(p.width)  # nn.Linear's own default range
    for _ in range(p.depth):
        linear = _empty_linear(p.width, p.width, ctx.device)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=ctx.generator)
            linear.bias.uniform_(-bound, bound, generator=ctx.generator)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


def _mode(mode: str, net: nn.Module) -> AbstractContextManager[Any]:
    """Return the context manager that puts a forward pass in one of GRAD_MODES."""
    if mode == "no_grad":
        return torch.no_grad()
    if mode == "inference_mode":
        return torch.inference_mode()
    if mode == "frozen":
        return _frozen(net)
    return nullcontext()


@contextmanager
def _frozen(net: nn.Module) -> Iterator[None]:
    """Turn requires_grad off on every parameter for the with-block."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


def run_nograd(p: NogradParams, ctx: RunContext) -> NogradResult:
    """Return graph size and memory saved for backward by one MLP forward in each grad mode."""
    net = _mlp(p, ctx)
    X = torch.randn(p.batch, p.width, generator=ctx.generator, device=ctx.device)
    params = {q.untyped_storage().data_ptr() for q in net.parameters()}
    rows: list[tuple[int, int, int, int, bool]] = []
    outputs: list[torch.Tensor] = []
    for mode in GRAD_MODES:
        ctx.check_deadline()
        counter = _SavedCounter(params)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t), _mode(mode, net):
            y_hat = net(X)
        rows.append((count_graph_nodes(y_hat), counter.tensors, counter.nbytes, counter.weight_nbytes, y_hat.requires_grad))
        outputs.append(y_hat.detach().clone() if mode == "grad" else y_hat)
        del y_hat  # frees this mode's graph before the next forward
    diffs = [float((y - outputs[0]).abs().max().item()) for y in outputs]
    nodes, tensors, nbytes, weight_nbytes, requires = zip(*rows, strict=True)
    return NogradResult(
        GRAD_MODES, np.array(nodes), np.array(tensors), np.array(nbytes), np.array(weight_nbytes),
        np.array(requires, dtype=bool), np.array(diffs),
        sum(q.numel() * q.element_size() for q in net.parameters()), p.batch * p.width * 4,
        float(outputs[0].sum().item()),
    )  # fmt: skip


def code_nograd(p: NogradParams) -> str:
    """Return a script that runs the same MLP forward in each grad mode and prints what autograd kept."""
    return f"""import math
from contextlib import nullcontext

import torch
from torch import nn

g = torch.Generator().manual_seed({p.seed})
bound = 1 / math.sqrt({p.width})
layers = []
for _ in range({p.depth}):
    linear = nn.Linear({p.width}, {p.width})
    with torch.no_grad():  # the same weights as the app: drawn from g
        linear.weight.uniform_(-bound, bound, generator=g)
        linear.bias.uniform_(-bound, bound, generator=g)
    layers += [linear, nn.ReLU()]
net = nn.Sequential(*layers)
X = torch.randn({p.batch}, {p.width}, generator=g)
param_storages = {{q.untyped_storage().data_ptr() for q in net.parameters()}}


def count_nodes(t):
    seen, stack = {{}}, [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node
            stack.extend(child for child, _ in node.next_functions)
    return len(seen)


class Frozen:
    def __enter__(self):
        net.requires_grad_(False)

    def __exit__(self, *exc):
        net.requires_grad_(True)


modes = {{"grad": nullcontext(), "no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(), "frozen": Frozen()}}
reference = None
for mode, context in modes.items():
    storages, calls = {{}}, []

    def pack(t):  # called for every tensor autograd saves for backward
        calls.append(1)
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # each storage once
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        y_hat = net(X)
    if reference is None:
        reference = y_hat.detach().clone()
        print("output sum", reference.sum().item())
    weights = sum(n for ptr, n in storages.items() if ptr in param_storages)
    print(f"{{mode:15}} nodes {{count_nodes(y_hat)}} saved tensors {{len(calls)}} saved bytes {{sum(storages.values())}} "
          f"of which weights {{weights}} requires_grad {{y_hat.requires_grad}} "
          f"max diff {{(y_hat - reference).abs().max().item()}}")
"""


# --------------------------------------------------------------------------------------------
# 5. Hooks and autograd.grad


HOOK_IN, HOOK_OUT = 4, 6  # x has 4 values; the Linear maps them to 6


@dataclass(frozen=True)
class HooksParams(Params):
    scale: float = field(default=2.0, metadata=bounds(-5, 5, 0.5))
    seed: int = _seed()


@dataclass(frozen=True)
class HooksResult:
    x: np.ndarray  # the input, HOOK_IN values
    weight: np.ndarray  # the Linear's weight (HOOK_OUT, HOOK_IN) and bias, for an independent check
    bias: np.ndarray
    y: float  # y = (linear(x) ** 2).sum()
    grad_plain: np.ndarray  # x.grad after y.backward(), no hook
    grad_hooked: np.ndarray  # x.grad with the tensor hook scaling the incoming gradient
    activation: np.ndarray  # what the forward hook captured: linear(x)
    activation_shape: tuple[int, ...]
    activation_mean: float
    activation_std: float  # torch's default std (correction=1)
    autograd_grad: np.ndarray  # torch.autograd.grad(y, x)
    x_grad_none_after_autograd_grad: bool  # autograd.grad left x.grad untouched (None)


def _hooks_model(p: HooksParams, ctx: RunContext) -> tuple[torch.Tensor, nn.Linear]:
    """Return x and a Linear(HOOK_IN, HOOK_OUT), all drawn from ctx.generator."""
    g, d = ctx.generator, ctx.device
    x = torch.randn(HOOK_IN, generator=g, device=d)
    linear = _empty_linear(HOOK_IN, HOOK_OUT, d)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(HOOK_OUT, HOOK_IN, generator=g, device=d) / math.sqrt(HOOK_IN))
        linear.bias.copy_(torch.randn(HOOK_OUT, generator=g, device=d) / math.sqrt(HOOK_IN))
    return x, linear


def _x_grad(x0: torch.Tensor, linear: nn.Linear, scale: float | None) -> tuple[np.ndarray, float]:
    """Return x.grad after y.backward() (with a hook scaling x's gradient when scale is given), and y."""
    x = x0.clone().requires_grad_()
    # Tensor.register_hook carries no type hints.
    handle = x.register_hook(lambda grad: grad * scale) if scale is not None else None  # type: ignore[no-untyped-call]
    y = (linear(x) ** 2).sum()
    _backward(y)
    if handle is not None:
        handle.remove()
    assert x.grad is not None
    return _numpy(x.grad), float(y.item())


def run_hooks(p: HooksParams, ctx: RunContext) -> HooksResult:
    """Return x's gradient without and with a scaling hook, a forward hook's capture, and autograd.grad."""
    x0, linear = _hooks_model(p, ctx)
    grad_plain, y = _x_grad(x0, linear, None)
    captured: list[torch.Tensor] = []
    handle = linear.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().clone()))
    grad_hooked, _ = _x_grad(x0, linear, p.scale)
    handle.remove()
    activation = captured[0]
    x = x0.clone().requires_grad_()
    (by_grad,) = torch.autograd.grad((linear(x) ** 2).sum(), x)
    return HooksResult(
        _numpy(x0), _numpy(linear.weight), _numpy(linear.bias), y, grad_plain, grad_hooked, _numpy(activation),
        tuple(activation.shape), float(activation.mean().item()), float(activation.std().item()), _numpy(by_grad),
        x.grad is None,
    )  # fmt: skip


def code_hooks(p: HooksParams) -> str:
    """Return a script with a tensor hook, a module forward hook and torch.autograd.grad."""
    return f"""import math

import torch
from torch import nn

g = torch.Generator().manual_seed({p.seed})
x0 = torch.randn({HOOK_IN}, generator=g)
linear = nn.Linear({HOOK_IN}, {HOOK_OUT})
with torch.no_grad():  # the same weights as the app: drawn from g
    linear.weight.copy_(torch.randn({HOOK_OUT}, {HOOK_IN}, generator=g) / math.sqrt({HOOK_IN}))
    linear.bias.copy_(torch.randn({HOOK_OUT}, generator=g) / math.sqrt({HOOK_IN}))

x = x0.clone().requires_grad_()
(linear(x) ** 2).sum().backward()
print("x.grad without hook:", x.grad.tolist())

x = x0.clone().requires_grad_()
tensor_hook = x.register_hook(lambda grad: grad * {p.scale!r})  # may return a new gradient
captured = []
module_hook = linear.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
(linear(x) ** 2).sum().backward()
tensor_hook.remove()
module_hook.remove()
print("x.grad with hook:", x.grad.tolist())
a = captured[0]
print("forward hook captured shape", tuple(a.shape), "mean", a.mean().item(), "std", a.std().item())

x = x0.clone().requires_grad_()
(grad,) = torch.autograd.grad((linear(x) ** 2).sum(), x)  # returns the gradient ...
print("autograd.grad:", grad.tolist())
print("x.grad after autograd.grad:", x.grad)  # ... and leaves .grad alone
"""


# --------------------------------------------------------------------------------------------
# 6. Higher derivatives with create_graph


HIGHER_FNS = ("sin", "tanh", "sigmoid", "cube", "gauss")
TORCH_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "cube": lambda x: x**3,
    "gauss": lambda x: torch.exp(-(x**2)),
}
FN_TEXT = {"sin": "torch.sin(x)", "tanh": "torch.tanh(x)", "sigmoid": "torch.sigmoid(x)", "cube": "x ** 3",
           "gauss": "torch.exp(-x ** 2)"}  # fmt: skip


def exact_derivatives(fn: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return f'(x) and f''(x), written by hand."""
    if fn == "sin":
        return np.cos(x), -np.sin(x)
    if fn == "tanh":
        t = np.tanh(x)
        return 1 - t**2, -2 * t * (1 - t**2)
    if fn == "sigmoid":
        s = 1 / (1 + np.exp(-x))
        return s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if fn == "cube":
        return 3 * x**2, 6 * x
    e = np.exp(-(x**2))
    return -2 * x * e, (4 * x**2 - 2) * e


@dataclass(frozen=True)
class HigherParams(Params):
    fn: str = field(default="sin", metadata=choices(*HIGHER_FNS))
    lo: float = field(default=-4.0, metadata=bounds(-10, 10, 0.5))
    hi: float = field(default=4.0, metadata=bounds(-10, 10, 0.5))
    points: int = field(default=101, metadata=bounds(8, 400))

    def validate(self) -> None:
        super().validate()
        if self.hi <= self.lo:
            raise InvalidParams("hi", "must_exceed", other=self.lo)


@dataclass(frozen=True)
class HigherResult:
    x: np.ndarray  # the grid, float64
    f: np.ndarray
    d1: np.ndarray  # f' by autograd.grad(..., create_graph=True)
    d2: np.ndarray  # f'' by differentiating f' again
    d1_exact: np.ndarray
    d2_exact: np.ndarray
    d1_max_error: float
    d2_max_error: float


def run_higher(p: HigherParams, ctx: RunContext) -> HigherResult:
    """Return f, f' and f'' on a grid, by autograd with create_graph, next to the exact ones."""
    x = torch.linspace(p.lo, p.hi, p.points, dtype=torch.float64, device=ctx.device, requires_grad=True)
    f = TORCH_FNS[p.fn](x)
    # create_graph records the backward pass itself, so f' can be differentiated again.
    (d1,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)  # each f'(x_i) depends on x_i only, so the sum is exact
    x_np = _numpy(x)
    d1_exact, d2_exact = exact_derivatives(p.fn, x_np)
    d1_np, d2_np = _numpy(d1), _numpy(d2)
    return HigherResult(x_np, _numpy(f), d1_np, d2_np, d1_exact, d2_exact,
                        float(np.abs(d1_np - d1_exact).max()), float(np.abs(d2_np - d2_exact).max()))  # fmt: skip


def code_higher(p: HigherParams) -> str:
    """Return a script computing f' and f'' with autograd.grad and create_graph=True."""
    return f"""import torch

x = torch.linspace({p.lo!r}, {p.hi!r}, {p.points}, dtype=torch.float64, requires_grad=True)
f = {FN_TEXT[p.fn]}
(d1,) = torch.autograd.grad(f.sum(), x, create_graph=True)  # keep a graph of the derivative
(d2,) = torch.autograd.grad(d1.sum(), x)
print("x[0] =", x[0].item(), " f =", f[0].item(), " f' =", d1[0].item(), " f'' =", d2[0].item())
print("x[-1] =", x[-1].item(), " f =", f[-1].item(), " f' =", d1[-1].item(), " f'' =", d2[-1].item())
"""


# --------------------------------------------------------------------------------------------
# 7. A custom autograd.Function checked with gradcheck


class MultiplyAdd(torch.autograd.Function):
    """z = w * x + b with a hand-written backward (the seeds' example)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, x)
        return w * x + b

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, x = ctx.saved_tensors
        return grad_output * x, grad_output * w, grad_output


class BrokenMultiplyAdd(MultiplyAdd):
    """MultiplyAdd whose backward swaps x and w: the kind of slip gradcheck is there to catch."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w, x = ctx.saved_tensors
        return grad_output * w, grad_output * x, grad_output  # wrong: dz/dw is x, not w


@dataclass(frozen=True)
class CustomParams(Params):
    w: float = _value(2.0)
    x: float = _value(3.0)
    b: float = _value(1.0)
    broken: bool = False
    seed: int = _seed()


@dataclass(frozen=True)
class CustomResult:
    z: float  # w * x + b
    custom_grads: np.ndarray  # (dz/dw, dz/dx, dz/db) from the custom backward
    torch_grads: np.ndarray  # the same from plain torch ops
    gradcheck_ok: bool  # gradcheck on random float64 inputs
    torch_error: str | None  # gradcheck's message, first line, when it fails


GRADCHECK_SIZE = 3  # values per random gradcheck input


def _three_grads(fn: Callable[..., Any], w: float, x: float, b: float, device: torch.device) -> tuple[float, np.ndarray]:
    """Return fn(w, x, b) and the gradients with respect to w, x and b."""
    inputs = [torch.tensor(v, requires_grad=True, device=device) for v in (w, x, b)]
    z = cast(torch.Tensor, fn(*inputs))
    _backward(z)
    return float(z.item()), np.array([_grad_of(t) for t in inputs])


def _gradcheck(fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...]) -> tuple[bool, str | None]:
    """Return gradcheck's verdict and, when it fails, the first line of its message."""
    ok = bool(torch.autograd.gradcheck(fn, inputs, raise_exception=False))
    if ok:
        return True, None
    try:
        torch.autograd.gradcheck(fn, inputs)
    except GradcheckError as e:
        return False, _first_line(e)
    return False, None


def run_custom(p: CustomParams, ctx: RunContext) -> CustomResult:
    """Return the custom Function's forward value and gradients, plain torch's, and gradcheck's verdict."""
    fn = BrokenMultiplyAdd if p.broken else MultiplyAdd
    z, custom = _three_grads(fn.apply, p.w, p.x, p.b, ctx.device)
    _, plain = _three_grads(lambda w, x, b: w * x + b, p.w, p.x, p.b, ctx.device)
    inputs = tuple(torch.randn(GRADCHECK_SIZE, generator=ctx.generator, dtype=torch.float64, device=ctx.device)
                   .requires_grad_() for _ in range(3))  # fmt: skip
    ok, error = _gradcheck(fn.apply, inputs)
    return CustomResult(z, custom, plain, ok, error)


def code_custom(p: CustomParams) -> str:
    """Return a script defining MultiplyAdd (or its broken twin) and checking it with gradcheck."""
    grads = ("grad_output * w, grad_output * x, grad_output  # wrong: x and w swapped" if p.broken
             else "grad_output * x, grad_output * w, grad_output")  # fmt: skip
    return f"""import torch
from torch.autograd.gradcheck import GradcheckError


class MultiplyAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, x, b):
        ctx.save_for_backward(w, x)
        return w * x + b

    @staticmethod
    def backward(ctx, grad_output):
        w, x = ctx.saved_tensors
        return {grads}


w, x, b = (torch.tensor(v, requires_grad=True) for v in ({p.w!r}, {p.x!r}, {p.b!r}))
z = MultiplyAdd.apply(w, x, b)
z.backward()
print("z =", z.item())
print("custom backward: dz/dw =", w.grad.item(), " dz/dx =", x.grad.item(), " dz/db =", b.grad.item())
w2, x2, b2 = (torch.tensor(v, requires_grad=True) for v in ({p.w!r}, {p.x!r}, {p.b!r}))
(w2 * x2 + b2).backward()
print("plain torch:     dz/dw =", w2.grad.item(), " dz/dx =", x2.grad.item(), " dz/db =", b2.grad.item())

g = torch.Generator().manual_seed({p.seed})
inputs = tuple(torch.randn({GRADCHECK_SIZE}, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
try:
    print("gradcheck:", torch.autograd.gradcheck(MultiplyAdd.apply, inputs))
except GradcheckError as e:
    print("gradcheck failed:", e)
"""


# --------------------------------------------------------------------------------------------
# The lesson's experiments by name (the name is also the URL prefix of their settings).


EXPERIMENTS: dict[str, Experiment] = {
    "accumulate": Experiment(AccumulateParams, run_accumulate, code_accumulate),
    "retain": Experiment(RetainParams, run_retain, code_retain),
    "detach": Experiment(DetachParams, run_detach, code_detach),
    "nograd": Experiment(NogradParams, run_nograd, code_nograd),
    "hooks": Experiment(HooksParams, run_hooks, code_hooks),
    "higher": Experiment(HigherParams, run_higher, code_higher),
    "custom": Experiment(CustomParams, run_custom, code_custom),
}
