"""How close the Speed lesson's matmul TFLOP/s are to an independent measurement, in the same run.

For each size, rounds alternate between the app's experiment (core.runner.execute of
core.lessons.speed.scaling.run, exactly what the page runs, exclusive) and an independent
torch.utils.benchmark measurement written here from scratch: fresh operands, `a @ b` as the
statement, FLOPs = 2 n^3. Each round's two measurements are taken back to back, so their ratio
cancels the drift of a shared machine; the median of the rounds' ratios should be within 5 % of 1.
On a CUDA machine the GPU figures are compared too (the app's sweep measures both devices).

Usage: python -m bench.timing_accuracy [--rounds 9] [--sizes 256 512 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

import torch
from torch.utils import benchmark

from core import runner
from core.lessons.speed import scaling as speed_scaling
from core.lessons.speed.scaling import ScalingParams

TARGET = 0.05  # |app / independent - 1| at most this, per size (issue 6)
MIN_RUN_TIME = 0.2  # seconds of benchmark blocks, the same for both measurements


def independent_tflops(n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Return n x n matmul TFLOP/s measured by torch.utils.benchmark, with no TorchLab code involved."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timer = benchmark.Timer(stmt="a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    timer.timeit(1)  # warm-up: allocation, and on CUDA the kernel choice
    return 2 * n**3 / timer.blocked_autorange(min_run_time=MIN_RUN_TIME).median / 1e12


def app_tflops(n: int) -> tuple[float, float | None]:
    """Return (CPU, GPU or None) TFLOP/s from the lesson's own scaling experiment at one size, run as the page runs it."""
    r = runner.execute(speed_scaling.run, ScalingParams(sizes=(n,), min_run_time=MIN_RUN_TIME), exclusive=True)
    gpu = None if r.gpu_tflops is None else float(r.gpu_tflops[0])
    return float(r.cpu_tflops[0]), gpu


def main(argv: Sequence[str] | None = None) -> int:
    """Print, per size and device, the app's and the independent TFLOP/s (medians of the rounds) and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.timing_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per size (9)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024], help="matmul n values")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and runner.DEVICE.type == "cuda"
    print(f"matmul TFLOP/s: TorchLab's scaling experiment vs independent torch.utils.benchmark, {args.rounds} rounds;")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), CPU: {runner.cpu_model()}"
        + (f", GPU: {torch.cuda.get_device_name()}" if cuda else "")
    )
    print(f"{'device':>6} {'n':>6} {'app p50':>10} {'indep p50':>10} {'ratio p50':>9} {'ratio range':>13}  verdict")
    for n in args.sizes:
        rows: dict[str, tuple[list[float], list[float]]] = {"cpu": ([], []), "cuda": ([], [])}
        for _ in range(args.rounds):
            cpu, gpu = app_tflops(n)
            rows["cpu"][0].append(cpu)
            rows["cpu"][1].append(independent_tflops(n, torch.device("cpu")))
            if cuda and gpu is not None:
                rows["cuda"][0].append(gpu)
                rows["cuda"][1].append(independent_tflops(n, torch.device("cuda")))
        for device, (app, indep) in rows.items():
            if not app or any(v != v for v in app):  # nan: the CPU skipped a size over its work limit
                continue
            ratios = sorted(a / i for a, i in zip(app, indep, strict=True))
            ratio = statistics.median(ratios)
            verdict = "within 5%" if abs(ratio - 1) <= TARGET else "outside 5%"
            print(
                f"{device:>6} {n:>6} {statistics.median(app):>10.4g} {statistics.median(indep):>10.4g} {ratio:>9.3f} "
                f"{ratios[0]:.3f}..{ratios[-1]:.3f}  {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
