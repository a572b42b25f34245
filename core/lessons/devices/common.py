"""What the Devices lesson's experiments share: units, the CPU device, a seeded nn.Linear, and the timing weight."""

from __future__ import annotations

import math

import torch
from torch import nn

MB = 2**20  # the demo tensor's size is in MiB
GB = 1e9  # transfer rates are in GB/s of 10^9 bytes, as PCIe and NVLink figures are quoted
CPU = torch.device("cpu")
# Each core.measure.time_call makes a warm-up call and blocked_autorange's first call whatever min_run_time is;
# after that it repeats the call for min_run_time seconds, which bounds its time, not a count. estimate_work
# counts those seconds at this many operations each (a slow core's pace), so that long timings weigh in the
# budget while every setting the lesson allows stays within the runner's default budget.
TIMED_CALLS = 2
OPS_PER_TIMED_SECOND = 5e8


def linear(n_in: int, n_out: int, g: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> nn.Linear:
    """Return an nn.Linear whose weight is N(0, 1/n_in) drawn from g and whose bias is zero."""
    # Meta first: nn.Linear's constructor would draw its default weights from the global RNG.
    layer = nn.Linear(n_in, n_out, device="meta", dtype=dtype).to_empty(device=device)
    nn.init.normal_(layer.weight, 0.0, 1 / math.sqrt(n_in), generator=g)
    nn.init.zeros_(layer.bias)
    return layer
