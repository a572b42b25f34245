"""What the tensors lesson's experiments share: a tensor's memory facts, storage numbering, timing settings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.experiment import to_numpy

MAX_GRID = 256  # cells the page draws as a grid
# Calls of a large size one timing makes (warm-up, block-size estimate, blocks): its clock, not a count, ends it.
TIMED_CALLS = 16


def numel(shape: Sequence[int]) -> int:
    """Return how many elements a tensor of this shape has."""
    return math.prod(shape)


@dataclass(frozen=True)
class TensorFacts:
    """What one tensor is in memory, and its values."""

    name: str
    expr: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    contiguous: bool
    storage_id: int  # tensors with equal ids share one storage
    ptr_offset: int  # data_ptr() minus the storage's start, in bytes (= offset * element size)
    storage_index: np.ndarray  # storage cell of each element, same shape as the tensor
    values: np.ndarray


class StorageIds:
    """Number storages in the order first seen, so equal ids mean shared memory."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def __call__(self, t: torch.Tensor) -> int:
        return self._ids.setdefault(t.untyped_storage().data_ptr(), len(self._ids))


def storage_index(shape: Sequence[int], stride: Sequence[int], offset: int) -> np.ndarray:
    """Return, for each element, the storage cell it lives in: offset + sum(index * stride)."""
    index = np.full(tuple(shape), offset, dtype=np.int64)
    for dim, (size, step) in enumerate(zip(shape, stride, strict=True)):
        along = np.arange(size, dtype=np.int64) * step
        index = index + along.reshape([-1 if d == dim else 1 for d in range(len(shape))])
    return index


def describe(name: str, expr: str, t: torch.Tensor, ids: StorageIds) -> TensorFacts:
    """Return the memory facts of t, as torch reports them."""
    offset = int(t.storage_offset())
    return TensorFacts(
        name=name,
        expr=expr,
        shape=tuple(t.shape),
        stride=tuple(t.stride()),
        offset=offset,
        contiguous=t.is_contiguous(),
        storage_id=ids(t),
        ptr_offset=t.data_ptr() - t.untyped_storage().data_ptr(),
        storage_index=storage_index(t.shape, t.stride(), offset),
        values=to_numpy(t),
    )
