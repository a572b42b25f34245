"""The autograd graph builder, checked against torch itself.

Random programs over the expression language are generated together with an independent torch
computation of the same thing (built by hand from the same random choices, never eval'd); the
reported gradients, the graph and backward's visiting order must match what torch gives directly.
Hostile input must be refused with InvalidParams, quickly, and nothing else may escape.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core import expr as parser
from core.lessons.autograd import graph as autograd_graph
from core.lessons.autograd.charts import autograd_dot
from core.lessons.autograd.graph import EXAMPLES, GRAPH, GraphEdge, GraphNode, GraphParams, GraphResult, fmt_tensor
from core.params import InvalidParams
from core.runner import execute
from tests.scripts import Ran, run_scripts
from tests.timing import least_seconds

Env = Mapping[str, torch.Tensor]
Fn = Callable[[Env], torch.Tensor]
NAMES = ("x", "w", "z")


def run(p: GraphParams) -> GraphResult:
    r = execute(autograd_graph.run, p)
    assert isinstance(r, GraphResult)
    return r


def tr(key: str) -> str:
    return key


# --------------------------------------------------------------------------------------------
# 1. The seeds' default and the named program


def test_default_grads() -> None:
    r = run(GraphParams())
    assert r.torch_error is None
    grads = dict(r.grads)
    assert grads["w"] == "5"
    assert grads["x"] == "2"
    assert grads["y"] is None
    assert r.output == "6"
    assert r.output_name == "y"
    assert not r.summed


def test_named_program_with_retain_grad() -> None:
    p = GraphParams(expr="a = x + w; b = w + 1; y = a * b", retain_grad=True)
    assert p == EXAMPLES["named"]
    r = run(p)
    grads = dict(r.grads)
    assert grads == {"x": "2", "w": "5", "a": "2", "b": "3", "y": "1"}
    assert Counter(n.op for n in r.nodes) == Counter({"MulBackward0": 1, "AddBackward0": 2, "AccumulateGrad": 2})
    assert len(r.nodes) == 5
    assert len(r.edges) == 5
    assert {n.label for n in r.nodes if n.op == "AccumulateGrad"} == {"x", "w"}
    labels = {n.label for n in r.nodes}
    assert {"y = a * b", "a = x + w", "b = w + 1"} <= labels
    by_label = {n.label: n for n in r.nodes}
    assert by_label["a = x + w"].grad == "2"
    assert by_label["b = w + 1"].grad == "3"


# --------------------------------------------------------------------------------------------
# 2-4. Random programs with an independent torch computation


@dataclass(frozen=True)
class Gen:
    """Source text of an expression and a callable computing the same thing with torch ops."""

    text: str
    fn: Fn


def _const(c: float) -> Gen:
    # The parser turns every number into a float32 0-dim tensor; so does the independent side.
    return Gen(repr(c), lambda env: torch.tensor(float(c)))


def _var(name: str) -> Gen:
    return Gen(name, lambda env: env[name])


def _one() -> torch.Tensor:
    return torch.tensor(1.0)


BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
UNARY_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "exp": torch.exp,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "sum": torch.sum,
    "mean": torch.mean,
}
GUARDED_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"log": torch.log, "sqrt": torch.sqrt}


def _binary(op: str, a: Gen, b: Gen) -> Gen:
    f = BINARY_OPS[op]
    return Gen(f"({a.text} {op} {b.text})", lambda env: f(a.fn(env), b.fn(env)))


def _guarded_div(a: Gen, b: Gen) -> Gen:
    return Gen(f"({a.text} / (abs({b.text}) + 1))", lambda env: a.fn(env) / (torch.abs(b.fn(env)) + _one()))


def _power(a: Gen, k: int) -> Gen:
    return Gen(f"({a.text} ** {k})", lambda env: a.fn(env) ** torch.tensor(float(k)))


def _neg(a: Gen) -> Gen:
    return Gen(f"(-{a.text})", lambda env: -a.fn(env))


def _call(name: str, a: Gen) -> Gen:
    f = UNARY_FNS[name]
    return Gen(f"{name}({a.text})", lambda env: f(a.fn(env)))


def _guarded_call(name: str, a: Gen) -> Gen:
    f = GUARDED_FNS[name]
    return Gen(f"{name}(abs({a.text}) + 1)", lambda env: f(torch.abs(a.fn(env)) + _one()))


KINDS = ["binary", "binary", "binary", "div", "power", "neg", "call", "call", "guarded"]


@st.composite
def expression(draw: st.DrawFn, names: tuple[str, ...], depth: int) -> Gen:
    """A random expression tree at most `depth` operations deep, with its independent torch callable."""
    # sampled_from rather than integers: hypothesis draws integer bounds far more often than the rest.
    kind = "leaf" if depth == 0 else draw(st.sampled_from([*KINDS, "leaf"]))
    if kind == "leaf":
        if draw(st.sampled_from([False, False, True])):
            return _const(draw(st.sampled_from([2, 3, 0.5, 1, 1.5, 0.25])))
        return _var(draw(st.sampled_from(names)))
    inner = expression(names, depth - 1)
    if kind == "binary":
        return _binary(draw(st.sampled_from(list(BINARY_OPS))), draw(inner), draw(inner))
    if kind == "div":
        return _guarded_div(draw(inner), draw(inner))
    if kind == "power":
        return _power(draw(inner), draw(st.integers(1, 3)))
    if kind == "neg":
        return _neg(draw(inner))
    if kind == "call":
        return _call(draw(st.sampled_from(list(UNARY_FNS))), draw(inner))
    return _guarded_call(draw(st.sampled_from(list(GUARDED_FNS))), draw(inner))


def expressions(names: tuple[str, ...]) -> st.SearchStrategy[Gen]:
    return st.integers(1, 5).flatmap(lambda depth: expression(names, depth))


@dataclass(frozen=True)
class Prog:
    """A random program: an optional `a = first`, then the last statement (`y = ...` or bare)."""

    first: Gen | None
    last: Gen
    bare: bool
    sep: str

    @property
    def text(self) -> str:
        last = self.last.text if self.bare else f"y = {self.last.text}"
        return last if self.first is None else f"a = {self.first.text}{self.sep}{last}"


programs = st.builds(
    Prog,
    first=st.none() | expressions(NAMES),
    last=expressions((*NAMES, "a")),
    bare=st.booleans(),
    sep=st.sampled_from(["; ", "\n", ";"]),
).filter(lambda p: p.first is not None or "a" not in re.findall(r"[A-Za-z_]\w*", p.last.text))

SHAPES = st.sampled_from([(), (), (3,), (2, 3)])
VALUES = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Prog, GraphParams]:
    prog = draw(programs)
    fields: dict[str, Any] = {"expr": prog.text, "retain_grad": draw(st.booleans()), "seed": draw(st.integers(0, 1000))}
    for i, name in enumerate(NAMES, start=1):
        fields[f"v{i}_name"] = name
        fields[f"v{i}_value"] = draw(VALUES)
        fields[f"v{i}_shape"] = draw(SHAPES)
        fields[f"v{i}_grad"] = draw(st.sampled_from([True, True, True, False]))
    return prog, GraphParams(**fields)


def variables(p: GraphParams) -> dict[str, torch.Tensor]:
    """Re-create the declared variables: value (+ seeded N(0, 1) noise when shaped), in slot order."""
    g = torch.Generator().manual_seed(p.seed)
    env = {}
    for i in (1, 2, 3):
        name = getattr(p, f"v{i}_name").strip()
        if not name:
            continue
        value, shape = getattr(p, f"v{i}_value"), getattr(p, f"v{i}_shape")
        t = value + torch.randn(shape, generator=g) if shape else torch.tensor(value)
        env[name] = t.requires_grad_(getattr(p, f"v{i}_grad"))
    return env


@dataclass
class Independent:
    env: dict[str, torch.Tensor]
    named: dict[str, torch.Tensor]
    out: torch.Tensor


def independent(prog: Prog, p: GraphParams) -> Independent:
    env = variables(p)
    scope: dict[str, torch.Tensor] = dict(env)
    named: dict[str, torch.Tensor] = {}
    if prog.first is not None:
        named["a"] = scope["a"] = prog.first.fn(scope)
    out = prog.last.fn(scope)
    if not prog.bare:
        named["y"] = out
    return Independent(env, named, out)


def finite(t: torch.Tensor | None) -> bool:
    return t is None or bool(torch.isfinite(t).all())


def expected_grads(ind: Independent, retain_grad: bool) -> dict[str, str | None]:
    """fmt_tensor of what .grad should hold for every variable and named tensor, from autograd.grad."""
    tensors = {**ind.env, **ind.named}
    wanted = {n: t for n, t in tensors.items() if t.requires_grad and (t.is_leaf or retain_grad)}
    got: dict[str, torch.Tensor | None] = dict.fromkeys(tensors)
    if ind.out.requires_grad and wanted:
        total = ind.out.sum() if ind.out.dim() > 0 else ind.out
        grads = torch.autograd.grad(total, list(wanted.values()), allow_unused=True)
        got.update(zip(wanted, grads, strict=True))
    assume(all(finite(g) for g in got.values()))
    return {n: fmt_tensor(g) for n, g in got.items()}


@dataclass(frozen=True)
class Walk:
    ops: Counter[str]  # grad_fn class names, as a multiset
    edges: Counter[tuple[str, str]]  # (consumer op, input op), one per next_functions entry
    count: int
    leaves: list[torch.Tensor]  # the variables of the AccumulateGrad nodes


def walk(root: Any) -> Walk:
    """Independent BFS over torch's graph from the output's grad_fn."""
    ops: Counter[str] = Counter()
    edges: Counter[tuple[str, str]] = Counter()
    leaves: list[torch.Tensor] = []
    if root is None:
        return Walk(ops, edges, 0, leaves)
    seen = {root}
    queue = [root]
    while queue:
        node = queue.pop(0)
        ops[type(node).__name__] += 1
        if hasattr(node, "variable"):
            leaves.append(node.variable)
        for child, _ in node.next_functions:
            if child is None:
                continue
            edges[(type(node).__name__, type(child).__name__)] += 1
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return Walk(ops, edges, len(seen), leaves)


def run_case(prog: Prog, p: GraphParams) -> tuple[GraphResult, Independent]:
    try:
        p.validate()
    except InvalidParams as e:  # a rare draw nested past the parser's limits
        assume(e.key not in ("expr_too_deep", "expr_too_big", "too_long", "expr_too_long"))
        raise
    ind = independent(prog, p)
    assume(finite(ind.out))
    r = run(p)
    assert r.torch_error is None, (prog.text, r.torch_error)
    return r, ind


HYPO = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@HYPO
@given(case=cases())
def test_random_programs_grads_match_autograd(case: tuple[Prog, GraphParams]) -> None:
    prog, p = case
    r, ind = run_case(prog, p)
    expected = expected_grads(ind, p.retain_grad)
    reported = dict(r.grads)
    assert set(reported) == set(expected)
    for name, text in expected.items():
        assert reported[name] == text, (prog.text, name)
    assert r.output == fmt_tensor(ind.out)
    assert r.summed == (ind.out.dim() > 0)
    # Every leaf node in the graph shows the same .grad as the grads list.
    for n in r.nodes:
        if n.op == "AccumulateGrad":
            assert n.grad == reported[n.label]


@HYPO
@given(case=cases())
def test_random_programs_graph_is_torchs(case: tuple[Prog, GraphParams]) -> None:
    prog, p = case
    r, ind = run_case(prog, p)
    torch_graph = walk(ind.out.grad_fn)  # an output that is itself a leaf (`y = x`) has none: both are empty
    assert Counter(n.op for n in r.nodes) == torch_graph.ops, prog.text
    assert len(r.nodes) == torch_graph.count
    assert len(r.edges) == sum(torch_graph.edges.values())
    by_id = {n.id: n for n in r.nodes}
    assert sorted(by_id) == list(range(len(r.nodes)))
    assert Counter((by_id[e.src].op, by_id[e.dst].op) for e in r.edges) == torch_graph.edges
    # Leaves are labelled with their variable's name: exactly the variables torch's graph reaches, each once.
    leaves = [n.label for n in r.nodes if n.op == "AccumulateGrad"]
    assert len(leaves) == len(set(leaves))
    assert set(leaves) <= set(NAMES)
    reached = {name for name, t in ind.env.items() if any(t is leaf for leaf in torch_graph.leaves)}
    assert set(leaves) == reached
    assert all(ind.env[n.label].requires_grad and n.shape == tuple(ind.env[n.label].shape) for n in r.nodes if n.is_leaf)
    for n in r.nodes:
        assert n.is_leaf == (n.op == "AccumulateGrad")
    # Backward's order: a permutation of the nodes, from the output, consumers before their inputs.
    assert sorted(r.order) == list(range(len(r.nodes)))
    if r.nodes:
        assert r.order[0] == 0
        assert by_id[0].op == type(ind.out.grad_fn).__name__
    position = {node: i for i, node in enumerate(r.order)}
    for e in r.edges:
        assert position[e.src] < position[e.dst], (prog.text, e)


@HYPO
@given(case=cases())
def test_random_programs_edge_gradients_sum_to_leaf_grad(case: tuple[Prog, GraphParams]) -> None:
    prog, p = case
    r, _ = run_case(prog, p)
    for n in r.nodes:
        if n.op != "AccumulateGrad" or n.shape != () or n.grad is None:
            continue
        incoming = [e.grad for e in r.edges if e.dst == n.id]
        assert incoming and all(g is not None for g in incoming), (prog.text, n.label)
        values = [float(g) for g in incoming if g is not None]
        total = float(n.grad)
        assume(all(math.isfinite(v) for v in values) and math.isfinite(total))
        # fmt_tensor keeps 4 significant digits: allow that rounding on every term.
        tol = 1e-3 * (sum(abs(v) for v in values) + abs(total)) + 1e-6
        assert abs(sum(values) - total) <= tol, (prog.text, n.label, incoming, n.grad)


def test_default_edge_gradients() -> None:
    r = run(GraphParams())
    by_label = {n.label: n for n in r.nodes}
    mul = next(n for n in r.nodes if n.op == "MulBackward0")
    xw, w1, w = by_label["x + w"], by_label["w + 1"], by_label["w"]
    grad = {(e.src, e.dst): e.grad for e in r.edges}
    assert grad[(mul.id, xw.id)] == "2"
    assert grad[(mul.id, w1.id)] == "3"
    assert grad[(w1.id, w.id)] == "3"
    assert grad[(xw.id, w.id)] == "2"
    assert grad[(xw.id, by_label["x"].id)] == "2"
    assert len(r.edges) == 5


# --------------------------------------------------------------------------------------------
# 5. Hostile expressions

NESTED_OK_LENGTH = "(" * 240 + "x" + ")" * 240  # under MAX_CHARS, past Python's own nesting limit
TOO_DEEP = "x+" * (parser.MAX_DEPTH + 5) + "x"  # a + b + c ... nests to the left


def too_big() -> str:
    """Statements each under MAX_DEPTH that together hold more than MAX_NODES syntax nodes."""
    plus = parser.MAX_DEPTH - 10
    statement = "a=" + "x+" * plus + "x"
    count = (parser.MAX_NODES + 1) // (2 * plus + 1) + 1
    return "\n".join([statement] * count)


HOSTILE: list[tuple[str, set[str]]] = [
    ("__import__('os')", {"expr_unknown_function"}),
    ("x.__class__", {"expr_not_allowed"}),
    ("lambda: 1", {"expr_not_allowed"}),
    ("(lambda q: q)(x)", {"expr_unknown_function"}),
    ("x**10**10", {"expr_exponent"}),
    ("2 ** 1000", {"expr_exponent"}),
    ("10 ** 10 ** 10", {"expr_exponent"}),
    ("(" * 10_000 + "x" + ")" * 10_000, {"too_long", "expr_too_long"}),
    (NESTED_OK_LENGTH, {"expr_syntax", "expr_too_deep"}),
    (TOO_DEEP, {"expr_too_deep"}),
    ("-" * (parser.MAX_DEPTH + 5) + "x", {"expr_too_deep"}),
    ("sin(" * (parser.MAX_DEPTH + 5) + "x" + ")" * (parser.MAX_DEPTH + 5), {"expr_too_deep", "expr_syntax"}),
    (too_big(), {"expr_too_big"}),
    ("x" * (1 << 20), {"too_long", "expr_too_long"}),
    ("y = x + w\n" * 100_000, {"too_long", "expr_too_long"}),
    ("open('/etc/passwd')", {"expr_unknown_function"}),
    ("[x for x in w]", {"expr_not_allowed"}),
    ("x if w else x", {"expr_not_allowed"}),
    ('f"{x}"', {"expr_not_allowed"}),
    ("x[0]", {"expr_not_allowed"}),
    ("x.grad", {"expr_not_allowed"}),
    ("import os", {"expr_statement"}),
    ("del x", {"expr_statement"}),
    ("x = 1", {"expr_reassign"}),
    ("sin = x", {"expr_reassign"}),
    ("sum(x, w)", {"expr_arguments"}),
    ("matmul(x)", {"expr_arguments"}),
    ("sin(*x)", {"expr_arguments"}),
    ("sin(x=1)", {"expr_arguments"}),
    ('"text"', {"expr_constant"}),
    ("b'x'", {"expr_constant"}),
    ("True + x", {"expr_constant"}),
    ("None", {"expr_constant"}),
    ("1j * x", {"expr_constant"}),
    ("1e309", {"expr_constant_too_big"}),
    ("x * 10000000", {"expr_constant_too_big"}),
    ("x @ w", {"expr_not_allowed"}),
    ("x < w", {"expr_not_allowed"}),
    ("x and w", {"expr_not_allowed"}),
    ("~x", {"expr_not_allowed"}),
    ("x // w", {"expr_not_allowed"}),
    ("(x, w)", {"expr_not_allowed"}),
    ("{x: w}", {"expr_not_allowed"}),
    ("(q := x)", {"expr_not_allowed"}),
    ("x.sin()", {"expr_unknown_function"}),
    ("torch.sin(x)", {"expr_unknown_function"}),
    ("\u0445 + w", {"expr_unknown_name"}),  # Cyrillic ha, looks like x
    ("x + \u0461", {"expr_unknown_name"}),
    ("x\x00", {"expr_syntax"}),
    ("\x00", {"expr_syntax"}),
    ("x + \\x00", {"expr_syntax"}),
    ("x +", {"expr_syntax"}),
    ("((x + w)", {"expr_syntax"}),
    ("x + w\ry = x", {"expr_syntax", "expr_statement", "expr_reassign"}),
    ("   ", {"expr_empty"}),
    (";;\n;", {"expr_empty"}),
    ("a = x\n" * parser.MAX_STATEMENTS + "a", {"expr_too_many_statements"}),
    ("y = x + w; z", {"expr_unknown_name"}),
    ("y = q + 1", {"expr_unknown_name"}),
    ("x; y = w", {"expr_statement"}),
    ("y += x", {"expr_statement"}),
    ("a = b = x", {"expr_statement"}),
    ("if x: y = w", {"expr_statement"}),
    ("def f(): pass", {"expr_statement"}),
]


def largest_accepted_program() -> GraphParams:
    """Return params whose program sits just under every parser limit: statements under MAX_DEPTH,
    together just under MAX_NODES, each using the one before twice."""
    plus = min(parser.MAX_DEPTH - 10, 30)
    count = min(parser.MAX_STATEMENTS - 1, (parser.MAX_NODES - 10) // (2 * plus + 1))
    lines = [f"a{i} = " + "+".join(["w" if i == 0 else f"a{i - 1}"] * (plus + 1)) for i in range(count)]
    text = "\n".join([*lines, f"y = sum(a{count - 1} * x)"])
    assert len(text) <= parser.MAX_CHARS
    return GraphParams(expr=text, v1_shape=(6, 6), v2_shape=(6, 6), retain_grad=True)


def refuse(text: str) -> InvalidParams:
    """Return the error validating an expression raises (failing the test if it is accepted)."""
    with pytest.raises(InvalidParams) as info:
        GraphParams(expr=text).validate()
    return info.value


@pytest.mark.parametrize(("text", "keys"), HOSTILE, ids=[f"{i}:{t[:24]!r}" for i, (t, _) in enumerate(HOSTILE)])
def test_hostile_expressions_refused(text: str, keys: set[str]) -> None:
    e = refuse(text)
    assert e.field == "expr"
    assert e.key in keys, (e.key, e.info)
    if e.key.startswith("expr_"):  # the parser's errors point at a statement and column
        assert isinstance(e.info.get("line"), int) and e.info["line"] >= 1
        assert isinstance(e.info.get("col"), int) and e.info["col"] >= 1
    else:  # Params' own length check runs first; it reports the limit
        assert e.info.get("max_len") == parser.MAX_CHARS
    # No hostile text makes the parser work much harder than the largest program it accepts
    # (measured: at most about 1.2 times); a ratio within one run, not a wall-clock limit.
    largest = largest_accepted_program()
    assert least_seconds(lambda: refuse(text)) < 20 * least_seconds(largest.validate)


def test_largest_accepted_program_runs_quickly() -> None:
    # Validating and running the largest accepted program costs a bounded multiple of the default
    # program (measured: about 22 times), whatever the parser's limits allow.
    p = largest_accepted_program()

    def validate_and_run(params: GraphParams) -> GraphResult:
        params.validate()
        return run(params)

    assert least_seconds(lambda: validate_and_run(p)) < 200 * least_seconds(lambda: validate_and_run(GraphParams()))
    r = validate_and_run(p)
    plus = min(parser.MAX_DEPTH - 10, 30)
    assert r.torch_error is None
    assert len(r.nodes) > plus


def test_crlf_line_endings_read_as_newlines() -> None:
    crlf = run(GraphParams(expr="a = x + w\r\ny = a * 2\r\n", retain_grad=True))
    lf = run(GraphParams(expr="a = x + w\ny = a * 2\n", retain_grad=True))
    assert crlf == lf
    assert dict(crlf.grads)["a"] == "2"


def test_fullwidth_lookalike_is_refused_or_means_the_same() -> None:
    # Python reads identifiers in NFKC form, so fullwidth ｘ is the name x: that is harmless, as long
    # as it either is refused or means exactly what "x + w" means.
    p = GraphParams(expr="\uff58 + w")
    try:
        p.validate()
    except InvalidParams as e:
        assert e.key.startswith("expr_")
        return
    assert run(p) == run(GraphParams(expr="x + w"))


TOKENS = [
    "x",
    "w",
    "z",
    "a",
    "y",
    " = ",
    "; ",
    "\n",
    "+",
    "-",
    "*",
    "/",
    "**",
    "(",
    ")",
    ",",
    "1",
    "2",
    "0",
    "0.5",
    "1e3",
    "sin",
    "log",
    "sqrt",
    "sum",
    "mean",
    "matmul",
    "dot",
    "relu",
    "exp",
    " ",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
# Well-formed programs that torch may still refuse: x (2,), w (3,) and z (2, 3) do not all broadcast.
risky = st.one_of(
    expressions(NAMES).map(lambda g: g.text),
    st.tuples(st.sampled_from(["matmul", "dot"]), expressions(NAMES), expressions(NAMES)).map(
        lambda t: f"y = {t[0]}({t[1].text}, {t[2].text})"
    ),
)
SHAPED = GraphParams(v1_shape=(2,), v2_shape=(3,), v3_name="z", v3_shape=(2, 3))


@settings(max_examples=200, deadline=None, database=None)
@given(text=st.text(max_size=300) | token_soup | risky, shaped=st.booleans())
def test_arbitrary_text_runs_or_is_refused(text: str, shaped: bool) -> None:
    p = replace(SHAPED if shaped else GraphParams(), expr=text)
    try:
        p.validate()
    except InvalidParams as e:
        assert e.field == "expr"
        return
    r = execute(autograd_graph.run, p)
    assert isinstance(r, GraphResult)
    if r.torch_error is not None:
        assert r.nodes == () and r.edges == ()


# --------------------------------------------------------------------------------------------
# 6. Variable names


BAD_NAMES = ["1x", "for", "sin", "matmul", "toolongname", "a b", "x-y", "\u00e9", "None", "lambda"]


@pytest.mark.parametrize("slot", [1, 2, 3])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_variable_names(slot: int, name: str) -> None:
    with pytest.raises(InvalidParams) as info:
        GraphParams(**{f"v{slot}_name": name}).validate()  # type: ignore[arg-type]
    assert info.value.field == f"v{slot}_name"
    assert info.value.key in ("bad_name", "too_long")


@pytest.mark.parametrize(
    ("fields", "slot"),
    [
        ({"v2_name": "x"}, 2),
        ({"v2_name": " x "}, 2),
        ({"v3_name": "w"}, 3),
        ({"v3_name": "x"}, 3),
        ({"v1_name": "k", "v2_name": "k", "v3_name": "k"}, 2),
    ],
)
def test_duplicate_variable_names(fields: dict[str, str], slot: int) -> None:
    with pytest.raises(InvalidParams) as info:
        GraphParams(**fields).validate()  # type: ignore[arg-type]
    assert info.value.field == f"v{slot}_name"
    assert info.value.key == "duplicate"


# --------------------------------------------------------------------------------------------
# 7. The script: a second implementation (the expression rendered as torch code, run on its own).
#    It prints the same grads as the page, within the page's 4-significant-digit rounding, which
#    the contract's exact comparison of `shown` numbers cannot allow for.

SCRIPTS: dict[str, GraphParams] = {
    "seeds": EXAMPLES["seeds"],
    "named": EXAMPLES["named"],
    "matrix": EXAMPLES["matrix"],
    "vector": EXAMPLES["vector"],
    "frozen": EXAMPLES["frozen"],
    "shared": EXAMPLES["shared"],
    "difference": EXAMPLES["difference"],
    # A variable named y with a bare final expression: the output takes a free name (out).
    "var_y_bare": GraphParams(v2_name="y", expr="x * y"),
}
# Names the generated script itself uses (torch, its generator g, print): refused up front.
RESERVED_NAMES = {
    "var_torch": GraphParams(v1_name="torch", expr="y = torch * w"),
    "var_g": GraphParams(v1_name="g", v1_shape=(2,), v2_shape=(2,), expr="y = sum(g * w)"),
    "var_print": GraphParams(v1_name="print", expr="y = print * w"),
    "stmt_torch": GraphParams(expr="torch = x * w; y = torch + 1"),
    "stmt_print": GraphParams(expr="print = x * w; y = print + 1"),
}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    folder = tmp_path_factory.mktemp("autograd_scripts")
    for p in SCRIPTS.values():
        p.validate()
    return run_scripts({name: GRAPH.write_script(p) for name, p in SCRIPTS.items()}, folder, timeout=60, warm_up=True)


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf")


def printed(out: str) -> dict[str, str]:
    """Return `name -> printed text` of each `name = ...` / `name.grad = ...` block (multi-line tensors)."""
    blocks: dict[str, str] = {}
    for m in re.finditer(r"^(\w+(?:\.grad)?) = (.*?)(?=^\w+(?:\.grad)? = |\Z)", out, re.M | re.S):
        blocks[m.group(1)] = m.group(2).strip()
    return blocks


def numbers_of(text: str) -> list[float]:
    text = re.sub(r"grad_fn=<\w+>|requires_grad=\w+", "", text)
    return [float(v) for v in NUMBER.findall(text)]


def close_to_fmt(script_value: float, fmt_text: str, significant: int) -> bool:
    """Within 1e-4 (and torch's 4-decimal printing) of a value fmt_tensor rounded to `significant` digits."""
    value = float(fmt_text)
    unit = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - significant + 1) if value else 0.0
    return abs(script_value - value) <= 1e-4 + 1e-4 * abs(value) + unit


