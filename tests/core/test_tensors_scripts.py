"""The timed experiments' scripts print the page's untimed numbers (the contract suite skips timed experiments).

NumPy sharing and dtype conversions time things, so tests/core/test_contract.py does not compare
their `shown` numbers; what they show besides the times (the value written through shared memory,
every sample value after each conversion, bytes per element) does not vary and is checked here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from core.experiment import Experiment
from core.lessons.tensors.dtype import DTYPE
from core.lessons.tensors.numpy_sharing import NUMPY
from core.params import Params
from core.runner import execute
from tests.scripts import Ran, numbers, run_scripts

CPU = torch.device("cpu")
CASES = [(e, p) for e in (NUMPY, DTYPE) for p in (e.params(), *e.examples)]


def case_id(case: tuple[Experiment[Any, Any], Params]) -> str:
    experiment, p = case
    return experiment.name + "&" + "&".join(f"{k}={v}" for k, v in p.to_query("").items())


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every case's script once, side by side, in a folder without the project in it."""
    sources = {case_id(case): case[0].write_script(case[1], "cpu") for case in CASES}
    return run_scripts(sources, tmp_path_factory.mktemp("scripts"), workers=2)


def missing(shown: list[float | str], out: str) -> list[float | str]:
    """Return what the page shows that the script did not print (numbers to 1e-6 relative, inf equal to inf)."""
    printed = numbers(out)
    return [
        item
        for item in shown
        if (item not in out if isinstance(item, str) else not any(math.isclose(item, v, rel_tol=1e-6) for v in printed))
    ]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_script_prints_the_pages_untimed_numbers(case: tuple[Experiment[Any, Any], Params], ran: dict[str, Ran]) -> None:
    experiment, p = case
    done = ran[case_id(case)]
    assert done.rc == 0, done.err[-2000:]
    assert experiment.shown is not None
    result = execute(experiment.run, p, device=CPU, exclusive=True)
    assert missing(list(experiment.shown(result)), done.out) == []


def test_dtype_script_prints_a_row_per_sample_value(ran: dict[str, Ran]) -> None:
    out = ran[case_id((DTYPE, DTYPE.params()))].out
    rows = [line for line in out.splitlines() if " -> float32: " in line and " -> int64: " in line]
    assert len(rows) == 12  # SAMPLE_VALUES
    assert rows[0].split() == ["-2.7", "->", "float32:", "-2.700000047683716", "->", "int64:", "-2.0"]  # truncation
