"""The accumulation lesson's memory and time experiments against counts made here, in the test.

What autograd keeps is derived here from the layer sizes and from what each op saves for its backward
(torch's derivatives.yaml): addmm (Linear) and convolution save their input and weight, relu its
output, mean (the CNN's global pooling) nothing, log_softmax its output, nll_loss the int64 labels
and a float32 scalar (total_weight). A second, independent check reads glibc's malloc statistics:
the bytes that stay allocated after the forward pass are what autograd keeps. Timings vary from run
to run, so no test asserts or compares one.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import dataclasses
import gc
import inspect
import math
import re
import tomllib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.lessons.accumulation import memory, savers, timed
from core.lessons.accumulation.memory import MemoryParams
from core.lessons.accumulation.model import CHANNELS, CLASSES, IN_FEATURES, SIDE, build_model, make_batch, make_teacher
from core.lessons.accumulation.savers import SaversParams
from core.params import InvalidParams, Params
from core.runner import CONFIG, ExperimentError, execute
from tests.params_strategies import assert_same
from tests.scripts import Ran, run_scripts

CPU = torch.device("cpu")
FAST = 0.05  # min_run_time at its minimum: the tests read bytes, not times
HALF_MODES = ("bf16", "fp16")


def run(p: Params, device: torch.device = CPU) -> Any:
    """Run an experiment alone on the device, as the page does."""
    fn: Callable[[Any, Any], Any] = memory.run if isinstance(p, MemoryParams) else savers.run
    return execute(fn, p, exclusive=True, device=device)


def block_numel(model: str, width: int) -> int:
    """Return the numbers one sample's hidden block outputs: width units, or width channels of SIDE x SIDE."""
    return width * (1 if model == "mlp" else SIDE * SIDE)


def input_numel(model: str) -> int:
    return IN_FEATURES if model == "mlp" else CHANNELS * SIDE * SIDE


def loss_bytes(n: int) -> int:
    """Return what the loss keeps for n samples: float32 log-probabilities, int64 labels, the float32 total_weight."""
    return 4 * n * CLASSES + 8 * n + 4


def expected_weight_copies(model: str, width: int, depth: int) -> int:
    """Return the bytes of the 16-bit weight copies autocast makes and autograd keeps.

    addmm keeps its weight only when its input needs a gradient (not the first MLP layer's);
    convolution keeps every weight. Biases are not needed for backward.
    """
    if model == "mlp":
        return 2 * ((depth - 1) * width * width + width * CLASSES)
    return 2 * (9 * CHANNELS * width + (depth - 1) * 9 * width * width + width * CLASSES)


def expected_saved(model: str, width: int, depth: int, n: int, mode: str = "fp32", segments: tuple[int, ...] = ()) -> int:
    """Return the bytes autograd must keep after the forward pass of n samples, by the rules in the module docstring."""
    block = n * block_numel(model, width)
    # The head's input: the last ReLU's output (MLP) or the pooled features (CNN: mean saves nothing).
    pooled = n * width if model == "cnn" else 0
    if mode == "fp32":
        # The first layer's input X; every ReLU's output, which is also the next layer's (one storage).
        return 4 * (n * input_numel(model) + depth * block + pooled) + loss_bytes(n)
    if mode in HALF_MODES:
        # Autocast casts X and the weights to 16 bits and keeps the casts; ReLU runs on 16-bit values.
        activations = 2 * (n * input_numel(model) + depth * block + pooled)
        return activations + expected_weight_copies(model, width, depth) + loss_bytes(n)
    assert mode == "checkpoint"
    # Each segment keeps its input; the head keeps its input as without checkpointing.
    inputs = n * input_numel(model) + (len(segments) - 1) * block
    head = pooled if model == "cnn" else block
    return 4 * (inputs + head) + loss_bytes(n)


def expected_recompute(model: str, width: int, n: int, segments: tuple[int, ...]) -> int:
    """Return what recomputing the largest segment saves: every ReLU output in it (its input is kept anyway)."""
    return 4 * max(segments) * n * block_numel(model, width)


def without_times(result: Any) -> Any:
    """Return the result with every time zeroed, so that two runs can be compared exactly."""
    rows = result.steps if isinstance(result, memory.MemoryResult) else result.runs
    stripped = tuple(dataclasses.replace(r, time_median=0.0, time_iqr=0.0, times=np.zeros(0)) for r in rows)
    if isinstance(result, memory.MemoryResult):
        stripped = tuple(dataclasses.replace(r, time_per_sample=0.0) for r in stripped)
        return dataclasses.replace(result, steps=stripped)
    return dataclasses.replace(result, runs=stripped)


