"""The Devices lesson against the notes' numbers, torch itself, or a computation written here, in the test."""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from core import devices as D
from core.devices import CkptParams, DPParams, FactsParams, PipeParams
from core.params import InvalidParams, Params
from core.runner import cpu_model, execute
from tests.params_strategies import any_params, assert_same, assert_same_from_threads, check_runs_or_refused, query_id
from tests.scripts import Ran, after, run_scripts

CPU = torch.device("cpu")
CUDA_AVAILABLE = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs CUDA")
QUICK = 0.01  # the least min_run_time: timings are printed, never compared


def run(run_fn: Callable[[Any, Any], Any], params: Params, device: torch.device = CPU) -> Any:
    """Run an experiment through the runner (on the CPU unless told)."""
    return execute(run_fn, params, device=device)


# --------------------------------------------------------------------------------------------
# 1. facts


def test_facts_on_the_cpu() -> None:
    r = run(D.run_facts, FactsParams(size_mb=1, min_run_time=QUICK))
    assert (r.numel, r.nbytes) == (2**18, 2**20)
    assert r.device == "cpu" and r.cpu_model == cpu_model() and r.cores == (os.cpu_count() or 1)
    assert r.torch_version == torch.__version__ and r.cuda_available == CUDA_AVAILABLE
    assert r.cuda_version == torch.version.cuda
    assert r.threads == torch.get_num_threads()
    # .to on a tensor already there returns the tensor itself; a dtype change and clone() copy.
    assert r.same_object and r.same_data_ptr
    assert not r.to_cpu.copies and r.to_cpu.gbps is None
    for part in (r.to_float64, r.clone):
        assert part.copies and part.seconds > 0
        assert part.gbps == pytest.approx(r.nbytes / part.seconds / 1e9)
    assert [r.to_cpu.call, r.to_float64.call, r.clone.call] == ['x.to("cpu")', "x.to(torch.float64)", "x.clone()"]
    for name in D.FactsResult.gpu_only:
        assert getattr(r, name) is None, name
    if not CUDA_AVAILABLE:
        assert r.gpus == ()


def test_gpu_only_names_the_optional_parts() -> None:
    hints = {f.name: str(f.type) for f in dataclasses.fields(D.FactsResult)}
    optional = {name for name, kind in hints.items() if kind.endswith("| None")}
    # cuda_version is None in a CPU build of torch, whatever the device: a fact, not a measurement.
    assert set(D.FactsResult.gpu_only) == optional - {"cuda_version"}


def test_identity_of_to_is_what_torch_does() -> None:
    x = torch.ones(4)
    assert x.to("cpu") is x and x.to(torch.float32) is x
    assert x.to(torch.float64).data_ptr() != x.data_ptr() and x.clone().data_ptr() != x.data_ptr()


@pytest.mark.gpu
@needs_cuda
def test_facts_on_cuda() -> None:
    r = run(D.run_facts, FactsParams(size_mb=4, min_run_time=QUICK), torch.device("cuda"))
    assert r.device == "cuda" and r.cuda_available
    for name in ("to_cuda", "dot_cuda", "pinned_to_cuda", "back_to_cpu"):
        part = getattr(r, name)
        assert part is not None and part.copies and part.gbps is not None and part.gbps > 0, name
    assert r.cuda_same_object is True
    assert len(r.gpus) == torch.cuda.device_count()
    for gpu in r.gpus:
        props = torch.cuda.get_device_properties(gpu.index)
        assert (gpu.name, gpu.total_memory, gpu.capability) == (props.name, props.total_memory, (props.major, props.minor))
        assert gpu.multiprocessors == props.multi_processor_count


# --------------------------------------------------------------------------------------------
# 2. dataparallel: the notes' numbers, DataParallel's scatter, and the fixes


def test_the_notes_example_on_two_gpus() -> None:
    r = run(D.run_dataparallel, DPParams())
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
    r = run(D.run_dataparallel, DPParams(replicas=replicas))
    # One GPU: one chunk of 3. Three or more: chunks of 1, and only three replicas run.
    assert r.chunk_sizes == ((3,) if replicas == 1 else (1, 1, 1))
    assert r.even_split
    assert r.mean_of_means == pytest.approx(r.global_mean, abs=1e-15)
    assert r.mean_of_means == pytest.approx(0.4333333333333333, abs=1e-15)


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
            assert chunk_sizes_here(n, replicas) == expected == D.scatter_sizes(n, replicas), (n, replicas)
            assert len(expected) <= replicas and sum(expected) == n
    assert D.scatter_sizes(5, 4) == [2, 2, 1]  # fewer replicas than GPUs
    assert D.scatter_sizes(6, 4) == [2, 2, 2]  # an even split although 4 does not divide 6
    assert D.scatter_sizes(2, 3) == [1, 1]


