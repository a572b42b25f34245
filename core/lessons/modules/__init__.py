"""Lesson "nn.Module inside": what a module holds, its tree, LeNet's shapes, hooks, train/eval, state_dict.

1. members - five members declared eight ways: parameters(), buffers(), state_dict(), .to(), SGD, load.
2. tree    - the module tree drawn; modules()/children()/named_*()/apply() visiting order; Sequential 3 ways.
3. lenet   - LeNet with sliders: the shape after every layer, parameters per layer, fc1's real error.
4. hooks   - forward-pre, forward and full-backward hooks on a live step; one layer's removed by handle.
5. modes   - module.train() vs module.eval(): Dropout's mask and scale, BatchNorm's running statistics, the summary pass.
6. state   - state_dict round trip, strict=True/False into a changed net, weights_only, the module. prefix.
7. custom  - nn.Module vs F.*, CenteredLayer, MyLinear right and with .data, the notes' two AttributeErrors.

Results hold plain CPU data only; all randomness comes from ctx.generator.
"""

from __future__ import annotations

from core.lessons.modules.custom import CUSTOM, DATA_GRAD
from core.lessons.modules.hooks import HOOKS, STEP2_CALLS
from core.lessons.modules.lenet import CONV2_PARAMS, LENET, SHAPE_AT_28
from core.lessons.modules.members import MEMBERS, NONPERSISTENT
from core.lessons.modules.modes import EVAL_STATS, MODES
from core.lessons.modules.state import LOOSE_WIDER, STATE
from core.lessons.modules.tree import CHILDREN_COUNT, TREE

TABS = ("members", "tree", "lenet", "hooks", "modes", "state", "custom", "pitfalls")
EXPERIMENTS = (MEMBERS, TREE, LENET, HOOKS, MODES, STATE, CUSTOM)
PREDICTIONS = (NONPERSISTENT, CHILDREN_COUNT, SHAPE_AT_28, CONV2_PARAMS, STEP2_CALLS, EVAL_STATS, LOOSE_WIDER, DATA_GRAD)
