"""The "Gradient accumulation" lesson: equivalence and its mistakes, BatchNorm, training curves, memory and time.

Every experiment trains the lesson's own network (model.py) from ctx.generator; equiv, norm and
curves share the work limit and gradient comparisons in common.py, memory and savers their time
model and measurements in timed.py. The speed lesson's page shows `savers.SAVERS` too.
"""

from __future__ import annotations

from core.lessons.accumulation.curves import CURVES
from core.lessons.accumulation.equiv import EQUIV, SEEDS, UNEVEN
from core.lessons.accumulation.memory import MEMORY, QUARTER
from core.lessons.accumulation.norm import BATCH_OF_ONE, NORM
from core.lessons.accumulation.savers import CHECKPOINT, SAVERS

TABS = ("equiv", "norm", "curves", "memory", "savers", "pitfalls")
EXPERIMENTS = (EQUIV, NORM, CURVES, MEMORY, SAVERS)
PREDICTIONS = (SEEDS, UNEVEN, BATCH_OF_ONE, QUARTER, CHECKPOINT)
