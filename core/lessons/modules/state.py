"""state_dict: a save/load round trip, loading into a changed architecture, weights_only, the "module." prefix.

Everything is saved to and loaded from memory (io.BytesIO) by the run itself: no file a student sends
is ever unpickled. weights_only=True (torch.load's default since PyTorch 2.6) is used for every load
except the one that shows what weights_only=False would accept, on bytes this run has just written.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.modules.common import materialize
from core.params import Params, choices, ladder, seed_field

CHANGES = ("same", "extra_layer", "fewer_layers", "renamed", "wider")
PAYLOADS = ("state_dict", "checkpoint", "whole_model", "numpy_array")
N_IN, N_OUT, BATCH = 4, 2, 8


@dataclass(frozen=True)
class StateParams(Params):
    """The architecture loaded into, how the saved file was made, and what the file holds."""

    change: str = field(default="extra_layer", metadata=choices(*CHANGES))
    hidden: int = field(default=8, metadata=ladder(2, 64))
    wrapped: bool = False  # saved from nn.DataParallel(net): every key starts with "module."
    strip_prefix: bool = False  # consume_prefix_in_state_dict_if_present(state, "module.") before loading
    payload: str = field(default="whole_model", metadata=choices(*PAYLOADS))
    map_location: str = field(default="cpu", metadata=choices("cpu", "saved"))  # "saved": no map_location
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        """Return the bytes of three copies of the nets and their saved files (float32)."""
        return 4 * 6 * (N_IN * 2 * self.hidden + 2 * self.hidden * N_OUT + 3 * self.hidden + 16) + 65536

    def estimate_work(self) -> float:
        """Return the multiply-adds of the forward passes (two nets, one batch each) and the copies."""
        return float(4 * BATCH * (N_IN * self.hidden + self.hidden * N_OUT) + 8 * N_IN * self.hidden)


@dataclass(frozen=True)
class StateResult:
    """The round trip, the two loads into the changed net, the weights_only load and the prefix."""

    saved_keys: tuple[str, ...]
    saved_bytes: int
    roundtrip_max_diff: float  # max |net(X) - copy(X)| after save, load into the same architecture
    target_keys: tuple[str, ...]
    strict_error: str  # load_state_dict(strict=True) into the changed net: torch's message, "" when it loads
    loose_error: str  # strict=False: a shape mismatch is still an error
    missing: tuple[str, ...]  # strict=False's result
    unexpected: tuple[str, ...]
    weights_only_error: str  # torch.load(weights_only=True) of the payload; "" when it loads
    loaded_type: str  # what weights_only=False gives back from the same bytes (written by this run)
    loaded_device: str  # where map_location put the tensors
    prefixed_error: str  # loading the keys as saved (with "module." when wrapped) into a plain net


def torch_message(e: BaseException, limit: int = 600) -> str:
    """Return torch's error as one line: the WeightsUnpickler sentence for weights_only, else every line joined."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        sentence = text[text.index("WeightsUnpickler error:") :]
        return (
            sentence[: sentence.index(" by default.") + len(" by default.")] if " by default." in sentence else sentence[:limit]
        )
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:limit]


def build(names: Sequence[str], widths: Sequence[int], device: torch.device, g: torch.Generator) -> nn.Sequential:
    """Return Linear layers with ReLU between them, named `names`, mapping widths[i] to widths[i + 1]."""
    layers: list[tuple[str, nn.Module]] = []
    with torch.device("meta"):
        for i, name in enumerate(names):
            if i:
                layers.append((f"act{i}", nn.ReLU()))
            layers.append((name, nn.Linear(widths[i], widths[i + 1])))
    return materialize(nn.Sequential(OrderedDict(layers)), device, g)


def target_shape(p: StateParams) -> tuple[list[str], list[int]]:
    """Return the layer names and widths of the architecture the state dict is loaded into."""
    h = p.hidden
    return {
        "same": (["fc1", "fc2"], [N_IN, h, N_OUT]),
        "extra_layer": (["fc1", "fc2", "fc3"], [N_IN, h, N_OUT, N_OUT]),
        "fewer_layers": (["fc1"], [N_IN, h]),
        "renamed": (["hidden", "fc2"], [N_IN, h, N_OUT]),
        "wider": (["fc1", "fc2"], [N_IN, 2 * h, N_OUT]),
    }[p.change]


