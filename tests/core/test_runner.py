"""The runner's five duties: budget, device + seeded generator, device gate, deadline, clean errors."""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from core.gate import DeviceGate
from core.lessons.devices.pipeline import PipeParams
from core.lessons.devices.pipeline import run as run_pipeline
from core.params import InvalidParams, Params, bounds
from core.runner import Config, ExperimentError, RunContext, execute


@dataclass(frozen=True)
class Noise(Params):
    n: int = field(default=1000, metadata=bounds(1, 10**9))
    seed: int = 0

    def estimate_bytes(self) -> int:
        return self.n * 4


def draw(p: Noise, ctx: RunContext) -> list[float]:
    return torch.randn(p.n, generator=ctx.generator, device=ctx.device).tolist()


def test_budget_refuses_before_allocating() -> None:
    calls: list[int] = []

    def never(p: Noise, ctx: RunContext) -> None:
        calls.append(1)

    with pytest.raises(ExperimentError) as info:
        execute(never, Noise(n=10**9), config=Config(max_mb=16))
    assert info.value.key == "budget"
    assert info.value.info == {"needed_mb": round(4e9 / 2**20, 1), "max_mb": 16}
    assert calls == []


def test_invalid_params_are_refused_before_running() -> None:
    with pytest.raises(InvalidParams):
        execute(draw, Noise(n=0))


def test_same_seed_same_numbers_across_eight_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: execute(draw, Noise(seed=s % 2)), range(16)))
    assert all(r == results[0] for r in results[0::2])
    assert all(r == results[1] for r in results[1::2])
    assert results[0] != results[1]
    assert results[0] == torch.randn(1000, generator=torch.Generator().manual_seed(0)).tolist()


def test_deadline_stops_a_long_loop() -> None:
    def loop(p: Noise, ctx: RunContext) -> None:
        while True:
            ctx.check_deadline()
            time.sleep(0.01)

    with pytest.raises(ExperimentError) as info:
        execute(loop, Noise(), config=Config(run_seconds=0.2))
    assert info.value.key == "timeout"


def test_runs_past_their_deadline_or_budget_are_refused_while_the_others_run(tmp_path: Path) -> None:
    gate = DeviceGate(slots=2, folder=tmp_path)
    config = Config(run_seconds=0.3, max_mb=1)

    def loop(p: Noise, ctx: RunContext) -> None:
        while True:
            ctx.check_deadline()
            time.sleep(0.01)

    def one(i: int) -> str:
        try:
            if i % 4 == 0:
                execute(loop, Noise(), gate=gate, config=config, device=torch.device("cpu"))
            elif i % 4 == 1:
                execute(draw, Noise(n=10**6), gate=gate, config=config, device=torch.device("cpu"))  # 4 MB > 1 MB
            else:
                assert len(execute(draw, Noise(n=100, seed=i), gate=gate, config=config, device=torch.device("cpu"))) == 100
            return "ok"
        except ExperimentError as e:
            return e.key

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(one, range(16)))
    assert outcomes == [("timeout", "budget", "ok", "ok")[i % 4] for i in range(16)]


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (RuntimeError("shape mismatch\nmore detail"), "runtime"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), "oom"),
        (MemoryError(), "oom"),
    ],
)
def test_errors_become_experiment_errors_and_the_next_run_works(error: BaseException, key: str) -> None:
    def boom(p: Noise, ctx: RunContext) -> None:
        big = torch.ones(p.n)  # something to release
        del big
        raise error

    with pytest.raises(ExperimentError) as info:
        execute(boom, Noise())
    assert info.value.key == key
    if key == "runtime":
        assert info.value.info["detail"] == "shape mismatch"
    assert execute(draw, Noise(n=3)) == torch.randn(3, generator=torch.Generator().manual_seed(0)).tolist()


def test_a_second_exclusive_run_of_one_owner_is_refused_with_a_message(tmp_path: Path) -> None:
    gate = DeviceGate(slots=1, folder=tmp_path)
    with gate.hold(exclusive=True, owner="student"):
        with pytest.raises(ExperimentError) as info:
            execute(draw, Noise(n=3), exclusive=True, owner="student", gate=gate, device=torch.device("cpu"))
        assert info.value.key == "one_queued"
    assert len(execute(draw, Noise(n=3), exclusive=True, owner="student", gate=gate, device=torch.device("cpu"))) == 3


def test_config_from_env_reads_and_clamps() -> None:
    c = Config.from_env(
        {
            "TORCHLAB_DEVICE": "CPU",
            "TORCHLAB_MAX_MB": "64",
            "TORCHLAB_GPU_SLOTS": "0",
            "TORCHLAB_THREADS": "junk",
            "TORCHLAB_RUN_SECONDS": "2.5",
            "TORCHLAB_CACHE_MB": "-3",
            "TORCHLAB_LOCK_DIR": " /srv/gate ",
            "TORCHLAB_RATE": "nan?",
            "TORCHLAB_BURST": "1e9",
        }
    )
    assert c == Config(
        device="cpu",
        max_mb=64,
        gpu_slots=1,
        threads=Config().threads,
        run_seconds=2.5,
        cache_mb=1,
        lock_dir="/srv/gate",
        rate=Config().rate,
        burst=10000,
        run_processes=-1,  # unset: "auto" for a server; a Config built in code runs in its own process
    )
    assert Config.from_env({"TORCHLAB_DEVICE": "tpu"}).device == "auto"
    assert Config(device="cpu").pick_device() == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_out_of_memory_is_recovered() -> None:
    def hog(p: Noise, ctx: RunContext) -> None:
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")

    with pytest.raises(ExperimentError) as info:
        execute(hog, Noise(), device=torch.device("cuda"), config=Config(max_mb=1 << 20))
    assert info.value.key == "oom"
    assert len(execute(draw, Noise(n=10), device=torch.device("cuda"))) == 10


def test_progress_reaches_the_caller_as_fractions() -> None:
    heard: list[float] = []

    def three_parts(p: Noise, ctx: RunContext) -> None:
        for done in range(3):
            ctx.progress(done, 3)
        ctx.progress(3, 3)

    execute(three_parts, Noise(), on_progress=heard.append, device=torch.device("cpu"))
    assert heard == pytest.approx([0, 1 / 3, 2 / 3, 1])
    execute(three_parts, Noise(), device=torch.device("cpu"))  # nobody listening: nothing breaks


def test_long_timing_runs_report_progress() -> None:
    heard: list[float] = []
    execute(
        run_pipeline,
        PipeParams(batch=8, split_size=2, width=16, min_run_time=0.01),
        on_progress=heard.append,
        device=torch.device("cpu"),
    )
    assert len(heard) >= 3 and heard == sorted(heard) and 0 <= heard[0] < heard[-1] <= 1
