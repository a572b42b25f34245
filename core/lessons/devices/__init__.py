"""The "Devices and many GPUs" lesson: device facts and .to costs, DataParallel, pipelining, portable checkpoints.

1. facts        - what the server computes on, and what `.to(...)`, `.cuda()` and `.cpu()` cost; then (moves)
                  what they return for a module and for a tensor, and (visible) CUDA_VISIBLE_DEVICES.
2. dataparallel - nn.DataParallel simulated on one device (scatter, replicate, gather): why the mean
                  of the per-replica mean losses is not the batch mean when the batch splits unevenly.
3. pipeline     - model parallelism over two devices: stage times measured here, then the timing
                  model of the two-stage pipeline for every micro-batch (split) size.
4. checkpoint   - save a (DataParallel-wrapped) model's state_dict, load it with map_location, and
                  what load_state_dict reports when the "module." prefix does not match.

Random numbers come from ctx.generator; modules are built on the meta device first (torch's
constructors would draw from the global RNG) and their weights drawn from the generator. What needs
a CUDA device and did not run is named in the Result's `gpu_only`.
"""

from __future__ import annotations

from typing import Any

from core.experiment import Experiment, Prediction
from core.lessons.devices.checkpoint import CHECKPOINT, NON_STRICT, PLAIN_LOAD
from core.lessons.devices.dataparallel import DATAPARALLEL, GPUS_USED, MEAN_OF_MEANS
from core.lessons.devices.facts import FACTS, TO_CPU_TIME
from core.lessons.devices.moves import MOVES, WRITE_AFTER_TO
from core.lessons.devices.pipeline import ONE_CHUNK, PIPELINE
from core.lessons.devices.visible import VISIBLE_DEVICES

TABS = ("facts", "dataparallel", "pipeline", "checkpoint", "pitfalls")
EXPERIMENTS: tuple[Experiment[Any, Any], ...] = (FACTS, MOVES, VISIBLE_DEVICES, DATAPARALLEL, PIPELINE, CHECKPOINT)
PREDICTIONS: tuple[Prediction[Any, Any], ...] = (
    TO_CPU_TIME,
    WRITE_AFTER_TO,
    GPUS_USED,
    MEAN_OF_MEANS,
    ONE_CHUNK,
    PLAIN_LOAD,
    NON_STRICT,
)
