"""Every generated code snippet runs on its own and prints what the experiment's result holds."""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core import tensors as T
from core.params import Params
from core.runner import execute
from core.tensors import (
    LAYOUT_DERIVED,
    BroadcastParams,
    CreateParams,
    DtypeParams,
    IndexParams,
    InplaceParams,
    LayoutParams,
    NumpyParams,
    ShapeParams,
)
from tests.scripts import Ran, after, run_scripts, script_env

CPU = torch.device("cpu")  # the scripts use CPU generators
TIMEOUT = 120


@dataclass(frozen=True)
class Case:
    name: str
    run_fn: Callable[[Any, Any], Any]
    code_fn: Callable[[Any], str]
    params: Params
    check: Callable[[Any, Any, str], None]  # (params, result, printed output)


def has_line(out: str, line: str) -> bool:
    return line in out.splitlines()


def tensor_text(values: np.ndarray) -> str:
    return str(torch.from_numpy(values))


# --------------------------------------------------------------------------------------------
# What each script must print, read against the experiment's own result


def check_create(p: CreateParams, r: T.CreateResult, out: str) -> None:
    if r.torch_error is not None:
        assert r.torch_error in out
        return
    assert has_line(out, f"shape {r.shape} dtype torch.{r.dtype} bytes {r.nbytes}")
    if p.fn == "empty":
        return
    first = ast.literal_eval(after(out, "first values"))
    np.testing.assert_array_equal(first, r.values[:8])
    stats = re.fullmatch(r"(\S+) std (\S+)", after(out, "mean "))
    assert stats is not None
    mean, std = map(float, stats.groups())
    assert mean == pytest.approx(r.mean, rel=1e-6, abs=1e-9)
    assert std == pytest.approx(r.std, rel=1e-6, abs=1e-9)


def check_shape(p: ShapeParams, r: T.ShapeResult, out: str) -> None:
    x = r.input
    assert has_line(out, f"x {x.shape} stride {x.stride} contiguous {x.contiguous}")
    if r.torch_error is not None:
        assert r.torch_error in out
        return
    for f in r.outputs:
        assert has_line(out, f"{f.shape} stride {f.stride} shares x's storage: {f.storage_id == 0}"), f.name


def check_layout(p: LayoutParams, r: T.LayoutResult, out: str) -> None:
    for f in r.before:
        assert has_line(
            out,
            f"{f.name:10} size={f.shape} stride={f.stride} offset={f.offset} "
            f"contiguous={f.contiguous} shares x's storage={f.storage_id == 0}",
        ), f.name
    for f in r.before:
        assert has_line(out, f"{f.name} elements changed: {int(r.changed(f.name).sum())}"), f.name
    if r.edit_error is not None:
        assert r.edit_error in out


def check_broadcast(p: BroadcastParams, r: T.BroadcastResult, out: str) -> None:
    if r.torch_error is not None:
        assert f"RuntimeError: {r.torch_error}" in out
        return
    assert has_line(out, f"result shape {r.result_shape}")
    assert has_line(out, f"a expanded strides {r.stride_a} (0 = repeated without copying)")
    assert has_line(out, f"b expanded strides {r.stride_b}")
    a = torch.arange(math.prod(p.shape_a)).reshape(p.shape_a)
    b = 10 * torch.arange(math.prod(p.shape_b)).reshape(p.shape_b)
    assert tensor_text((a + b).numpy()) in out  # the page keeps the values only when it draws them


def check_index(p: IndexParams, r: T.IndexResult, out: str) -> None:
    assert tensor_text(r.x) in out
    if p.op == "gather":
        assert tensor_text(r.index) in out
    if r.torch_error is not None:
        assert r.torch_error in out
    else:
        assert tensor_text(r.out) in out


def check_inplace(p: InplaceParams, r: T.InplaceResult, out: str) -> None:
    if r.torch_error is not None:
        assert f"RuntimeError: {r.torch_error}" in out
        return
    assert has_line(out, f"x  now {tensor_text(r.x_after)}")
    assert has_line(out, f"x0 now {tensor_text(r.alias_after)}")
    assert has_line(out, f"result in x's original memory: {r.same_storage}")


