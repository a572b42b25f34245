"""What a module holds: each member declared one of eight ways, and what torch does with it.

The student names five members of a small module and picks how each is declared. The table is read
off the live module: is the member in parameters()? buffers()? state_dict()? does .to(float64)
convert it? does an SGD step change it? does load_state_dict restore it into a fresh copy?
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.modules.common import NAME_MAX, check_member_name, init_, yes
from core.params import InvalidParams, Params, choices, seed_field, text_spec

KINDS = (
    "parameter",
    "register_parameter",
    "buffer",
    "buffer_nonpersistent",
    "tensor",
    "submodule",
    "python_list",
    "module_list",
)
# How each kind is written in __init__ (`{n}` is the member's name); the script uses the same lines.
DECLARATIONS = {
    "parameter": "self.{n} = nn.Parameter(torch.randn(2, generator=g))",
    "register_parameter": 'self.register_parameter("{n}", nn.Parameter(torch.randn(2, generator=g)))',
    "buffer": 'self.register_buffer("{n}", torch.randn(2, generator=g))',
    "buffer_nonpersistent": 'self.register_buffer("{n}", torch.randn(2, generator=g), persistent=False)',
    "tensor": "self.{n} = torch.randn(2, generator=g)",
    "submodule": "self.{n} = init_(nn.Linear(2, 2), g)",
    "python_list": "self.{n} = [init_(nn.Linear(2, 2), g)]",
    "module_list": "self.{n} = nn.ModuleList([init_(nn.Linear(2, 2), g)])",
}
SLOTS = 5
CHECKS = ("parameters", "buffers", "state_dict", "converted", "updated", "restored")
BATCH = 4  # rows of the input the optimizer step is taken on
LR = 0.5


@dataclass(frozen=True)
class MembersParams(Params):
    """Five members of a small module: each one's name and how it is declared."""

    name1: str = field(default="weight", metadata=text_spec(NAME_MAX))
    kind1: str = field(default="parameter", metadata=choices(*KINDS))
    name2: str = field(default="running", metadata=text_spec(NAME_MAX))
    kind2: str = field(default="buffer", metadata=choices(*KINDS))
    name3: str = field(default="scratch", metadata=text_spec(NAME_MAX))
    kind3: str = field(default="tensor", metadata=choices(*KINDS))
    name4: str = field(default="layers", metadata=text_spec(NAME_MAX))
    kind4: str = field(default="python_list", metadata=choices(*KINDS))
    name5: str = field(default="blocks", metadata=text_spec(NAME_MAX))
    kind5: str = field(default="module_list", metadata=choices(*KINDS))
    seed: int = seed_field()

    def members(self) -> list[tuple[str, str]]:
        """Return (name, kind) of each member, in declaration order."""
        return [(getattr(self, f"name{i}"), getattr(self, f"kind{i}")) for i in range(1, SLOTS + 1)]

    def validate(self) -> None:
        """Refuse a name that is not a Python identifier, is a keyword, or is something nn.Module already has."""
        super().validate()
        seen: set[str] = set()
        for i, (name, _) in enumerate(self.members(), start=1):
            check_member_name(f"name{i}", name)
            if name in seen:
                raise InvalidParams(f"name{i}", "member_twice", name=name)
            seen.add(name)

    def estimate_bytes(self) -> int:
        """Return the bytes of two copies of the module (at most 6 floats a member) and the input."""
        return 8 * (2 * SLOTS * 6 + 4 * BATCH * 2)

    def estimate_work(self) -> float:
        """Return the multiply-adds of one forward and backward pass through five Linear(2, 2)."""
        return float(3 * BATCH * SLOTS * 4)


@dataclass(frozen=True)
class MembersResult:
    """Per member, torch's answers (yes / no), its state_dict keys; torch's own lists and the module's repr."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    declarations: tuple[str, ...]
    checks: tuple[tuple[str, ...], ...]  # per member, one 'yes'/'no' per CHECKS
    state_keys: tuple[str, ...]  # per member, its state_dict keys joined by ', ' ('' when none)
    parameter_names: tuple[str, ...]  # [n for n, _ in net.named_parameters()]
    buffer_names: tuple[str, ...]
    state_dict_keys: tuple[str, ...]
    module_repr: str
    n_parameters: int  # sum(p.numel() for p in net.parameters())


class Holder(nn.Module):
    """A module whose members are declared as the student chose; forward runs through every one of them."""

    def __init__(self, members: Sequence[tuple[str, str]], g: torch.Generator, device: torch.device) -> None:
        super().__init__()
        self.member_names = [name for name, _ in members]
        for name, kind in members:
            if kind in ("submodule", "python_list", "module_list"):
                linear = init_(nn.Linear(2, 2, device="meta").to_empty(device=device), g)
                setattr(
                    self,
                    name,
                    linear if kind == "submodule" else [linear] if kind == "python_list" else nn.ModuleList([linear]),
                )
                continue
            value = torch.randn(2, generator=g, device=device)
            if kind in ("parameter", "register_parameter"):
                self.register_parameter(name, nn.Parameter(value))  # `self.x = nn.Parameter(...)` calls this
            elif kind == "tensor":
                setattr(self, name, value)
            else:
                self.register_buffer(name, value, persistent=kind == "buffer")

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Return X passed through every member: tensors multiply, modules (also inside lists) apply."""
        y = X
        for name in self.member_names:
            member = getattr(self, name)
            if isinstance(member, torch.Tensor):
                y = y * member
            elif isinstance(member, nn.Module) and not isinstance(member, nn.ModuleList):
                y = member(y)
            else:
                for layer in member:
                    y = layer(y)
        return y


