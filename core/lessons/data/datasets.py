"""Three kinds of dataset holding the same samples: TensorDataset, a map-style Dataset, an IterableDataset.

For each: what len(dataset), dataset[index] and len(DataLoader(dataset)) give (or the error torch
raises), how many batches iterating the loader really yields, and the first batch's shapes. The
map-style dataset costs `cost_ms` per item, so one pass over its loader is timed (core.measure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from core.experiment import Experiment, RunContext, first_line
from core.lessons.data.common import WORK_PER_SECOND, spend
from core.measure import one_call_seconds
from core.params import Params, bounds

KINDS = ("tensor", "map", "iterable")
Sample = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SetsParams(Params):
    n: int = field(default=6, metadata=bounds(1, 32))
    index: int = field(default=2, metadata=bounds(0, 31, hi_of="last_index"))
    batch_size: int = field(default=4, metadata=bounds(1, 8))
    cost_ms: float = field(default=2.0, metadata=bounds(0.0, 20.0, 0.5))  # the map-style dataset's cost per item
    iterable_len: bool = False  # the IterableDataset declares __len__

    def last_index(self) -> int:
        """Return the highest valid index, n - 1."""
        return self.n - 1

    def estimate_bytes(self) -> int:
        return 3 * 64 * self.n + (1 << 14)

    def estimate_work(self) -> float:
        # Two passes over the map-style dataset pay the item cost (the timed one and the counted one).
        return 2 * self.n * self.cost_ms / 1000 * WORK_PER_SECOND + 3e5 * self.n


@dataclass(frozen=True)
class SetsResult:
    kinds: tuple[str, ...]  # KINDS: the rows below
    length: tuple[str, ...]  # len(dataset), or the error
    item: tuple[str, ...]  # dataset[index], or the error
    loader_length: tuple[str, ...]  # len(loader), or the error
    batches: tuple[int, ...]  # batches one pass over the loader yields
    first_batch: tuple[str, ...]  # shapes of the first batch: "X (4, 2), y (4,)"
    pass_seconds: float  # one pass over the map-style dataset's loader, cost_ms per item
    expected_seconds: float  # n * cost_ms


class Rows(Dataset[Sample]):
    """A map-style dataset: __len__ says how many indices exist, __getitem__(i) builds sample i (at a cost)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, cost_ms: float) -> None:
        self.X, self.y, self.cost_ms = X, y, cost_ms

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> Sample:
        spend(self.cost_ms / 1000, "sleep")  # reading a file, say
        return self.X[i], self.y[i]


class Stream(IterableDataset[Sample]):
    """An iterable-style dataset: a stream read in order; no indexing."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __iter__(self) -> Iterator[Sample]:
        return zip(self.X, self.y, strict=True)


class SizedStream(Stream):
    """The same stream declaring its length: len(loader) can then be computed, but it stays a promise."""

    def __len__(self) -> int:
        return len(self.X)


def attempt(fn: Callable[[], object]) -> str:
    """Return repr(fn()), or 'ErrorType: message' for the error it raised."""
    try:
        return repr(fn())
    except (TypeError, NotImplementedError, IndexError) as e:
        return f"{type(e).__name__}: {first_line(e)}"


def describe(dataset: Any, batch_size: int, index: int) -> tuple[str, str, str, int, str]:
    """Return len(dataset), dataset[index], len(loader), the batches a pass yields, and the first batch's shapes."""
    loader = DataLoader(dataset, batch_size=batch_size)
    yielded = list(loader)
    Xb, yb = yielded[0]
    return (
        attempt(lambda: len(dataset)),
        attempt(lambda: dataset[index]),
        attempt(lambda: len(loader)),
        len(yielded),
        f"X {tuple(Xb.shape)}, y {tuple(yb.shape)}",
    )


def samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return X: (n, 2) float rows [i, 10 i] and y: (n,) labels i mod 2 (easy to recognise in a batch)."""
    i = torch.arange(n, dtype=torch.float32)
    return torch.stack([i, 10 * i], dim=1), torch.arange(n) % 2


def run(p: SetsParams, ctx: RunContext) -> SetsResult:
    """Ask each kind of dataset for len, an item and its loader's length; iterate each loader; time the map-style one."""
    X, y = samples(p.n)
    stream: Stream = SizedStream(X, y) if p.iterable_len else Stream(X, y)
    datasets: list[Any] = [TensorDataset(X, y), Rows(X, y, p.cost_ms), stream]
    length: list[Any] = []
    item: list[Any] = []
    loader_length: list[Any] = []
    batches: list[Any] = []
    first: list[Any] = []
    for dataset in datasets:
        ctx.check_deadline()
        answers = describe(dataset, p.batch_size, p.index)
        for column, answer in zip((length, item, loader_length, batches, first), answers, strict=True):
            column.append(answer)
    timed = DataLoader(datasets[1], batch_size=p.batch_size)
    seconds = one_call_seconds(lambda: sum(1 for _ in timed), torch.device("cpu"))
    return SetsResult(
        KINDS,
        tuple(length),
        tuple(item),
        tuple(loader_length),
        tuple(batches),
        tuple(first),
        seconds,
        p.n * p.cost_ms / 1000,
    )


def context(p: SetsParams, device_type: str) -> dict[str, Any]:
    """Return what datasets.py.j2 reads (datasets live on the CPU; the cuda variant moves the batches)."""
    return {
        "n": p.n,
        "index": p.index,
        "batch_size": p.batch_size,
        "cost_ms": p.cost_ms,
        "iterable_len": p.iterable_len,
        "device_type": device_type,
    }


def shown(r: SetsResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: every cell of the table (the time differs run to run)."""
    out: list[float | str] = []
    for k, kind in enumerate(r.kinds):
        out += [
            f"{kind}: len(dataset) -> {r.length[k]}",
            f"{kind}: item -> {r.item[k]}",
            f"{kind}: len(loader) -> {r.loader_length[k]}",
            f"{kind}: {r.batches[k]} batches yielded, first batch {r.first_batch[k]}",
        ]
    return out


SETS = Experiment(
    "data_sets",
    SetsParams,
    run,
    script="datasets.py.j2",
    context=context,
    exclusive=True,  # it times one pass over the costly dataset
    shown=shown,
    examples=(SetsParams(n=5, index=4, batch_size=2, cost_ms=0.5, iterable_len=True),),
)
