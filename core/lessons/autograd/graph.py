"""The autograd graph builder: evaluate a student's expression, walk the graph torch built, run backward.

The graph in the result is exactly torch's: one node per grad_fn reachable from the output (leaves
appear as their AccumulateGrad nodes), one edge per `next_functions` entry. Backward runs with a
pre-hook on every node, so the visiting order is the order autograd really used, and with a hook
that records the gradient each node sends along each of its edges. The "Step through backward" tab
draws the same result one visited node at a time.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from core import expr as parser
from core.experiment import Experiment, Prediction, RunContext, first_line
from core.params import InvalidParams, Params, bounds, seed_field, shape_spec, text_spec

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,7}$")
SLOTS = (1, 2, 3)
MAX_SIDE = 6  # a variable's shape is at most 6 x 6
WORK_PER_OP = MAX_SIDE**3  # the costliest operation: matmul of two 6 x 6 matrices


def _name(default: str) -> Any:
    return field(default=default, metadata=text_spec(8))


def _value(default: float) -> Any:
    return field(default=default, metadata=bounds(-10.0, 10.0, 0.5))


def _shape() -> Any:
    return field(default=(), metadata=shape_spec(max_dims=2, min_dims=0, lo=1, hi=MAX_SIDE))


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
    seed: int = seed_field()

    def variables(self) -> list[tuple[str, float, tuple[int, ...], bool]]:
        """Return (name, value, shape, requires_grad) of every slot with a name."""
        out = []
        for i in SLOTS:
            name = getattr(self, f"v{i}_name").strip()
            if name:
                out.append((name, getattr(self, f"v{i}_value"), getattr(self, f"v{i}_shape"), getattr(self, f"v{i}_grad")))
        return out

    def validate(self) -> None:
        """Raise InvalidParams for a bad field, a bad or repeated variable name, or an expression the parser refuses."""
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

    def estimate_work(self) -> float:
        """Return the element operations of forward and backward: at most one 6 x 6 matmul per character of the expression."""
        return 3.0 * min(parser.MAX_NODES, len(self.expr)) * WORK_PER_OP


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
    """Torch's graph of one program, backward's visiting order, and every named tensor's .grad."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    order: tuple[int, ...]  # node ids in the order backward visited them
    output: str  # the output's value
    output_name: str
    summed: bool  # the output was not a scalar: backward ran on its sum (gradient of ones)
    grads: tuple[tuple[str, str | None], ...]  # (tensor name, its .grad) for every named tensor
    torch_error: str | None

    def node_at(self, step: int) -> GraphNode | None:
        """Return the node backward visits at `step` (1 is the output's), or None at step 0 and past the end."""
        if not 0 < step <= len(self.order):
            return None
        return next((n for n in self.nodes if n.id == self.order[step - 1]), None)


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


def run(p: GraphParams, ctx: RunContext) -> GraphResult:
    """Evaluate the expression, draw torch's graph, run backward while recording what flows where."""
    program = p.program()
    env = make_variables(p, ctx)
    try:
        evaluation = parser.evaluate(program, env)
    except RuntimeError as e:
        return _failed(program, e)
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
            return _failed(program, e)
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
    grads = tuple(
        (name, fmt_tensor(t.grad) if t.requires_grad and (t.is_leaf or p.retain_grad) else None) for name, t in named.items()
    )
    output = fmt_tensor(y) or ""
    return GraphResult(graph_nodes, graph_edges, tuple(order), output, program.output_name, summed, grads, None)


def _failed(program: parser.Program, error: RuntimeError) -> GraphResult:
    """Return the result of a program torch refused: no graph, torch's message."""
    return GraphResult((), (), (), "", program.output_name, False, (), first_line(error))


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


