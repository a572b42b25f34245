"""The Params base: validation from metadata and the URL codec, which never raises on junk."""

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.params import (
    FieldSpec,
    InvalidParams,
    Params,
    bounds,
    choices,
    ladder,
    ladder_values,
    seed_field,
    shape_spec,
    text_spec,
)


@dataclass(frozen=True)
class Demo(Params):
    n: int = field(default=3, metadata=bounds(1, 10))
    x: float = field(default=0.5, metadata=bounds(0.0, 1.0))
    on: bool = False
    kind: str = field(default="a", metadata=choices("a", "b"))
    shape: tuple[int, ...] = field(default=(2, 3), metadata=shape_spec(max_dims=3, lo=1, hi=8, allow_infer=True))
    picks: tuple[str, ...] = field(default=("a",), metadata=choices("a", "b", "c"))
    note: str = field(default="", metadata=text_spec(max_len=5))
    ks: tuple[int, ...] = field(default=(1, 2, 4), metadata=shape_spec(max_dims=4, lo=1, hi=64, sep=","))

    def validate(self) -> None:
        super().validate()
        if self.kind == "b" and self.n > 5:
            raise InvalidParams("n", "too_big_for_b")


def test_defaults_are_valid_and_round_trip() -> None:
    p = Demo()
    p.validate()
    back, rejected = Demo.from_query(p.to_query("d"), "d")
    assert back == p and rejected == []


def test_non_default_values_round_trip() -> None:
    p = Demo(n=7, x=0.25, on=True, kind="a", shape=(4, -1), picks=("c", "a"), note="hi", ks=(8, 16))
    back, rejected = Demo.from_query(p.to_query("d"), "d")
    assert back == p and rejected == []


def test_lists_are_written_with_commas_and_shapes_with_x() -> None:
    query = Demo(shape=(4, 2), ks=(1, 8)).to_query("d")
    assert (query["d.shape"], query["d.ks"]) == ("4x2", "1,8")
    assert Demo.from_query({"d.ks": "2, 4"}, "d")[0].ks == (2, 4)


@pytest.mark.parametrize(
    ("changes", "field_name", "key"),
    [
        ({"n": 0}, "n", "out_of_range"),
        ({"n": 11}, "n", "out_of_range"),
        ({"n": 2.5}, "n", "wrong_type"),
        ({"n": True}, "n", "wrong_type"),
        ({"x": float("nan")}, "x", "not_finite"),
        ({"kind": "z"}, "kind", "not_a_choice"),
        ({"shape": (1, 2, 3, 4)}, "shape", "bad_length"),
        ({"shape": (-1, -1)}, "shape", "one_infer"),
        ({"shape": (0, 2)}, "shape", "out_of_range"),
        ({"picks": ("a", "a")}, "picks", "duplicate"),
        ({"picks": ("q",)}, "picks", "not_a_choice"),
        ({"note": "toolong"}, "note", "too_long"),
        ({"kind": "b", "n": 9}, "n", "too_big_for_b"),
    ],
)
def test_validate_names_field_and_reason(changes: dict[str, object], field_name: str, key: str) -> None:
    with pytest.raises(InvalidParams) as info:
        Demo(**changes).validate()  # type: ignore[arg-type]
    assert info.value.field == field_name and info.value.key == key
    assert isinstance(info.value, ValueError)


def test_bad_url_values_fall_back_to_defaults_and_are_reported() -> None:
    query = {"d.n": "99999999999999999999", "d.x": "nan", "d.kind": "<script>", "d.shape": "1e9x1e9", "d.on": "maybe"}
    p, rejected = Demo.from_query(query, "d")
    assert p == Demo()
    assert {r.field for r in rejected} == {"n", "x", "kind", "shape", "on"}


def test_cross_field_failure_resets_only_the_offending_field() -> None:
    p, rejected = Demo.from_query({"d.kind": "b", "d.n": "9", "d.x": "0.75"}, "d")
    assert p == Demo(kind="b", x=0.75)
    assert [(r.field, r.key) for r in rejected] == [("n", "too_big_for_b")]


def test_integer_parser_refuses_python_literal_tricks() -> None:
    for raw in ("1_0", "0x10", "٣", "1" * 5000, " ", "+", "1.0e1"):
        p, rejected = Demo.from_query({"d.n": raw}, "d")
        assert p.n == 3 and rejected, raw


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["d.n", "d.x", "d.on", "d.kind", "d.shape", "d.picks", "d.note", "other"]), st.text()))
def test_from_query_never_raises(query: dict[str, str]) -> None:
    p, rejected = Demo.from_query(query, "d")
    p.validate()
    assert all(r.field in {s.name for s in Demo.specs()} for r in rejected)


def test_float_parser_refuses_what_float_would_read_from_a_link() -> None:
    for raw in ("1_0", "٣", "１", "0.５", "²", "①", "0x1p-2", "nan", "inf", "-inf"):
        p, rejected = Demo.from_query({"d.x": raw}, "d")
        assert p.x == 0.5 and [r.field for r in rejected] == ["x"], raw
    for raw, value in (("+0.25", 0.25), ("1e-1", 0.1), (" 0.75 ", 0.75), ("1", 1.0)):
        assert Demo.from_query({"d.x": raw}, "d") == (Demo(x=value), []), raw


