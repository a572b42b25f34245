"""Portable checkpoints: save a (DataParallel-wrapped) model's state_dict, load it with map_location, repair the prefix.

What load_state_dict reports when the "module." prefix does not match, and the three ways to make it
match: strip it from the loaded dict, load into a wrapper, or save the unwrapped module.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.devices.common import CPU
from core.params import InvalidParams, Params, choices, seed_field

CKPT_IN, CKPT_HIDDEN, CKPT_OUT, CKPT_BATCH = 6, 8, 3, 16
PREFIX = "module."
STRIPS = ("none", "consume_prefix", "load_into_module", "save_module")


@dataclass(frozen=True)
class CkptParams(Params):
    wrap: bool = True  # the model was wrapped in nn.DataParallel when it was saved
    map_location: str = field(default="cpu", metadata=choices("cpu", "same"))  # "same": where it was saved
    # How the prefix is dealt with: not at all; consume_prefix_in_state_dict_if_present on the loaded
    # dict; load into an nn.DataParallel wrapper of the new model (the notes' way); save model.module.state_dict().
    strip: str = field(default="none", metadata=choices(*STRIPS))
    seed: int = seed_field()

    def validate(self) -> None:
        """Check the bounds, then that saving model.module needs a wrapped model."""
        super().validate()
        if self.strip == "save_module" and not self.wrap:
            raise InvalidParams("strip", "needs_wrap")

    def estimate_bytes(self) -> int:
        """Return a bound on a 6-8-3 MLP, a batch of 16, and the checkpoint."""
        return 1 << 16

    def estimate_work(self) -> float:
        """Return the multiply-adds of the three forward passes of the batch (model, wrapper, model again)."""
        return 3.0 * CKPT_BATCH * (CKPT_IN * CKPT_HIDDEN + CKPT_HIDDEN * CKPT_OUT)


@dataclass(frozen=True)
class CkptResult:
    wrap: bool
    map_location: str
    strip: str
    device: str  # where the model was when it was saved (the run's device)
    dp_device_ids: tuple[int, ...]  # nn.DataParallel's device_ids; empty without GPUs: it then calls the module
    wrapper_matches: bool | None  # the wrapper's output equals the module's (None: not wrapped)
    saved_call: str  # what was saved: "model.state_dict()" or "model.module.state_dict()"
    saved_keys: tuple[str, ...]
    saved_devices: tuple[str, ...]  # device of each saved tensor
    saved_shapes: tuple[tuple[int, ...], ...]
    file_bytes: int  # size of the checkpoint torch.save wrote
    loaded_devices: tuple[str, ...]  # device of each tensor torch.load returned (map_location applied)
    fixed_keys: tuple[str, ...]  # the keys given to load_state_dict (after consume_prefix when chosen)
    target_keys: tuple[str, ...]  # the keys the receiving model's state_dict has
    missing_keys: tuple[str, ...]  # as load_state_dict(strict=False) reports them
    unexpected_keys: tuple[str, ...]
    strict_error: str | None  # torch's message from load_state_dict(strict=True); None: it loaded
    model_keys: tuple[str, ...]  # the plain model's keys (no prefix)
    equal_per_key: tuple[bool, ...]  # each of model_keys: the new model's value equals the saved one
    all_equal: bool


def _model(g: torch.Generator, device: torch.device) -> nn.Sequential:
    """Return Linear(6, 8) - BatchNorm1d(8) - ReLU - Linear(8, 3) with every parameter N(0, 0.5^2) from g.

    Biases and the norm's affine parameters are random too, so that a parameter the load did not
    reach differs from the saved one instead of being a zero or a one in both models.
    """
    layers = [
        nn.Linear(CKPT_IN, CKPT_HIDDEN, device="meta"),
        nn.BatchNorm1d(CKPT_HIDDEN, device="meta"),
        nn.ReLU(),
        nn.Linear(CKPT_HIDDEN, CKPT_OUT, device="meta"),
    ]
    model = nn.Sequential(*layers).to_empty(device=device)
    norm = model[1]
    assert isinstance(norm, nn.BatchNorm1d)
    norm.reset_running_stats()  # mean 0, variance 1, no batches seen: what a fresh BatchNorm1d holds
    for param in model.parameters():
        nn.init.normal_(param, 0.0, 0.5, generator=g)
    return model


def _devices(state: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    """Return the device of each tensor of a state_dict, in its order."""
    return tuple(str(t.device) for t in state.values())


def run(p: CkptParams, ctx: RunContext) -> CkptResult:
    """Return what was saved, what torch.load gave back, and what load_state_dict made of it."""
    g, dev = ctx.generator, ctx.device
    model = _model(g, dev)
    X = torch.randn(CKPT_BATCH, CKPT_IN, generator=g, device=dev)
    with torch.no_grad():
        model(X)  # one training-mode forward: the BatchNorm running statistics are no longer the defaults
    model.eval()
    dp_ids: tuple[int, ...] = ()
    matches: bool | None = None
    state = model.state_dict()
    if p.wrap:
        wrapper = nn.DataParallel(model)
        dp_ids = tuple(int(i) for i in wrapper.device_ids)
        with torch.no_grad():
            # Without GPUs (device_ids empty) or with one, DataParallel calls the module itself.
            matches = bool(torch.allclose(wrapper(X), model(X), rtol=1e-5, atol=1e-6))
        # The wrapper's keys are the module's with "module." in front; model.module.state_dict() has none.
        state = wrapper.module.state_dict() if p.strip == "save_module" else wrapper.state_dict()
    buffer = io.BytesIO()  # in memory: no path a student controls, and nothing unpickled but tensors
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, map_location="cpu" if p.map_location == "cpu" else None, weights_only=True)
    loaded_devices = _devices(loaded)
    if p.strip == "consume_prefix":
        consume_prefix_in_state_dict_if_present(loaded, PREFIX)
    # The new model lives on the CPU: the lesson's case is a checkpoint from a GPU server opened on a laptop.
    target = _model(g, dev).to(CPU)
    receiver: nn.Module = nn.DataParallel(target) if p.strip == "load_into_module" else target
    strict_error = None
    try:
        copy.deepcopy(receiver).load_state_dict(loaded)
    except RuntimeError as e:
        strict_error = str(e).strip()
    report = receiver.load_state_dict(loaded, strict=False)
    own = model.state_dict()
    new = target.state_dict()
    equal = tuple(bool(torch.equal(new[k], v.to(CPU))) for k, v in own.items())
    return CkptResult(
        wrap=p.wrap,
        map_location=p.map_location,
        strip=p.strip,
        device=str(dev),
        dp_device_ids=dp_ids,
        wrapper_matches=matches,
        saved_call="model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()",
        saved_keys=tuple(state),
        saved_devices=_devices(state),
        saved_shapes=tuple(tuple(t.shape) for t in state.values()),
        file_bytes=buffer.getbuffer().nbytes,
        loaded_devices=loaded_devices,
        fixed_keys=tuple(loaded),
        target_keys=tuple(receiver.state_dict()),
        missing_keys=tuple(report.missing_keys),
        unexpected_keys=tuple(report.unexpected_keys),
        strict_error=strict_error,
        model_keys=tuple(own),
        equal_per_key=equal,
        all_equal=all(equal),
    )


def context(p: CkptParams, device_type: str) -> Mapping[str, Any]:
    """Return the values the script template reads (the script picks CUDA itself when there is one)."""
    return {
        "seed": p.seed,
        "wrap": p.wrap,
        "saved": "model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()",
        "map_location": '"cpu"' if p.map_location == "cpu" else "None",
        "consume_prefix": p.strip == "consume_prefix",
        "receiver": "nn.DataParallel(new)" if p.strip == "load_into_module" else "new",
        "n_in": CKPT_IN,
        "hidden": CKPT_HIDDEN,
        "n_out": CKPT_OUT,
        "batch": CKPT_BATCH,
    }


def shown(r: CkptResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: keys, devices, file size, load report, equality."""
    strict = "ok" if r.strict_error is None else r.strict_error.splitlines()[0]
    return [
        f"saved keys: {list(r.saved_keys)}",
        f"saved devices: {list(r.saved_devices)}",
        f"file bytes: {r.file_bytes}",
        f"loaded devices: {list(r.loaded_devices)}",
        f"keys given: {list(r.fixed_keys)}",
        f"keys expected: {list(r.target_keys)}",
        f"strict load: {strict}",
        f"missing keys: {list(r.missing_keys)}",
        f"unexpected keys: {list(r.unexpected_keys)}",
        f"equal per key: {list(r.equal_per_key)}",
    ]