# --------------------------------------------------------------------------------------------
# 1. memory: saved activations of one micro-batch against the count, and ~1/k


@pytest.mark.parametrize(
    "p",
    [
        MemoryParams(batch=50, accum_steps=(1, 2, 3, 4, 7, 16, 50), width=16, depth=2, min_run_time=FAST),
        MemoryParams(model="cnn", batch=20, accum_steps=(1, 3, 20), width=8, depth=3, min_run_time=FAST, seed=3),
    ],
    ids=["mlp", "cnn"],
)
def test_saved_bytes_are_the_largest_micro_batchs_and_scale_as_1_over_k(p: MemoryParams) -> None:
    r = run(p)
    by_k = {row.accum_steps: row for row in r.steps}
    B = p.batch
    for k, row in by_k.items():
        largest = math.ceil(B / k)
        assert row.micro_batches == tuple(len(c) for c in torch.tensor_split(torch.arange(B), k))
        assert sum(row.micro_batches) == B and max(row.micro_batches) == largest
        assert row.saved_bytes == expected_saved(p.model, p.width, p.depth, largest)
    # The per-sample part, read off the measurements alone, is exactly proportional to the micro-batch.
    per_sample, rest = divmod(by_k[1].saved_bytes - by_k[B].saved_bytes, B - 1)
    assert rest == 0
    for k, row in by_k.items():
        assert row.saved_bytes - by_k[1].saved_bytes == per_sample * (math.ceil(B / k) - B)
    assert r.parameter_bytes == r.gradient_bytes == 4 * p.spec().parameter_count()


def test_default_sizes_save_about_one_kth() -> None:
    p = MemoryParams(accum_steps=(1, 4, 16), min_run_time=FAST)
    r = run(p)
    full = r.steps[0].saved_bytes
    assert full == expected_saved("mlp", 256, 4, 256) == timed.saved_bytes_per_sample(p.spec()) * 256 + 4
    for row in r.steps[1:]:
        assert row.saved_bytes / full == pytest.approx(1 / row.accum_steps, rel=1e-4)
    # Accumulation changes where the memory goes, not the loss: every k sums to the full batch's mean loss.
    assert [row.loss for row in r.steps] == pytest.approx([r.steps[0].loss] * 3, rel=1e-5)
    for row in r.steps:
        assert row.time_median > 0 and row.time_per_sample == row.time_median / p.batch and len(row.times) >= 1
        assert row.cuda_peak_bytes is None and row.cuda_baseline_bytes is None


def test_one_k_alone_gives_what_it_gives_among_many() -> None:
    many = run(MemoryParams(batch=40, accum_steps=(1, 5, 8), width=24, depth=3, min_run_time=FAST, seed=7))
    for row in many.steps:
        alone = run(MemoryParams(batch=40, accum_steps=(row.accum_steps,), width=24, depth=3, min_run_time=FAST, seed=7))
        assert_same(
            without_times(alone).steps[0], without_times(many).steps[[r.accum_steps for r in many.steps].index(row.accum_steps)]
        )


def test_micro_batch_sizes_match_tensor_split() -> None:
    for B, k in [(10, 3), (256, 16), (9, 9), (1024, 1000)]:
        assert memory.micro_batch_sizes(B, k) == tuple(len(c) for c in torch.tensor_split(torch.arange(B), k))


def test_memory_validation() -> None:
    with pytest.raises(InvalidParams) as e:
        MemoryParams(batch=8, accum_steps=(1, 16)).validate()
    assert (e.value.field, e.value.key, e.value.info) == ("accum_steps", "more_than_batch", {"batch": 8})
    with pytest.raises(InvalidParams) as e:
        MemoryParams(accum_steps=(2, 2)).validate()
    assert (e.value.field, e.value.key) == ("accum_steps", "duplicate")
    with pytest.raises(InvalidParams) as e:
        MemoryParams(accum_steps=()).validate()
    assert e.value.field == "accum_steps"
    # Too much work: the field to lower, and a value of it that passes.
    for p in [MemoryParams(model="cnn"), MemoryParams(batch=1024, width=1024, depth=8), MemoryParams(model="cnn", width=64)]:
        with pytest.raises(InvalidParams) as e:
            p.validate()
        assert e.value.key == "too_much_work" and e.value.field in ("batch", "width"), e.value
        dataclasses.replace(p, **{e.value.field: e.value.info["max"]}).validate()
    many = MemoryParams(batch=1024, accum_steps=(1024, 1000, 900, 800, 700, 600, 500, 400), depth=8)
    with pytest.raises(InvalidParams) as e:
        many.validate()
    assert (e.value.field, e.value.key) == ("accum_steps", "too_many_micro_batches") and e.value.info["max"] > 0
    MemoryParams().validate()
    assert MemoryParams().work_seconds() < 0.2


