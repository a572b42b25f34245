"""The data lesson's datasets, batches and collate experiments against a DataLoader built here, torch, and arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from core.lessons.data import batches as data_batches
from core.lessons.data import collate as data_collate
from core.lessons.data import datasets as data_sets
from core.lessons.data.batches import BatchesParams
from core.lessons.data.collate import CollateParams
from core.lessons.data.datasets import SetsParams
from tests.params_strategies import run_cpu

# --------------------------------------------------------------------------------------------
# Batches: the grid is what iterating a real DataLoader yields


BATCH_CASES = [
    BatchesParams(),
    BatchesParams(n=10, batch_size=3, sampler="sequential", drop_last=True),
    BatchesParams(n=11, batch_size=4, sampler="random", drop_last=True, epochs=4, seed=9),
    BatchesParams(n=9, batch_size=2, sampler="random_replacement", seed=5),
    BatchesParams(n=16, batch_size=5, sampler="weighted", minority=10, epochs=2, seed=3),
    BatchesParams(n=13, batch_size=4, sampler="random", batching="batch_sampler", seed=2),
    BatchesParams(n=7, batch_size=3, sampler="weighted", batching="batch_sampler", drop_last=True, seed=4),
    BatchesParams(n=3, batch_size=8, sampler="sequential", drop_last=True),  # not one full batch
]


def loader_here(p: BatchesParams) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Build the DataLoader the settings describe, written out again here (not through the engine's make_loader)."""
    g = torch.Generator().manual_seed(p.seed)
    k = min(p.n - 1, max(1, round(p.n * p.minority / 100))) if p.n > 1 else 0
    y = torch.cat([torch.zeros(p.n - k, dtype=torch.long), torch.ones(k, dtype=torch.long)])
    dataset = TensorDataset(torch.arange(p.n), y)
    if p.sampler == "random_replacement":
        sampler = RandomSampler(dataset, replacement=True, num_samples=p.n, generator=g)
    elif p.sampler == "weighted":
        weights = [1.0 / int((y == c).sum()) for c in y.tolist()]
        sampler = WeightedRandomSampler(weights, num_samples=p.n, replacement=True, generator=g)
    elif p.sampler == "random":
        sampler = RandomSampler(dataset, generator=g)
    else:
        sampler = SequentialSampler(dataset)
    if p.batching == "batch_sampler":
        return DataLoader(dataset, batch_sampler=BatchSampler(sampler, p.batch_size, p.drop_last), generator=g)
    if p.sampler in ("sequential", "random"):
        return DataLoader(dataset, batch_size=p.batch_size, shuffle=p.sampler == "random", drop_last=p.drop_last, generator=g)
    return DataLoader(dataset, batch_size=p.batch_size, sampler=sampler, drop_last=p.drop_last, generator=g)


@pytest.mark.parametrize("p", BATCH_CASES, ids=str)
def test_the_grid_is_what_the_real_loader_yields_with_the_same_seed(p: BatchesParams) -> None:
    r = run_cpu(data_batches.BATCHES.run, p)
    loader = loader_here(p)
    for epoch in range(p.epochs):
        batches = [X.tolist() for X, _ in loader]
        assert [data_batches.batch_of(r, epoch, b) for b in range(len(batches))] == batches
        assert r.batch_sizes[epoch] == tuple(len(b) for b in batches)
        assert (r.order[epoch, sum(map(len, batches)) :] == -1).all()  # nothing else was yielded
    assert r.n_batches == len(loader)


@pytest.mark.parametrize("p", BATCH_CASES, ids=str)
def test_batch_counts_are_len_loader_and_follow_the_formula(p: BatchesParams) -> None:
    r = run_cpu(data_batches.BATCHES.run, p)
    formula = p.n // p.batch_size if p.drop_last else math.ceil(p.n / p.batch_size)
    assert r.n_batches == formula
    for sizes in r.batch_sizes:
        assert len(sizes) == r.n_batches
        assert all(s == p.batch_size for s in sizes[:-1])
        if sizes:
            assert sizes[-1] == (p.batch_size if p.drop_last or p.n % p.batch_size == 0 else p.n % p.batch_size)