def check_printed(text: str | None, printed_text: str) -> None:
    """The script's printed tensor (or None) matches a value text of the result."""
    if text is None:
        assert printed_text == "None"
        return
    assert printed_text != "None", f"the script prints None where the result holds {text}"
    script = numbers_of(printed_text)
    significant = 4 if not text.startswith("[") else 3
    ours = re.findall(r"[^\[\], …]+", text)
    assert len(script) >= len(ours)
    for got, want in zip(script, ours, strict=False):
        assert close_to_fmt(got, want, significant), (printed_text, text)
    if not text.endswith("…]"):
        assert len(script) == len(ours)


GOOD_SCRIPTS = ["seeds", "named", "matrix", "vector", "frozen", "shared", "var_y_bare"]


def check_script(name: str, ran: Ran) -> None:
    p = SCRIPTS[name]
    r = run(p)
    assert ran.rc == 0, ran.err
    blocks = printed(ran.out)
    out_name = r.output_name
    check_printed(r.output, blocks[out_name])
    grads = dict(r.grads)
    names = [k[: -len(".grad")] for k in blocks if k.endswith(".grad")]
    declared = [v[0] for v in p.variables()]
    assert set(names) == set(declared) | {n for n in grads if n != out_name}
    for n in names:
        check_printed(grads[n], blocks[f"{n}.grad"])