# --------------------------------------------------------------------------------------------
# 2. savers: each mode against the count, checkpointing exact, half precision approximate


SAVERS_CASES = [
    SaversParams(batch=24, width=32, depth=3, blocks_per_checkpoint=2, min_run_time=FAST),
    SaversParams(model="cnn", batch=12, width=16, depth=4, blocks_per_checkpoint=3, min_run_time=FAST, seed=2),
]


@pytest.fixture(scope="module")
def by_model() -> dict[str, savers.SaversResult]:
    return {p.model: run(p) for p in SAVERS_CASES}


@pytest.mark.parametrize("p", SAVERS_CASES, ids=lambda p: p.model)
def test_every_mode_saves_what_the_count_says(p: SaversParams, by_model: dict[str, savers.SaversResult]) -> None:
    r = by_model[p.model]
    assert r.segments == p.segments() and sum(r.segments) == p.depth
    assert [run.mode for run in r.runs] == list(p.modes)
    for m in r.runs:
        if m.unavailable is not None:
            continue
        assert m.saved_bytes == expected_saved(p.model, p.width, p.depth, p.batch, m.mode, r.segments), m.mode
        expected = expected_recompute(p.model, p.width, p.batch, r.segments) if m.mode == "checkpoint" else 0
        assert m.recompute_bytes == expected
        expected = expected_weight_copies(p.model, p.width, p.depth) if m.mode in HALF_MODES else 0
        assert m.weight_copy_bytes == expected


@pytest.mark.parametrize("p", SAVERS_CASES, ids=lambda p: p.model)
def test_checkpointing_is_exact_and_half_precision_approximate(
    p: SaversParams, by_model: dict[str, savers.SaversResult]
) -> None:
    runs = {m.mode: m for m in by_model[p.model].runs}
    fp32, ckpt = runs["fp32"], runs["checkpoint"]
    assert fp32.grad_rel_error == 0.0
    assert ckpt.grad_rel_error <= 1e-6 and ckpt.loss == pytest.approx(fp32.loss, rel=1e-6)
    assert ckpt.saved_bytes < 0.8 * fp32.saved_bytes  # depth >= 2, segments of 2 or more blocks
    for mode in HALF_MODES:
        if runs[mode].unavailable is None:
            assert 1e-5 < runs[mode].grad_rel_error < 0.1, mode
            assert runs[mode].loss == pytest.approx(fp32.loss, rel=1e-2)
            assert runs[mode].saved_bytes < fp32.saved_bytes


