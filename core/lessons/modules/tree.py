"""The module tree: a network of Sequential, ModuleList and nested blocks, and the order torch's walks visit it.

The `features` Sequential is built one of three ways (positional, add_module, OrderedDict), which
decides its children's names; the blocks sit in an nn.ModuleList or in a plain Python list (then
torch never sees them). The walk (modules(), children(), named_modules(), named_parameters() or
apply(fn)) is recorded from torch itself; `step` highlights its first visits in the drawing.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.params import Params, bounds, choices, ladder

BUILDS = ("positional", "add_module", "ordered_dict")
WALKS = ("modules", "children", "named_modules", "named_parameters", "apply")
FEATURE_NAMES = ("fc", "act", "out")  # the names add_module and OrderedDict give
N_IN = 4


class Block(nn.Module):
    """A nested module: a Linear and its activation."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(X))  # type: ignore[no-any-return]


class Net(nn.Module):
    """features (a Sequential), blocks (a ModuleList or a Python list of Blocks) and head (a Linear)."""

    def __init__(self, build: str, n_blocks: int, registered: bool, width: int) -> None:
        super().__init__()
        layers = (nn.Linear(N_IN, width), nn.ReLU(), nn.Linear(width, width))
        if build == "positional":
            self.features = nn.Sequential(*layers)
        elif build == "add_module":
            self.features = nn.Sequential()
            for name, layer in zip(FEATURE_NAMES, layers, strict=True):
                self.features.add_module(name, layer)
        else:
            self.features = nn.Sequential(OrderedDict(zip(FEATURE_NAMES, layers, strict=True)))
        blocks = [Block(width) for _ in range(n_blocks)]
        self.blocks: nn.ModuleList | list[Block] = nn.ModuleList(blocks) if registered else blocks
        self.head = nn.Linear(width, 1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.features(X)
        for block in self.blocks:
            X = block(X)
        return self.head(X)  # type: ignore[no-any-return]


def meta_net(build: str, n_blocks: int, registered: bool, width: int) -> Net:
    """Return the Net on the meta device: shapes and structure without memory or random draws."""
    with torch.device("meta"):
        return Net(build, n_blocks, registered, width)


def visits(net: Net, walk: str) -> list[tuple[str, str]]:
    """Return (qualified name, type or shape) of everything torch's walk yields, in its order."""
    names = {id(m): name for name, m in net.named_modules()}
    if walk == "modules":
        return [(names[id(m)], type(m).__name__) for m in net.modules()]
    if walk == "children":
        return [(names[id(m)], type(m).__name__) for m in net.children()]
    if walk == "named_modules":
        return [(name, type(m).__name__) for name, m in net.named_modules()]
    if walk == "named_parameters":
        return [(name, str(tuple(q.shape))) for name, q in net.named_parameters()]
    seen: list[tuple[str, str]] = []
    net.apply(lambda m: seen.append((names[id(m)], type(m).__name__)))  # children first, then the module itself
    return seen


@functools.cache
def walk_length(blocks: int, registered: bool, walk: str) -> int:
    """Return how many items a walk yields (asked on every validation: computed once per combination)."""
    return len(visits(meta_net("positional", blocks, registered, 2), walk))


@dataclass(frozen=True)
class TreeParams(Params):
    """How features is built, how many blocks and in what container, which walk, and how far to step through it."""

    build: str = field(default="add_module", metadata=choices(*BUILDS))
    blocks: int = field(default=2, metadata=bounds(1, 4))
    container: str = field(default="module_list", metadata=choices("module_list", "python_list"))
    walk: str = field(default="modules", metadata=choices(*WALKS))
    step: int = field(default=4, metadata=bounds(0, 60, hi_of="visit_count"))
    width: int = field(default=8, metadata=ladder(2, 64))

    def visit_count(self) -> int:
        """Return how many items the chosen walk yields (the step slider's end)."""
        return walk_length(self.blocks, self.container == "module_list", self.walk)

    def estimate_bytes(self) -> int:
        """Return the bytes of the drawing's text (the net lives on the meta device and allocates nothing)."""
        return 200 * 60

    def estimate_work(self) -> float:
        """Return the items walked: modules and parameters of the net, a few per block."""
        return float(20 + 8 * self.blocks)


@dataclass(frozen=True)
class TreeResult:
    """The tree (one node per module and parameter), the walk's visits, and the names of the three builds."""

    node_names: tuple[str, ...]  # qualified names; "" is the root; parameters too ("features.fc.weight")
    node_labels: tuple[str, ...]  # "Linear(4 → 8)", "weight (8, 4)"
    node_kinds: tuple[str, ...]  # "module" | "parameter" | "unregistered"
    parents: tuple[str, ...]  # the parent's qualified name ("" for the root's children, "-" for the root)
    visit_names: tuple[str, ...]
    visit_what: tuple[str, ...]  # the module's type, or the parameter's shape
    step: int
    build_names: tuple[tuple[str, ...], ...]  # the names features' children get, per build (BUILDS order)
    n_parameters: int  # sum(p.numel() for p in net.parameters())


def label(module: nn.Module) -> str:
    """Return a node's text: the module's type and, for a Linear, its sizes."""
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features} → {module.out_features})"
    return type(module).__name__