@pytest.mark.parametrize("name", GOOD_SCRIPTS)
def test_script_prints_the_same_grads(name: str, scripts: dict[str, Ran]) -> None:
    check_script(name, scripts[name])


@pytest.mark.parametrize("name", list(RESERVED_NAMES))
def test_names_the_script_needs_are_refused(name: str) -> None:
    with pytest.raises(InvalidParams) as info:
        RESERVED_NAMES[name].validate()
    assert info.value.key in ("bad_name", "expr_reassign")


def test_bare_output_takes_a_free_name() -> None:
    assert run(SCRIPTS["var_y_bare"]).output_name == "out"


def test_shaped_script_mentions_seed() -> None:
    p = EXAMPLES["matrix"]
    script = GRAPH.write_script(p)
    assert f"manual_seed({p.seed})" in script
    assert "torch.randn((2, 3), generator=g)" in script


# --------------------------------------------------------------------------------------------
# 8. autograd_dot


def quotes_balanced(line: str) -> bool:
    inside = False
    escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = inside
        elif ch == '"':
            inside = not inside
    return not inside and not escaped


def dot_strings(line: str) -> list[str]:
    """Return the decoded contents of every quoted string of a DOT line (\\" and \\\\ unescaped)."""
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', line):
        out.append(re.sub(r"\\(.)", lambda g: "\n" if g.group(1) == "n" else g.group(1), m.group(1)))
    return out


