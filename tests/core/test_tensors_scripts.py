"""The dtype script prints one row per sample value, truncating toward zero as the page's table does.

The contract suite (tests/core/test_contract.py) checks every number the page shows; this checks the
row layout and the truncation the lesson is about.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.experiment import Experiment
from core.lessons.tensors.dtype import DTYPE
from core.lessons.tensors.numpy_sharing import NUMPY
from core.params import Params
from tests.scripts import Ran, run_scripts

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


def test_dtype_script_prints_a_row_per_sample_value(ran: dict[str, Ran]) -> None:
    out = ran[case_id((DTYPE, DTYPE.params()))].out
    rows = [line for line in out.splitlines() if " -> float32: " in line and " -> int64: " in line]
    assert len(rows) == 12  # SAMPLE_VALUES
    assert rows[0].split() == ["-2.7", "->", "float32:", "-2.700000047683716", "->", "int64:", "-2.0"]  # truncation
