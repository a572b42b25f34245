"""Pipelining: the two-stage timing model on synthetic stage times, and the run as that model on its measurements."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.lessons.devices import pipeline as devices_pipeline
from core.lessons.devices.pipeline import (
    PIPELINE,
    PipeParams,
    PipeResult,
    candidate_splits,
    equal_chunks_time,
    pipeline_curve,
    pipeline_time,
    sizes_to_measure,
    split_sizes,
    transfer_seconds,
)
from core.params import ladder_values
from core.runner import Config, execute
from tests.scripts import run_scripts

CPU = torch.device("cpu")
QUICK = 0.01  # the least min_run_time: timings are printed, never compared


def run(p: PipeParams) -> PipeResult:
    """Run the experiment through the runner on the CPU."""
    return execute(PIPELINE.run, p, device=CPU, exclusive=True)


def test_split_sizes_are_tensor_split() -> None:
    for batch in range(1, 41):
        for split in range(1, 46):
            sizes = split_sizes(batch, split)
            assert sizes == [len(c) for c in torch.split(torch.arange(batch), split)], (batch, split)
            assert len(sizes) == math.ceil(batch / split)


@pytest.mark.parametrize(
    ("t1", "c", "t2"), [(1.0, 0.0, 1.0), (3.0, 0.0, 1.0), (1.0, 0.0, 2.5), (1.0, 4.0, 2.0), (2.0, 0.5, 1.0)]
)
def test_equal_chunks_follow_the_two_stage_formula(t1: float, c: float, t2: float) -> None:
    for m in range(1, 12):
        total = pipeline_time([7] * m, lambda n: t1, lambda n: t2, lambda n: c)
        assert total == pytest.approx(equal_chunks_time(t1, c, t2, m))
        assert total == pytest.approx(t1 + c + t2 + (m - 1) * max(t1, c, t2))
        if c == 0:
            assert total == pytest.approx(t1 + (m - 1) * max(t1, t2) + t2)  # the classic two-stage schedule


def test_uneven_last_chunk_by_hand() -> None:
    sizes = split_sizes(10, 4)
    assert sizes == [4, 4, 2]
    # Stage 1 takes n, stage 2 takes 2n. Device 2 finishes chunk 1 at 4 + 8, chunk 2 at max(8, 12) + 8,
    # chunk 3 at max(10, 20) + 4.
    assert pipeline_time(sizes, float, lambda n: 2.0 * n, lambda n: 0.0) == 24.0
    # A link taking n / 2 per chunk: arrivals at 6, 10, 11; device 2 done at 14, 22, 26.
    assert pipeline_time(sizes, float, lambda n: 2.0 * n, lambda n: n / 2) == 26.0


def test_overhead_plus_linear_cost_gives_a_u_shaped_curve() -> None:
    batch, overhead, per_sample = 512, 50.0, 1.0
    splits = candidate_splits(batch, 32)
    assert splits == [2**k for k in range(10)]
    t = {n: overhead + per_sample * n for n in sizes_to_measure(batch, splits)}
    curve = pipeline_curve(batch, splits, t, t, lambda n: 0.0)
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
    assert candidate_splits(100, 30) == [1, 2, 4, 8, 16, 30, 32, 64, 100]
    assert candidate_splits(100, 400) == [1, 2, 4, 8, 16, 32, 64, 100]  # a split above the batch is one chunk
    assert candidate_splits(1, 1) == [1]
    assert sizes_to_measure(100, [30, 64]) == [10, 30, 36, 64]
    assert transfer_seconds(512, 256, 16.0) == pytest.approx(512 * 256 * 4 / 16e9)


def test_pipeline_run_is_its_model_applied_to_its_measurements() -> None:
    p = PipeParams(batch=12, split_size=5, width=16, transfer_gbps=0.5, min_run_time=QUICK)
    r = run(p)
    splits = candidate_splits(12, 5)
    assert r.splits.tolist() == splits and r.chunks.tolist() == [math.ceil(12 / s) for s in splits]
    assert r.measured_sizes.tolist() == sizes_to_measure(12, splits)
    assert np.all(r.stage1_s > 0) and np.all(r.stage2_s > 0)
    t1 = dict(zip(r.measured_sizes.tolist(), r.stage1_s.tolist(), strict=True))
    t2 = dict(zip(r.measured_sizes.tolist(), r.stage2_s.tolist(), strict=True))

    def link(n: int) -> float:
        return n * 16 * 4 / 0.5e9

    curve = pipeline_curve(12, splits, t1, t2, link)
    assert r.total_s.tolist() == curve.total_s.tolist() and r.utilisation.tolist() == curve.utilisation.tolist()
    assert r.split_size == 5 and r.chosen_total_s == r.total_s[splits.index(5)]
    assert r.best_total_s == r.total_s.min() and r.best_split == splits[int(np.argmin(r.total_s))]
    assert r.no_pipeline_s == pytest.approx(t1[12] + link(12) + t2[12]) and r.no_pipeline_s == pytest.approx(r.total_s[-1])
    assert r.single_device_s == t1[12] + t2[12]
    assert r.overhead_s == (t1[1], t2[1])
    assert r.per_sample_s == ((t1[12] - t1[1]) / 11, (t2[12] - t2[1]) / 11)


def test_one_chunk_is_exactly_model_parallel_and_several_chunks_differ() -> None:
    verdict = devices_pipeline.ONE_CHUNK.answer
    one = run(PipeParams(batch=12, split_size=12, width=16, min_run_time=QUICK))
    assert verdict(one) == "same" and one.chosen_total_s == pytest.approx(one.no_pipeline_s, rel=1e-12)
    several = run(PipeParams(batch=12, split_size=4, width=16, min_run_time=QUICK))
    assert verdict(several) in ("faster", "slower")
    assert verdict(dataclasses.replace(several, chosen_total_s=several.no_pipeline_s / 2)) == "faster"
    p = devices_pipeline.ONE_CHUNK.params
    assert p.split_size == p.batch and p != PipeParams()


def test_sizes_are_ladders_whose_stops_include_the_defaults() -> None:
    ladders = {s.name: s.meta["ladder"] for s in PipeParams.specs() if "ladder" in s.meta}
    assert ladders["batch"] == ladders["split_size"] == ladder_values(1, 512) == tuple(2**k for k in range(10))
    assert ladders["width"] == tuple(2**k for k in range(4, 11))
    assert ladders["transfer_gbps"][:3] == (0.1, 0.125, 0.25) and ladders["transfer_gbps"][-2:] == (512.0, 1000.0)
    defaults = PipeParams()
    assert all(getattr(defaults, name) in stops for name, stops in ladders.items())
    # Any value in range stays valid (a link may carry an uneven batch or split).
    p, rejected = PipeParams.from_query({"pipeline.batch": "100", "pipeline.split_size": "30"}, "pipeline")
    assert rejected == [] and (p.batch, p.split_size) == (100, 30)


def test_every_setting_fits_the_default_budget_and_long_timings_weigh() -> None:
    most = Config().max_gwork * 1e9
    # The costliest settings: the widest model, the longest timing, and the batch and split that need the most
    # samples measured (511 and 257: every power of two, its remainders, and 257 with its remainder 254).
    worst = max(
        (PipeParams(batch=b, split_size=s, width=1024, min_run_time=0.1) for b in (255, 383, 511, 512) for s in range(1, 513)),
        key=lambda p: p.estimate_work(),
    )
    assert (worst.batch, worst.split_size) == (511, 257)
    assert worst.estimate_work() < most
    quick = PipeParams(batch=4, width=16, min_run_time=QUICK)
    assert dataclasses.replace(quick, min_run_time=0.1).estimate_work() > 5 * quick.estimate_work()


def test_the_script_measures_the_same_chunks_and_models_the_same_splits(tmp_path: Path) -> None:
    # The contract suite compares the numbers of `shown`; here, the split the script's own model picks.
    p = PIPELINE.examples[0]
    done = run_scripts({"pipeline": PIPELINE.write_script(p, "cpu")}, tmp_path)["pipeline"]
    assert done.rc == 0, done.err
    r = run(p)
    best = int(done.out.split("best split ")[1].split(";")[0])
    assert best in r.splits.tolist()
