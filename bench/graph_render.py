"""Browser benchmark: how long an autograd graph takes to appear, drawn by Chromium from a real server.

Run as `python -m bench.graph_render` (part of `make bench`). For the default graph (5 nodes) and a
~200-node graph, it opens the graph tab in headless Chromium and times, over several runs:
  - load: from navigation until every graph node is drawn in the SVG;
  - rerun: from toggling "retain_grad" until the redrawn graph shows the new .grad lines.
It prints p50/p95 in ms and the goal from the issue (a 200-node graph drawn within 2 s, judged on
the rerun: a load also includes booting the Streamlit page). Figures only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from urllib.parse import quote

from playwright.sync_api import Page, sync_playwright

from bench.pages import CHROMIUM, CHROMIUM_ARGS, running_server
from core.lessons.autograd import graph as autograd_graph
from core.runner import execute

NODES = '[data-testid="stGraphVizChart"] g.node'
GOAL_MS = 2000.0
BIG_EXPR = "y = " + "+".join(["sin(x*w)"] * 67)  # 202 autograd nodes, 606 characters


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_for_nodes(page: Page, count: int, timeout_s: float = 60) -> None:
    """Wait until the graph's SVG holds exactly `count` nodes."""
    page.wait_for_function(f"document.querySelectorAll('{NODES}').length === {count}", timeout=timeout_s * 1000)


GRAD_LINES_JS = f"[...document.querySelectorAll('{NODES} text')].filter(t => t.textContent.startsWith('.grad')).length"


def grad_lines(page: Page) -> int:
    """Return how many '.grad' text lines the drawn graph shows."""
    return int(page.evaluate(GRAD_LINES_JS))


def time_graph(page: Page, base: str, expr: str, nodes: int, runs: int) -> tuple[list[float], list[float]]:
    """Return (load times, retain_grad rerun times) in ms for one expression."""
    url = f"{base}/autograd?lang=en&tab=graph&graph.expr={quote(expr)}"
    loads, reruns = [], []
    for _ in range(runs):
        start = time.perf_counter()
        page.goto(url)
        wait_for_nodes(page, nodes)
        loads.append((time.perf_counter() - start) * 1000)
        before = grad_lines(page)
        start = time.perf_counter()
        page.locator("label").filter(has_text="retain_grad() on results").first.click()
        page.wait_for_function(f"{GRAD_LINES_JS} !== {before}", timeout=60_000)
        reruns.append((time.perf_counter() - start) * 1000)
    return loads, reruns


def main(argv: Sequence[str] | None = None) -> int:
    """Start a server, time both graphs in Chromium, print the table and a JSON line; always return 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    cases = {"default (y = (x + w) * (w + 1))": autograd_graph.GraphParams().expr, "200-node graph": BIG_EXPR}
    sizes = {name: len(execute(autograd_graph.run, autograd_graph.GraphParams(expr=e)).nodes) for name, e in cases.items()}
    results: dict[str, dict[str, float]] = {}
    with running_server() as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        time_graph(page, base, cases["default (y = (x + w) * (w + 1))"], 5, 1)  # warm-up: imports, cache
        for name, expr in cases.items():
            loads, reruns = time_graph(page, base, expr, sizes[name], args.runs)
            print(f"{name}: loads {[round(v) for v in loads]} reruns {[round(v) for v in reruns]}", flush=True)
            results[name] = {
                "nodes": sizes[name],
                "load_p50": statistics.median(loads),
                "load_p95": percentile(loads, 95),
                "rerun_p50": statistics.median(reruns),
                "rerun_p95": percentile(reruns, 95),
            }
        browser.close()
    print(f"Autograd graph in Chromium, real server, {args.runs} runs each (ms); goal: 200 nodes drawn within {GOAL_MS:.0f} ms")
    print(f"{'graph':34} {'nodes':>5} {'load p50':>9} {'load p95':>9} {'rerun p50':>10} {'rerun p95':>10}  verdict")
    for name, r in results.items():
        # The goal is about drawing the graph: the rerun. A load also boots Streamlit's page (~2 s
        # here for a 5-node graph too), so it is shown for context.
        verdict = "meets goal" if r["rerun_p95"] <= GOAL_MS else "misses goal"
        print(
            f"{name:34} {r['nodes']:>5.0f} {r['load_p50']:>9.0f} {r['load_p95']:>9.0f} {r['rerun_p50']:>10.0f} "
            f"{r['rerun_p95']:>10.0f}  {verdict}"
        )
    print(json.dumps({"bench": "graph_render", "runs": args.runs, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
