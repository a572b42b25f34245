"""Which sample lands in which batch: a real DataLoader over TensorDataset(arange(n)), iterated epoch by epoch.

The dataset's items are their own indices, so what the loader yields is exactly the order the sampler
drew. The grid is read from iterating the loader, never recomputed from a formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.data.common import loader_generator
from core.params import Params, bounds, choices, seed_field

SAMPLERS = ("sequential", "random", "random_replacement", "weighted")
BATCHINGS = ("loader", "batch_sampler")  # batch_size/drop_last given to DataLoader, or a BatchSampler built by hand


@dataclass(frozen=True)
class BatchesParams(Params):
    n: int = field(default=10, metadata=bounds(1, 64))
    batch_size: int = field(default=4, metadata=bounds(1, 32))
    sampler: str = field(default="random", metadata=choices(*SAMPLERS))
    drop_last: bool = False
    batching: str = field(default="loader", metadata=choices(*BATCHINGS))
    minority: int = field(default=20, metadata=bounds(5, 50))  # percent of samples in class 1 (weighted only)
    epochs: int = field(default=3, metadata=bounds(1, 8))
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields these settings use: the class imbalance only for WeightedRandomSampler."""
        return {s.name: s.name for s in self.specs() if s.name != "minority" or self.sampler == "weighted"}

    def estimate_bytes(self) -> int:
        return 64 * self.n * self.epochs + (1 << 14)

    def estimate_work(self) -> float:
        # Python per batch and per sample dominates: about 20 us a batch, 2 us a sample (1e4 units each).
        return float(self.epochs * (2e5 * (self.n + 1) + 2e4 * self.n))


@dataclass(frozen=True)
class BatchesResult:
    order: np.ndarray  # (epochs, n) int64: the sample at each position of the epoch; -1 where nothing was yielded
    batch: np.ndarray  # (epochs, n) int64: the batch (0, 1, ...) the position belongs to; -1 where nothing was yielded
    labels: np.ndarray  # (n,) int64 class of each sample (the weighted sampler's two classes)
    batch_sizes: tuple[tuple[int, ...], ...]  # per epoch, the size of every batch the loader yielded
    n_batches: int  # len(loader)
    per_epoch: int  # samples the sampler draws per epoch (len(sampler))
    class_counts: np.ndarray  # (epochs, 2) samples of each class yielded per epoch
    expected_counts: np.ndarray  # (2,) what the sampler's weights predict per epoch (over the yielded samples)
    sampler: str
    batch_size: int


def labels_of(n: int, minority: int) -> torch.Tensor:
    """Return the class of each of n samples: the last round(n * minority / 100) (at least 1 when n > 1) are class 1."""
    k = min(n - 1, max(1, round(n * minority / 100))) if n > 1 else 0
    return (torch.arange(n) >= n - k).long()


def sample_weights(labels: torch.Tensor) -> torch.Tensor:
    """Return 1 / (size of its class) per sample: each class then carries the same total weight."""
    counts = torch.bincount(labels, minlength=2).double()
    return 1.0 / counts[labels]


def make_sampler(p: BatchesParams, labels: torch.Tensor, g: torch.Generator) -> Sampler[int] | None:
    """Return the sampler the settings name; None for sequential/random, which DataLoader builds from `shuffle`."""
    if p.sampler == "random_replacement":
        return RandomSampler(range(p.n), replacement=True, num_samples=p.n, generator=g)
    if p.sampler == "weighted":
        return WeightedRandomSampler(sample_weights(labels).tolist(), num_samples=p.n, replacement=True, generator=g)
    return None


def make_loader(p: BatchesParams, g: torch.Generator) -> DataLoader[Any]:
    """Return the DataLoader the settings describe, over TensorDataset(arange(n), labels)."""
    labels = labels_of(p.n, p.minority)
    dataset = TensorDataset(torch.arange(p.n), labels)
    sampler = make_sampler(p, labels, g)
    shuffle = p.sampler == "random"
    if p.batching == "batch_sampler":
        inner: Sampler[int] = sampler or (RandomSampler(dataset, generator=g) if shuffle else SequentialSampler(dataset))
        return DataLoader(dataset, batch_sampler=BatchSampler(inner, p.batch_size, p.drop_last), generator=g)
    return DataLoader(dataset, batch_size=p.batch_size, shuffle=shuffle, sampler=sampler, drop_last=p.drop_last, generator=g)