NODE_LINE = re.compile(r"^\s*n(\d+) \[")
EDGE_LINE = re.compile(r"^\s*n(\d+) -> n(\d+) \[(.*)\];$")


@pytest.mark.parametrize("example", ["seeds", "named", "shared", "matrix", "frozen"])
def test_dot_has_every_node_and_edge(example: str) -> None:
    r = run(EXAMPLES[example])
    dot = autograd_dot(r, tr)
    assert dot.startswith("digraph")
    lines = dot.splitlines()
    nodes = [int(m.group(1)) for line in lines if (m := NODE_LINE.match(line))]
    assert sorted(nodes) == sorted(n.id for n in r.nodes)
    assert dot.count("->") == len(r.edges)
    assert all(quotes_balanced(line) for line in lines)
    assert dot.rstrip().endswith("}")
    # Without a step, no edge carries a gradient label.
    edge_attrs = [m.group(3) for m in map(EDGE_LINE.match, lines) if m]
    assert len(edge_attrs) == len(r.edges)
    assert not any("label=" in attrs for attrs in edge_attrs)


@pytest.mark.parametrize("example", ["seeds", "named", "shared"])
def test_dot_step_labels_only_edges_of_visited_nodes(example: str) -> None:
    r = run(EXAMPLES[example])
    for k in range(len(r.order) + 1):
        lines = autograd_dot(r, tr, step=k).splitlines()
        labelled: Counter[tuple[int, int]] = Counter()
        for line in lines:
            m = EDGE_LINE.match(line)
            if m and "label=" in m.group(3):
                labelled[(int(m.group(2)), int(m.group(1)))] += 1  # drawn input -> consumer
        done = set(r.order[:k])
        expected = Counter((e.src, e.dst) for e in r.edges if e.src in done and e.grad is not None)
        assert labelled == expected, k
        for line in lines:
            m = EDGE_LINE.match(line)
            if m and "label=" in m.group(3):
                src, dst = int(m.group(2)), int(m.group(1))
                grads = {e.grad for e in r.edges if (e.src, e.dst) == (src, dst)}
                assert dot_strings(line)[0] in grads


