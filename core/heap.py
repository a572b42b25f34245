"""The cyclic garbage collector and what a process loads at start: freeze it once, so full collections skip it.

A full (generation 2) collection walks every object the collector tracks, and holds the GIL while it
does. Torch, plotly, pandas, pyarrow and Streamlit leave about 370,000 such objects in the server,
nearly all of them alive for good (modules, functions, classes, their dicts). Under 50 students a full
collection came every 15 s or so and took 450 ms (7 in 108 s): for that long every student's script
and the event loop that sends the pages stood still, and the actions caught in it made most of the
load test's slowest 5%. `gc.freeze()` moves every object alive at that moment into a permanent
generation that collections no longer visit; full collections then took 70-140 ms, for the objects
made since (bench/load.py under 50 students; see the classroom issue's note).

Python's collector still runs as before for everything made after the freeze, so cyclic garbage
is collected and memory stays flat. What is frozen is never collected, so freeze once, right after
start-up, when what is alive stays alive.
"""

from __future__ import annotations

import gc
import threading

_LOCK = threading.Lock()
_FROZEN = False


def freeze_loaded() -> bool:
    """Collect once, then freeze every object alive now; do it only on the first call in a process.

    Return whether this call froze. Thread-safe: the first caller freezes, the others return at once.
    """
    global _FROZEN
    with _LOCK:
        if _FROZEN:
            return False
        gc.collect()  # what start-up left as garbage is freed now, not kept for good
        gc.freeze()
        _FROZEN = True
        return True