def run(p: BatchesParams, ctx: RunContext) -> BatchesResult:
    """Iterate the real DataLoader for every epoch; return which sample sat at each position and in which batch."""
    g = loader_generator(ctx)
    loader = make_loader(p, g)
    labels = labels_of(p.n, p.minority)
    order = np.full((p.epochs, p.n), -1, dtype=np.int64)
    batch = np.full((p.epochs, p.n), -1, dtype=np.int64)
    sizes: list[tuple[int, ...]] = []
    counts = np.zeros((p.epochs, 2), dtype=np.int64)
    for epoch in range(p.epochs):
        ctx.check_deadline()
        position, epoch_sizes = 0, []
        for b, (X, y) in enumerate(loader):  # a fresh iterator per epoch: random samplers draw again
            order[epoch, position : position + len(X)] = X.numpy()
            batch[epoch, position : position + len(X)] = b
            counts[epoch] += np.bincount(y.numpy(), minlength=2)
            position += len(X)
            epoch_sizes.append(len(X))
        sizes.append(tuple(epoch_sizes))
    yielded = sum(sizes[0]) if sizes else 0
    if p.sampler == "weighted":
        weights = sample_weights(labels)
        share = torch.stack([weights[labels == c].sum() for c in (0, 1)]) / weights.sum()
    else:  # uniform over the samples (exactly so without replacement when nothing is dropped)
        share = torch.bincount(labels, minlength=2).double() / p.n
    return BatchesResult(
        order,
        batch,
        labels.numpy().copy(),
        tuple(sizes),
        len(loader),
        p.n,
        counts,
        (share * yielded).numpy().copy(),
        p.sampler,
        p.batch_size,
    )


def batch_of(r: BatchesResult, epoch: int, b: int) -> list[int]:
    """Return the samples of batch b in an epoch (empty when the loader yielded fewer batches)."""
    return [int(i) for i in r.order[epoch][r.batch[epoch] == b]]


def context(p: BatchesParams, device_type: str) -> dict[str, Any]:
    """Return what batches.py.j2 reads: the settings (a DataLoader and its samplers run on the CPU on any device)."""
    return {
        "n": p.n,
        "batch_size": p.batch_size,
        "sampler": p.sampler,
        "drop_last": p.drop_last,
        "batching": p.batching,
        "minority": p.minority,
        "epochs": p.epochs,
        "seed": p.seed,
        "device_type": device_type,
    }


def shown(r: BatchesResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: len(loader), and every batch of every epoch."""
    out: list[float | str] = [f"len(loader) = {r.n_batches}"]
    for epoch, epoch_sizes in enumerate(r.batch_sizes):
        out += [f"epoch {epoch} batch {b}: {batch_of(r, epoch, b)}" for b in range(len(epoch_sizes))]
    if r.sampler == "weighted":
        out += [f"epoch {e} class counts {r.class_counts[e].tolist()}" for e in range(len(r.batch_sizes))]
    return out


BATCHES = Experiment(
    "data_batches",
    BatchesParams,
    run,
    script="batches.py.j2",
    context=context,
    shown=shown,
    examples=(
        BatchesParams(n=10, batch_size=3, sampler="sequential", drop_last=True, epochs=2),
        BatchesParams(n=20, batch_size=5, sampler="weighted", minority=10, epochs=4, seed=7),
        BatchesParams(n=7, batch_size=2, sampler="random_replacement", batching="batch_sampler", seed=3),
    ),
)

# With n=10, batch_size=3 and drop_last=True, how many batches does one epoch yield?
DROP_LAST = Prediction(
    "data_drop_last",
    BATCHES,
    BatchesParams(n=10, batch_size=3, sampler="sequential", drop_last=True, epochs=1),
    options=("3", "4", "10"),
    answer=lambda r: str(r.n_batches),
    question="data_batches.predict_drop_q",
    why="data_batches.predict_drop_why",
)

# Without shuffling, n=10 and batch_size=4: which samples are in batch 2 (the third)?
THIRD_BATCH = Prediction(
    "data_third_batch",
    BATCHES,
    BatchesParams(n=10, batch_size=4, sampler="sequential", epochs=1),
    options=("[4, 5, 6, 7]", "[8, 9]", "[8, 9, 0, 1]", "[2, 3]"),
    answer=lambda r: str(batch_of(r, 0, 2)),
    question="data_batches.predict_third_q",
    why="data_batches.predict_third_why",
)
