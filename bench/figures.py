"""Figure-building benchmark: the milliseconds a new result costs the server before Streamlit sends it.

Run with `python -m bench.figures`. For the charts the classroom load test found hottest (the
tensors grids and storage, the accumulation error and scatter plots, the init signal charts), it
runs each experiment once with its defaults, then builds each figure afresh (past core.memo) and
turns it into the specification st.plotly_chart sends (`to_dict`, done once per figure by
ui/figures.py). It prints the median of `--repeat` builds per figure, and as its last line one
JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from core.lessons.accumulation import charts as accumulation_charts
from core.lessons.accumulation import equiv as accumulation_equiv
from core.lessons.init import charts as init_charts
from core.lessons.init import signal as init_signal
from core.lessons.tensors import charts as tensors_charts
from core.lessons.tensors import layout as tensors_layout
from core.runner import execute
from ui.panels import charts_text_in


def cases() -> dict[str, Callable[[], Any]]:
    """Return a builder call per figure, each on a result computed once here."""
    layout = execute(tensors_layout.LAYOUT.run, tensors_layout.LayoutParams())
    equiv = execute(accumulation_equiv.EQUIV.run, accumulation_equiv.EquivParams())
    signal = execute(init_signal.SIGNAL.run, init_signal.SignalParams())
    tl, ta, ti = (charts_text_in("en", prefix) for prefix in ("layout", "equiv", "signal"))  # words do not change the cost
    grids = tensors_charts.layout_grids(layout)
    storage, grids_figure = fresh(tensors_charts.storage_figure), fresh(tensors_charts.grids_figure)
    error, scatter = fresh(accumulation_charts.equiv_error_figure), fresh(accumulation_charts.equiv_scatter_figure)
    signal_figure, hist = fresh(init_charts.signal_figure), fresh(init_charts.signal_hist_figure)
    return {
        "tensors.storage": lambda: storage(layout, tl),
        "tensors.grids": lambda: grids_figure(grids, "grids"),
        "accumulation.error": lambda: error(equiv, ta),
        "accumulation.scatter": lambda: scatter(equiv, ta),
        "init.signal_act": lambda: signal_figure(signal, ti, "act"),
        "init.signal_grad": lambda: signal_figure(signal, ti, "grad"),
        "init.signal_hist": lambda: hist(signal, ti),
    }


def fresh(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Return the builder itself, past core.memo's same_inputs where it has one."""
    return getattr(builder, "__wrapped__", builder)


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # the first call imports what it needs
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    rows = {}
    for name, build in cases().items():
        fig = build()
        rows[name] = {"build_ms": median_ms(build, args.repeat), "to_dict_ms": median_ms(fig.to_dict, args.repeat)}
    print(f"{'figure':<22} {'build ms':>9} {'to_dict ms':>11} {'total ms':>9}")
    for name, row in rows.items():
        print(f"{name:<22} {row['build_ms']:9.2f} {row['to_dict_ms']:11.2f} {row['build_ms'] + row['to_dict_ms']:9.2f}")
    total = sum(r["build_ms"] + r["to_dict_ms"] for r in rows.values())
    print(f"{'all':<22} {'':>9} {'':>11} {total:9.2f}")
    print(json.dumps({"figures": rows, "total_ms": total}))


if __name__ == "__main__":
    main()
