"""A small, whitelisted expression language for the autograd graph builder.

A program is one or more statements separated by newlines or ';': `name = expression`, or a bare
expression as the last statement. Expressions use numbers, declared variables, earlier names,
+ - * / ** and unary minus, and the functions in FUNCTIONS. Python's `ast` parses the text and
this module walks the tree by hand, refusing every other kind of node — nothing is ever eval'd.
Limits on length, nesting depth, node count and constant size keep one student from stalling
the server. Errors are InvalidParams(field, key, line=..., col=..., ...) for the UI to translate.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from core.params import InvalidParams

MAX_CHARS = 800
MAX_DEPTH = 128  # a + b + c ... nests to the left: a 200-node graph needs ~100 levels
MAX_NODES = 400  # syntax nodes; about two per graph node
MAX_CONSTANT = 1e6
MAX_EXPONENT = 16
MAX_STATEMENTS = 12

UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "sum": torch.sum,
    "mean": torch.mean,
}
BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "matmul": torch.matmul,
    "dot": torch.dot,
}
FUNCTIONS = (*UNARY, *BINARY)
# Names a student may not take: the generated script needs torch, g (its generator) and Python's
# builtins (print, ...) to keep their meaning.
RESERVED = frozenset({*FUNCTIONS, "torch", "g", *dir(builtins)})
OPERATORS: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


@dataclass(frozen=True)
class Step:
    """One evaluated operation: its result tensor and the source text it came from."""

    tensor: torch.Tensor
    text: str


@dataclass(frozen=True)
class Program:
    """A checked program: its statements, ready to evaluate."""

    statements: tuple[tuple[str | None, ast.expr], ...]  # (assigned name or None, expression)
    source: str
    output_name: str  # the last statement's name, or a free one ('y', 'out', ...) for a bare expression


def _error(key: str, node: ast.AST | None = None, **info: object) -> InvalidParams:
    line = getattr(node, "lineno", 1) if node is not None else 1
    col = getattr(node, "col_offset", 0) + 1 if node is not None else 1
    return InvalidParams("expr", key, line=line, col=col, **info)


def parse(source: str, variables: Sequence[str]) -> Program:
    """Check source against the whitelist and return it as a Program; raise InvalidParams otherwise."""
    if len(source) > MAX_CHARS:
        raise InvalidParams("expr", "expr_too_long", max_len=MAX_CHARS, line=1, col=1)
    if not source.strip():
        raise InvalidParams("expr", "expr_empty", line=1, col=1)
    # One statement per line, each stripped, so "a = x; b = a" parses; positions count statements.
    text = "\n".join(part.strip() for part in re.split(r"[;\n]", source) if part.strip())
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        raise InvalidParams("expr", "expr_syntax", line=e.lineno or 1, col=e.offset or 1) from None
    except (ValueError, RecursionError, MemoryError):
        raise InvalidParams("expr", "expr_syntax", line=1, col=1) from None
    if not tree.body:
        raise InvalidParams("expr", "expr_empty", line=1, col=1)
    if len(tree.body) > MAX_STATEMENTS:
        raise _error("expr_too_many_statements", tree.body[MAX_STATEMENTS], max=MAX_STATEMENTS)
    known = set(variables)
    checker = _Checker()
    statements: list[tuple[str | None, ast.expr]] = []
    for i, stmt in enumerate(tree.body):
        last = i == len(tree.body) - 1
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name in RESERVED or name in variables:
                raise _error("expr_reassign", stmt.targets[0], name=name)
            checker.check(stmt.value, known)
            known.add(name)
            statements.append((name, stmt.value))
        elif isinstance(stmt, ast.Expr) and last:
            checker.check(stmt.value, known)
            statements.append((None, stmt.value))
        else:
            raise _error("expr_statement", stmt)
    output = statements[-1][0] or next(n for n in ("y", "out", "result", "y_") if n not in known)
    return Program(tuple(statements), source, output)


class _Checker:
    """Walk expression trees by hand, allowing only the whitelisted node kinds."""

    def __init__(self) -> None:
        self.nodes = 0

    def check(self, node: ast.expr, known: set[str], depth: int = 0) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _error("expr_too_big", node, max=MAX_NODES)
        if depth > MAX_DEPTH:
            raise _error("expr_too_deep", node, max=MAX_DEPTH)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _error("expr_constant", node)
            if abs(value) > MAX_CONSTANT:
                raise _error("expr_constant_too_big", node, max=MAX_CONSTANT)
        elif isinstance(node, ast.Name):
            if node.id not in known:
                raise _error("expr_unknown_name", node, name=node.id[:20])
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.check(node.operand, known, depth + 1)
        elif isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            if isinstance(node.op, ast.Pow):
                self._check_exponent(node.right)
            self.check(node.left, known, depth + 1)
            self.check(node.right, known, depth + 1)
        elif isinstance(node, ast.Call):
            self._check_call(node, known, depth)
        else:
            raise _error("expr_not_allowed", node, what=type(node).__name__)

    def _check_call(self, node: ast.Call, known: set[str], depth: int) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise _error("expr_unknown_function", node, name=name[:20], allowed=", ".join(FUNCTIONS))
        arity = 1 if node.func.id in UNARY else 2
        if node.keywords or len(node.args) != arity or any(isinstance(a, ast.Starred) for a in node.args):
            raise _error("expr_arguments", node, name=node.func.id, count=arity)
        for arg in node.args:
            self.check(arg, known, depth + 1)

    @staticmethod
    def _check_exponent(node: ast.expr) -> None:
        """A constant exponent must be small; 2 ** 10 ** 10 is refused before anything runs."""
        inner = node.operand if isinstance(node, ast.UnaryOp) else node
        if isinstance(inner, ast.Constant) and isinstance(inner.value, (int, float)) and abs(inner.value) > MAX_EXPONENT:
            raise _error("expr_exponent", node, max=MAX_EXPONENT)
        if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Pow):
            raise _error("expr_exponent", node, max=MAX_EXPONENT)


@dataclass(frozen=True)
class Evaluation:
    """What running a program produced: the output, every operation's result, every assigned name."""

    output: torch.Tensor
    steps: tuple[Step, ...]
    named: dict[str, torch.Tensor]


