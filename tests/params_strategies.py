"""Shared checks for experiments: valid and hostile field values, run-or-refuse, and same-params-same-result."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from hypothesis import event
from hypothesis import strategies as st

from core.params import FieldSpec, InvalidParams, Params
from core.runner import Config, ExperimentError, execute

CPU = torch.device("cpu")
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.tuples(st.integers()),
    st.tuples(st.integers(-3, 300)),
    st.tuples(st.text(max_size=4), st.text(max_size=4)),
    st.lists(st.integers(0, 3), max_size=3),
)
Overrides = Mapping[str, st.SearchStrategy[Any]]


def valid_value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values the field's declaration accepts (small ones favoured, bounds included)."""
    meta = spec.meta
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "int":
        lo, hi = int(meta["lo"]), int(meta["hi"])
        return st.one_of(st.integers(lo, min(hi, lo + 16)), st.sampled_from([lo, hi]), st.integers(lo, hi))
    if spec.kind == "float":
        lo, hi = meta["lo"], meta["hi"]
        options = [st.floats(lo, hi), st.sampled_from([lo, hi])]
        if math.ceil(lo) <= math.floor(hi):  # a range such as 0.01..0.5 holds no integer
            options.append(st.integers(math.ceil(lo), math.floor(hi)))
        return st.one_of(*options)
    if spec.kind == "str":
        return st.sampled_from(meta["choices"]) if "choices" in meta else st.text(max_size=meta.get("max_len", 20))
    if spec.kind == "strs":
        return st.lists(st.sampled_from(meta["choices"]), unique=True).map(tuple)
    element = st.integers(meta["lo"], meta["hi"])
    if meta.get("allow_infer"):
        element = st.one_of(element, st.just(-1))
    return st.lists(element, min_size=meta.get("min_dims", 0), max_size=meta.get("max_dims", 8)).map(tuple)


def invalid_value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values out of bounds, of the wrong type, not finite, or not among the choices."""
    meta = spec.meta
    options: list[st.SearchStrategy[Any]] = [JUNK]
    if spec.kind in ("int", "float"):
        lo, hi = meta["lo"], meta["hi"]
        options += [st.integers(max_value=math.floor(lo) - 1), st.integers(min_value=math.ceil(hi) + 1)]
        options += [st.sampled_from([math.nan, math.inf, -math.inf, lo - 0.5, hi + 0.5])]
    if spec.kind == "ints":
        options += [st.lists(st.integers(-2, 300), max_size=10).map(tuple)]
    if "choices" in meta:
        options.append(st.sampled_from(["", "Relu", "xavier", "normal_0.1"]))
        if spec.kind == "strs":
            options.append(st.lists(st.sampled_from(meta["choices"]), min_size=2).map(tuple))  # duplicates
            options.append(st.lists(st.sampled_from(["xavier", *meta["choices"]]), max_size=3).map(tuple))
    return st.one_of(*options)


@st.composite
def any_params(
    draw: st.DrawFn,
    cls: type[Params],
    valid: Callable[[FieldSpec], st.SearchStrategy[Any]] = valid_value,
    overrides: Overrides | None = None,
) -> Params:
    """Valid values for every field, then up to two fields replaced by hostile ones.

    overrides maps "ClassName.field" to the valid values to draw instead (small sizes keep slow runs quick).
    """
    specs = cls.specs()
    overrides = overrides or {}
    values = {}
    for s in specs:
        override = overrides.get(f"{cls.__name__}.{s.name}")
        values[s.name] = draw(valid(s) if override is None else override)
    for spec in draw(st.lists(st.sampled_from(specs), max_size=2)):
        values[spec.name] = draw(invalid_value(spec))
    return cls(**values)


def check_runs_or_refused(
    run_fn: Callable[[Any, Any], Any],
    p: Params,
    result_type: type,
    budget_info_key: str | None = None,
    config: Config | None = None,
) -> None:
    """Run p on the CPU: invalid params are refused, valid ones run or hit a budget, and nothing else happens."""
    try:
        p.validate()
        valid = True
    except InvalidParams:
        valid = False
    try:
        result = execute(run_fn, p, device=CPU, config=config)
    except InvalidParams:
        assert not valid
        event("refused: invalid")
        return
    except ExperimentError as e:
        assert valid and e.key in ("budget", "work_budget"), e
        if budget_info_key is not None and e.key == "budget":
            assert budget_info_key in e.info, e
        event(f"refused: {e.key}")
        return
    assert valid
    event("ran")
    assert isinstance(result, result_type)


def run_cpu(run_fn: Callable[[Any, Any], Any], params: Params) -> Any:
    """Run an experiment through the runner, on the CPU."""
    return execute(run_fn, params, device=CPU)


def assert_same(a: Any, b: Any, path: str = "result") -> None:
    """Assert two results are equal in every field (arrays exactly and of the same dtype, NaN equal to NaN)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), path
    elif isinstance(a, tuple | list):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame), path
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


def assert_same_from_threads(cases: Sequence[tuple[Callable[[Any, Any], Any], Params]]) -> None:
    """Run every case twice over from 8 threads at once; each result must equal a run made alone."""
    references = [run_cpu(fn, p) for fn, p in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: run_cpu(*job), list(cases) * 2))
    for result, reference in zip(results, references * 2, strict=True):
        assert_same(result, reference)


def query_id(p: Params) -> str:
    """Return a test id naming the Params class and the fields that differ from its defaults."""
    defaults = type(p)()
    changed = [
        f"{f.name}={getattr(p, f.name)}" for f in dataclasses.fields(p) if getattr(p, f.name) != getattr(defaults, f.name)
    ]
    return f"{type(p).__name__}(" + ",".join(changed) + ")"
