"""Lesson "Datasets and loaders": which sample lands in which batch, collate_fn, workers and throughput, worker seeds.

1. data_sets     - TensorDataset, a map-style Dataset with a per-item cost, an IterableDataset: len, indexing, batches.
2. data_batches  - a real DataLoader over TensorDataset(arange(n)): the batch grid per epoch, every sampler.
3. data_collate  - variable-length sequences through default_collate, a padding collate_fn and a dict collate_fn.
4. data_workers  - samples/s against num_workers, prefetch_factor, pin_memory, persistent_workers (isolated child).
5. data_seeds    - a random Generator copied into every worker (the pitfall), and two fixes (isolated child).

Results hold numpy arrays and plain Python values only; all randomness comes from ctx.generator. Worker
processes are started only inside an isolated child process (child.py), at most TORCHLAB_MAX_WORKERS per run.
"""

from __future__ import annotations

from core.lessons.data.batches import BATCHES, DROP_LAST, THIRD_BATCH
from core.lessons.data.collate import COLLATE, PADDED_SHAPE
from core.lessons.data.datasets import SETS
from core.lessons.data.seeds import GLOBAL_RNG, SEEDS, SHARED_EPOCHS
from core.lessons.data.workers import TWO_WORKERS, WORKERS

TABS = ("sets", "batches", "collate", "workers", "seeds", "pitfalls")
EXPERIMENTS = (SETS, BATCHES, COLLATE, WORKERS, SEEDS)
PREDICTIONS = (DROP_LAST, THIRD_BATCH, PADDED_SHAPE, TWO_WORKERS, GLOBAL_RNG, SHARED_EPOCHS)
