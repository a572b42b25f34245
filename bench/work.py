"""What a unit of estimate_work costs in seconds here, for every experiment of every lesson.

The runner refuses a run whose `estimate_work()` exceeds TORCHLAB_MAX_GWORK x 1e9; that limit is
only meaningful through the seconds one unit of work takes on the serving machine. For each
experiment (defaults, then each of its examples) this prints the estimate, the least of three
timed runs through core.runner.execute on the CPU, and seconds per 1e9 units; the last column is
what a run at the budget would take if that ratio held. A plain 512 x 512 matmul is printed as the
reference: a figure many times above it marks an estimate that undercounts (small runs are
dominated by per-call overhead, which the multiply-add counts leave out).

Usage: python -m bench.work [--lesson accumulation] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from core import runner
from core.experiment import Experiment
from core.lessons import LESSONS

CPU = torch.device("cpu")


def least_seconds(experiment: Experiment[Any, Any], params: Any, repeats: int) -> float:
    """Return the least wall time of `repeats` runs of the experiment after one warm-up run."""
    runner.execute(experiment.run, params, exclusive=experiment.exclusive, device=CPU)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.execute(experiment.run, params, exclusive=experiment.exclusive, device=CPU)
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_seconds_per_gwork() -> float:
    """Return the seconds per 1e9 multiply-adds of a 512 x 512 float32 matmul here (the reference)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    return (time.perf_counter() - start) / (20 * 512**3 / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lesson", action="append", help="only these lessons (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    budget = runner.CONFIG.max_gwork
    reference = matmul_seconds_per_gwork()
    print(f"threads {torch.get_num_threads()}; 512x512 matmul: {reference:.3f} s per Gwork; budget {budget:g} Gwork")
    print(f"{'experiment':34} {'Gwork':>9} {'seconds':>8} {'s/Gwork':>8} {'at budget':>10}")
    ratios = []
    for lesson in LESSONS:
        if args.lesson and lesson.slug not in args.lesson:
            continue
        for experiment in lesson.experiments:
            for i, params in enumerate((experiment.params(), *experiment.examples)):
                gwork = params.estimate_work() / 1e9
                seconds = least_seconds(experiment, params, args.repeats)
                per = seconds / gwork if gwork else float("nan")
                label = f"{lesson.slug}.{experiment.name}" + ("" if i == 0 else f" #{i}")
                print(f"{label:34} {gwork:9.3g} {seconds:8.3f} {per:8.3g} {per * budget:9.1f}s")
                if i == 0 and gwork:
                    ratios.append(per)
    if ratios:
        print(f"defaults: median {statistics.median(ratios):.3g} s/Gwork, worst {max(ratios):.3g} s/Gwork")


if __name__ == "__main__":
    main()
