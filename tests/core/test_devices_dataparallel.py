"""DataParallel by simulation against the notes' numbers, tensor.chunk, and gradients computed here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.lessons.devices import dataparallel as devices_dataparallel
from core.lessons.devices.dataparallel import DATAPARALLEL, DPParams, DPResult, scatter_sizes
from core.runner import execute
from tests.params_strategies import query_id

CPU = torch.device("cpu")
CUDA_AVAILABLE = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs CUDA")


def run(p: DPParams) -> DPResult:
    """Run the experiment through the runner on the CPU."""
    return execute(DATAPARALLEL.run, p, device=CPU)


def test_the_notes_example_on_two_gpus() -> None:
    r = run(DPParams())
    assert (r.batch, r.replicas, r.chunk_sizes) == (3, 2, (2, 1))
    assert r.losses.tolist() == [0.3, 0.2, 0.8]
    assert r.replica_means.tolist() == pytest.approx([0.25, 0.8], abs=1e-15)
    assert r.mean_of_means == pytest.approx(0.525, abs=1e-15)
    assert r.global_mean == pytest.approx(0.43333333333333335, abs=1e-15)
    assert round(r.global_mean, 2) == 0.43
    # Both fixes give the batch mean back.
    assert r.weighted_mean == pytest.approx(r.global_mean, abs=1e-15)
    assert r.sum_then_divide == pytest.approx(r.global_mean, abs=1e-15)
    assert not r.even_split
    # The two samples on the first GPU count a quarter each, the lone one on the second a half.
    assert r.naive_weights.tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert r.global_weights.tolist() == pytest.approx([1 / 3] * 3)
    assert r.grad_full.size == 0 and r.grad_diff_weighted is None and r.grad_diff_naive is None


@pytest.mark.parametrize("replicas", [1, 3, 4, 8])
def test_the_notes_example_is_back_to_the_global_mean_when_every_gpu_gets_as_many(replicas: int) -> None:
    r = run(DPParams(replicas=replicas))
    # One GPU: one chunk of 3. Three or more: chunks of 1, and only three replicas run.
    assert r.chunk_sizes == ((3,) if replicas == 1 else (1, 1, 1))
    assert r.even_split
    assert r.mean_of_means == pytest.approx(r.global_mean, abs=1e-15)
    assert r.mean_of_means == pytest.approx(0.4333333333333333, abs=1e-15)


def test_the_mean_of_means_prediction_asks_about_a_batch_the_page_does_not_show_by_default() -> None:
    mean_of_means = devices_dataparallel.MEAN_OF_MEANS
    p = mean_of_means.params
    assert (p.seeds_example, p.batch, p.replicas) == (False, 6, 4) and p.n() % p.replicas != 0
    for seed in (0, 1, 2):
        r = run(dataclasses.replace(p, seed=seed))
        # chunk(4) of 6 samples gives three chunks of 2: even although 4 does not divide 6, so the mean is right.
        assert r.chunk_sizes == (2, 2, 2) and r.even_split
        assert mean_of_means.answer(r) == "batch_mean"
    # The default's uneven split (the notes' 0.525 against 0.433) answers the other way.
    assert mean_of_means.answer(run(DPParams())) == "not_batch_mean"


def test_the_gpus_used_prediction() -> None:
    gpus_used = devices_dataparallel.GPUS_USED
    assert gpus_used.answer(run(gpus_used.params)) == "3"  # 5 samples on 4 GPUs: chunks of 2, 2 and 1


def chunk_sizes_here(n: int, replicas: int) -> list[int]:
    """Return what tensor.chunk(replicas) gives: pieces of ceil(n / replicas) until the batch runs out."""
    size = -(-n // replicas)
    sizes, left = [], n
    while left > 0:
        sizes.append(min(size, left))
        left -= size
    return sizes


def test_scatter_splits_as_tensor_chunk_does() -> None:
    for n in range(1, 21):
        for replicas in range(1, 9):
            expected = [len(c) for c in torch.arange(n).chunk(replicas)]
            assert chunk_sizes_here(n, replicas) == expected == scatter_sizes(n, replicas), (n, replicas)
            assert len(expected) <= replicas and sum(expected) == n
    assert scatter_sizes(5, 4) == [2, 2, 1]  # fewer replicas than GPUs
    assert scatter_sizes(6, 4) == [2, 2, 2]  # an even split although 4 does not divide 6
    assert scatter_sizes(2, 3) == [1, 1]


@pytest.mark.parametrize(("n", "replicas"), [(1, 1), (5, 4), (6, 4), (7, 3), (2, 3), (13, 8), (64, 8)])
def test_run_scatters_the_model_batch_as_dataparallel(n: int, replicas: int) -> None:
    r = run(DPParams(seeds_example=False, batch=n, replicas=replicas))
    assert list(r.chunk_sizes) == chunk_sizes_here(n, replicas)
    assert r.even_split == (len(set(r.chunk_sizes)) == 1)


def test_dataparallel_without_gpus_calls_the_module_and_prefixes_its_keys() -> None:
    module = nn.Linear(3, 2)
    wrapper = nn.DataParallel(module)
    assert list(wrapper.state_dict()) == ["module.weight", "module.bias"]
    if not CUDA_AVAILABLE:
        assert wrapper.device_ids == []
        x = torch.randn(4, 3)
        assert torch.equal(wrapper(x), module(x))


def reference_dp(p: DPParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return per-sample losses, the gradients of the batch mean and of the mean of chunk means, made here.

    The model and batch are drawn as the lesson says: weight N(0, 1/8) then zero bias, X ~ N(0, 1), y uniform
    over 4 classes, all float64 from one generator seeded with p.seed, in that order.
    """
    g = torch.Generator().manual_seed(p.seed)
    W = torch.empty(4, 8, dtype=torch.float64).normal_(0.0, 1 / math.sqrt(8), generator=g).requires_grad_()
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    X = torch.randn(p.batch, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (p.batch,), generator=g)
    losses = F.cross_entropy(X @ W.T + b, y, reduction="none")
    full = torch.cat([t.flatten() for t in torch.autograd.grad(losses.mean(), [W, b], retain_graph=True)])
    # The mean of chunk means weighs sample j by 1 / (k * n_i), its chunk's size n_i, k chunks.
    sizes = chunk_sizes_here(p.batch, p.replicas)
    weights = torch.cat([torch.full((n,), 1 / (len(sizes) * n), dtype=torch.float64) for n in sizes])
    naive = torch.cat([t.flatten() for t in torch.autograd.grad((weights * losses).sum(), [W, b])])
    return losses.detach(), full, naive, weights


