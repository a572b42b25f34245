"""Device facts: what torch says about this machine, and which .to(...) calls copy."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from core.lessons.devices import facts as devices_facts
from core.lessons.devices.facts import FACTS, FactsParams, FactsResult
from core.params import ladder_values
from core.runner import Config, cpu_model, execute
from tests.scripts import run_scripts

CPU = torch.device("cpu")
CUDA_AVAILABLE = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="needs CUDA")
QUICK = 0.01  # the least min_run_time: timings are printed, never compared


def run(p: FactsParams, device: torch.device = CPU) -> FactsResult:
    """Run the experiment through the runner (on the CPU unless told)."""
    return execute(FACTS.run, p, device=device, exclusive=True)


def test_facts_on_the_cpu() -> None:
    r = run(FactsParams(size_mb=1, min_run_time=QUICK))
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
    # Run on the CPU, every CUDA part is missing, and gpu_only names each of them for the page's note.
    assert r.gpu_only == devices_facts.CUDA_PARTS
    for name in r.gpu_only:
        assert getattr(r, name) is None, name
    if not CUDA_AVAILABLE:
        assert r.gpus == ()


def test_cuda_parts_are_the_optional_fields() -> None:
    hints = {f.name: str(f.type) for f in dataclasses.fields(FactsResult)}
    optional = {name for name, kind in hints.items() if kind.endswith("| None")}
    # cuda_version is None in a CPU build of torch, whatever the device: a fact, not a measurement.
    assert set(devices_facts.CUDA_PARTS) == optional - {"cuda_version"}


def test_identity_of_to_is_what_torch_does() -> None:
    x = torch.ones(4)
    assert x.to("cpu") is x and x.to(torch.float32) is x
    assert x.to(torch.float64).data_ptr() != x.data_ptr() and x.clone().data_ptr() != x.data_ptr()


def test_the_prediction_asks_about_a_size_the_page_does_not_show_by_default() -> None:
    p = devices_facts.TO_CPU_TIME.params
    # The question says "64 MiB, 4 times the default".
    assert p.size_mb == 64 == 4 * FactsParams().size_mb
    r = run(dataclasses.replace(p, min_run_time=QUICK))
    assert devices_facts.TO_CPU_TIME.answer(r) == "stays"
    assert r.same_object and not r.to_cpu.copies and r.clone.copies


def test_the_prediction_would_say_grows_for_a_call_that_copies() -> None:
    r = run(FactsParams(size_mb=1, min_run_time=QUICK))
    copying = dataclasses.replace(r, to_cpu=dataclasses.replace(r.clone, call='x.to("cpu")'))
    assert devices_facts.TO_CPU_TIME.answer(copying) == "grows"


def test_size_is_a_ladder_of_powers_of_two_and_any_size_in_range_stays_valid() -> None:
    spec = next(s for s in FactsParams.specs() if s.name == "size_mb")
    assert spec.meta["ladder"] == ladder_values(1, 256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert FactsParams().size_mb in spec.meta["ladder"]
    p, rejected = FactsParams.from_query({"facts.size_mb": "3"}, "facts")
    assert rejected == [] and p.size_mb == 3


def test_every_setting_fits_the_default_budget_and_long_timings_weigh() -> None:
    most = Config().max_gwork * 1e9
    assert FactsParams(size_mb=256, min_run_time=0.5).estimate_work() < most
    small = FactsParams(size_mb=1, min_run_time=QUICK).estimate_work()
    assert FactsParams(size_mb=1, min_run_time=0.5).estimate_work() > 10 * small


@pytest.mark.gpu
@needs_cuda
def test_facts_on_cuda() -> None:
    r = run(FactsParams(size_mb=4, min_run_time=QUICK), torch.device("cuda"))
    assert r.device == "cuda" and r.cuda_available and r.gpu_only == ()
    for name in ("to_cuda", "dot_cuda", "pinned_to_cuda", "back_to_cpu"):
        part = getattr(r, name)
        assert part is not None and part.copies and part.gbps is not None and part.gbps > 0, name
    assert r.cuda_same_object is True
    assert len(r.gpus) == torch.cuda.device_count()
    for gpu in r.gpus:
        props = torch.cuda.get_device_properties(gpu.index)
        assert (gpu.name, gpu.total_memory, gpu.capability) == (props.name, props.total_memory, (props.major, props.minor))
        assert gpu.multiprocessors == props.multi_processor_count


def test_the_script_says_what_each_copy_did(tmp_path: Path) -> None:
    # The contract suite compares the numbers of `shown`; here, what the script says about each copy.
    p = FACTS.examples[0]
    done = run_scripts({"facts": FACTS.write_script(p, "cpu")}, tmp_path)["facts"]
    assert done.rc == 0, done.err
    assert "nothing copied" in done.out.split("x.to('cpu'):")[1].splitlines()[0]
    assert ("x.to('cuda'):" in done.out) == CUDA_AVAILABLE
