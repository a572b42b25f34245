"""The modules lesson's `mod_tree` against torch's walks over a net written here, and the counts by formula."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from torch import nn

from core.lessons.modules import tree as modules_tree
from core.lessons.modules.tree import BUILDS, WALKS, TreeParams
from core.params import InvalidParams
from tests.params_strategies import query_id, run_cpu


class Written(nn.Module):
    """The lesson's net written out by hand with add_module names."""

    def __init__(self, blocks: int, registered: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(fc=nn.Linear(4, 8), act=nn.ReLU(), out=nn.Linear(8, 8)))
        made = [nn.Sequential(OrderedDict(fc=nn.Linear(8, 8), act=nn.ReLU())) for _ in range(blocks)]
        self.blocks = nn.ModuleList(made) if registered else made
        self.head = nn.Linear(8, 1)


def modules_count(blocks: int, registered: bool) -> int:
    """Return 1 (the net) + features and its 3 layers + the ModuleList and 3 per Block + head."""
    return 1 + 4 + (1 + 3 * blocks if registered else 0) + 1


@pytest.mark.parametrize("blocks", [1, 2, 4])
@pytest.mark.parametrize("container", ["module_list", "python_list"])
def test_walks_match_torch_on_a_net_written_here(blocks: int, container: str) -> None:
    registered = container == "module_list"
    written = Written(blocks, registered)
    for walk in WALKS:
        r = run_cpu(modules_tree.run, TreeParams(blocks=blocks, container=container, walk=walk, step=0))
        if walk in ("modules", "named_modules"):
            assert r.visit_names == tuple(n for n, _ in written.named_modules())
            assert len(r.visit_names) == modules_count(blocks, registered)
        elif walk == "children":
            assert r.visit_names == tuple(n for n, _ in written.named_children())
        elif walk == "named_parameters":
            assert r.visit_names == tuple(n for n, _ in written.named_parameters())
            assert r.visit_what == tuple(str(tuple(q.shape)) for _, q in written.named_parameters())
        else:  # apply: every module once, each after all of its submodules
            order = list(r.visit_names)
            assert sorted(order) == sorted(n for n, _ in written.named_modules())
            for name in order:
                inside = [o for o in order if name and o.startswith(name + ".")] if name else [o for o in order if o]
                assert all(order.index(o) < order.index(name) for o in inside)
            assert order[-1] == ""


def test_a_python_list_hides_its_parameters() -> None:
    listed = run_cpu(modules_tree.run, TreeParams(container="python_list", walk="named_parameters", step=0))
    registered = run_cpu(modules_tree.run, TreeParams(container="module_list", walk="named_parameters", step=0))
    assert not any(n.startswith("blocks") for n in listed.visit_names)
    assert sum(n.startswith("blocks") for n in registered.visit_names) == 2 * 2  # weight and bias per Block
    width = 8
    assert registered.n_parameters - listed.n_parameters == 2 * (width * width + width)
    assert "unregistered" in listed.node_kinds and "unregistered" not in registered.node_kinds


def test_the_three_builds_name_the_children() -> None:
    r = run_cpu(modules_tree.run, TreeParams())
    assert dict(zip(BUILDS, r.build_names, strict=True)) == {
        "positional": ("0", "1", "2"),
        "add_module": ("fc", "act", "out"),
        "ordered_dict": ("fc", "act", "out"),
    }
    positional = run_cpu(modules_tree.run, TreeParams(build="positional", walk="named_parameters", step=0))
    assert positional.visit_names[:4] == ("features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias")


def test_the_step_slider_ends_at_the_walks_length() -> None:
    p = TreeParams(walk="children", step=3)
    assert p.visit_count() == 3
    p.validate()
    with pytest.raises(InvalidParams):
        TreeParams(walk="children", step=4).validate()


@pytest.mark.parametrize("p", [TreeParams(), *modules_tree.TREE.examples], ids=query_id)
def test_the_children_prediction_and_the_drawing(p: TreeParams) -> None:
    r = run_cpu(modules_tree.run, p)
    from core.lessons.modules.charts import tree_dot

    dot = tree_dot(r, lambda key: key)
    assert dot.startswith("digraph") and dot.count("#") >= min(p.step, len(set(r.visit_names[: p.step])))
    children = run_cpu(modules_tree.run, modules_tree.CHILDREN_COUNT.params)
    assert modules_tree.CHILDREN_COUNT.answer(children) == "3"
