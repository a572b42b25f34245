"""What the modules lesson's experiments share: torch's default init drawn from a seeded generator, member names.

Modules are built on the meta device and given memory with `to_empty`, so that constructing them
draws nothing from the global RNG (which a run does not own); `init_` then fills every Linear and
Conv2d the way torch's `reset_parameters` does, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ctx.generator.
"""

from __future__ import annotations

import keyword
import math
from typing import TypeVar

import torch
from torch import nn

from core.params import InvalidParams

M = TypeVar("M", bound=nn.Module)

# What an nn.Module already has (methods, `training`, the registries): a member by such a name would
# replace it, so a student's name must be none of them.
MODULE_ATTRIBUTES = frozenset(dir(nn.Module()))
NAME_MAX = 24  # characters of a member's name


def init_(net: M, g: torch.Generator) -> M:
    """Fill every Linear and Conv2d of net like torch's default init, U(±1/sqrt(fan_in)), from g; return net."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                bound = 1 / math.sqrt(m.weight[0].numel())
                m.weight.uniform_(-bound, bound, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=g)
    return net


def materialize(net: M, device: torch.device, g: torch.Generator) -> M:
    """Return a module built on the meta device with real memory on `device`, initialized from g."""
    net = net.to_empty(device=device)
    with torch.no_grad():
        for module in net.modules():  # BatchNorm's statistics and affine parameters have fixed starting values
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.reset_parameters()
    return init_(net, g)


def check_member_name(field: str, name: str) -> None:
    """Raise InvalidParams(field, 'bad_member') unless name can be a new attribute of an nn.Module."""
    if (
        not name.isascii()
        or not name.isidentifier()
        or keyword.iskeyword(name)
        or name.startswith("_")
        or name in MODULE_ATTRIBUTES
    ):
        raise InvalidParams(field, "bad_member", max_len=NAME_MAX)


def yes(flag: bool) -> str:
    """Return 'yes' or 'no': the words the page translates and the script prints."""
    return "yes" if flag else "no"
