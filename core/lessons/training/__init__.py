"""Lesson "Training loops": regression you can watch, real optimizers and schedulers, freezing, reproducibility.

1. linreg - linear regression with a hand-written SGD step (and the notes' `w.data * lr` pitfall).
2. logreg - logistic regression on two Gaussian clusters: the boundary moving, loss and accuracy.
3. optim  - torch.optim optimizers racing on 2-D surfaces, at one rate or each at its best.
4. sched  - torch.optim.lr_scheduler schedules, the loss they lead to, call order, parameter groups.
5. freeze - four ways to "freeze" layers and what each leaves moving.
6. repro  - the same seed twice bit for bit, other seeds as a band, what determinism costs.

Results hold numpy arrays and plain Python values only; all randomness comes from seeded generators.
"""

from __future__ import annotations

from core.lessons.training.freeze import FREEZE, ZERO_GRAD_MOVES
from core.lessons.training.linreg import LINREG, LR_TOO_BIG
from core.lessons.training.logreg import LOGREG, WIDE_CLUSTERS
from core.lessons.training.optim import OPTIM, WINNER
from core.lessons.training.repro import REPRO, SAME_SEED
from core.lessons.training.sched import SCHED, WRONG_ORDER

TABS = ("linreg", "logreg", "optim", "sched", "freeze", "repro", "pitfalls")
EXPERIMENTS = (LINREG, LOGREG, OPTIM, SCHED, FREEZE, REPRO)
PREDICTIONS = (LR_TOO_BIG, WIDE_CLUSTERS, WINNER, WRONG_ORDER, ZERO_GRAD_MOVES, SAME_SEED)
