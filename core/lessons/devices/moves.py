"""What `.to()` and `.cuda()` return: a module moves itself, a tensor gives a new one.

- `Module.to()` / `.cuda()` / `.cpu()` change the module in place and return the module itself (its
  Parameter objects stay the same, their data is replaced); `Tensor.to()` / `.cuda()` return a new tensor
  and leave the original as it was, unless nothing changes, when they return the tensor itself. Checked
  live with `is`, with a dtype change where there is no GPU. Also the error a model and an input on two
  devices give (on a CPU-only server the meta device stands in for the GPU: the same kind of check fails).
- What that means for writing: `u = t.to(dtype); u.add_(1)` leaves t alone when u is a new tensor, and
  changes t when nothing needed converting (u is t). Measured by comparing t with a clone taken before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.experiment import Experiment, Prediction, RunContext, first_line
from core.lessons.devices.common import CPU, linear
from core.params import Params, choices, seed_field

DTYPES = ("float64", "float32", "bfloat16", "float16")
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class MovesParams(Params):
    dtype: str = field(default="float64", metadata=choices(*DTYPES))  # what m.to(...) and t.to(...) ask for
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields the page shows: the seed only fills the weights, which no identity depends on."""
        return {"dtype": "dtype"}

    def estimate_bytes(self) -> int:
        return 64 * 1024  # a Linear(4, 2), a few small tensors and their copies

    def estimate_work(self) -> float:
        return 1e3


@dataclass(frozen=True)
class MovesResult:
    dtype: str
    module_same: bool  # m.to(dtype) is m
    param_same: bool  # w = m.weight taken before; w is m.weight after
    param_dtype: str  # w.dtype after m.to(dtype): the kept reference sees the change
    module_cpu_same: bool  # m.cpu() is m
    tensor_same: bool  # t.to(dtype) is t (True only when dtype is t's own)
    tensor_dtype: str  # t.dtype after: unchanged
    new_dtype: str  # t.to(dtype).dtype
    tensor_copy_same: bool  # t.to(dtype, copy=True) is t: never
    t_written: bool  # u = t.to(dtype); u.add_(1) changed t (only when u is t)
    tensor_cpu_same: bool  # t.cpu() is t on a CPU tensor
    # CUDA only (None on the CPU):
    module_cuda_same: bool | None  # m.cuda() is m
    weight_device: str | None  # str(m.weight.device) after m.cuda()
    tensor_cuda_same: bool | None  # t.cuda() is t (a new tensor on the GPU)
    tensor_device: str | None  # t.device after t.cuda(): unchanged
    cuda_tensor_cuda_same: bool | None  # y.cuda() is y for y already on the GPU
    # The device-mismatch error: a model on one device, an input on another
    mismatch_devices: tuple[str, str]  # (the model's, the input's)
    mismatch_error: str  # what torch raised, first line
    fixed_shape: tuple[int, ...]  # the output's shape once the input is moved to the model's device
    device: str
    gpu_only: tuple[str, ...]  # ("module_cuda",) on the CPU


def _mismatch(g: torch.Generator, device: torch.device) -> tuple[tuple[str, str], str, tuple[int, ...]]:
    """Return the devices, the error of a model on `device` (meta on a CPU run) called on a CPU input, and the fix's shape."""
    where = device if device.type == "cuda" else torch.device("meta")
    net = linear(4, 2, g, CPU).to(where)
    x = torch.randn(3, 4, generator=g)
    try:
        net(x)
        error = ""
    except RuntimeError as e:
        error = first_line(e, 300)
    param_device = next(net.parameters()).device
    fixed = net(x.to(param_device))  # the fix: move the input to where the model's parameters are
    return (str(param_device), str(x.device)), error, tuple(fixed.shape)


