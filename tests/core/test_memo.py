"""Figures are reused only for the very same argument objects, and the memo stays bounded."""

import numpy as np

from core import memo
from core.memo import same_inputs

calls: list[int] = []


@same_inputs
def build(values: np.ndarray, title: str, height: int = 300) -> dict[str, object]:
    calls.append(1)
    return {"y": values.tolist(), "title": title, "height": height}


def test_same_objects_give_the_same_figure_and_new_objects_a_new_one() -> None:
    memo.FIGURES.clear()
    calls.clear()
    a, b = np.arange(3), np.arange(3)
    first = build(a, "t")
    assert build(a, "t") is first and len(calls) == 1
    assert build(b, "t") == first and build(b, "t") is not first  # equal but not the same object: rebuilt
    assert build(a, "t", height=500)["height"] == 500  # keywords are part of the key
    assert len(calls) == 3


def test_the_memo_is_bounded_and_lets_its_arguments_die() -> None:
    memo.FIGURES.clear()
    kept = [np.arange(2) for _ in range(3 * memo.FIGURES_KEPT)]
    for values in kept:
        build(values, "t")
    assert len(memo.FIGURES) == memo.FIGURES_KEPT
    del values
    kept.clear()  # the results are gone (the result cache dropped them): so are their figures
    assert len(memo.FIGURES) == 0
    calls.clear()
    for _ in range(10):
        build(np.arange(2), "t")  # a new array may reuse a dead one's id: it must not find that figure
    assert len(calls) == 10