def sneaky_tr(key: str) -> str:
    """A translation that itself contains a quote and a trailing backslash."""
    return f'{key}"\\'


def test_dot_escapes_quotes_and_backslashes() -> None:
    hostile = 'say "hi" \\ and \\"'
    nodes = (
        GraphNode(0, 'Mul"Backward', hostile, 'v"\\', (), False, True, '"g\\'),
        GraphNode(1, "AccumulateGrad", 'x"\\', "1", (), True, True, "2\\"),
    )
    edges = (GraphEdge(0, 1, 'e"\\'), GraphEdge(0, 1, "\\"))
    r = GraphResult(nodes, edges, (0, 1), "2", "y", False, (("x", "2"),), None)
    for step in (None, 0, 1, 2):
        dot = autograd_dot(r, sneaky_tr, step=step)
        lines = dot.splitlines()
        assert all(quotes_balanced(line) for line in lines), dot
        assert dot.count("->") == 2
        decoded = [s for line in lines for s in dot_strings(line)]
        parts = {part for s in decoded for part in s.split("\n")}
        assert hostile in parts
        assert 'Mul"Backward' in parts
        if step == 2:
            assert 'e"\\' in decoded and "\\" in decoded


# --------------------------------------------------------------------------------------------
# 9. Seeds, the step slider's node, and the prediction