def run_moves(p: MovesParams, ctx: RunContext) -> MovesResult:
    """Call .to / .cpu / .cuda on a module and on a tensor and check with `is` what each returned."""
    g, cuda = ctx.generator, ctx.device.type == "cuda"
    dtype = TORCH_DTYPES[p.dtype]
    m = linear(4, 2, g, CPU)
    w = m.weight
    module_same = m.to(dtype) is m
    param_same, param_dtype = w is m.weight, str(w.dtype).removeprefix("torch.")
    module_cpu_same = m.cpu() is m
    t = torch.randn(3, generator=g)
    moved = t.to(dtype)
    tensor_same, new_dtype = moved is t, str(moved.dtype).removeprefix("torch.")
    copy_same = t.to(dtype, copy=True) is t
    before, u = t.clone(), t.to(dtype)
    u.add_(1)
    t_written = not torch.equal(t, before)
    cuda_parts: dict[str, Any] = dict.fromkeys(
        ("module_cuda_same", "weight_device", "tensor_cuda_same", "tensor_device", "cuda_tensor_cuda_same")
    )
    if cuda:
        dev = ctx.device
        cuda_parts["module_cuda_same"] = m.cuda(dev) is m
        cuda_parts["weight_device"] = str(m.weight.device)
        y = t.cuda(dev)
        cuda_parts["tensor_cuda_same"] = y is t
        cuda_parts["tensor_device"] = str(t.device)
        cuda_parts["cuda_tensor_cuda_same"] = y.cuda(dev) is y
    devices, error, shape = _mismatch(g, ctx.device)
    return MovesResult(
        dtype=p.dtype,
        module_same=module_same,
        param_same=param_same,
        param_dtype=param_dtype,
        module_cpu_same=module_cpu_same,
        tensor_same=tensor_same,
        tensor_dtype=str(t.dtype).removeprefix("torch."),
        new_dtype=new_dtype,
        tensor_copy_same=copy_same,
        t_written=t_written,
        tensor_cpu_same=t.cpu() is t,
        **cuda_parts,
        mismatch_devices=devices,
        mismatch_error=error,
        fixed_shape=shape,
        device=ctx.device.type,
        gpu_only=() if cuda else ("module_cuda",),
    )


def moves_context(p: MovesParams, device_type: str) -> Mapping[str, Any]:
    """Return the values devices_moves.py.j2 reads (the script checks CUDA where it has one)."""
    return {"dtype": p.dtype, "seed": p.seed, "cuda": device_type == "cuda"}


def moves_shown(r: MovesResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: every identity check and the dtypes."""
    out: list[float | str] = [
        f"m.to(torch.{r.dtype}) is m: {r.module_same}",
        f"w is m.weight: {r.param_same}, w.dtype: {r.param_dtype}",
        f"m.cpu() is m: {r.module_cpu_same}",
        f"t.to(torch.{r.dtype}) is t: {r.tensor_same}, t.dtype: {r.tensor_dtype}, new dtype: {r.new_dtype}",
        f"t.to(torch.{r.dtype}, copy=True) is t: {r.tensor_copy_same}",
        f"u = t.to(torch.{r.dtype}); u.add_(1) changed t: {r.t_written}",
        f"t.cpu() is t: {r.tensor_cpu_same}",
    ]
    if r.module_cuda_same is not None:
        out.append(f"m.cuda() is m: {r.module_cuda_same}, m.weight.device: {r.weight_device}")
        out.append(f"t.cuda() is t: {r.tensor_cuda_same}, t.device: {r.tensor_device}")
        out.append(f"y.cuda() is y: {r.cuda_tensor_cuda_same}")
    return out


MOVES = Experiment(
    "moves",
    MovesParams,
    run_moves,
    script="devices_moves.py.j2",
    context=moves_context,
    shown=moves_shown,
    examples=(MovesParams(dtype="float32"), MovesParams(dtype="bfloat16")),
)


def write_answer(r: MovesResult) -> str:
    """Return "t_changes" when writing into u = t.to(dtype) changed t, else "t_unchanged"."""
    return "t_changes" if r.t_written else "t_unchanged"


# The page shows float64 by default, and its prose and table state the rule (a tensor's .to returns the tensor itself
# when nothing would change; t.cpu() is t). The question asks what follows from the rule, at float32: t.to(torch.float32)
# is t, so writing into the result writes into t, where at the default float64 the table shows t unchanged.
WRITE_AFTER_TO = Prediction(
    "write_after_to_float32",
    MOVES,
    MovesParams(dtype="float32"),
    options=("t_changes", "t_unchanged"),
    answer=write_answer,
    question="moves.predict_q",
    why="moves.predict_why",
)