@pytest.mark.parametrize(
    "p",
    [
        DPParams(seeds_example=False, batch=5, replicas=4),
        DPParams(seeds_example=False, batch=7, replicas=2, seed=3),
        DPParams(seeds_example=False, batch=50, replicas=8, seed=9),
    ],
    ids=query_id,
)
def test_the_size_weighted_fix_has_the_full_batch_gradient(p: DPParams) -> None:
    r = run(p)
    losses, full, naive, weights = reference_dp(p)
    assert r.losses == pytest.approx(losses.numpy(), rel=1e-12)
    assert r.global_mean == pytest.approx(losses.mean().item(), rel=1e-12)
    assert r.weighted_mean == pytest.approx(r.global_mean, rel=1e-12)
    assert r.sum_then_divide == pytest.approx(r.global_mean, rel=1e-12)
    assert r.mean_of_means == pytest.approx((weights * losses).sum().item(), rel=1e-12)
    assert r.naive_weights == pytest.approx(weights.numpy(), rel=1e-12)
    assert r.grad_full.shape == r.grad_weighted.shape == r.grad_naive.shape == (4 * 8 + 4,)
    assert r.grad_full == pytest.approx(full.numpy(), rel=1e-10, abs=1e-14)
    assert r.grad_weighted == pytest.approx(full.numpy(), rel=1e-10, abs=1e-14)
    assert r.grad_naive == pytest.approx(naive.numpy(), rel=1e-10, abs=1e-14)
    assert r.grad_diff_weighted is not None and r.grad_diff_weighted < 1e-14
    assert r.grad_diff_naive == pytest.approx((naive - full).abs().max().item(), rel=1e-6, abs=1e-15)
    assert r.grad_diff_naive > 1e-3  # these batches split unevenly
    assert not r.even_split


def test_an_even_split_makes_the_mean_of_means_right() -> None:
    r = run(DPParams(seeds_example=False, batch=6, replicas=4))
    assert r.chunk_sizes == (2, 2, 2) and r.even_split
    assert r.mean_of_means == pytest.approx(r.global_mean, rel=1e-12)
    assert r.grad_diff_naive is not None and r.grad_diff_naive < 1e-14


def test_dp_roles_hide_what_the_notes_example_does_not_read() -> None:
    assert set(DPParams().roles()) == {"seeds_example", "replicas"}
    assert set(DPParams(seeds_example=False).roles()) == {"seeds_example", "batch", "replicas", "seed"}


def test_the_seed_changes_the_model_case_only() -> None:
    a = run(DPParams(seeds_example=False, batch=5, seed=1))
    b = run(DPParams(seeds_example=False, batch=5, seed=2))
    assert not np.array_equal(a.losses, b.losses)
    assert np.array_equal(run(DPParams(seed=1)).losses, run(DPParams(seed=2)).losses)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("n", "replicas"), [(3, 2), (5, 4), (6, 4), (2, 3), (7, 3)])
def test_scatter_sizes_match_dataparallels_own_scatter(n: int, replicas: int) -> None:
    from torch.nn.parallel.scatter_gather import scatter

    # DataParallel's scatter onto device 0 several times over splits the batch as it would over that many GPUs.
    chunks = scatter(torch.arange(n, device="cuda:0"), [0] * replicas)
    assert [len(c) for c in chunks] == scatter_sizes(n, replicas)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_real_dataparallel_gathers_the_replica_means() -> None:
    replicas = min(torch.cuda.device_count(), 3)

    class MeanLoss(nn.Module):
        def forward(self, losses: torch.Tensor) -> torch.Tensor:
            return losses.mean()

    r = run(DPParams(replicas=replicas))
    dp = nn.DataParallel(MeanLoss(), device_ids=list(range(replicas)))
    gathered = dp(torch.tensor([0.3, 0.2, 0.8], dtype=torch.float64, device="cuda:0"))
    assert gathered.cpu().numpy() == pytest.approx(r.replica_means, abs=1e-15)