def test_seed_changes_shaped_values_only() -> None:
    p = EXAMPLES["vector"]
    assert run(p) != run(replace(p, seed=p.seed + 1))
    assert run(GraphParams()) == run(GraphParams(seed=7))


def test_make_variables_matches_recreation() -> None:
    p = replace(EXAMPLES["matrix"], seed=123)
    made = execute(autograd_graph.make_variables, p)
    again = variables(p)
    assert made.keys() == again.keys()
    for name in made:
        assert torch.equal(made[name].detach(), again[name].detach())


def test_node_at_follows_backwards_order() -> None:
    r = run(EXAMPLES["named"])
    assert r.node_at(0) is None and r.node_at(len(r.order) + 1) is None
    visited = [r.node_at(step) for step in range(1, len(r.order) + 1)]
    assert [n.id for n in visited if n is not None] == list(r.order)
    first = r.node_at(1)
    assert first is not None and first.label == "y = a * b"  # backward starts at the output


def test_w_grad_prediction_asks_about_an_expression_the_page_does_not_show_by_default() -> None:
    # y = (x + w)(x - w): dy/dw = (x - w) - (x + w) = -2w at x = 2, w = 1; the default's w.grad is 5.
    prediction = autograd_graph.W_GRAD
    assert prediction.params == EXAMPLES["difference"] == replace(GraphParams(), expr="y = (x + w) * (x - w)")
    assert prediction.answer(run(prediction.params)) == "-2"
    assert autograd_graph._w_grad(run(GraphParams())) == "5"
