"""The 2-D loss surfaces the optimizers race on, written once for tensors and numpy arrays alike."""

from __future__ import annotations

import math
from typing import Any

SURFACES = ("bowl", "rosenbrock", "himmelblau", "saddle")
# The plotted domain (x_lo, x_hi, y_lo, y_hi), a start that shows the surface's character, and its minima.
DOMAINS = {
    "bowl": (-2.0, 2.5, -2.0, 2.5),
    "rosenbrock": (-2.0, 2.0, -1.0, 3.0),
    "himmelblau": (-5.0, 5.0, -5.0, 5.0),
    "saddle": (-2.0, 2.0, -2.5, 2.5),
}
STARTS = {"bowl": (-1.5, 2.0), "rosenbrock": (-1.5, 2.0), "himmelblau": (0.0, -0.5), "saddle": (1.5, 0.0)}
HALF_SQRT2 = 1 / math.sqrt(2)
BOWL_CENTER = (1.0, 0.5)  # off the origin, so that weight decay (which pulls to 0) visibly moves the end point


def value(surface: str, x: Any, y: Any, condition: float = 1.0, rotate: bool = True) -> Any:
    """Return the surface's height at (x, y): works for floats, numpy arrays and tensors (autograd included)."""
    if surface == "bowl":
        u, v = x - BOWL_CENTER[0], y - BOWL_CENTER[1]
        if rotate:  # the long axis along the diagonal: no single coordinate is the slow one
            u, v = (u + v) * HALF_SQRT2, (u - v) * HALF_SQRT2
        return 0.5 * (u * u + condition * (v * v))
    if surface == "rosenbrock":
        return (1 - x) * (1 - x) + 100 * ((y - x * x) * (y - x * x))
    if surface == "himmelblau":
        return (x * x + y - 11) * (x * x + y - 11) + (x + y * y - 7) * (x + y * y - 7)
    # A saddle at the origin (x² − y²) whose two valleys end in minima at (0, ±√2), height −1.
    return x * x - y * y + (y * y) * (y * y) / 4


def source(surface: str, condition: float, rotate: bool) -> list[str]:
    """Return the body of `def f(x, y)` that computes value() with the same operations in the same order (for the script)."""
    if surface == "bowl":
        lines = [f"u, v = x - {BOWL_CENTER[0]}, y - {BOWL_CENTER[1]}"]
        if rotate:
            lines.append(f"u, v = (u + v) * {HALF_SQRT2!r}, (u - v) * {HALF_SQRT2!r}  # the long axis along the diagonal")
        return [*lines, f"return 0.5 * (u * u + {condition!r} * (v * v))"]
    return [
        {
            "rosenbrock": "return (1 - x) * (1 - x) + 100 * ((y - x * x) * (y - x * x))",
            "himmelblau": "return (x * x + y - 11) * (x * x + y - 11) + (x + y * y - 7) * (x + y * y - 7)",
            "saddle": "return x * x - y * y + (y * y) * (y * y) / 4  # minima at (0, ±√2)",
        }[surface]
    ]