def tensors_of(net: nn.Module, name: str) -> list[torch.Tensor]:
    """Return the tensors a member holds (itself, or the parameters of the modules it holds)."""
    member = getattr(net, name)
    if isinstance(member, torch.Tensor):
        return [member]
    modules = [member] if isinstance(member, nn.Module) else list(member)
    return [t for m in modules for t in m.parameters()]


def run(p: MembersParams, ctx: RunContext) -> MembersResult:
    """Return, per member, what parameters(), buffers(), state_dict(), .to(), SGD and load_state_dict do with it."""
    g, members = ctx.generator, p.members()
    net = Holder(members, g, ctx.device)
    names = [name for name, _ in members]
    params, buffers = list(net.parameters()), list(net.buffers())
    state = net.state_dict()
    in_params = [all(any(t is q for q in params) for t in tensors_of(net, n)) for n in names]
    in_buffers = [all(any(t is b for b in buffers) for t in tensors_of(net, n)) for n in names]
    keys = [[k for k in state if k == n or k.startswith(n + ".")] for n in names]

    before = [[t.detach().clone() for t in tensors_of(net, n)] for n in names]
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    X = torch.randn(BATCH, 2, generator=g, device=ctx.device)
    (net(X) ** 2).sum().backward()
    optimizer.step()
    updated = [
        any(not torch.equal(a, b) for a, b in zip(old, tensors_of(net, n), strict=True))
        for n, old in zip(names, before, strict=True)
    ]

    # Saved to memory and loaded back with weights_only=True: only tensors and containers are unpickled.
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = Holder(members, g, ctx.device)  # the same architecture with other random values
    fresh.load_state_dict(torch.load(buffer, map_location=ctx.device, weights_only=True))
    restored = [all(torch.equal(a, b) for a, b in zip(tensors_of(net, n), tensors_of(fresh, n), strict=True)) for n in names]
    net.to(torch.float64)  # what .to(device) converts, .to(dtype) converts too: both go through Module._apply
    converted = [all(t.dtype == torch.float64 for t in tensors_of(net, n)) for n in names]

    columns = (in_params, in_buffers, [bool(k) for k in keys], converted, updated, restored)
    return MembersResult(
        tuple(names),
        tuple(kind for _, kind in members),
        tuple(DECLARATIONS[kind].format(n=name) for name, kind in members),
        tuple(tuple(yes(column[i]) for column in columns) for i in range(len(names))),
        tuple(", ".join(k) for k in keys),
        tuple(n for n, _ in net.named_parameters()),
        tuple(n for n, _ in net.named_buffers()),
        tuple(state),
        repr(net),
        sum(q.numel() for q in params),
    )


def context(p: MembersParams, device_type: str) -> dict[str, Any]:
    """Return what module_members.py.j2 reads: the members, their declarations and the device."""
    members = p.members()
    return {
        "seed": p.seed,
        "device": device_type,
        "members": [(name, kind, DECLARATIONS[kind].format(n=name)) for name, kind in members],
        "batch": BATCH,
        "lr": LR,
    }


def shown(r: MembersResult) -> Sequence[float | str]:
    """Return each member's answers (as the script prints them), torch's lists and the parameter count."""
    answers = [
        f"{n}: {check}={a}" for n, row in zip(r.names, r.checks, strict=True) for check, a in zip(CHECKS, row, strict=True)
    ]
    return [*answers, *r.state_dict_keys, r.n_parameters]


MEMBERS = Experiment(
    "mod_members",
    MembersParams,
    run,
    script="module_members.py.j2",
    context=context,
    shown=shown,
    examples=(
        MembersParams(kind1="register_parameter", kind2="buffer_nonpersistent", kind3="submodule", seed=3),
        MembersParams(name1="w", kind1="module_list", name2="b", kind2="python_list", kind4="parameter", kind5="tensor"),
    ),
)

# The first member becomes a non-persistent buffer: is it saved in state_dict()?
NONPERSISTENT = Prediction(
    "nonpersistent_in_state",
    MEMBERS,
    MembersParams(name1="mask", kind1="buffer_nonpersistent"),
    options=("yes", "no"),
    answer=lambda r: r.checks[0][CHECKS.index("state_dict")],
    question="mod_members.predict_q",
    why="mod_members.predict_why",
)