def evaluate(program: Program, env: Mapping[str, torch.Tensor]) -> Evaluation:
    """Run the program with torch on the given variables.

    Raises RuntimeError from torch (shape mismatch and the like) for the caller to report.
    """
    names: dict[str, torch.Tensor] = dict(env)
    steps: list[Step] = []
    result = torch.zeros(())
    for name, node in program.statements:
        result = _eval(node, names, steps)
        if name is not None:
            names[name] = result
    assigned = {name: names[name] for name, _ in program.statements if name is not None}
    return Evaluation(result, tuple(steps), assigned)


def _eval(node: ast.expr, names: dict[str, torch.Tensor], steps: list[Step]) -> torch.Tensor:
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))  # the checker allowed nothing else
        return torch.tensor(float(node.value))
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names, steps)
        out = -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.BinOp):
        left, right = _eval(node.left, names, steps), _eval(node.right, names, steps)
        out = _binary(node.op, left, right)
    else:
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        args = [_eval(a, names, steps) for a in node.args]
        fn = node.func.id
        out = UNARY[fn](args[0]) if fn in UNARY else BINARY[fn](args[0], args[1])
    steps.append(Step(out, render(node)))
    return out


def _binary(op: ast.operator, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Div):
        return left / right
    return left**right


def render(node: ast.expr, torch_prefix: bool = False) -> str:
    """Return checked expression text (functions as torch.f when torch_prefix), from the tree itself."""
    prefix = "torch." if torch_prefix else ""
    if isinstance(node, ast.Constant):
        return repr(node.value)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return f"{sign}{_wrap(node.operand, torch_prefix)}"
    if isinstance(node, ast.BinOp):
        return f"{_wrap(node.left, torch_prefix)} {OPERATORS[type(node.op)]} {_wrap(node.right, torch_prefix)}"
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return f"{prefix}{node.func.id}({', '.join(render(a, torch_prefix) for a in node.args)})"


def _wrap(node: ast.expr, torch_prefix: bool) -> str:
    text = render(node, torch_prefix)
    return f"({text})" if isinstance(node, (ast.BinOp, ast.UnaryOp)) else text