def load_outcome(r: CkptResult) -> str:
    """Return what a strict load_state_dict did: "loads", "keys" (missing and unexpected keys) or "other"."""
    return "loads" if r.strict_error is None else "keys" if r.missing_keys else "other"


def share_loaded(r: CkptResult) -> str:
    """Return how many of the model's tensors now hold the saved values: "all", "some" or "none"."""
    equal = sum(r.equal_per_key)
    return "all" if equal == len(r.model_keys) else "none" if equal == 0 else "some"


CHECKPOINT = Experiment(
    "checkpoint",
    CkptParams,
    run,
    script="devices_checkpoint.py.j2",
    context=context,
    shown=shown,
    examples=(
        CkptParams(strip="consume_prefix", map_location="same", seed=4),
        CkptParams(strip="load_into_module"),
        CkptParams(strip="save_module"),
        CkptParams(wrap=False, strip="load_into_module"),
    ),
)

# The page shows a wrapped checkpoint loaded into a plain model by default (an error, nothing loaded), and the
# prose explains it. The questions ask about two cases it does not show: a plain checkpoint loaded into
# nn.DataParallel(new), the fix for a wrapped one applied where it is not needed (an error again); and a
# wrapped one loaded into the wrapper without map_location, with strict=False (everything loads).
PLAIN_LOAD = Prediction(
    "plain_into_wrapper",
    CHECKPOINT,
    CkptParams(wrap=False, strip="load_into_module"),
    options=("loads", "keys", "other"),
    answer=load_outcome,
    question="checkpoint.predict_q",
    why="checkpoint.predict_why",
)
NON_STRICT = Prediction(
    "non_strict_wrapped_into_wrapper",
    CHECKPOINT,
    CkptParams(wrap=True, map_location="same", strip="load_into_module"),
    options=("all", "some", "none"),
    answer=share_loaded,
    question="checkpoint.predict_strict_q",
    why="checkpoint.predict_strict_why",
)