def check_numpy(p: NumpyParams, r: T.NumpyResult, out: str) -> None:
    if p.way == "numpy":
        assert float(after(out, "arr[0] after writing t[0] = 99:")) == r.other_after
    else:
        assert float(after(out, "t[0] after writing arr[0] = 99:")) == r.other_after
        assert has_line(out, f"shares memory: {r.shares}")
    for way in ("from_numpy", "as_tensor", "tensor"):
        assert re.search(rf"torch\.{way}\(src\)\s+[0-9.]+ us", out), way


DTYPE_LINE = re.compile(r"\s*(\S+) -> (\w+): (\S+)\s* -> (\w+): (\S+)")


def check_dtype(p: DtypeParams, r: T.DtypeResult, out: str) -> None:
    rows = [m.groups() for m in map(DTYPE_LINE.fullmatch, out.splitlines()) if m]
    assert len(rows) == len(r.original)
    assert {(src, dst) for _, src, _, dst, _ in rows} == {(p.src, p.dst)}
    for column, expected in ((0, r.original), (2, r.in_src), (4, r.in_dst)):
        np.testing.assert_array_equal([float(row[column]) for row in rows], expected)
    assert has_line(out, f"bytes per element: {r.bytes_src} -> {r.bytes_dst}")
    assert has_line(out, f".to() returned the same tensor: {r.same_object}")
    assert re.search(rf"converting {p.n} elements: [0-9.]+ us", out)


# --------------------------------------------------------------------------------------------
# The cases: default params first, then interesting ones (including torch errors)

