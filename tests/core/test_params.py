"""The Params base: validation from metadata and the URL codec, which never raises on junk."""

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.params import InvalidParams, Params, bounds, choices, shape_spec, text_spec


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
