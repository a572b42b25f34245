"""collate_fn: variable-length sequences through torch's default_collate, a padding collate and a dict collate.

Each sample is (a 1-D LongTensor of tokens 1..9 of its own length, a label 0 or 1). The same
DataLoader (no shuffling) is iterated three times, once per collate_fn; what each batch became,
or the error torch raised, is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler
from torch.utils.data.dataloader import default_collate

from core.experiment import Experiment, Prediction, RunContext, first_line
from core.lessons.data.common import loader_generator
from core.params import Params, bounds, seed_field

Sample = tuple[torch.Tensor, int]


@dataclass(frozen=True)
class CollateParams(Params):
    n: int = field(default=7, metadata=bounds(1, 24))  # sequences in the dataset
    batch_size: int = field(default=3, metadata=bounds(1, 8))
    min_len: int = field(default=2, metadata=bounds(1, 12, hi_of="longest"))
    max_len: int = field(default=6, metadata=bounds(1, 12))
    padding_value: int = field(default=0, metadata=bounds(-9, 9))
    batch_first: bool = True
    seed: int = seed_field()

    def longest(self) -> int:
        """Return the highest min_len allowed: max_len (all sequences then have the same length)."""
        return self.max_len

    def estimate_bytes(self) -> int:
        return 3 * 8 * self.n * (self.max_len + 4) + (1 << 14)

    def estimate_work(self) -> float:
        # Three passes over the loader; Python per sample and per batch dominates (~10 us each: 1e5 units).
        return float(3 * 1e5 * (self.n + self.n // self.batch_size + 1))


@dataclass(frozen=True)
class CollateResult:
    lengths: np.ndarray  # (n,) int64
    labels: np.ndarray  # (n,) int64
    batches: tuple[tuple[int, ...], ...]  # the samples of each batch
    default_shapes: tuple[str, ...]  # per batch: "x (3, 4), y (3,)" from default_collate, or "" when it raised
    default_error: str  # torch's message for the first batch default_collate could not stack ("" when none)
    padded: tuple[np.ndarray, ...]  # per batch: pad_sequence's output (batch_first as set)
    pad_shapes: tuple[str, ...]  # per batch: "x (3, 6), lengths [6, 2, 4], y (3,)"
    dict_shapes: tuple[str, ...]  # per batch: "{'x': (3, 6), 'lengths': (3,), 'y': (3,)}"
    batch_first: bool
    padding_value: int


class Sequences(Dataset[Sample]):
    """The samples as a map-style dataset (a plain list would do at run time; this one says its item type)."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def make_samples(p: CollateParams, g: torch.Generator) -> list[Sample]:
    """Return n samples: tokens 1..9 of a random length in [min_len, max_len], and a label 0/1."""
    lengths = torch.randint(p.min_len, p.max_len + 1, (p.n,), generator=g)
    return [
        (torch.randint(1, 10, (int(length),), generator=g), int(torch.randint(0, 2, (), generator=g))) for length in lengths
    ]


def pad_collate(batch: list[Sample], batch_first: bool, padding_value: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (padded tokens, lengths, labels): the sequences padded to the longest one of this batch."""
    seqs = [x for x, _ in batch]
    lengths = torch.tensor([len(x) for x in seqs])
    y = torch.tensor([label for _, label in batch])
    return pad_sequence(seqs, batch_first=batch_first, padding_value=padding_value), lengths, y


def dict_collate(batch: list[Sample], batch_first: bool, padding_value: int) -> dict[str, torch.Tensor]:
    """Return the padded batch as a dict: a model can then read batch['x'] and batch['lengths'] by name."""
    x, lengths, y = pad_collate(batch, batch_first, padding_value)
    return {"x": x, "lengths": lengths, "y": y}


def shape(t: torch.Tensor) -> tuple[int, ...]:
    """Return a tensor's shape as a plain tuple (prints as (3, 6), like the script's tuple(t.shape))."""
    return tuple(t.shape)


def run(p: CollateParams, ctx: RunContext) -> CollateResult:
    """Iterate one DataLoader (in order) with each collate_fn; return the shapes, the padded batches and torch's error."""
    samples = make_samples(p, loader_generator(ctx))
    bf, pad = p.batch_first, p.padding_value
    # The indices DataLoader(batch_size=...) asks for, without shuffling: its own BatchSampler's.
    batches = tuple(tuple(b) for b in BatchSampler(SequentialSampler(range(p.n)), p.batch_size, drop_last=False))

    default_shapes, error = [], ""
    for batch in batches:
        try:
            x, y = default_collate([samples[i] for i in batch])  # what DataLoader does without collate_fn
            default_shapes.append(f"x {shape(x)}, y {shape(y)}")
        except RuntimeError as e:
            default_shapes.append("")
            error = error or first_line(e)
    dataset = Sequences(samples)
    loader = DataLoader(dataset, batch_size=p.batch_size, collate_fn=lambda b: pad_collate(b, bf, pad))
    padded, pad_shapes = [], []
    for x, lengths, y in loader:
        ctx.check_deadline()
        padded.append(x.numpy().copy())
        pad_shapes.append(f"x {shape(x)}, lengths {lengths.tolist()}, y {shape(y)}")
    as_dicts = DataLoader(dataset, batch_size=p.batch_size, collate_fn=lambda b: dict_collate(b, bf, pad))
    dict_shapes = [str({key: shape(value) for key, value in d.items()}) for d in as_dicts]
    return CollateResult(
        np.array([len(x) for x, _ in samples], dtype=np.int64),
        np.array([label for _, label in samples], dtype=np.int64),
        batches,
        tuple(default_shapes),
        error,
        tuple(padded),
        tuple(pad_shapes),
        tuple(dict_shapes),
        bf,
        pad,
    )


def context(p: CollateParams, device_type: str) -> dict[str, Any]:
    """Return what collate.py.j2 reads: the settings and the device the batches move to."""
    return {
        "n": p.n,
        "batch_size": p.batch_size,
        "min_len": p.min_len,
        "max_len": p.max_len,
        "padding_value": p.padding_value,
        "batch_first": p.batch_first,
        "seed": p.seed,
        "device_type": device_type,
    }


def shown(r: CollateResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: each batch's shapes under the three collate_fns, torch's error."""
    out: list[float | str] = [f"lengths {r.lengths.tolist()}"]
    for b, (default, pad, as_dict) in enumerate(zip(r.default_shapes, r.pad_shapes, r.dict_shapes, strict=True)):
        out += [f"batch {b} pad: {pad}", f"batch {b} dict: {as_dict}"]
        if default:
            out.append(f"batch {b} default: {default}")
    if r.default_error:
        out.append(r.default_error)
    return out


COLLATE = Experiment(
    "data_collate",
    CollateParams,
    run,
    script="collate.py.j2",
    context=context,
    shown=shown,
    examples=(
        CollateParams(n=5, batch_size=2, min_len=4, max_len=4, seed=1),
        CollateParams(n=9, batch_size=4, min_len=1, max_len=12, padding_value=-1, batch_first=False, seed=2),
    ),
)

# Sequences of lengths 5, 3 and 4 (seed 5) padded by pad_sequence with its default batch_first=False: the shape?
PADDED_SHAPE = Prediction(
    "data_padded_shape",
    COLLATE,
    CollateParams(n=3, batch_size=3, min_len=3, max_len=5, batch_first=False, seed=5),
    options=("(3, 5)", "(3, 4)", "(5, 3)", "(3, 12)"),
    answer=lambda r: str(r.padded[0].shape),
    question="data_collate.predict_q",
    why="data_collate.predict_why",
)