def cases() -> list[Any]:
    def case(run_fn: Callable[[Any, Any], Any], code_fn: Callable[[Any], str], check: Callable[[Any, Any, str], None],
             p: Params, bug: str | None = None) -> Any:  # fmt: skip
        name = f"{type(p).__name__}-" + "&".join(f"{k[2:]}={v}" for k, v in p.to_query("p").items())
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        return pytest.param(Case(name, run_fn, code_fn, p, check), id=name, marks=marks)

    def create(p: CreateParams, bug: str | None = None) -> Any:
        return case(T.run_create, T.code_create, check_create, p, bug)

    def shape(p: ShapeParams, bug: str | None = None) -> Any:
        return case(T.run_shape, T.code_shape, check_shape, p, bug)

    def layout(p: LayoutParams, bug: str | None = None) -> Any:
        return case(T.run_layout, T.code_layout, check_layout, p, bug)

    def broadcast(p: BroadcastParams) -> Any:
        return case(T.run_broadcast, T.code_broadcast, check_broadcast, p)

    def index(p: IndexParams) -> Any:
        return case(T.run_index, T.code_index, check_index, p)

    def inplace(p: InplaceParams) -> Any:
        return case(T.run_inplace, T.code_inplace, check_inplace, p)

    def numpy(p: NumpyParams) -> Any:
        return case(T.run_numpy, T.code_numpy, check_numpy, p)

    def dtype(p: DtypeParams) -> Any:
        return case(T.run_dtype, T.code_dtype, check_dtype, p)

    return [
        create(CreateParams()),
        create(CreateParams(fn="randint", n=50, a=-3.0, b=4.0, seed=7)),
        create(CreateParams(fn="normal", n=100, a=2.0, b=0.5, seed=3)),
        create(CreateParams(fn="bernoulli", n=64, p=0.3, seed=2)),
        create(CreateParams(fn="randperm", n=20, seed=1)),
        create(CreateParams(fn="rand", n=5, seed=123)),
        create(CreateParams(fn="linspace", n=5, a=-1.0, b=1.0)),
        create(CreateParams(fn="logspace", n=4, a=-1.0, b=2.0)),
        create(CreateParams(fn="eye", n=4)),
        create(CreateParams(fn="full", n=6, a=-2.5)),
        create(CreateParams(fn="arange", a=-1.0, b=2.0, step=0.25)),
        create(CreateParams(fn="empty", n=10)),
        create(CreateParams(fn="arange", a=5.0, b=0.0)),
        shape(ShapeParams()),
        shape(ShapeParams(op="view", transposed=True, new_shape=(-1,))),  # torch refuses
        shape(ShapeParams(op="reshape", transposed=True, new_shape=(-1,))),  # copies instead
        shape(ShapeParams(op="permute", shape=(4, 6), perm=(2, 0, 1))),  # wrong number of dims
        shape(ShapeParams(op="split", shape=(4, 6), size=4, dim=-1)),
        shape(ShapeParams(op="stack", dim=1)),
        shape(ShapeParams(op="squeeze", dim=4)),
        layout(LayoutParams()),
        layout(LayoutParams(views=("expand",), edit_target="expand", edit_index=6, edit_value=500)),
        layout(LayoutParams(rows=2, cols=3, views=tuple(LAYOUT_DERIVED), edit_target="x", edit_index=5)),
        layout(LayoutParams(rows=4, cols=2, views=tuple(LAYOUT_DERIVED), edit_target="diagonal", edit_index=1)),
        layout(LayoutParams(views=("clone", "t"), edit_target="t", edit_index=4)),
        broadcast(BroadcastParams()),
        broadcast(BroadcastParams((2, 3), (4,))),  # do not broadcast
        broadcast(BroadcastParams((), (2, 1, 3))),
        broadcast(BroadcastParams((8, 1, 6, 1), (7, 1, 5))),
        index(IndexParams()),
        index(IndexParams(op="gather", dim=1, seed=5)),
        index(IndexParams(op="gather", dim=-2, rows=3, cols=6, seed=8)),
        index(IndexParams(op="index_select", indices=(0, 7))),  # index out of range
        index(IndexParams(op="index_select", dim=1, indices=(3, 0, 3), seed=9)),
        index(IndexParams(op="mask_assign", threshold=3, seed=4)),
        index(IndexParams(op="nonzero", threshold=7, seed=6)),
        inplace(InplaceParams()),
        inplace(InplaceParams(form="augmented", dtype="int64", value=0.5)),  # int64 += 0.5 fails
        inplace(InplaceParams(form="rebind", dtype="int64", value=1.5)),
        inplace(InplaceParams(form="out", value=-2.0, n=20)),
        inplace(InplaceParams(form="out", dtype="int64", value=0.5)),
        inplace(InplaceParams(form="out_of_place", dtype="int64", value=2.0)),
        numpy(NumpyParams()),
        numpy(NumpyParams(way="numpy", np_dtype="int64", n=1000)),
        numpy(NumpyParams(way="tensor", np_dtype="float32", n=1000)),
        numpy(NumpyParams(way="as_tensor", np_dtype="float64", as_dtype="float32", n=1000)),
        numpy(NumpyParams(way="as_tensor", np_dtype="int64", as_dtype="int64", n=1000)),
        dtype(DtypeParams()),
        dtype(DtypeParams("float16", "int8", n=1000)),
        dtype(DtypeParams("float32", "float32", n=1000)),
        dtype(DtypeParams("float64", "uint8", n=1000)),
        dtype(DtypeParams("bool", "float32", n=1000)),
        dtype(DtypeParams("bfloat16", "int64", n=1000)),
    ]


CASES = cases()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Write every case's script to a file and run them all, in two batches side by side."""
    folder = tmp_path_factory.mktemp("snippets")  # no core/ here: the scripts must stand alone
    cases = [param.values[0] for param in CASES]
    return run_scripts({c.name: c.code_fn(c.params) for c in cases}, folder, workers=2, timeout=TIMEOUT)


def test_cases_cover_every_experiment() -> None:
    covered = {param.values[0].code_fn.__name__ for param in CASES}
    assert covered == {name for name in dir(T) if name.startswith("code_")}
    for code_fn in covered:  # default params come first for each experiment
        assert any(param.values[0].params == type(param.values[0].params)() for param in CASES
                   if param.values[0].code_fn.__name__ == code_fn), code_fn  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_snippet_runs_and_agrees(case: Case, ran: dict[str, Ran]) -> None:
    result = execute(case.run_fn, case.params, device=CPU)
    done = ran[case.name]
    assert done.rc == 0, done.err[-2000:]
    case.check(case.params, result, done.out)


def test_driver_matches_a_plain_subprocess(tmp_path: Path, ran: dict[str, Ran]) -> None:
    """One script run the ordinary way prints exactly what the forking driver captured."""
    c: Case = CASES[0].values[0]
    path = tmp_path / "snippet.py"
    path.write_text(c.code_fn(c.params), encoding="utf-8")
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=script_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ran[c.name].out