def test_every_reason_a_mode_is_unavailable_has_a_message_in_both_languages() -> None:
    # The page shows t(f"savers.unavailable.{reason}"): every string unavailable_reason returns needs one.
    tree = ast.parse(inspect.getsource(savers.unavailable_reason).lstrip())
    returns = [node.value for node in ast.walk(tree) if isinstance(node, ast.Return) and node.value is not None]
    reasons = {c.value for r in returns for c in ast.walk(r) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    assert {"fp16_conv_slow", "bf16_conv_slow", "autocast_ignored"} <= reasons
    for lang in ("en", "zh"):
        table = tomllib.loads((Path(__file__).resolve().parents[2] / "lessons" / lang / "accumulation.toml").read_text("utf-8"))
        messages = table["savers"]["unavailable"]
        assert sorted(reasons - messages.keys()) == [], lang
        assert all("{mode}" in messages[reason] for reason in reasons)


def test_fp16_convolutions_are_unavailable_on_the_cpu(by_model: dict[str, savers.SaversResult]) -> None:
    fp16 = next(m for m in by_model["cnn"].runs if m.mode == "fp16")
    assert fp16.unavailable == "fp16_conv_slow" and fp16.saved_bytes == 0 and math.isnan(fp16.loss)
    assert savers.unavailable_reason("fp16", "mlp", CPU) is None  # torch 2.13 autocasts float16 on the CPU
    assert savers.unavailable_reason("bf16", "mlp", CPU) is None
    assert savers.unavailable_reason("fp32", "cnn", CPU) is None and savers.unavailable_reason("checkpoint", "cnn", CPU) is None


@pytest.mark.parametrize("depth", [2, 5, 8])
def test_checkpointing_segments_saves_memory_per_block_does_not(depth: int) -> None:
    def saved(every: int) -> dict[str, int]:
        r = run(
            SaversParams(
                batch=16, width=64, depth=depth, modes=("fp32", "checkpoint"), blocks_per_checkpoint=every, min_run_time=FAST
            )
        )
        return {m.mode: m.saved_bytes for m in r.runs}

    # One block (Linear, ReLU) saves only its input and output, which the neighbouring checkpoints keep anyway.
    per_block = saved(1)
    assert per_block["checkpoint"] == per_block["fp32"]
    whole = saved(8)  # one segment: only X and the last block's output stay
    assert whole["checkpoint"] == 4 * 16 * (IN_FEATURES + 64) + loss_bytes(16)
    assert whole["checkpoint"] < 0.8 * whole["fp32"]


def test_half_precision_halves_activations_but_keeps_weight_copies() -> None:
    def saved(batch: int) -> dict[str, savers.SaverRun]:
        r = run(SaversParams(batch=batch, width=256, depth=4, modes=("fp32", "bf16"), min_run_time=FAST))
        return {m.mode: m for m in r.runs}

    for batch in (8, 512):
        runs = saved(batch)
        activations = runs["bf16"].saved_bytes - runs["bf16"].weight_copy_bytes - loss_bytes(batch)
        assert 2 * activations == runs["fp32"].saved_bytes - loss_bytes(batch)  # every activation in 16 bits
    # With few samples per weight, the copies outweigh what the activations save.
    small, large = saved(8), saved(512)
    assert small["bf16"].saved_bytes > small["fp32"].saved_bytes
    assert large["bf16"].saved_bytes < 0.7 * large["fp32"].saved_bytes


def test_fp32_saves_what_the_memory_experiment_saves_at_k_1() -> None:
    for model, width in [("mlp", 256), ("cnn", 8)]:
        memory = run(MemoryParams(model=model, batch=32, width=width, depth=3, accum_steps=(1,), min_run_time=FAST))
        fp32 = run(SaversParams(model=model, batch=32, width=width, depth=3, modes=("fp32",), min_run_time=FAST))
        assert fp32.runs[0].saved_bytes == memory.steps[0].saved_bytes
        assert fp32.runs[0].loss == memory.steps[0].loss
        assert fp32.parameter_bytes == memory.parameter_bytes


def test_savers_validation_and_segments() -> None:
    assert SaversParams(depth=4, blocks_per_checkpoint=2).segments() == (2, 2)
    assert SaversParams(depth=5, blocks_per_checkpoint=2).segments() == (2, 2, 1)
    assert SaversParams(depth=3, blocks_per_checkpoint=8).segments() == (3,)
    with pytest.raises(InvalidParams) as e:
        SaversParams(modes=()).validate()
    assert (e.value.field, e.value.key) == ("modes", "empty")
    with pytest.raises(InvalidParams) as e:
        SaversParams(model="cnn").validate()
    assert (e.value.field, e.value.key) == ("width", "too_much_work")
    dataclasses.replace(SaversParams(model="cnn"), width=e.value.info["max"]).validate()
    assert "blocks_per_checkpoint" not in SaversParams(modes=("fp32", "bf16")).roles()
    assert "blocks_per_checkpoint" in SaversParams().roles()


# --------------------------------------------------------------------------------------------
# An independent measurement: what stays allocated after the forward pass (glibc malloc statistics)


class _Mallinfo2(ctypes.Structure):
    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    _fields_ = [(name, ctypes.c_size_t) for name in names]


def _libc_mallinfo2() -> Any:
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    return fn


MALLINFO2 = _libc_mallinfo2()


def malloc_in_use() -> int:
    """Return the bytes the process has allocated with malloc right now (heap chunks + mmapped chunks)."""
    info = MALLINFO2()
    return int(info.uordblks + info.hblkhd)


@pytest.mark.skipif(MALLINFO2 is None, reason="needs glibc's mallinfo2")
@pytest.mark.parametrize(("model", "width", "batch"), [("mlp", 256, 128), ("cnn", 16, 32)])
def test_hooks_count_what_stays_allocated_after_forward(model: str, width: int, batch: int) -> None:
    p = SaversParams(
        model=model,
        batch=batch,
        width=width,
        depth=4,
        modes=("fp32", "bf16", "checkpoint"),
        blocks_per_checkpoint=2,
        min_run_time=FAST,
    )
    r = run(p)
    g = torch.Generator().manual_seed(0)
    net = build_model(p.spec(), g, CPU)
    X, y = make_batch(p.spec(), batch, make_teacher(g, CPU), g, CPU)
    for m in r.runs:
        if m.unavailable is not None:  # e.g. bf16 convolutions on a CPU without oneDNN's bfloat16 kernels
            continue
        deltas = []
        for _ in range(3):  # the first passes fill oneDNN's primitive cache and autocast's lazy state
            gc.collect()
            gc.disable()
            try:
                before = malloc_in_use()
                loss = savers.mode_loss(net, X, y, m.mode, r.segments)
                deltas.append(malloc_in_use() - before)
                torch.autograd.backward(loss)
                del loss
            finally:
                gc.enable()
        # X and y existed before the forward pass; every other saved tensor is new.
        existing = (X.nbytes if m.mode != "bf16" else 0) + y.nbytes
        assert deltas[-1] == pytest.approx(m.saved_bytes - existing, rel=0.05, abs=48 * 1024), m.mode


def test_the_estimate_covers_what_is_kept() -> None:
    cases: list[MemoryParams | SaversParams] = [MemoryParams(), SaversParams(), MemoryParams(model="cnn", width=32)]
    for p in cases:
        spec = p.spec()
        kept = 8 * spec.parameter_count() + expected_saved(spec.model, spec.width, spec.depth, p.batch)
        assert kept < p.estimate_bytes() < CONFIG.max_mb * 2**20


def test_the_budget_refuses_the_largest_cnn_batch() -> None:
    p = MemoryParams(model="cnn", batch=1024, width=8, depth=8, accum_steps=(1,))
    p.validate()
    assert p.estimate_bytes() > 2 * expected_saved("cnn", 8, 8, 1024)
    with pytest.raises(ExperimentError) as e:
        execute(memory.run, p, device=CPU, config=dataclasses.replace(CONFIG, max_mb=64))
    assert e.value.key == "budget"


# --------------------------------------------------------------------------------------------
# Same settings, same bytes and losses (the contract's determinism check skips timed experiments)


def test_same_params_same_bytes_and_losses() -> None:
    for p in [
        MemoryParams(batch=30, accum_steps=(1, 4), width=16, depth=2, min_run_time=FAST, seed=5),
        SaversParams(batch=16, width=16, depth=3, min_run_time=FAST, seed=5),
    ]:
        assert_same(without_times(run(p)), without_times(run(p)))


# --------------------------------------------------------------------------------------------
# Predictions: each answer is the theory's


def test_four_micro_batches_save_a_quarter() -> None:
    q = memory.QUARTER.params
    assert q.model != MemoryParams().model  # asked about the model the chart does not open on
    parts = [run(dataclasses.replace(q, accum_steps=(k,))) for k in q.accum_steps]  # the page's sweep
    assert parts[1].steps[0].saved_bytes / parts[0].steps[0].saved_bytes == pytest.approx(1 / 4, rel=1e-3)
    assert memory.QUARTER.answer(parts) == "quarter"


def test_checkpointing_gives_fp32s_gradient() -> None:
    q = savers.CHECKPOINT.params
    assert q.model != SaversParams().model
    parts = [run(dataclasses.replace(q, modes=(mode,))) for mode in q.modes]
    assert parts[0].runs[0].grad_rel_error <= 1e-6
    assert savers.CHECKPOINT.answer(parts) == "exact"


# --------------------------------------------------------------------------------------------
# The scripts count saved bytes with their own hooks: they print the engine's bytes, loss and error


SCRIPT_CASES: list[Params] = [*memory.MEMORY.examples, *savers.SAVERS.examples]  # what the contract runs too


def case_id(p: Params) -> str:
    return f"{type(p).__name__}-{p.model}"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    folder = tmp_path_factory.mktemp("accumulation_memory_snippets")  # no core/ here: the scripts stand alone
    sources = {
        case_id(p): (memory.MEMORY if isinstance(p, MemoryParams) else savers.SAVERS).write_script(p) for p in SCRIPT_CASES
    }
    return run_scripts(sources, folder, timeout=120, warm_up=True)


@pytest.mark.parametrize("p", SCRIPT_CASES, ids=case_id)
def test_script_prints_the_same_bytes(p: Params, ran: dict[str, Ran]) -> None:
    done = ran[case_id(p)]
    assert done.rc == 0, done.err
    r = run(p)
    if isinstance(r, memory.MemoryResult):
        printed = re.findall(r"accum_steps (\d+) micro-batches \[([\d, ]+)\] saved activation bytes (\d+) time", done.out)
        assert [(int(k), tuple(int(v) for v in sizes.split(",")), int(n)) for k, sizes, n in printed] == [
            (row.accum_steps, row.micro_batches, row.saved_bytes) for row in r.steps
        ]
        return
    for m in r.runs:
        if m.unavailable is not None:
            assert f"{m.mode} skipped" in done.out
            continue
        line = re.search(
            rf"^{m.mode}: saved activation bytes (\d+) recompute bytes (\d+) loss (\S+) "
            rf"gradient relative error (\S+) time",
            done.out,
            re.M,
        )
        assert line is not None, done.out
        assert (int(line[1]), int(line[2])) == (m.saved_bytes, m.recompute_bytes)
        assert float(line[3]) == pytest.approx(m.loss, rel=1e-6)
        assert float(line[4]) == pytest.approx(m.grad_rel_error, rel=1e-4, abs=1e-9)


# --------------------------------------------------------------------------------------------
# CUDA: the caching allocator's peak (skipped without a GPU)

CUDA = torch.device("cuda")


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_holds_the_saved_activations_and_falls_with_k(model: str) -> None:
    p = MemoryParams(model=model, batch=256, width=256 if model == "mlp" else 32, accum_steps=(1, 8), min_run_time=FAST)
    r = run(p, CUDA)
    cpu = run(dataclasses.replace(p, accum_steps=(1,)))
    assert r.device == "cuda" and r.steps[0].saved_bytes == cpu.steps[0].saved_bytes  # the same tensors are kept
    above = []
    for row in r.steps:
        assert row.cuda_baseline_bytes is not None and row.cuda_peak_bytes is not None
        # Parameters, last step's gradients and the batch are allocated before the step; zero_grad frees
        # the gradients, and the saved activations all exist at the end of the first forward pass.
        assert row.cuda_baseline_bytes >= r.parameter_bytes + r.gradient_bytes
        above.append(row.cuda_peak_bytes - row.cuda_baseline_bytes)
        assert above[-1] + r.gradient_bytes >= row.saved_bytes
        if model == "mlp":  # (cuDNN's convolution workspaces are not in the estimate)
            assert above[-1] < p.estimate_bytes()
    drop = r.steps[0].saved_bytes - r.steps[1].saved_bytes
    assert above[0] - above[1] >= 0.5 * drop


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_savers_run_every_mode_and_lower_the_peak() -> None:
    p = SaversParams(batch=1024, width=256, depth=6, blocks_per_checkpoint=3, min_run_time=FAST)
    r = run(p, CUDA)
    runs = {m.mode: m for m in r.runs}
    assert all(m.unavailable is None for m in r.runs), [(m.mode, m.unavailable) for m in r.runs]
    for m in r.runs:
        assert m.cuda_peak_bytes is not None and m.cuda_baseline_bytes is not None
        assert m.cuda_peak_bytes - m.cuda_baseline_bytes + r.parameter_bytes >= m.saved_bytes  # zero_grad frees the grads
    assert runs["checkpoint"].grad_rel_error <= 1e-5
    assert 0 < runs["bf16"].grad_rel_error < 0.1 and 0 < runs["fp16"].grad_rel_error < 0.1
    assert runs["bf16"].saved_bytes < runs["fp32"].saved_bytes and runs["checkpoint"].saved_bytes < runs["fp32"].saved_bytes
    assert runs["bf16"].cuda_peak_bytes < runs["fp32"].cuda_peak_bytes


def live_tensor_bytes() -> int:
    """Return the bytes of every tensor Python can still reach."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # isinstance() on torch.distributed's deprecated aliases
        return sum(t.nbytes for t in gc.get_objects() if isinstance(t, torch.Tensor) and t.device.type != "meta")


def test_runs_leave_no_tensors_behind() -> None:
    # A graph built under saved-tensor hooks whose pack returns the live tensor, and never backpropagated,
    # cannot be freed (a cycle through C++): the extra measurements must not leave one behind.
    before = live_tensor_bytes()
    run(SaversParams(batch=8, width=64, depth=3, min_run_time=FAST))
    run(MemoryParams(batch=8, accum_steps=(1, 2), width=64, depth=3, min_run_time=FAST))
    assert live_tensor_bytes() == before
