"""Workers and throughput: samples/s of a real DataLoader against num_workers, on items with a set cost.

Each item costs `cost_ms` to fetch: asleep (waiting for a disk: the core is free for others) or busy
(decoding: the core is taken). Every run happens in an isolated child process (child.py); the page
runs one cached part per worker count (`sweep="workers"`), under a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.experiment import Experiment, Prediction, RunContext
from core.lessons.data.child import run_isolated
from core.lessons.data.common import COST_KINDS, WORK_PER_SECOND, worker_cap
from core.lessons.data.seeds import CHILD_WORK, WORKER_WORK
from core.params import InvalidParams, Params, bounds, choices, ladder, shape_spec

DEFAULT_WORKERS = tuple(w for w in (0, 1, 2, 4) if w <= worker_cap())


@dataclass(frozen=True)
class WorkersParams(Params):
    workers: tuple[int, ...] = field(default=DEFAULT_WORKERS, metadata=shape_spec(max_dims=6, lo=0, hi=16, sep=","))
    n: int = field(default=32, metadata=bounds(8, 512))  # items per epoch
    batch_size: int = field(default=8, metadata=ladder(1, 64))
    cost_ms: float = field(default=3.0, metadata=bounds(0.0, 20.0, 0.5))  # per item
    cost_kind: str = field(default="compute", metadata=choices(*COST_KINDS))  # the prediction asks about "sleep"
    numel: int = field(default=1024, metadata=ladder(1, 1 << 18))  # float32 values per item
    prefetch_factor: int = field(default=2, metadata=bounds(1, 8))
    pin_memory: bool = False
    persistent_workers: bool = True  # the second epoch then shows the steady rate
    epochs: int = field(default=2, metadata=bounds(1, 4))

    def roles(self) -> dict[str, str]:
        """Return the fields these settings use: prefetch_factor and persistent_workers need a worker."""
        needs_workers = ("prefetch_factor", "persistent_workers")
        return {s.name: s.name for s in self.specs() if s.name not in needs_workers or any(self.workers)}

    def validate(self) -> None:
        """Refuse an empty or unordered list, and more workers than this server lets one run start."""
        super().validate()
        if not self.workers:
            raise InvalidParams("workers", "empty")
        if list(self.workers) != sorted(set(self.workers)):
            raise InvalidParams("workers", "not_increasing")
        if max(self.workers) > worker_cap():
            raise InvalidParams("workers", "too_many_workers", max=worker_cap())

    def estimate_bytes(self) -> int:
        # Batches in flight: prefetch_factor per worker (at least one), each in the worker, in shared memory and here.
        in_flight = max(1, max(self.workers)) * self.prefetch_factor + 2
        return 3 * 4 * self.numel * self.batch_size * in_flight + (1 << 20)

    def estimate_work(self) -> float:
        """Return the wall-time cost in work units: the children, the workers' starts and the items' cost and bytes."""
        total = 0.0
        for w in self.workers:
            starts = 1 if self.persistent_workers else self.epochs
            cost = self.n * self.cost_ms / 1000
            # Sleeping items overlap across workers; busy ones are CPU either way.
            seconds = cost / max(1, w) if self.cost_kind == "sleep" else cost
            total += (
                CHILD_WORK + starts * w * WORKER_WORK + self.epochs * (seconds * WORK_PER_SECOND + 20 * self.n * self.numel)
            )
        return total


@dataclass(frozen=True)
class WorkersResult:
    workers: np.ndarray  # (k,) num_workers of each configuration
    seconds: np.ndarray  # (k, epochs) seconds per epoch (core.measure, synchronised): the first includes starting workers
    samples_per_s: np.ndarray  # (k, epochs)
    samples: int  # per epoch
    batches: int  # per epoch
    checksum: np.ndarray  # (k,) sum over all epochs of every item's first value: the same data arrived
    pinned: np.ndarray  # (k,) bool: the batches came in page-locked memory (pin_memory on a CUDA server)
    cost_kind: str
    cores: int  # CPU cores this server may use
    left_running: int  # worker processes alive after the runs had ended (then killed): 0 when every loader shut down
    worker_pids: tuple[int, ...]
    warnings: tuple[str, ...]  # what torch warned about (too many workers for this machine, pin_memory without a GPU)


def run(p: WorkersParams, ctx: RunContext) -> WorkersResult:
    """Time every epoch of one DataLoader per worker count, each in a fresh isolated child process."""
    from core.runner import available_cpus  # here: the isolated child imports this package without the runner

    seconds, samples, checksum, pinned, pids, warned = [], [], [], [], [], []
    left = 0
    for k, w in enumerate(p.workers):
        ctx.check_deadline()
        job = {
            "device": ctx.device.type,
            "n": p.n,
            "numel": p.numel,
            "cost_ms": p.cost_ms,
            "cost_kind": p.cost_kind,
            "workers": w,
            "batch_size": p.batch_size,
            "prefetch_factor": p.prefetch_factor,
            "persistent_workers": p.persistent_workers,
            "pin_memory": p.pin_memory,
            "epochs": p.epochs,
        }
        result, still = run_isolated("throughput", job, ctx, (k, len(p.workers)))
        seconds.append(result["seconds"])
        samples.append(result["samples"])
        checksum.append(result["checksum"])
        pinned.append(result["pinned"])
        left += still
        pids += result["pids"]
        warned += [w for w in result["warnings"] if w not in warned]
    secs = np.array(seconds, dtype=np.float64)
    counts = np.array(samples, dtype=np.float64)
    return WorkersResult(
        np.array(p.workers, dtype=np.int64),
        secs,
        counts / secs,
        int(counts[0, 0]),
        -(-p.n // p.batch_size),
        np.array(checksum),
        np.array(pinned, dtype=bool),
        p.cost_kind,
        available_cpus(),
        left,
        tuple(pids),
        tuple(warned),
    )


def combine(parts: Sequence[WorkersResult]) -> WorkersResult:
    """Return the page's parts (one worker count each) as one result over all their worker counts."""
    first = parts[0]
    return WorkersResult(
        np.concatenate([r.workers for r in parts]),
        np.concatenate([r.seconds for r in parts]),
        np.concatenate([r.samples_per_s for r in parts]),
        first.samples,
        first.batches,
        np.concatenate([r.checksum for r in parts]),
        np.concatenate([r.pinned for r in parts]),
        first.cost_kind,
        first.cores,
        sum(r.left_running for r in parts),
        tuple(pid for r in parts for pid in r.worker_pids),
        tuple(dict.fromkeys(w for r in parts for w in r.warnings)),
    )