def run(p: TreeParams, ctx: RunContext) -> TreeResult:
    """Return the module tree with the visiting order of the chosen walk, recorded from torch."""
    registered = p.container == "module_list"
    net = meta_net(p.build, p.blocks, registered, p.width)
    names, labels, kinds, parents = [], [], [], []
    for name, module in net.named_modules():
        names.append(name)
        labels.append(label(module))
        kinds.append("module")
        parents.append(name.rpartition(".")[0] if name else "-")
        for pname, q in module.named_parameters(recurse=False):
            names.append(f"{name}.{pname}" if name else pname)
            labels.append(f"{pname} {tuple(q.shape)}")
            kinds.append("parameter")
            parents.append(name)
    if not registered:  # drawn beside the tree: torch does not know these modules
        names.append("blocks")
        labels.append("Python list")
        kinds.append("unregistered")
        parents.append("")
        for i, block in enumerate(net.blocks):
            assert isinstance(block, Block)
            for sub, module in (("", block), (".fc", block.fc), (".act", block.act)):
                names.append(f"blocks[{i}]{sub}")
                labels.append(label(module))
                kinds.append("unregistered")
                parents.append(f"blocks[{i}]" if sub else "blocks")
    walked = visits(net, p.walk)
    build_names = tuple(tuple(n for n, _ in meta_net(b, 1, True, 2).features.named_children()) for b in BUILDS)
    return TreeResult(
        tuple(names),
        tuple(labels),
        tuple(kinds),
        tuple(parents),
        tuple(n for n, _ in walked),
        tuple(w for _, w in walked),
        p.step,
        build_names,
        sum(q.numel() for q in net.parameters()),
    )


def context(p: TreeParams, device_type: str) -> dict[str, Any]:
    """Return what module_tree.py.j2 reads: the settings."""
    return {**vars(p), "n_in": N_IN, "feature_names": list(FEATURE_NAMES)}


def shown(r: TreeResult) -> Sequence[float | str]:
    """Return every visit as the script prints it and the parameter count."""
    return [
        *(
            f"{i}. {name or '(root)'}: {what}"
            for i, (name, what) in enumerate(zip(r.visit_names, r.visit_what, strict=True), 1)
        ),
        r.n_parameters,
    ]


TREE = Experiment(
    "mod_tree",
    TreeParams,
    run,
    script="module_tree.py.j2",
    context=context,
    shown=shown,
    examples=(
        TreeParams(build="positional", container="python_list", walk="named_parameters", step=0),
        TreeParams(build="ordered_dict", blocks=4, walk="apply", step=19, width=64),
        TreeParams(blocks=1, walk="children", step=3),
    ),
)

CHILDREN_COUNT = Prediction(
    "children_count",
    TREE,
    TreeParams(walk="children", step=0),
    options=("3", "4", "8", "13"),
    answer=lambda r: str(len(r.visit_names)),
    question="mod_tree.predict_q",
    why="mod_tree.predict_why",
)
