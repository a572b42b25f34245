"""Lesson 1, Tensors and memory: creation, shapes, the memory-layout inspector, broadcasting, indexing,
reductions with dim and keepdim, clamp, a loop against the vectorised op, in-place ops, NumPy sharing,
dtype conversions, and the notes' pitfalls run live."""

from __future__ import annotations

from typing import Any

from core.experiment import Experiment, Prediction
from core.lessons.tensors.broadcast import BROADCAST, BROADCAST_SHAPE
from core.lessons.tensors.create import CREATE
from core.lessons.tensors.dtype import DTYPE
from core.lessons.tensors.index import INDEX
from core.lessons.tensors.inplace import INPLACE, INT_INPLACE
from core.lessons.tensors.layout import LAYOUT, STRIDE_T
from core.lessons.tensors.loop import LOOP, LOOP_FACTOR
from core.lessons.tensors.numpy_sharing import NUMPY
from core.lessons.tensors.pitfalls import TENSOR_PITFALL
from core.lessons.tensors.reduce import REDUCE, SUM_SHAPE
from core.lessons.tensors.shape import SHAPE, VIEW_T

TABS = ("create", "shape", "layout", "broadcast", "index", "reduce", "inplace", "numpy", "dtype", "pitfalls")
EXPERIMENTS: tuple[Experiment[Any, Any], ...] = (
    CREATE,
    SHAPE,
    LAYOUT,
    BROADCAST,
    INDEX,
    REDUCE,
    LOOP,
    INPLACE,
    NUMPY,
    DTYPE,
    TENSOR_PITFALL,
)
PREDICTIONS: tuple[Prediction[Any, Any], ...] = (VIEW_T, STRIDE_T, BROADCAST_SHAPE, SUM_SHAPE, LOOP_FACTOR, INT_INPLACE)
