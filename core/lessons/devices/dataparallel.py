"""nn.DataParallel simulated on one device (scatter, replicate, gather): the mean of replica means is not the batch mean.

The replicas are simulated on one device: DataParallel's replicas are copies of the same parameters,
and its backward sums their gradients into the original, which is what autograd does here when every
chunk goes through the one module. The split, the losses and the gradients are what G GPUs compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.experiment import Experiment, Prediction, RunContext, to_numpy
from core.lessons.devices.common import linear
from core.params import Params, bounds, seed_field

SEEDS_LOSSES = (0.3, 0.2, 0.8)  # the notes' per-sample losses (from the discussion in pytorch issue #9811)
DP_FEATURES, DP_CLASSES = 8, 4  # the tiny model of the seed-generated case: nn.Linear(8, 4)


@dataclass(frozen=True)
class DPParams(Params):
    seeds_example: bool = True  # the notes' losses [0.3, 0.2, 0.8]; off: a real model on a random batch
    batch: int = field(default=3, metadata=bounds(1, 64))  # N, samples in the batch (seed-generated case)
    replicas: int = field(default=2, metadata=bounds(1, 8))  # G, the GPUs DataParallel would use
    seed: int = seed_field()

    def roles(self) -> dict[str, str]:
        """Return the fields this case reads: the notes' example fixes the batch and draws nothing."""
        if self.seeds_example:
            return {"seeds_example": "seeds_example", "replicas": "replicas"}
        return {s.name: s.name for s in self.specs()}

    def n(self) -> int:
        """Return the batch size N of this case."""
        return len(SEEDS_LOSSES) if self.seeds_example else self.batch

    def estimate_bytes(self) -> int:
        """Return a bound on a 64 x 8 batch, a 36-parameter model and their graphs."""
        return 1 << 16

    def estimate_work(self) -> float:
        """Return the multiply-adds: the chunks' and the whole batch's forward, three gradients (about twice each)."""
        return 10.0 * self.n() * DP_FEATURES * DP_CLASSES


@dataclass(frozen=True)
class DPResult:
    seeds_example: bool
    batch: int  # N
    replicas: int  # G asked for
    chunk_sizes: tuple[int, ...]  # samples each replica gets, as DataParallel's scatter splits dim 0; len <= G
    losses: np.ndarray  # (N,) per-sample losses, float64
    replica_means: np.ndarray  # (k,) each replica's mean loss: what a module returning loss.mean() gives
    replica_sums: np.ndarray  # (k,) each replica's summed loss
    mean_of_means: float  # gather the k means, then .mean(): DataParallel + loss.mean() in the loop
    global_mean: float  # the whole batch's mean loss on one device
    weighted_mean: float  # fix 1: sum_i n_i * mean_i / N
    sum_then_divide: float  # fix 2: replicas return sums (or per-sample losses), reduce once: sum / N
    even_split: bool  # every replica got as many samples: then mean_of_means == global_mean
    naive_weights: np.ndarray  # (N,) d mean_of_means / d loss_j = 1 / (k n_i): each sample's weight
    global_weights: np.ndarray  # (N,) d global_mean / d loss_j = 1 / N
    # The model case (empty / None for the notes' example): gradients w.r.t. weight then bias, flattened.
    grad_full: np.ndarray  # (P,) of the global mean on one device
    grad_weighted: np.ndarray  # (P,) of the size-weighted mean of replica means
    grad_naive: np.ndarray  # (P,) of the mean of replica means
    grad_diff_weighted: float | None  # max |grad_weighted - grad_full|: rounding only
    grad_diff_naive: float | None  # max |grad_naive - grad_full|: 0 only for an even split


def scatter_sizes(n: int, replicas: int) -> list[int]:
    """Return the chunk sizes DataParallel's scatter gives a batch of n on `replicas` devices.

    Its scatter calls tensor.chunk(len(devices)) along dim 0: chunks of ceil(n / replicas), the last
    one smaller, and fewer chunks than devices when they run out (n=5 on 4: [2, 2, 1]); DataParallel
    then replicates the module to only as many devices as there are chunks.
    """
    size = math.ceil(n / replicas)
    return [min(size, n - start) for start in range(0, n, size)]


