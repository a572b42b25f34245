"""The worker-seed pitfall: a random Generator made in Dataset.__init__ is copied into every worker.

Each item draws one 'augmentation' number. The loader fetches one item at a time with
`num_workers` worker processes (forked in an isolated child, see child.py) and records which
worker drew what, epoch by epoch, for each way of holding the random state. The page runs one
cached part per mode (`sweep="modes"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.data.child import run_isolated
from core.lessons.data.common import worker_cap
from core.params import InvalidParams, Params, bounds, choices, seed_field

SEED_MODES = ("numpy_global", "shared_rng", "worker_init_fn", "lazy_rng")
CHILD_WORK = 3e8  # forking the isolated child from the forkserver: ~30 ms of a core, in work units
WORKER_WORK = 2e8  # forking one DataLoader worker and shutting it down: ~20 ms


@dataclass(frozen=True)
class SeedsParams(Params):
    # The pitfall and one fix; the predictions ask about what these defaults do not show.
    modes: tuple[str, ...] = field(default=("shared_rng", "worker_init_fn"), metadata=choices(*SEED_MODES))
    workers: int = field(default=2, metadata=bounds(1, 8))
    n: int = field(default=8, metadata=bounds(1, 32))  # items per epoch, each one draw
    epochs: int = field(default=1, metadata=bounds(1, 4))
    seed: int = seed_field()

    def validate(self) -> None:
        """Refuse an empty list of modes, and more workers than this server lets one run start."""
        super().validate()
        if not self.modes:
            raise InvalidParams("modes", "empty")
        if self.workers > worker_cap():
            raise InvalidParams("workers", "too_many_workers", max=worker_cap())

    def estimate_bytes(self) -> int:
        return 64 * self.n * self.epochs * len(self.modes) + (1 << 16)

    def estimate_work(self) -> float:
        return float(len(self.modes) * (CHILD_WORK + self.epochs * self.workers * WORKER_WORK + 1e5 * self.n * self.epochs))


@dataclass(frozen=True)
class SeedsResult:
    modes: tuple[str, ...]
    worker: np.ndarray  # (modes, epochs, n) int64: the worker that fetched each item
    draw: np.ndarray  # (modes, epochs, n) int64: the number it drew, 0..999
    workers: int
    same_across_workers: np.ndarray  # (modes,) bool: in every epoch, every worker drew the same sequence
    same_across_epochs: np.ndarray  # (modes,) bool: every epoch drew exactly what the first did
    left_running: int  # worker processes still alive after the runs (the runner kills them; 0 means they had ended)
    worker_pids: tuple[int, ...]  # every worker process the runs started


def per_worker(r: SeedsResult, m: int, epoch: int) -> list[list[int]]:
    """Return, for each worker, the numbers it drew in an epoch, in the order it drew them."""
    return split_by_worker(r.worker[m, epoch], r.draw[m, epoch], r.workers)


def split_by_worker(worker: np.ndarray, draw: np.ndarray, workers: int) -> list[list[int]]:
    """Return the draws of each worker id 0..workers-1, in order."""
    return [[int(v) for v in draw[worker == w]] for w in range(workers)]


def run(p: SeedsParams, ctx: RunContext) -> SeedsResult:
    """Run the loader once per mode in the isolated child; return who drew what and whether the draws repeat."""
    worker, draw, across_workers, across_epochs, pids = [], [], [], [], []
    left = 0
    for k, mode in enumerate(p.modes):
        ctx.check_deadline()
        job = {"n": p.n, "workers": p.workers, "epochs": p.epochs, "mode": mode, "seed": ctx.generator.initial_seed()}
        result, still = run_isolated("seeds", job, ctx)
        ctx.progress(k + 1, len(p.modes))
        rows = np.array(result["rows"], dtype=np.int64).reshape(p.epochs, p.n, 2)
        worker.append(rows[:, :, 0])
        draw.append(rows[:, :, 1])
        sequences = [split_by_worker(rows[e, :, 0], rows[e, :, 1], p.workers) for e in range(p.epochs)]
        # A worker that fetched fewer items is compared on the draws it has.
        across_workers.append(all(s[0][: len(w)] == w for s in sequences for w in s[1:]))
        across_epochs.append(all(np.array_equal(rows[e, :, 1], rows[0, :, 1]) for e in range(p.epochs)))
        left += still
        pids += result["pids"]
    return SeedsResult(
        tuple(p.modes),
        np.array(worker),
        np.array(draw),
        p.workers,
        np.array(across_workers),
        np.array(across_epochs),
        left,
        tuple(pids),
    )


def context(p: SeedsParams, device_type: str) -> dict[str, Any]:
    """Return what worker_seeds.py.j2 reads (the loader's workers run on the CPU on any device)."""
    return {"modes": list(p.modes), "workers": p.workers, "n": p.n, "epochs": p.epochs, "seed": p.seed}


def shown(r: SeedsResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: each worker's draws per mode and epoch, and the verdicts."""
    out: list[float | str] = []
    for m, mode in enumerate(r.modes):
        for e in range(r.draw.shape[1]):
            out += [f"{mode} epoch {e} worker {w}: {draws}" for w, draws in enumerate(per_worker(r, m, e))]
        out.append(f"{mode}: same across workers {bool(r.same_across_workers[m])}")
    return out


SEEDS = Experiment(
    "data_seeds",
    SeedsParams,
    run,
    script="worker_seeds.py.j2",
    context=context,
    exclusive=True,  # runs with worker processes run alone on the host
    sweep="modes",
    shown=shown,
    examples=(SeedsParams(modes=SEED_MODES, workers=3, n=7, epochs=2, seed=11),),
)

# A Generator made in Dataset.__init__, fresh workers every epoch: does the second epoch repeat the first?
SHARED_EPOCHS: Prediction[SeedsParams, Any] = Prediction(
    "data_shared_epochs",
    SEEDS,
    SeedsParams(modes=("shared_rng",), workers=2, n=6, epochs=2),
    options=("same", "different"),
    answer=lambda parts: "same" if parts[0].same_across_epochs[0] else "different",
    question="data_seeds.predict_epochs_q",
    why="data_seeds.predict_epochs_why",
)

# NumPy's global RNG (np.random.randint) in __getitem__, 2 workers: same numbers in both?
GLOBAL_RNG: Prediction[SeedsParams, Any] = Prediction(
    "data_global_rng",
    SEEDS,
    SeedsParams(modes=("numpy_global",), workers=2, n=6, epochs=1),
    options=("same", "different"),
    answer=lambda parts: "same" if parts[0].same_across_workers[0] else "different",
    question="data_seeds.predict_global_q",
    why="data_seeds.predict_global_why",
)
