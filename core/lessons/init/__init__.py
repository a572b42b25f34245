"""Lesson "Weight initialization": every torch.nn.init scheme, fans and gains, signal flow, the training consequence.

1. dist   - every torch.nn.init scheme on a real Linear or Conv2d weight: histogram vs theory.
2. fans   - fan_in / fan_out by the lesson's formula and by torch; the calculate_gain table.
3. signal - two deep MLPs side by side: std of activations and gradients at every layer, a band over several networks.
4. train  - a small MLP trained on two spirals once per init: the loss curves.

Results hold numpy arrays and plain Python values only; all randomness comes from ctx.generator.
"""

from __future__ import annotations

from core.lessons.init.dist import DIST
from core.lessons.init.fans import FAN_IN, FANS
from core.lessons.init.signal import RELU_XAVIER, SIGNAL, TANH_STANDARD
from core.lessons.init.train import TRAIN

TABS = ("dist", "fans", "signal", "train", "pitfalls")
EXPERIMENTS = (DIST, FANS, SIGNAL, TRAIN)
PREDICTIONS = (FAN_IN, RELU_XAVIER, TANH_STANDARD)
