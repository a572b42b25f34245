"""core.heap: one freeze per process, and garbage made afterwards is still collected (in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, weakref
import torch  # what a server or worker has loaded when it freezes
from core.heap import freeze_loaded

assert gc.get_freeze_count() == 0
tracked = len(gc.get_objects())
assert freeze_loaded()
assert gc.get_freeze_count() >= tracked // 2 > 10_000  # start-up's objects, torch's among them
assert len(gc.get_objects()) < 1_000  # no longer walked by a collection
assert not freeze_loaded()  # once per process

class Node:
    pass

node = Node()
node.cycle = node  # only the cyclic collector can free it
gone = weakref.ref(node)
del node
gc.collect()
assert gone() is None, "garbage made after the freeze must still be collected"
print("ok")
"""


def test_freeze_loaded_freezes_once_and_later_cyclic_garbage_is_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