def dp_reductions(chunks: Sequence[torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (mean of replica means, size-weighted mean of replica means, sum of replica sums / n)."""
    means = torch.stack([c.mean() for c in chunks])
    sizes = torch.tensor([c.numel() for c in chunks], dtype=means.dtype, device=means.device)
    sums = torch.stack([c.sum() for c in chunks])
    return means.mean(), (sizes * means).sum() / n, sums.sum() / n


def _grads(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """Return d loss / d params, flattened and concatenated in parameter order."""
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])


def run(p: DPParams, ctx: RunContext) -> DPResult:
    """Return each replica's share and mean loss, the reductions, and (model case) their gradients."""
    n, g, dev = p.n(), ctx.generator, ctx.device
    params: list[nn.Parameter] = []
    if p.seeds_example:
        losses = torch.tensor(SEEDS_LOSSES, dtype=torch.float64, device=dev)
        chunks = list(losses.chunk(p.replicas))  # the scatter
        full = losses.mean()  # one device, the whole batch
    else:
        # float64 so that the fixes agree with one device to rounding (1e-17), not to float32 noise.
        net = linear(DP_FEATURES, DP_CLASSES, g, dev, torch.float64)
        X = torch.randn(n, DP_FEATURES, generator=g, device=dev, dtype=torch.float64)
        y = torch.randint(0, DP_CLASSES, (n,), generator=g, device=dev)
        # Each replica computes the per-sample losses of its chunk; DataParallel scatters X and y alike.
        pairs = zip(X.chunk(p.replicas), y.chunk(p.replicas), strict=True)
        chunks = [F.cross_entropy(net(Xi), yi, reduction="none") for Xi, yi in pairs]
        losses = torch.cat(chunks)  # what gathering per-sample losses would give
        params = list(net.parameters())
        full = F.cross_entropy(net(X), y)  # one device, the whole batch
    naive, weighted, divided = dp_reductions(chunks, n)
    grads: tuple[np.ndarray, ...] = (np.zeros(0),) * 3
    if params:
        grads = tuple(to_numpy(_grads(loss, params), float64=True) for loss in (full, weighted, naive))
    # Each sample's weight in a reduction is its derivative w.r.t. that sample's loss.
    leaf = losses.detach().clone().requires_grad_()
    naive_weights = torch.autograd.grad(dp_reductions(leaf.chunk(p.replicas), n)[0], leaf)[0]
    sizes = tuple(c.numel() for c in chunks)
    full_g, weighted_g, naive_g = grads
    return DPResult(
        seeds_example=p.seeds_example,
        batch=n,
        replicas=p.replicas,
        chunk_sizes=sizes,
        losses=to_numpy(losses, float64=True),
        replica_means=to_numpy(torch.stack([c.mean() for c in chunks]), float64=True),
        replica_sums=to_numpy(torch.stack([c.sum() for c in chunks]), float64=True),
        mean_of_means=float(naive.item()),
        global_mean=float(full.item()),
        weighted_mean=float(weighted.item()),
        sum_then_divide=float(divided.item()),
        even_split=len(set(sizes)) == 1,
        naive_weights=to_numpy(naive_weights, float64=True),
        global_weights=np.full(n, 1 / n),
        grad_full=full_g,
        grad_weighted=weighted_g,
        grad_naive=naive_g,
        grad_diff_weighted=float(np.abs(weighted_g - full_g).max()) if params else None,
        grad_diff_naive=float(np.abs(naive_g - full_g).max()) if params else None,
    )


def context(p: DPParams, device_type: str) -> Mapping[str, Any]:
    """Return the values the script template reads."""
    return {
        "seeds_example": p.seeds_example,
        "seeds_losses": list(SEEDS_LOSSES),
        "n": p.n(),
        "replicas": p.replicas,
        "seed": p.seed,
        "features": DP_FEATURES,
        "classes": DP_CLASSES,
    }


def shown(r: DPResult) -> Sequence[float | str]:
    """Return what the page shows that the script prints: the split, the losses, every reduction and weight."""
    out: list[float | str] = [f"chunk sizes: {list(r.chunk_sizes)}"]
    out += [*r.losses.tolist(), *r.replica_means.tolist(), *r.naive_weights.tolist()]
    out += [r.mean_of_means, r.global_mean, r.weighted_mean, r.sum_then_divide]
    if r.grad_diff_naive is not None:
        out.append(r.grad_diff_naive)
    return out


DATAPARALLEL = Experiment(
    "dataparallel",
    DPParams,
    run,
    script="devices_dataparallel.py.j2",
    context=context,
    shown=shown,
    examples=(
        DPParams(replicas=3),
        DPParams(seeds_example=False, batch=5, replicas=4),
        DPParams(seeds_example=False, batch=7, replicas=2, seed=3),
    ),
)


def mean_of_means_answer(r: DPResult) -> str:
    """Return "batch_mean" when the mean of replica means is the one-device batch mean (to rounding), else "not_batch_mean"."""
    return "batch_mean" if math.isclose(r.mean_of_means, r.global_mean, rel_tol=1e-9) else "not_batch_mean"


# The page shows the notes' 3 losses on 2 GPUs (0.525 against 0.433, and the prose adds 3 GPUs); the question
# asks about a random batch of 6 on 4 GPUs, which does not divide evenly, yet chunk(4) cuts it 2, 2, 2.
MEAN_OF_MEANS = Prediction(
    "mean_of_means_6_on_4",
    DATAPARALLEL,
    DPParams(seeds_example=False, batch=6, replicas=4),
    options=("batch_mean", "not_batch_mean"),
    answer=mean_of_means_answer,
    question="dataparallel.predict_q",
    why="dataparallel.predict_why",
)
GPUS_USED = Prediction(
    "gpus_used",
    DATAPARALLEL,
    DPParams(seeds_example=False, batch=5, replicas=4),
    options=("2", "3", "4", "5"),
    answer=lambda r: str(len(r.chunk_sizes)),
    question="dataparallel.predict_gpus_q",
    why="dataparallel.predict_gpus_why",
)