def _describe(
    node: Any, i: int, labels: dict[int, str], values: dict[int, torch.Tensor], leaf_names: dict[int, str]
) -> GraphNode:
    """Return what the page shows on one node: its op, label, value, shape and .grad."""
    op = type(node).__name__
    if op == "AccumulateGrad":
        leaf = node.variable
        name = leaf_names.get(id(leaf), "leaf")
        return GraphNode(i, op, name, fmt_tensor(leaf) or "", tuple(leaf.shape), True, True, fmt_tensor(leaf.grad))
    t = values.get(id(node))
    if t is None:  # a node torch added inside one of our operations
        return GraphNode(i, op, "", "", (), False, True, None)
    grad = fmt_tensor(t.grad) if t.retains_grad else None
    return GraphNode(i, op, labels[id(node)], fmt_tensor(t) or "", tuple(t.shape), False, True, grad)


def context(p: GraphParams, device_type: str) -> dict[str, Any]:
    """Return the values of autograd_graph.py.j2: the same tensors and statements, then backward and every .grad."""
    program = p.program()
    out = program.output_name
    variables = [{"name": name, "value": value, "shape": shape, "grad": grad} for name, value, shape, grad in p.variables()]
    statements = [
        {"target": target or out, "expr": parser.render(node, torch_prefix=True), "retain": p.retain_grad and bool(target)}
        for target, node in program.statements
    ]
    named = [name for name, _ in program.statements if name and name != out]
    return {
        "seed": p.seed,
        "shaped": any(v["shape"] for v in variables),
        "variables": variables,
        "statements": statements,
        "out": out,
        "grad_names": [v["name"] for v in variables] + named,
    }


def shown(r: GraphResult) -> list[float | str]:
    """Return what the script prints verbatim: which tensors end up with a .grad and which print None.

    The values themselves are rounded differently (4 significant digits on the page, 4 decimals
    in torch's print); tests/core/test_autograd_graph.py compares them within that rounding.
    """
    texts: list[float | str] = [f"{r.output_name} = tensor("]
    for name, grad in r.grads:
        if name != r.output_name:  # the script prints every .grad but the output's
            texts.append(f"{name}.grad = None" if grad is None else f"{name}.grad = tensor(")
    return texts


# The preset picker's choices (labels in graph.preset_choices); "seeds" is the default.
EXAMPLES: dict[str, GraphParams] = {
    "seeds": GraphParams(),
    "named": GraphParams(expr="a = x + w; b = w + 1; y = a * b", retain_grad=True),
    "shared": GraphParams(expr="y = x * x * x + sin(x) * w"),
    "frozen": GraphParams(expr="y = relu(x * w - 1) + sigmoid(w)", v2_grad=False),
    "matrix": GraphParams(expr="y = mean(matmul(x, w) ** 2)", v1_shape=(2, 3), v2_shape=(3, 2)),
    "vector": GraphParams(expr="y = tanh(x * w)", v1_shape=(4,), v2_value=0.5),
    "difference": GraphParams(expr="y = (x + w) * (x - w)"),  # the w.grad question's case
}

GRAPH = Experiment(
    "graph",
    GraphParams,
    run,
    script="autograd_graph.py.j2",
    context=context,
    shown=shown,
    examples=(EXAMPLES["named"], EXAMPLES["frozen"], EXAMPLES["matrix"], EXAMPLES["vector"]),
)


def _w_grad(r: GraphResult) -> str:
    """Return w.grad as the page shows it (e.g. "-2" for y = (x + w) * (x - w) at x = 2, w = 1)."""
    return dict(r.grads).get("w") or ""


# The page shows the seeds' y = (x + w) * (w + 1) by default, with w.grad worked out in the prose. The
# question asks for another expression (a preset the student can pick to check) where w again takes
# two paths, one of them through a minus sign.
W_GRAD = Prediction(
    "w_grad_two_paths",
    GRAPH,
    EXAMPLES["difference"],
    options=("-2", "0", "2", "4"),
    answer=_w_grad,
    question="graph.predict_q",
    why="graph.predict_why",
)