def to_memory(obj: Any) -> io.BytesIO:
    """Return a buffer holding torch.save(obj), rewound to its start."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def run(p: StateParams, ctx: RunContext) -> StateResult:
    """Return what saving and loading a state dict does: round trip, changed architecture, weights_only, prefix."""
    g, d = ctx.generator, ctx.device
    net = build(["fc1", "fc2"], [N_IN, p.hidden, N_OUT], d, g)
    X = torch.randn(BATCH, N_IN, generator=g, device=d)
    state: dict[str, torch.Tensor] = dict(net.state_dict())
    if p.wrapped:  # what nn.DataParallel(net).state_dict() gives: the model sits in its attribute `module`
        state = {f"module.{k}": v for k, v in state.items()}
    saved = to_memory(state)
    loaded = torch.load(saved, map_location="cpu" if p.map_location == "cpu" else None, weights_only=True)
    if p.strip_prefix:
        nn.modules.utils.consume_prefix_in_state_dict_if_present(loaded, "module.")

    copy = build(["fc1", "fc2"], [N_IN, p.hidden, N_OUT], d, g)  # other random values until loaded
    prefixed_error, diff = "", float("nan")
    try:
        copy.load_state_dict(loaded)
        with torch.no_grad():
            diff = float((net(X) - copy(X)).abs().max().item())
    except RuntimeError as e:
        prefixed_error = torch_message(e)

    names, widths = target_shape(p)
    target = build(names, widths, d, g)
    strict_error = loose_error = ""
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    try:
        target.load_state_dict(loaded, strict=True)
    except RuntimeError as e:
        strict_error = torch_message(e)
    try:
        keys = target.load_state_dict(loaded, strict=False)
        missing, unexpected = tuple(keys.missing_keys), tuple(keys.unexpected_keys)
    except RuntimeError as e:
        loose_error = torch_message(e)

    payload: Any = {
        "state_dict": net.state_dict(),
        "checkpoint": {
            "model": net.state_dict(),
            "optimizer": torch.optim.SGD(net.parameters(), lr=0.1).state_dict(),
            "epoch": 3,
        },
        "whole_model": net,
        "numpy_array": {"model": net.state_dict(), "mean": np.zeros(N_IN)},
    }[p.payload]
    written = to_memory(payload).getvalue()
    weights_only_error = ""
    try:
        torch.load(io.BytesIO(written), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle.UnpicklingError: the refusal is the lesson
        weights_only_error = torch_message(e)
    # Safe only because this run wrote these bytes a moment ago; never done with anything a student sends.
    trusted = torch.load(io.BytesIO(written), map_location="cpu", weights_only=False)
    return StateResult(
        tuple(state),
        len(saved.getvalue()),
        diff,
        tuple(target.state_dict()),
        strict_error,
        loose_error,
        missing,
        unexpected,
        weights_only_error,
        type(trusted).__name__,
        str(next(iter(loaded.values())).device),
        prefixed_error,
    )


def context(p: StateParams, device_type: str) -> dict[str, Any]:
    """Return what state_dict_load.py.j2 reads: the settings, the target architecture and the device."""
    names, widths = target_shape(p)
    return {**vars(p), "device": device_type, "names": names, "widths": widths, "n_in": N_IN, "n_out": N_OUT, "batch": BATCH}


def shown(r: StateResult) -> Sequence[float | str]:
    """Return the keys, torch's messages and the round trip's difference as the page shows them."""
    messages = [m for m in (r.strict_error, r.loose_error, r.weights_only_error, r.prefixed_error) if m]
    numbers = [] if np.isnan(r.roundtrip_max_diff) else [r.roundtrip_max_diff]
    return [*r.saved_keys, *r.missing, *r.unexpected, *messages, r.loaded_type, *numbers]


STATE = Experiment(
    "mod_state",
    StateParams,
    run,
    script="state_dict_load.py.j2",
    context=context,
    shown=shown,
    examples=(
        StateParams(change="wider", payload="state_dict"),
        StateParams(change="renamed", wrapped=True, payload="numpy_array", hidden=64, seed=2),
        StateParams(change="same", wrapped=True, strip_prefix=True, payload="checkpoint"),
    ),
)

LOOSE_WIDER = Prediction(
    "strict_false_wider",
    STATE,
    StateParams(change="wider", payload="state_dict"),
    options=("loads", "error"),
    answer=lambda r: "error" if r.loose_error else "loads",
    question="mod_state.predict_q",
    why="mod_state.predict_why",
)
