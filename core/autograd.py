"""The autograd graph builder: evaluate a student's expression, walk the graph torch built, run backward.

The graph in the result is exactly torch's: one node per grad_fn reachable from the output (leaves
appear as their AccumulateGrad nodes), one edge per `next_functions` entry. Backward runs with a
pre-hook on every node, so the visiting order is the order autograd really used, and with a hook
that records the gradient each node sends along each of its edges.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from core import expr as parser
from core.params import InvalidParams, Params, bounds, shape_spec, text_spec
from core.runner import RunContext
from core.tensors import Experiment

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,7}$")
SLOTS = (1, 2, 3)


def _name(default: str) -> Any:
    return field(default=default, metadata=text_spec(8))


def _value(default: float) -> Any:
    return field(default=default, metadata=bounds(-10.0, 10.0, 0.5))


def _shape() -> Any:
    return field(default=(), metadata=shape_spec(max_dims=2, min_dims=0, lo=1, hi=6))


@dataclass(frozen=True)
class GraphParams(Params):
    """An expression over up to three variables; each variable has a name, value, shape and requires_grad."""

    expr: str = field(default="y = (x + w) * (w + 1)", metadata=text_spec(parser.MAX_CHARS))
    v1_name: str = _name("x")
    v1_value: float = _value(2.0)
    v1_shape: tuple[int, ...] = _shape()
    v1_grad: bool = True
    v2_name: str = _name("w")
    v2_value: float = _value(1.0)
    v2_shape: tuple[int, ...] = _shape()
    v2_grad: bool = True
    v3_name: str = _name("")
    v3_value: float = _value(0.0)
    v3_shape: tuple[int, ...] = _shape()
    v3_grad: bool = True
    retain_grad: bool = False
    seed: int = field(default=0, metadata=bounds(0, 2**31 - 1))

    def variables(self) -> list[tuple[str, float, tuple[int, ...], bool]]:
        """Return (name, value, shape, requires_grad) of every slot with a name."""
        out = []
        for i in SLOTS:
            name = getattr(self, f"v{i}_name").strip()
            if name:
                out.append((name, getattr(self, f"v{i}_value"), getattr(self, f"v{i}_shape"), getattr(self, f"v{i}_grad")))
        return out

    def validate(self) -> None:
        super().validate()
        seen: set[str] = set()
        for i in SLOTS:
            name = getattr(self, f"v{i}_name").strip()
            if not name:
                continue
            if not NAME.match(name) or keyword.iskeyword(name) or name in parser.RESERVED:
                raise InvalidParams(f"v{i}_name", "bad_name")
            if name in seen:
                raise InvalidParams(f"v{i}_name", "duplicate")
            seen.add(name)
        parser.parse(self.expr, sorted(seen))

    def program(self) -> parser.Program:
        """Return the checked program (validate() has accepted it)."""
        return parser.parse(self.expr, [v[0] for v in self.variables()])


@dataclass(frozen=True)
class GraphNode:
    """One node of torch's autograd graph, with what the page shows on it."""

    id: int
    op: str  # grad_fn class name, e.g. MulBackward0, or AccumulateGrad for a leaf
    label: str  # variable name for a leaf, source text for an operation
    value: str
    shape: tuple[int, ...]
    is_leaf: bool
    requires_grad: bool
    grad: str | None  # .grad after backward: leaves always, others only with retain_grad


@dataclass(frozen=True)
class GraphEdge:
    """An edge of the graph: `src` consumes the result of `dst`; backward sends `grad` from src to dst."""

    src: int
    dst: int
    grad: str | None


@dataclass(frozen=True)
class GraphResult:
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    order: tuple[int, ...]  # node ids in the order backward visited them
    output: str  # the output's value
    output_name: str
    summed: bool  # the output was not a scalar: backward ran on its sum (gradient of ones)
    grads: tuple[tuple[str, str | None], ...]  # (tensor name, its .grad) for every named tensor
    torch_error: str | None


def fmt_tensor(t: torch.Tensor | None) -> str | None:
    """Return a short text of a tensor's values (None stays None)."""
    if t is None:
        return None
    values = t.detach().cpu()
    if values.dim() == 0:
        return f"{values.item():.4g}"
    flat = [f"{v:.3g}" for v in values.flatten()[:6].tolist()]
    more = ", …" if values.numel() > 6 else ""
    return f"[{', '.join(flat)}{more}]"


def make_variables(p: GraphParams, ctx: RunContext) -> dict[str, torch.Tensor]:
    """Return the declared variables: scalars hold their value, shaped ones value + N(0, 1) noise."""
    env = {}
    for name, value, shape, grad in p.variables():
        if shape:
            t = value + torch.randn(shape, generator=ctx.generator, device=ctx.device)
        else:
            t = torch.tensor(value, device=ctx.device)
        env[name] = t.requires_grad_(grad)
    return env