@dataclass(frozen=True)
class Sized(Params):
    """A tensor of rows x cols and one element of it: the element's bound follows the size."""

    rows: int = field(default=3, metadata=bounds(1, 8))
    cols: int = field(default=4, metadata=bounds(1, 8))
    element: int = field(default=0, metadata=bounds(0, 63, hi_of="last_element"))
    width: int = field(default=64, metadata=ladder(8, 2048))
    op: str = field(default="small", metadata=choices("small", "large"))
    size: int = field(default=4, metadata=bounds(1, 100))
    steps: int = field(default=10, metadata=bounds(1, 1000))
    seed: int = seed_field()

    def last_element(self) -> int:
        return self.rows * self.cols - 1

    @classmethod
    def linked(cls, name: str, value: object) -> dict[str, object]:
        return {"size": 50} if (name, value) == ("op", "large") else {}

    def validate(self) -> None:
        super().validate()
        if self.size * self.steps > 2000:
            raise InvalidParams("steps", "too_much_work", max=2000 // self.size)


def test_a_bound_may_depend_on_the_other_fields() -> None:
    Sized(element=11).validate()
    with pytest.raises(InvalidParams) as info:
        Sized(element=12).validate()
    assert (info.value.key, info.value.info["hi"]) == ("out_of_range", 11)
    assert Sized(rows=8, cols=8).upper_bound(next(s for s in Sized.specs() if s.name == "element")) == 63
    p, rejected = Sized.from_query({"s.element": "40"}, "s")  # beyond a 3x4 tensor: brought to its last element
    assert p.element == 11 and [(r.field, r.key) for r in rejected] == [("element", "out_of_range")]


def test_ladder_stops_span_decades_and_any_value_between_is_valid() -> None:
    assert ladder_values(8, 2048) == (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    assert ladder_values(1, 1000, "125") == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert ladder_values(0.001, 0.1, "125") == (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
    assert ladder_values(3, 100) == (3, 4, 8, 16, 32, 64, 100)
    Sized(width=300).validate()
    assert Sized.from_query({"s.width": "300"}, "s") == (Sized(width=300), [])


def test_a_seed_is_an_exact_value_over_the_whole_generator_range() -> None:
    spec = next(s for s in Sized.specs() if s.name == "seed")
    assert spec.meta["seed"] and (spec.meta["lo"], spec.meta["hi"]) == (0, 2**31 - 1)
    assert Sized.from_query({"s.seed": "2147483647"}, "s")[0].seed == 2**31 - 1


def test_a_linked_choice_brings_its_values_unless_the_link_gives_them() -> None:
    assert Sized.from_query({"s.op": "large"}, "s") == (Sized(op="large", size=50, steps=10), [])
    assert Sized.from_query({"s.op": "large", "s.size": "7"}, "s") == (Sized(op="large", size=7), [])


def test_a_cross_field_rule_is_reported_once_and_keeps_the_links_other_values() -> None:
    p, rejected = Sized.from_query({"s.size": "100", "s.steps": "500", "s.rows": "5", "s.seed": "7"}, "s")
    assert p == Sized(size=100, steps=20, rows=5, seed=7)
    assert [(r.field, r.key) for r in rejected] == [("steps", "too_much_work")]


@dataclass(frozen=True)
class Budgeted(Params):
    """A run of depth layers of width x width weights, batch rows: bytes and work grow with each."""

    depth: int = field(default=4, metadata=bounds(1, 100))
    width: int = field(default=64, metadata=ladder(8, 2048))
    batch: int = field(default=16, metadata=ladder(1, 1024))
    rate: float = field(default=0.5, metadata=bounds(0.0, 1.0))
    seed: int = seed_field()

    def estimate_bytes(self) -> int:
        return 4 * self.depth * self.width * self.width

    def estimate_work(self) -> float:
        return float(self.depth * self.batch * self.width * self.width)


def spec_of(name: str) -> FieldSpec:
    return next(s for s in Budgeted.specs() if s.name == name)


@pytest.mark.parametrize(
    ("p", "name", "max_bytes", "max_work"),
    [
        (Budgeted(), "width", 2**20, 1e12),  # bytes bind: 4 * 4 * w^2 <= 1 MiB -> w <= 256
        (Budgeted(), "depth", 2**20, 1e12),  # 4 * d * 4096 <= 1 MiB -> d <= 64
        (Budgeted(), "batch", 1e12, 2**20),  # 4 * b * 4096 <= 2^20 -> b <= 64
        (Budgeted(depth=100, width=2048), "width", 1e6, 1e12),  # nothing fits: the slider's least stop
    ],
)
def test_the_budget_bound_is_the_last_value_that_fits(p: Budgeted, name: str, max_bytes: float, max_work: float) -> None:
    import dataclasses

    spec = spec_of(name)
    bound = p.budget_bound(spec, max_bytes, max_work)
    assert bound is not None
    # Independently: walk every value the slider offers and keep those below the first that does not fit.
    offered = spec.meta.get("ladder") or range(spec.meta["lo"], spec.meta["hi"] + 1)
    fitting = []
    for v in offered:
        q = dataclasses.replace(p, **{name: v})
        if q.estimate_bytes() > max_bytes or q.estimate_work() > max_work:
            break
        fitting.append(v)
    assert bound == (fitting[-1] if fitting else offered[0])


def test_the_budget_bound_leaves_alone_what_always_fits() -> None:
    p = Budgeted()
    assert p.budget_bound(spec_of("width"), 1e12, 1e15) is None
    assert p.budget_bound(spec_of("seed"), 0, 0) is None  # a seed costs nothing
    assert p.budget_bound(spec_of("rate"), 0, 0) is None  # a plain float slider