def test_sequential_batches_are_consecutive_slices() -> None:
    p = BatchesParams(n=10, batch_size=4, sampler="sequential", epochs=2)
    r = run_cpu(data_batches.BATCHES.run, p)
    for epoch in range(2):
        assert r.order[epoch].tolist() == list(range(10))
        assert r.batch[epoch].tolist() == [i // 4 for i in range(10)]


def test_shuffle_draws_a_new_permutation_every_epoch() -> None:
    r = run_cpu(data_batches.BATCHES.run, BatchesParams(n=20, batch_size=6, sampler="random", epochs=4, seed=1))
    for epoch in range(4):
        assert sorted(r.order[epoch].tolist()) == list(range(20))  # without replacement: each sample once
    assert len({tuple(row) for row in r.order.tolist()}) == 4


def test_an_explicit_batch_sampler_gives_the_same_batches_as_batch_size() -> None:
    for sampler in ("sequential", "random", "weighted"):
        a = run_cpu(data_batches.BATCHES.run, BatchesParams(n=13, batch_size=4, sampler=sampler, seed=6))
        b = run_cpu(
            data_batches.BATCHES.run, BatchesParams(n=13, batch_size=4, sampler=sampler, batching="batch_sampler", seed=6)
        )
        assert np.array_equal(a.order, b.order) and np.array_equal(a.batch, b.batch)


def test_weighted_sampling_balances_the_classes() -> None:
    p = BatchesParams(n=64, batch_size=8, sampler="weighted", minority=10, epochs=8, seed=2)
    r = run_cpu(data_batches.BATCHES.run, p)
    assert r.labels.sum() == round(64 * 0.1)
    assert np.allclose(r.expected_counts, [32, 32])  # each class carries half of the total weight
    share = r.class_counts[:, 1].sum() / r.class_counts.sum()
    # 512 independent draws with p = 1/2: the standard deviation of the share is about 0.022.
    assert abs(share - 0.5) < 0.1
    assert r.class_counts[:, 1].sum() > 4 * 0.1 * 512  # far above the 10% a uniform sampler would give


def test_the_batch_predictions_answers() -> None:
    drop = run_cpu(data_batches.BATCHES.run, data_batches.DROP_LAST.params)
    assert data_batches.DROP_LAST.answer(drop) == str(10 // 3)
    third = run_cpu(data_batches.BATCHES.run, data_batches.THIRD_BATCH.params)
    assert data_batches.THIRD_BATCH.answer(third) == str(list(range(10))[8:12])


# --------------------------------------------------------------------------------------------
# collate_fn


COLLATE_CASES = [CollateParams(), *data_collate.COLLATE.examples, CollateParams(n=1, batch_size=8, min_len=1, max_len=1)]


def samples_here(p: CollateParams) -> list[tuple[torch.Tensor, int]]:
    """Draw the samples again from the seed, as the script does."""
    g = torch.Generator().manual_seed(p.seed)
    lengths = torch.randint(p.min_len, p.max_len + 1, (p.n,), generator=g)
    return [(torch.randint(1, 10, (int(n),), generator=g), int(torch.randint(0, 2, (), generator=g))) for n in lengths]


@pytest.mark.parametrize("p", COLLATE_CASES, ids=str)
def test_padded_batches_equal_torch_pad_sequence(p: CollateParams) -> None:
    r = run_cpu(data_collate.COLLATE.run, p)
    samples = samples_here(p)
    assert r.lengths.tolist() == [len(x) for x, _ in samples]
    starts = range(0, p.n, p.batch_size)
    assert len(r.padded) == len(starts)
    for b, start in enumerate(starts):
        seqs = [x for x, _ in samples[start : start + p.batch_size]]
        expected = pad_sequence(seqs, batch_first=p.batch_first, padding_value=p.padding_value)
        assert np.array_equal(r.padded[b], expected.numpy())
        longest = max(len(s) for s in seqs)
        assert r.padded[b].shape == ((len(seqs), longest) if p.batch_first else (longest, len(seqs)))
        assert f"lengths {[len(s) for s in seqs]}" in r.pad_shapes[b]
        assert r.dict_shapes[b] == str({"x": tuple(expected.shape), "lengths": (len(seqs),), "y": (len(seqs),)})


@pytest.mark.parametrize("p", COLLATE_CASES, ids=str)
def test_default_collate_stacks_equal_lengths_and_raises_torchs_error_otherwise(p: CollateParams) -> None:
    r = run_cpu(data_collate.COLLATE.run, p)
    samples = samples_here(p)
    first_error = ""
    for b, start in enumerate(range(0, p.n, p.batch_size)):
        seqs = [x for x, _ in samples[start : start + p.batch_size]]
        if len({len(s) for s in seqs}) == 1:
            assert r.default_shapes[b] == f"x {(len(seqs), len(seqs[0]))}, y {(len(seqs),)}"
        else:
            assert r.default_shapes[b] == ""
            with pytest.raises(RuntimeError) as raised:
                torch.stack(seqs)
            first_error = first_error or str(raised.value).splitlines()[0]
    assert r.default_error == first_error


def test_the_padded_shape_prediction() -> None:
    r = run_cpu(data_collate.COLLATE.run, data_collate.PADDED_SHAPE.params)
    assert r.lengths.tolist() == [5, 3, 4]  # what the question says
    assert data_collate.PADDED_SHAPE.answer(r) == str((5, 3))  # (longest, batch): batch_first=False


# --------------------------------------------------------------------------------------------
# Three kinds of dataset


@pytest.mark.parametrize(
    "p", [SetsParams(), *data_sets.SETS.examples, SetsParams(n=1, index=0, batch_size=8, cost_ms=0)], ids=str
)
def test_each_kind_of_dataset_answers_as_torch_says(p: SetsParams) -> None:
    r = run_cpu(data_sets.SETS.run, p)
    batches = math.ceil(p.n / p.batch_size)
    X = torch.stack([torch.arange(p.n, dtype=torch.float32), 10 * torch.arange(p.n, dtype=torch.float32)], dim=1)
    item = repr((X[p.index], torch.tensor(p.index % 2)))
    assert r.length[:2] == (str(p.n), str(p.n))
    assert r.item[:2] == (item, item)
    assert r.loader_length[:2] == (str(batches), str(batches))
    assert r.batches == (batches, batches, batches)  # a stream yields all its batches, with or without __len__
    assert r.first_batch == (f"X {(min(p.n, p.batch_size), 2)}, y {(min(p.n, p.batch_size),)}",) * 3
    assert r.item[2].startswith("NotImplementedError")  # no indexing, whatever it declares
    if p.iterable_len:
        assert (r.length[2], r.loader_length[2]) == (str(p.n), str(batches))
    else:
        assert r.length[2].startswith("TypeError") and r.loader_length[2].startswith("TypeError")


def test_one_pass_pays_every_items_cost() -> None:
    p = SetsParams(n=10, batch_size=3, cost_ms=5.0)
    r = run_cpu(data_sets.SETS.run, p)
    assert r.expected_seconds == pytest.approx(0.05)
    assert r.pass_seconds >= 0.95 * r.expected_seconds  # every item sleeps its cost, one after another