def speedup(r: WorkersResult, w: int) -> float:
    """Return samples/s with w workers over samples/s with none, in the last epoch."""
    rate = dict(zip(r.workers.tolist(), r.samples_per_s[:, -1].tolist(), strict=True))
    return float(rate[w] / rate[0])


def two_workers_answer(parts: Sequence[WorkersResult]) -> str:
    """Return the option nearest the speed-up of 2 workers over none: 1x (below 1.4x), 2x (below 2.8x) or 4x."""
    ratio = speedup(combine(parts), 2)
    return "speedup_1x" if ratio < 1.4 else "speedup_2x" if ratio < 2.8 else "speedup_4x"


def context(p: WorkersParams, device_type: str) -> dict[str, Any]:
    """Return what workers_throughput.py.j2 reads: the settings and the device the batches move to."""
    return {
        "workers": list(p.workers),
        "n": p.n,
        "batch_size": p.batch_size,
        "cost_ms": p.cost_ms,
        "cost_kind": p.cost_kind,
        "numel": p.numel,
        "prefetch_factor": p.prefetch_factor,
        "pin_memory": p.pin_memory,
        "persistent_workers": p.persistent_workers,
        "epochs": p.epochs,
        "device_type": device_type,
    }


def shown(r: WorkersResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints (times differ run to run): the counts and the checksums."""
    out: list[float | str] = []
    for k, w in enumerate(r.workers.tolist()):
        out += [f"num_workers={w}: {r.samples} samples in {r.batches} batches per epoch", float(r.checksum[k])]
    return out


WORKERS = Experiment(
    "data_workers",
    WorkersParams,
    run,
    script="workers_throughput.py.j2",
    context=context,
    exclusive=True,  # it times things, and its worker processes run alone on the host
    sweep="workers",
    shown=shown,
    examples=(WorkersParams(workers=(0, 2), n=16, batch_size=4, cost_ms=1.0, cost_kind="compute", epochs=1),),
)

# Items that wait 20 ms each (a slow disk, the most the control allows), batch_size 8, persistent workers:
# samples/s of 2 workers against 0?
# Long waits and four batches, so that per-batch overheads cannot move the answer on a busy machine: at 10 ms and
# 64 items a starved run under `make test` measured under 1.4x once (the waits are immune to a busy CPU, the
# workers' hand-offs are not).
TWO_WORKERS: Prediction[WorkersParams, Any] = Prediction(
    "data_two_workers",
    WORKERS,
    WorkersParams(workers=(0, 2), n=32, cost_ms=20.0, cost_kind="sleep", persistent_workers=True, epochs=2),
    options=("speedup_1x", "speedup_2x", "speedup_4x"),
    answer=two_workers_answer,
    question="data_workers.predict_q",
    why="data_workers.predict_why",
)