def run_graph(p: GraphParams, ctx: RunContext) -> GraphResult:
    """Evaluate the expression, draw torch's graph, run backward while recording what flows where."""
    program = p.program()
    env = make_variables(p, ctx)
    try:
        evaluation = parser.evaluate(program, env)
    except RuntimeError as e:
        return _failed(program, str(e))
    y, steps = evaluation.output, evaluation.steps
    if p.retain_grad:
        for step in steps:
            if step.tensor.requires_grad and not step.tensor.is_leaf:
                step.tensor.retain_grad()
    nodes, edges = _walk(y.grad_fn)
    order: list[int] = []
    sent: dict[int, tuple[torch.Tensor | None, ...]] = {}
    handles = []
    for node, node_id in nodes.items():
        handles.append(node.register_prehook(lambda grad_out, i=node_id: order.append(i)))
        handles.append(node.register_hook(lambda grad_in, grad_out, i=node_id: sent.__setitem__(i, grad_in)))
    summed = y.dim() > 0
    if y.requires_grad:
        try:
            y.backward(torch.ones_like(y) if summed else None)  # type: ignore[no-untyped-call]
        except RuntimeError as e:
            return _failed(program, str(e))
    for h in handles:
        h.remove()
    labels = {id(step.tensor.grad_fn): step.text for step in steps if step.tensor.grad_fn is not None}
    for name, t in evaluation.named.items():  # a named result is labelled "a = x + w"
        if t.grad_fn is not None:
            labels[id(t.grad_fn)] = f"{name} = {labels[id(t.grad_fn)]}"
    values = {id(step.tensor.grad_fn): step.tensor for step in steps if step.tensor.grad_fn is not None}
    leaf_names = {id(t): name for name, t in env.items()}
    graph_nodes = tuple(_describe(node, i, labels, values, leaf_names) for node, i in nodes.items())
    graph_edges = tuple(GraphEdge(src, dst, fmt_tensor(_pick(sent.get(src), k))) for src, dst, k in edges)
    named = {**env, **evaluation.named}
    grads = tuple((name, fmt_tensor(t.grad) if t.requires_grad and (t.is_leaf or p.retain_grad) else None)
                  for name, t in named.items())  # fmt: skip
    return GraphResult(graph_nodes, graph_edges, tuple(order), fmt_tensor(y) or "", program.output_name, summed,
                       grads, None)  # fmt: skip


def _failed(program: parser.Program, message: str) -> GraphResult:
    first = message.strip().splitlines()[0][:400] if message.strip() else "RuntimeError"
    return GraphResult((), (), (), "", program.output_name, False, (), first)


def _pick(grads: tuple[torch.Tensor | None, ...] | None, k: int) -> torch.Tensor | None:
    return grads[k] if grads is not None and k < len(grads) else None


def _walk(root: Any) -> tuple[dict[Any, int], list[tuple[int, int, int]]]:
    """Return every node reachable from root (numbered in discovery order) and the edges (src, dst, input index)."""
    nodes: dict[Any, int] = {}
    edges: list[tuple[int, int, int]] = []
    if root is None:
        return nodes, edges
    stack = [root]
    nodes[root] = 0
    while stack:
        node = stack.pop()
        for k, (child, _) in enumerate(node.next_functions):
            if child is None:
                continue
            if child not in nodes:
                nodes[child] = len(nodes)
                stack.append(child)
            edges.append((nodes[node], nodes[child], k))
    return nodes, edges


def _describe(node: Any, i: int, labels: dict[int, str], values: dict[int, torch.Tensor],
              leaf_names: dict[int, str]) -> GraphNode:  # fmt: skip
    op = type(node).__name__
    if op == "AccumulateGrad":
        leaf = node.variable
        return GraphNode(i, op, leaf_names.get(id(leaf), "leaf"), fmt_tensor(leaf) or "", tuple(leaf.shape), True,
                         True, fmt_tensor(leaf.grad))  # fmt: skip
    t = values.get(id(node))
    if t is None:  # a node torch added inside one of our operations
        return GraphNode(i, op, "", "", (), False, True, None)
    grad = fmt_tensor(t.grad) if t.retains_grad else None
    return GraphNode(i, op, labels[id(node)], fmt_tensor(t) or "", tuple(t.shape), False, True, grad)


def code_graph(p: GraphParams) -> str:
    """Return a script that builds the same tensors and expression, runs backward and prints the grads."""
    program = p.program()
    lines = ["import torch", ""]
    if any(shape for _, _, shape, _ in p.variables()):
        lines.append(f"g = torch.Generator().manual_seed({p.seed})")
    for name, value, shape, grad in p.variables():
        make = f"{value} + torch.randn({shape}, generator=g)" if shape else f"torch.tensor({value})"
        lines.append(f"{name} = ({make}).requires_grad_({grad})")
    out = program.output_name
    for target, node in program.statements:
        lines.append(f"{target or out} = {parser.render(node, torch_prefix=True)}")
        if p.retain_grad and target:
            lines.append(f"if {target}.requires_grad:\n    {target}.retain_grad()  # keep .grad of a non-leaf")
    lines += [
        f'print("{out} =", {out})',
        f"if {out}.requires_grad:",
        f"    {out}.backward(torch.ones_like({out}))  # ones: the gradient of {out}.sum(), for any shape",
    ]
    names = [v[0] for v in p.variables()] + [n for n, _ in program.statements if n and n != out]
    for name in names:
        lines.append(f'print("{name}.grad =", {name}.grad)')
    return "\n".join(lines) + "\n"


EXAMPLES: dict[str, GraphParams] = {
    "seeds": GraphParams(),
    "named": GraphParams(expr="a = x + w; b = w + 1; y = a * b", retain_grad=True),
    "shared": GraphParams(expr="y = x * x * x + sin(x) * w"),
    "frozen": GraphParams(expr="y = relu(x * w - 1) + sigmoid(w)", v2_grad=False),
    "matrix": GraphParams(expr="y = mean(matmul(x, w) ** 2)", v1_shape=(2, 3), v2_shape=(3, 2)),
    "vector": GraphParams(expr="y = tanh(x * w)", v1_shape=(4,), v2_value=0.5),
}


EXPERIMENTS = {"graph": Experiment(GraphParams, run_graph, code_graph)}
