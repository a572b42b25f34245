"""Browser slider-to-chart latency: Chromium moves one control of a lesson tab and waits for the redrawn answer.

Run from the repository root with `python -m bench.slider` (what `make bench` does). It starts its own
`streamlit run app.py`, opens each tab in Debian's Chromium (Playwright), and for each measured control
moves it with the keyboard (a slider: one arrow key step, alternating right and left; a number box: the
arrow keys too) and times from the key press until the app has finished the rerun it started and the
browser has painted the next frame. Results come from the class-wide cache after the first two moves, as
for a class exploring the same settings, so the figures are what the page and Streamlit cost, not torch.
Prints p50/p95 per control and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np
from playwright.sync_api import Page, sync_playwright

from bench.pages import CHROMIUM, CHROMIUM_ARGS, running_server

# (path with query, widget key): one control on each of three tabs (signal.depth was a number box before
# the sliders came; the arrow keys move both kinds by one step).
CONTROLS = [
    ("/init?tab=signal", "signal.depth"),
    ("/tensors?tab=index", "index.threshold"),
    ("/accumulation?tab=equiv", "equiv.accum_steps"),
]
SCRIPT_STATE_JS = "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
WATCH_JS = """() => {
  window.__benchRuns = 0;
  if (window.__benchWatch) window.__benchWatch.disconnect();
  window.__benchWatch = new MutationObserver((records) => {
    for (const r of records) if (r.target.getAttribute("data-test-script-state") === "notRunning") window.__benchRuns += 1;
  });
  window.__benchWatch.observe(document.documentElement,
    {subtree: true, attributes: true, attributeFilter: ["data-test-script-state"]});
}"""
PAINTED_JS = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def wait_idle(page: Page, timeout_s: float = 120.0) -> None:
    """Wait until the app's script state is notRunning for 0.5 s."""
    deadline = time.monotonic() + timeout_s
    since = None
    while time.monotonic() < deadline:
        if page.evaluate(SCRIPT_STATE_JS) == "notRunning":
            since = since or time.monotonic()
            if time.monotonic() - since > 0.5:
                return
        else:
            since = None
        time.sleep(0.05)
    raise RuntimeError("the app did not settle")


def focus_control(page: Page, key: str) -> str:
    """Focus the widget with this key; return 'slider' or 'number'."""
    box = page.locator(f'[class*="st-key-{key.replace(".", "-")}"], [class*="st-key-{key}"]').first
    box.wait_for(timeout=60_000)
    slider = box.get_by_role("slider")
    if slider.count():
        slider.first.focus()
        return "slider"
    box.locator("input").first.focus()
    return "number"


def move_once(page: Page, kind: str, forward: bool) -> float:
    """Press one arrow key on the focused control; return seconds until the rerun ended and a frame was painted."""
    page.evaluate(WATCH_JS)
    key = ("ArrowRight" if forward else "ArrowLeft") if kind == "slider" else ("ArrowUp" if forward else "ArrowDown")
    start = time.perf_counter()
    page.keyboard.press(key)
    if kind == "number":
        page.keyboard.press("Enter")
    page.wait_for_function("() => window.__benchRuns > 0", timeout=120_000)
    page.evaluate(PAINTED_JS)
    return time.perf_counter() - start


def measure(page: Page, base: str, path: str, key: str, moves: int) -> list[float]:
    """Open path, then time `moves` moves of the control (the first two, uncached, are not counted)."""
    page.goto(base + path, wait_until="domcontentloaded")
    wait_idle(page)
    kind = focus_control(page, key)
    times = []
    for i in range(moves + 2):
        seconds = move_once(page, kind, forward=i % 2 == 0)
        wait_idle(page)
        focus_control(page, key)
        if i >= 2:
            times.append(seconds)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Start a server, measure every control, print a table and a JSON line; always return 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.slider", description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=12, help="timed moves per control (12)")
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, float]] = {}
    with running_server() as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, key in CONTROLS:
            ms = np.asarray(measure(page, base, path, key, args.moves)) * 1000
            p50, p95 = np.percentile(ms, [50, 95])
            figures[f"{path} {key}"] = {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "n": len(ms)}
        browser.close()
    print("\nSlider-to-chart latency in Chromium, cached results (ms)")
    for name, f in figures.items():
        print(f"  {name:<50} p50 {f['p50_ms']:>8.1f}   p95 {f['p95_ms']:>8.1f}   n={f['n']:.0f}")
    print(json.dumps({"bench": "slider", "controls": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
