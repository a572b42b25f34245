"""The "Speed and memory" lesson: honest timing, CPU vs GPU scaling, cudnn.benchmark, memory footprint, leaks, transfers.

Every experiment here times something, so each is `exclusive=True`: it runs alone on its device,
nobody else's work pollutes its clock, and the process-wide switches some runs flip
(torch.backends.cudnn.benchmark, the two allow_tf32 flags; set only on CUDA, always restored) are
seen by nobody else. Timing goes through core.measure (torch.utils.benchmark, synchronised); the
naive clock appears only in `timing`, where it is the lesson. Timings are noisy: tests check
structure and formulas, never speeds.

`gpu_only` means the same in every lesson: each Result has an instance field
`gpu_only: tuple[str, ...]` naming the parts of this experiment that need CUDA and did not run
here (empty on a GPU; each name is a key of `gpu.parts` in common.toml), and the page shows them
with `gpu_note(r.gpu_only)`. The CPU path always runs; what needs CUDA is None in the Result.
"""

from __future__ import annotations

from core.lessons.speed.cudnn import CUDNN
from core.lessons.speed.footprint import CHECKPOINT_KEPT, FOOTPRINT
from core.lessons.speed.leak import LEAK, TRAINING_HOLDS
from core.lessons.speed.profiler import PROFILER
from core.lessons.speed.scaling import DOUBLING, SCALING
from core.lessons.speed.timing import BARE_CLOCK, TIMING
from core.lessons.speed.transfer import AS_TENSOR, TRANSFER

TABS = ("timing", "scaling", "cudnn", "footprint", "leak", "transfer", "pitfalls")
EXPERIMENTS = (TIMING, PROFILER, SCALING, CUDNN, FOOTPRINT, LEAK, TRANSFER)
PREDICTIONS = (BARE_CLOCK, DOUBLING, CHECKPOINT_KEPT, TRAINING_HOLDS, AS_TENSOR)