@pytest.mark.parametrize(("n", "replicas"), [(1, 1), (5, 4), (6, 4), (7, 3), (2, 3), (13, 8), (64, 8)])
def test_run_scatters_the_model_batch_as_dataparallel(n: int, replicas: int) -> None:
    r = run(D.run_dataparallel, DPParams(seeds_example=False, batch=n, replicas=replicas))
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
    [DPParams(seeds_example=False, batch=5, replicas=4), DPParams(seeds_example=False, batch=7, replicas=2, seed=3),
     DPParams(seeds_example=False, batch=50, replicas=8, seed=9)],
    ids=query_id,
)  # fmt: skip
def test_the_size_weighted_fix_has_the_full_batch_gradient(p: DPParams) -> None:
    r = run(D.run_dataparallel, p)
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
    r = run(D.run_dataparallel, DPParams(seeds_example=False, batch=6, replicas=4))
    assert r.chunk_sizes == (2, 2, 2) and r.even_split
    assert r.mean_of_means == pytest.approx(r.global_mean, rel=1e-12)
    assert r.grad_diff_naive is not None and r.grad_diff_naive < 1e-14


def test_dp_roles_hide_what_the_notes_example_does_not_read() -> None:
    assert set(DPParams().roles()) == {"seeds_example", "replicas"}
    assert set(DPParams(seeds_example=False).roles()) == {"seeds_example", "batch", "replicas", "seed"}


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("n", "replicas"), [(3, 2), (5, 4), (6, 4), (2, 3), (7, 3)])
def test_scatter_sizes_match_dataparallels_own_scatter(n: int, replicas: int) -> None:
    from torch.nn.parallel.scatter_gather import scatter

    # DataParallel's scatter onto device 0 several times over splits the batch as it would over that many GPUs.
    chunks = scatter(torch.arange(n, device="cuda:0"), [0] * replicas)
    assert [len(c) for c in chunks] == D.scatter_sizes(n, replicas)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_real_dataparallel_gathers_the_replica_means() -> None:
    replicas = min(torch.cuda.device_count(), 3)

    class MeanLoss(nn.Module):
        def forward(self, losses: torch.Tensor) -> torch.Tensor:
            return losses.mean()

    r = run(D.run_dataparallel, DPParams(replicas=replicas))
    dp = nn.DataParallel(MeanLoss(), device_ids=list(range(replicas)))
    gathered = dp(torch.tensor([0.3, 0.2, 0.8], dtype=torch.float64, device="cuda:0"))
    assert gathered.cpu().numpy() == pytest.approx(r.replica_means, abs=1e-15)


# --------------------------------------------------------------------------------------------
# 3. pipeline: the timing model on synthetic stage times


def test_split_sizes_are_tensor_split() -> None:
    for batch in range(1, 41):
        for split in range(1, 46):
            sizes = D.split_sizes(batch, split)
            assert sizes == [len(c) for c in torch.split(torch.arange(batch), split)], (batch, split)
            assert len(sizes) == math.ceil(batch / split)


@pytest.mark.parametrize(
    ("t1", "c", "t2"), [(1.0, 0.0, 1.0), (3.0, 0.0, 1.0), (1.0, 0.0, 2.5), (1.0, 4.0, 2.0), (2.0, 0.5, 1.0)]
)
def test_equal_chunks_follow_the_two_stage_formula(t1: float, c: float, t2: float) -> None:
    for m in range(1, 12):
        total = D.pipeline_time([7] * m, lambda n: t1, lambda n: t2, lambda n: c)
        assert total == pytest.approx(D.equal_chunks_time(t1, c, t2, m))
        assert total == pytest.approx(t1 + c + t2 + (m - 1) * max(t1, c, t2))
        if c == 0:
            assert total == pytest.approx(t1 + (m - 1) * max(t1, t2) + t2)  # the classic two-stage schedule


