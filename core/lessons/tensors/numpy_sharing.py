"""NumPy: which ways between an array and a tensor share memory and which copy, and what each costs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.experiment import Experiment, RunContext
from core.lessons.tensors.common import TIMED_CALLS
from core.measure import time_call
from core.params import Params, choices, ladder

NUMPY_WAYS = ("from_numpy", "as_tensor", "tensor", "numpy")
NP_DTYPES = ("float64", "float32", "int64")
CPU = torch.device("cpu")  # NumPy arrays live in CPU memory
# Seconds torch.utils.benchmark times each way: three or more blocks of calls at the default size (measured:
# 0.02 s gives 3 blocks and a non-zero spread in ~70 ms per way; the page waits for every way).
MIN_RUN_TIME = 0.02


@dataclass(frozen=True)
class NumpyParams(Params):
    way: str = field(default="from_numpy", metadata=choices(*NUMPY_WAYS))
    np_dtype: str = field(default="float64", metadata=choices(*NP_DTYPES))
    as_dtype: str = field(default="same", metadata=choices("same", *NP_DTYPES))
    n: int = field(default=1_000_000, metadata=ladder(1, 10_000_000, "125"))

    def roles(self) -> dict[str, str]:
        """Return the fields this way reads (a target dtype only for as_tensor and tensor)."""
        converts = self.way in ("as_tensor", "tensor")
        names = ("way", "np_dtype", "as_dtype", "n") if converts else ("way", "np_dtype", "n")
        return {n: n for n in names}

    def estimate_bytes(self) -> int:
        """Return the array, the tensor, and the timed source and copy, 8 bytes each."""
        return self.n * 8 * 4

    def estimate_work(self) -> float:
        """Return the element copies: the arrays, the conversion, and the timed copies.

        The timer stops by the clock (MIN_RUN_TIME per way); at a size where one copy takes longer
        than that it makes TIMED_CALLS calls at most.
        """
        return self.n * (4.0 + 2 * TIMED_CALLS)


@dataclass(frozen=True)
class NumpyResult:
    shares: bool  # the tensor and the array use the same memory
    other_after: float  # element 0 of the other object after writing 99 into the first
    copied_bytes: int
    times_us: dict[str, float]  # median time of each way at size n, microseconds
    spreads_us: dict[str, float]  # interquartile range of those times
    way: str = ""


def convert(way: str, arr: np.ndarray, as_dtype: str) -> torch.Tensor:
    """Return arr as a tensor, made the given way (asking for as_dtype unless "same")."""
    dtype = None if as_dtype == "same" else getattr(torch, as_dtype)
    if way == "from_numpy":
        return torch.from_numpy(arr)
    if way == "as_tensor":
        return torch.as_tensor(arr, dtype=dtype)
    return torch.tensor(arr, dtype=dtype)


def run(p: NumpyParams, ctx: RunContext) -> NumpyResult:
    """Convert between NumPy and torch one way, write into one side, and time every way."""
    if p.way == "numpy":
        t = torch.arange(p.n, dtype=getattr(torch, p.np_dtype))
        arr = t.numpy()
        t[0] = 99
        other, shares, copied = float(arr[0]), bool(np.shares_memory(arr, t.numpy())), 0
    else:
        arr = np.arange(p.n, dtype=p.np_dtype)
        t = convert(p.way, arr, p.as_dtype)
        arr[0] = 99
        other = float(t[0])
        shares = t.data_ptr() == arr.ctypes.data
        copied = 0 if shares else t.untyped_storage().nbytes()
    source = np.arange(p.n, dtype=p.np_dtype)
    tensor = torch.arange(p.n, dtype=getattr(torch, p.np_dtype))
    timed: dict[str, Callable[[], object]] = {
        "from_numpy": lambda: torch.from_numpy(source),
        "as_tensor": lambda: convert("as_tensor", source, p.as_dtype),
        "tensor": lambda: convert("tensor", source, p.as_dtype),
        "numpy": lambda: tensor.numpy(),
    }
    times, spreads = {}, {}
    for done, (way, fn) in enumerate(timed.items()):
        ctx.check_deadline()
        timing = time_call(fn, CPU, MIN_RUN_TIME)
        times[way], spreads[way] = timing.median * 1e6, timing.iqr * 1e6
        ctx.progress(done + 1, len(timed))
    return NumpyResult(shares, other, copied, times, spreads, p.way)


def shown(r: NumpyResult) -> list[float | str]:
    """Return the other side's element 0 after the write, and (for a conversion from an array) whether memory is shared."""
    return [r.other_after] if r.way == "numpy" else [r.other_after, f"shares memory: {r.shares}"]


def context(p: NumpyParams, device_type: str) -> Mapping[str, Any]:
    """Return what numpy_sharing.py.j2 reads: the way, the array's size and dtype, and the conversion call."""
    dtype = "" if p.as_dtype == "same" else f", dtype=torch.{p.as_dtype}"
    call = {
        "from_numpy": "torch.from_numpy(arr)",
        "as_tensor": f"torch.as_tensor(arr{dtype})",
        "tensor": f"torch.tensor(arr{dtype})",
    }
    return {"way": p.way, "n": p.n, "np_dtype": p.np_dtype, "call": call.get(p.way, "")}


NUMPY = Experiment(
    "numpy",
    NumpyParams,
    run,
    script="numpy_sharing.py.j2",
    context=context,
    exclusive=True,
    shown=shown,
    examples=(
        NumpyParams(way="numpy", np_dtype="int64", n=1000),
        NumpyParams(way="tensor", np_dtype="float32", n=1000),
        NumpyParams(way="as_tensor", np_dtype="float64", as_dtype="float32", n=1000),
        NumpyParams(way="as_tensor", np_dtype="int64", as_dtype="int64", n=1000),
    ),
)
