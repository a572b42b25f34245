"""The modules lesson's `mod_members` table against the truth table of nn.Module and torch's own lists."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from core.lessons.modules import members as modules_members
from core.lessons.modules.members import CHECKS, KINDS, MembersParams
from core.params import InvalidParams
from tests.params_strategies import query_id, run_cpu
from ui.i18n import strings

# What the documentation of nn.Module says for each kind of member, in the order of CHECKS:
# parameters(), buffers(), state_dict(), converted by .to(), changed by an SGD step, restored by load_state_dict.
TRUTH = {
    "parameter": "yes no yes yes yes yes",
    "register_parameter": "yes no yes yes yes yes",
    "buffer": "no yes yes yes no yes",
    "buffer_nonpersistent": "no yes no yes no no",
    "tensor": "no no no no no no",
    "submodule": "yes no yes yes yes yes",
    "python_list": "no no no no no no",
    "module_list": "yes no yes yes yes yes",
}
NAMES = ("alpha", "beta", "gamma", "delta", "eps")


def every_kind_params() -> list[MembersParams]:
    """Return settings that together put every kind in every slot at least once."""
    out = []
    for shift in range(len(KINDS)):
        kinds = [KINDS[(shift + i) % len(KINDS)] for i in range(5)]
        values = {f"kind{i + 1}": kind for i, kind in enumerate(kinds)}
        out.append(MembersParams(**values, **{f"name{i + 1}": name for i, name in enumerate(NAMES)}, seed=shift))
    return out


@pytest.mark.parametrize("p", every_kind_params(), ids=query_id)
def test_each_member_follows_the_truth_table(p: MembersParams) -> None:
    r = run_cpu(modules_members.run, p)
    for kind, checks in zip(r.kinds, r.checks, strict=True):
        assert " ".join(checks) == TRUTH[kind], kind


class Reference(nn.Module):
    """The members written out by hand, without the engine's code: what torch's own lists should say."""

    def __init__(self, members: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, kind in members:
            if kind == "parameter":
                setattr(self, name, nn.Parameter(torch.zeros(2)))
            elif kind == "register_parameter":
                self.register_parameter(name, nn.Parameter(torch.zeros(2)))
            elif kind == "buffer":
                self.register_buffer(name, torch.zeros(2))
            elif kind == "buffer_nonpersistent":
                self.register_buffer(name, torch.zeros(2), persistent=False)
            elif kind == "tensor":
                setattr(self, name, torch.zeros(2))
            elif kind == "submodule":
                setattr(self, name, nn.Linear(2, 2))
            elif kind == "python_list":
                setattr(self, name, [nn.Linear(2, 2)])
            else:
                setattr(self, name, nn.ModuleList([nn.Linear(2, 2)]))


@pytest.mark.parametrize("p", every_kind_params(), ids=query_id)
def test_torchs_lists_match_a_module_written_by_hand(p: MembersParams) -> None:
    r = run_cpu(modules_members.run, p)
    reference = Reference(p.members())
    assert r.parameter_names == tuple(n for n, _ in reference.named_parameters())
    assert r.buffer_names == tuple(n for n, _ in reference.named_buffers())
    assert r.state_dict_keys == tuple(reference.state_dict())
    assert r.n_parameters == sum(q.numel() for q in reference.parameters())
    for name, keys in zip(r.names, r.state_keys, strict=True):
        assert keys == ", ".join(k for k in reference.state_dict() if k.split(".")[0] == name)


def test_every_pair_of_kinds_in_one_module() -> None:
    for first, second in itertools.product(KINDS, repeat=2):
        r = run_cpu(modules_members.run, MembersParams(kind1=first, kind2=second))
        assert " ".join(r.checks[0]) == TRUTH[first] and " ".join(r.checks[1]) == TRUTH[second]


def test_the_nonpersistent_prediction() -> None:
    r = run_cpu(modules_members.run, modules_members.NONPERSISTENT.params)
    assert modules_members.NONPERSISTENT.answer(r) == "no"
    assert "mask" in {n for n in r.buffer_names} and "mask" not in r.state_dict_keys


@pytest.mark.parametrize(
    "name", ["class", "lambda", "a.b", "x" * 10_000, "1st", "", "forward", "training", "to", "_private", "名字", "with space"]
)
def test_bad_member_names_are_refused_with_a_translated_message(name: str) -> None:
    with pytest.raises(InvalidParams) as refused:
        MembersParams(name3=name).validate()
    assert refused.value.field == "name3"
    assert f"errors.{refused.value.key}" in strings("en") and f"errors.{refused.value.key}" in strings("zh")


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(InvalidParams) as refused:
        MembersParams(name2="weight").validate()
    assert refused.value.key == "member_twice" and refused.value.field == "name2"


def test_checks_are_in_the_order_the_table_reads() -> None:
    assert CHECKS == ("parameters", "buffers", "state_dict", "converted", "updated", "restored")