def test_uneven_last_chunk_by_hand() -> None:
    sizes = D.split_sizes(10, 4)
    assert sizes == [4, 4, 2]
    # Stage 1 takes n, stage 2 takes 2n. Device 2 finishes chunk 1 at 4 + 8, chunk 2 at max(8, 12) + 8,
    # chunk 3 at max(10, 20) + 4.
    assert D.pipeline_time(sizes, float, lambda n: 2.0 * n, lambda n: 0.0) == 24.0
    # A link taking n / 2 per chunk: arrivals at 6, 10, 11; device 2 done at 14, 22, 26.
    assert D.pipeline_time(sizes, float, lambda n: 2.0 * n, lambda n: n / 2) == 26.0


def test_overhead_plus_linear_cost_gives_a_u_shaped_curve() -> None:
    batch, overhead, per_sample = 512, 50.0, 1.0
    splits = D.candidate_splits(batch, 32)
    assert splits == [2**k for k in range(10)]
    t = {n: overhead + per_sample * n for n in D.sizes_to_measure(batch, splits)}
    curve = D.pipeline_curve(batch, splits, t, t, lambda n: 0.0)
    assert curve.chunks.tolist() == [batch // s for s in splits]
    # m equal chunks and equal stages: (m + 1) * T(s), worked out here.
    expected = [(batch // s + 1) * (overhead + per_sample * s) for s in splits]
    assert curve.total_s == pytest.approx(expected)
    best = int(np.argmin(curve.total_s))
    assert splits[best] == 128  # sqrt(512 * 50) = 160 lies between 128 and 256; 128 gives 5 * 178 < 3 * 306
    assert 0 < best < len(splits) - 1
    assert np.all(np.diff(curve.total_s[: best + 1]) < 0) and np.all(np.diff(curve.total_s[best:]) > 0)
    # One chunk is no pipelining: the stages one after the other, one device always idle.
    assert curve.total_s[-1] == 2 * t[batch] and curve.utilisation[-1] == pytest.approx(0.5)


def test_candidates_and_remainders() -> None:
    assert D.candidate_splits(100, 30) == [1, 2, 4, 8, 16, 30, 32, 64, 100]
    assert D.candidate_splits(100, 400) == [1, 2, 4, 8, 16, 32, 64, 100]  # a split above the batch is one chunk
    assert D.candidate_splits(1, 1) == [1]
    assert D.sizes_to_measure(100, [30, 64]) == [10, 30, 36, 64]
    assert D.transfer_seconds(512, 256, 16.0) == pytest.approx(512 * 256 * 4 / 16e9)


def test_pipeline_run_is_its_model_applied_to_its_measurements() -> None:
    p = PipeParams(batch=12, split_size=5, width=16, transfer_gbps=0.5, min_run_time=QUICK)
    r = run(D.run_pipeline, p)
    splits = D.candidate_splits(12, 5)
    assert r.splits.tolist() == splits and r.chunks.tolist() == [math.ceil(12 / s) for s in splits]
    assert r.measured_sizes.tolist() == D.sizes_to_measure(12, splits)
    assert np.all(r.stage1_s > 0) and np.all(r.stage2_s > 0)
    t1 = dict(zip(r.measured_sizes.tolist(), r.stage1_s.tolist(), strict=True))
    t2 = dict(zip(r.measured_sizes.tolist(), r.stage2_s.tolist(), strict=True))

    def link(n: int) -> float:
        return n * 16 * 4 / 0.5e9

    curve = D.pipeline_curve(12, splits, t1, t2, link)
    assert r.total_s.tolist() == curve.total_s.tolist() and r.utilisation.tolist() == curve.utilisation.tolist()
    assert r.split_size == 5 and r.chosen_total_s == r.total_s[splits.index(5)]
    assert r.best_total_s == r.total_s.min() and r.best_split == splits[int(np.argmin(r.total_s))]
    assert r.no_pipeline_s == pytest.approx(t1[12] + link(12) + t2[12]) and r.no_pipeline_s == pytest.approx(r.total_s[-1])
    assert r.single_device_s == t1[12] + t2[12]
    assert r.overhead_s == (t1[1], t2[1])
    assert r.per_sample_s == ((t1[12] - t1[1]) / 11, (t2[12] - t2[1]) / 11)


# --------------------------------------------------------------------------------------------
# 4. checkpoint: the "module." prefix as torch reports it


VALID_CKPT = [
    CkptParams(wrap=wrap, strip=strip, map_location=where)
    for wrap in (True, False)
    for strip in D.STRIPS
    for where in ("cpu", "same")
    if wrap or strip != "save_module"
]


def torch_report(saved_prefixed: bool, receiver_wrapped: bool) -> tuple[list[str], list[str], list[str]]:
    """Return (keys given, missing, unexpected) of loading such a state_dict, asked of torch here."""

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    source = model()
    state = (nn.DataParallel(source) if saved_prefixed else source).state_dict()
    receiver = nn.DataParallel(model()) if receiver_wrapped else model()
    report = receiver.load_state_dict(state, strict=False)
    return list(state), report.missing_keys, report.unexpected_keys


@pytest.mark.parametrize("p", VALID_CKPT, ids=query_id)
def test_checkpoint_keys_and_load_report_are_torchs(p: CkptParams) -> None:
    r = run(D.run_checkpoint, p)
    saved_prefixed = p.wrap and p.strip != "save_module"
    given_prefixed = saved_prefixed and p.strip != "consume_prefix"
    receiver_wrapped = p.strip == "load_into_module"
    saved_keys, _, _ = torch_report(saved_prefixed, False)
    given_keys, missing, unexpected = torch_report(given_prefixed, receiver_wrapped)
    assert list(r.saved_keys) == saved_keys and list(r.fixed_keys) == given_keys
    assert (list(r.missing_keys), list(r.unexpected_keys)) == (missing, unexpected)
    assert r.model_keys == tuple(k.removeprefix("module.") for k in saved_keys)
    assert r.target_keys == tuple(("module." if receiver_wrapped else "") + k for k in r.model_keys)
    clean = given_prefixed == receiver_wrapped
    assert (r.strict_error is None) == clean and r.all_equal == clean and all(r.equal_per_key) == clean
    if not clean:
        assert r.strict_error is not None and "Missing key(s) in state_dict" in r.strict_error
        # What the load did not reach keeps the new model's own random values.
        assert not any(r.equal_per_key)
    assert r.saved_call == ("model.module.state_dict()" if p.strip == "save_module" else "model.state_dict()")
    assert r.saved_shapes == ((8, 6), (8,), (8,), (8,), (8,), (8,), (), (3, 8), (3,))
    if not CUDA_AVAILABLE:
        assert set(r.saved_devices) == set(r.loaded_devices) == {"cpu"}
        assert r.dp_device_ids == ()
    assert r.wrapper_matches is (True if p.wrap else None)


def test_batchnorm_does_not_report_its_missing_counter() -> None:
    # torch fills in a missing num_batches_tracked (old checkpoints lack it), so it is never "missing".
    r = run(D.run_checkpoint, CkptParams())
    assert "1.num_batches_tracked" not in r.missing_keys and "module.1.num_batches_tracked" in r.unexpected_keys
    assert len(r.missing_keys) == len(r.unexpected_keys) - 1


def test_checkpoint_file_size_is_torch_saves() -> None:
    for wrap in (True, False):
        source: nn.Module = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        buffer = io.BytesIO()
        torch.save((nn.DataParallel(source) if wrap else source).state_dict(), buffer)
        r = run(D.run_checkpoint, CkptParams(wrap=wrap))
        if not CUDA_AVAILABLE:
            assert r.file_bytes == buffer.getbuffer().nbytes
        assert r.file_bytes > 4 * (8 * 6 + 8 * 5 + 3 * 8 + 3)  # more than the float32 numbers: names, pickle, zip


def test_save_module_needs_a_wrapped_model() -> None:
    with pytest.raises(InvalidParams) as e:
        CkptParams(wrap=False, strip="save_module").validate()
    assert (e.value.field, e.value.key) == ("strip", "needs_wrap")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("where", ["cpu", "same"])
def test_saved_on_the_gpu_loaded_where_map_location_says(where: str) -> None:
    r = run(D.run_checkpoint, CkptParams(map_location=where, strip="consume_prefix"), torch.device("cuda"))
    assert all(d.startswith("cuda") for d in r.saved_devices)
    assert all(d == "cpu" for d in r.loaded_devices) if where == "cpu" else r.loaded_devices == r.saved_devices
    assert r.all_equal and r.wrapper_matches


# --------------------------------------------------------------------------------------------
# Registry and determinism


def test_registry_names_every_experiment() -> None:
    assert list(D.EXPERIMENTS) == ["facts", "dataparallel", "pipeline", "checkpoint"]
    for exp in D.EXPERIMENTS.values():
        exp.params().validate()
        assert "import torch" in exp.code(exp.params())


DETERMINISM_CASES: list[tuple[Callable[[Any, Any], Any], Params]] = [
    (D.run_dataparallel, DPParams()),
    (D.run_dataparallel, DPParams(seeds_example=False, batch=9, replicas=4, seed=5)),
    (D.run_checkpoint, CkptParams()),
    (D.run_checkpoint, CkptParams(strip="consume_prefix", seed=2)),
]


@pytest.mark.parametrize(("run_fn", "p"), DETERMINISM_CASES, ids=[query_id(p) for _, p in DETERMINISM_CASES])
def test_same_params_same_result(run_fn: Callable[[Any, Any], Any], p: Params) -> None:
    assert_same(run(run_fn, p), run(run_fn, p))


def test_same_results_from_eight_threads_at_once() -> None:
    assert_same_from_threads(DETERMINISM_CASES)


def test_the_seed_changes_the_random_experiments() -> None:
    a = run(D.run_dataparallel, DPParams(seeds_example=False, batch=5, seed=1))
    b = run(D.run_dataparallel, DPParams(seeds_example=False, batch=5, seed=2))
    assert not np.array_equal(a.losses, b.losses)
    assert run(D.run_checkpoint, CkptParams(seed=1)).strict_error == run(D.run_checkpoint, CkptParams(seed=2)).strict_error


# --------------------------------------------------------------------------------------------
# Property: every input runs or is refused cleanly


PARAMS_CLASSES = [FactsParams, DPParams, PipeParams, CkptParams]
RESULT_TYPES = {FactsParams: D.FactsResult, DPParams: D.DPResult, PipeParams: D.PipeResult, CkptParams: D.CkptResult}
# Timing runs are drawn small and quick; 256 MiB for facts is over the default budget.
SMALL: dict[str, st.SearchStrategy[Any]] = {
    "FactsParams.size_mb": st.one_of(st.integers(1, 2), st.just(256)),
    "FactsParams.min_run_time": st.just(QUICK),
    "PipeParams.batch": st.integers(1, 4),
    "PipeParams.split_size": st.one_of(st.integers(1, 5), st.just(512)),
    "PipeParams.width": st.integers(16, 24),
    "PipeParams.min_run_time": st.just(QUICK),
}


def test_every_params_class_is_covered() -> None:
    assert {e.params for e in D.EXPERIMENTS.values()} == set(PARAMS_CLASSES) == set(RESULT_TYPES)


@pytest.mark.parametrize("cls", PARAMS_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_run_or_are_refused(cls: type[Params], data: st.DataObject) -> None:
    run_fn = D.EXPERIMENTS[next(k for k, e in D.EXPERIMENTS.items() if e.params is cls)].run
    check_runs_or_refused(run_fn, data.draw(any_params(cls, overrides=SMALL)), RESULT_TYPES[cls], "needed_mb")


# --------------------------------------------------------------------------------------------
# Every generated script runs on its own and prints what the result holds


def listed(out: str, prefix: str) -> Any:
    """Return the Python literal printed after prefix."""
    return ast.literal_eval(after(out, prefix))


def check_facts(p: FactsParams, r: D.FactsResult, out: str) -> None:
    assert after(out, "numel") == f"{r.numel} bytes {r.nbytes}"
    assert after(out, "x.to('cpu') is x:") == "True same data_ptr: True"
    assert after(out, "x.to(torch.float64) copies:") == "True" and after(out, "x.clone() copies:") == "True"
    assert after(out, "cuda available").startswith(str(r.cuda_available))
    assert "nothing copied" in after(out, "x.to('cpu'):")
    assert ("x.to('cuda'):" in out) == CUDA_AVAILABLE


def check_dataparallel(p: DPParams, r: D.DPResult, out: str) -> None:
    assert tuple(listed(out, "chunk sizes:")) == r.chunk_sizes
    assert listed(out, "per-sample losses:") == pytest.approx(r.losses.tolist(), rel=1e-12)
    assert listed(out, "replica means:") == pytest.approx(r.replica_means.tolist(), rel=1e-12)
    for prefix, value in [("mean of replica means:", r.mean_of_means), ("global mean:", r.global_mean),
                          ("size-weighted mean:", r.weighted_mean), ("sum of sums / N:", r.sum_then_divide)]:  # fmt: skip
        assert float(after(out, prefix)) == pytest.approx(value, rel=1e-12), prefix
    weights = after(out, "each sample's weight in the mean of means:").split(" instead of")[0]
    assert ast.literal_eval(weights) == pytest.approx(r.naive_weights.tolist(), rel=1e-12)
    if p.seeds_example:
        assert "grad diff" not in out
    else:
        assert r.grad_diff_weighted is not None and r.grad_diff_naive is not None
        assert float(after(out, "max |grad diff| size-weighted vs one device:")) < 1e-14
        naive = float(after(out, "max |grad diff| mean of means vs one device:"))
        assert naive == pytest.approx(r.grad_diff_naive, rel=1e-9)


def check_pipeline(p: PipeParams, r: D.PipeResult, out: str) -> None:
    for n in r.measured_sizes.tolist():
        assert after(out, f"measured chunk {n}:").startswith("stage 1")
    for s, m in zip(r.splits.tolist(), r.chunks.tolist(), strict=True):
        assert after(out, f"split {s}:").startswith(f"{m} chunks, total")
    assert int(after(out, "best split").split(";")[0]) in r.splits.tolist()


def check_checkpoint(p: CkptParams, r: D.CkptResult, out: str) -> None:
    assert tuple(listed(out, "saved keys:")) == r.saved_keys
    assert tuple(listed(out, "keys given:")) == r.fixed_keys
    assert tuple(listed(out, "keys expected:")) == r.target_keys
    assert tuple(listed(out, "missing keys:")) == r.missing_keys
    assert tuple(listed(out, "unexpected keys:")) == r.unexpected_keys
    assert tuple(listed(out, "equal per key:")) == r.equal_per_key
    strict = after(out, "strict load:")
    assert strict == ("ok" if r.strict_error is None else r.strict_error.splitlines()[0])
    if not CUDA_AVAILABLE:
        assert int(after(out, "file bytes:")) == r.file_bytes
        assert tuple(listed(out, "saved devices:")) == r.saved_devices
        assert tuple(listed(out, "loaded devices:")) == r.loaded_devices


@dataclass(frozen=True)
class Case:
    run_fn: Callable[[Any, Any], Any]
    code_fn: Callable[[Any], str]
    check: Callable[[Any, Any, str], None]
    params: Params


def dp_case(p: DPParams) -> Case:
    return Case(D.run_dataparallel, D.code_dataparallel, check_dataparallel, p)


def ckpt_case(p: CkptParams) -> Case:
    return Case(D.run_checkpoint, D.code_checkpoint, check_checkpoint, p)


SCRIPT_CASES = [
    Case(D.run_facts, D.code_facts, check_facts, FactsParams(size_mb=1, min_run_time=QUICK)),
    dp_case(DPParams()),
    dp_case(DPParams(replicas=3)),
    dp_case(DPParams(seeds_example=False, batch=5, replicas=4)),
    dp_case(DPParams(seeds_example=False, batch=7, replicas=2, seed=3)),
    Case(D.run_pipeline, D.code_pipeline, check_pipeline, PipeParams(batch=12, split_size=5, width=16, min_run_time=QUICK)),
    ckpt_case(CkptParams()),
    ckpt_case(CkptParams(strip="consume_prefix", map_location="same", seed=4)),
    ckpt_case(CkptParams(strip="load_into_module")),
    ckpt_case(CkptParams(strip="save_module")),
    ckpt_case(CkptParams(wrap=False, strip="load_into_module")),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Run every case's script on its own; return name -> what it did."""
    folder = tmp_path_factory.mktemp("devices_snippets")  # no core/ here: the scripts must stand alone
    sources = {query_id(case.params): case.code_fn(case.params) for case in SCRIPT_CASES}
    return run_scripts(sources, folder, timeout=120)


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[query_id(c.params) for c in SCRIPT_CASES])
def test_script_runs_and_prints_the_result(case: Case, ran: dict[str, Ran]) -> None:
    done = ran[query_id(case.params)]
    assert done.rc == 0, done.err
    case.check(case.params, run(case.run_fn, case.params), done.out)
