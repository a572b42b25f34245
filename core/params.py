"""Experiment parameters: one declaration drives validation, widgets, the URL codec and tests.

A Params subclass is a frozen dataclass. Each field's metadata says what values it accepts:

    rows: int = field(default=3, metadata=bounds(1, 6))
    fn: str = field(default="randn", metadata=choices("rand", "randn"))
    shape: tuple[int, ...] = field(default=(2, 3), metadata=shape_spec(max_dims=4, lo=1, hi=6))

Errors carry a message *key* and its arguments, never an English sentence: the UI translates them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

# Longest raw URL value we even try to parse; anything longer is rejected unread.
MAX_RAW_LEN = 200


class InvalidParams(ValueError):
    """A parameter value the experiment cannot accept; `key` names a translatable message."""

    def __init__(self, field: str, key: str, **info: Any) -> None:
        self.field = field
        self.key = key
        self.info: dict[str, Any] = info
        details = ", ".join(f"{k}={v!r}" for k, v in info.items())
        super().__init__(f"{field}: {key}" + (f" ({details})" if details else ""))


@dataclass(frozen=True)
class Rejected:
    """One URL value that from_query could not use (the field fell back to its default)."""

    field: str
    key: str
    info: Mapping[str, Any]


def bounds(lo: float, hi: float, step: float | None = None, hi_of: str | None = None) -> dict[str, Any]:
    """Field metadata for a number between lo and hi inclusive.

    `hi_of` names a method of the Params that returns a tighter upper bound computed from the other
    fields (an element index below the tensor's numel): validation checks it and the slider stops there.
    """
    meta: dict[str, Any] = {"lo": lo, "hi": hi, "step": step}
    if hi_of is not None:
        meta["hi_of"] = hi_of
    return meta


def ladder(lo: float, hi: float, steps: str = "pow2") -> dict[str, Any]:
    """Field metadata for a number spanning decades: a slider over powers of two ("pow2") or 1-2-5 steps ("125").

    Any value between lo and hi is valid (a link may carry 300); the slider's stops are the ladder.
    """
    return {"lo": lo, "hi": hi, "step": None, "ladder": ladder_values(lo, hi, steps)}


def ladder_values(lo: float, hi: float, steps: str = "pow2") -> tuple[float, ...]:
    """Return the stops of a ladder from lo to hi inclusive (lo and hi are always stops)."""
    if lo <= 0 or hi < lo:
        raise ValueError(f"a ladder needs 0 < lo <= hi, got {lo}, {hi}")
    mantissas = (1.0,) if steps == "pow2" else (1.0, 2.0, 5.0)
    base = 2.0 if steps == "pow2" else 10.0
    out = {lo, hi}
    exponent = math.floor(math.log(lo, base)) - 1
    while base**exponent <= hi:
        out.update(m * base**exponent for m in mantissas if lo <= m * base**exponent <= hi)
        exponent += 1
    as_int = isinstance(lo, int) and isinstance(hi, int)
    return tuple(sorted({round(v) if as_int else float(f"{v:.12g}") for v in out}))


SEED_MAX = 2**31 - 1


def seed_field(default: int = 0) -> Any:
    """Return the dataclass field of a random seed: an exact value (a number box), 0..2**31-1."""
    return dataclasses.field(default=default, metadata={"lo": 0, "hi": SEED_MAX, "step": None, "seed": True})


def choices(*values: str) -> dict[str, Any]:
    """Field metadata for a string (or tuple of strings) drawn from a fixed list."""
    return {"choices": tuple(values)}


def shape_spec(max_dims: int, lo: int, hi: int, min_dims: int = 1, allow_infer: bool = False, sep: str = "x") -> dict[str, Any]:
    """Field metadata for a tuple of ints (a shape "2x3", or with sep="," a list "1,2,4"); allow_infer admits one -1."""
    return {"max_dims": max_dims, "min_dims": min_dims, "lo": lo, "hi": hi, "allow_infer": allow_infer, "sep": sep}


def text_spec(max_len: int) -> dict[str, Any]:
    """Field metadata for free text of at most max_len characters."""
    return {"max_len": max_len}


@dataclass(frozen=True)
class FieldSpec:
    """What one Params field is: its name, Python type, default and metadata."""

    name: str
    kind: str  # "int" | "float" | "bool" | "str" | "ints" | "strs"
    default: Any
    meta: Mapping[str, Any]


_KINDS: dict[Any, str] = {
    int: "int",
    float: "float",
    bool: "bool",
    str: "str",
    tuple[int, ...]: "ints",
    tuple[str, ...]: "strs",
}


@dataclass(frozen=True)
class Params:
    """Base of every experiment's parameters: validation and the query-string codec."""

    _spec_cache: ClassVar[dict[type, tuple[FieldSpec, ...]]] = {}

    @classmethod
    def specs(cls) -> tuple[FieldSpec, ...]:
        """Return the FieldSpec of every field, in declaration order."""
        cached = Params._spec_cache.get(cls)
        if cached is not None:
            return cached
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kind = _KINDS.get(hints[f.name])
            if kind is None:
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {hints[f.name]!r}")
            out.append(FieldSpec(f.name, kind, f.default, f.metadata))
        Params._spec_cache[cls] = tuple(out)
        return Params._spec_cache[cls]

    def __post_init__(self) -> None:
        # An int given for a float field (p=1) becomes a float, so torch sees the dtype it expects.
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.kind == "float" and type(value) is int:
                object.__setattr__(self, spec.name, float(value))

    def validate(self) -> None:
        """Raise InvalidParams for the first field that breaks its declaration.

        Subclasses add cross-field checks by overriding and calling super().validate() first.
        """
        for spec in self.specs():
            check_value(spec, getattr(self, spec.name))
        for spec in self.specs():
            hi = self.upper_bound(spec)
            if hi is not None and getattr(self, spec.name) > hi:
                raise InvalidParams(spec.name, "out_of_range", lo=spec.meta["lo"], hi=hi, value=getattr(self, spec.name))

    def upper_bound(self, spec: FieldSpec) -> int | float | None:
        """Return the field's upper bound given the other fields (its `hi_of` method), or None when it has none."""
        method = spec.meta.get("hi_of")
        return None if method is None else min(spec.meta["hi"], getattr(self, method)())

    def budget_bound(self, spec: FieldSpec, max_bytes: float, max_work: float) -> int | float | None:
        """Return the largest value of a numeric field, the other fields as they are, up to which every
        value the slider offers fits the runner's budgets; None when its whole range fits.

        The slider stops there, so a student never picks a value the runner then refuses. A ladder's
        stops are tried in order; a plain int range by bisection, which assumes the estimates grow
        with the field, as they do for sizes and counts. Floats without a ladder are left alone.
        """

        def fits(value: float) -> bool:
            q = dataclasses.replace(self, **{spec.name: value})
            return q.estimate_bytes() <= max_bytes and q.estimate_work() <= max_work

        if spec.kind not in ("int", "float") or spec.meta.get("seed") or spec.meta.get("exact"):
            return None
        hi = self.upper_bound(spec)
        hi = spec.meta["hi"] if hi is None else hi
        if "ladder" in spec.meta:
            stops: list[int | float] = [v for v in spec.meta["ladder"] if v <= hi]
            if fits(stops[-1]):
                return None
            fitting = list(itertools.takewhile(fits, stops))
            return fitting[-1] if fitting else stops[0]
        if spec.kind != "int" or fits(hi):
            return None
        lo, top = int(spec.meta["lo"]), int(hi)  # fits(top) is False: find the last fitting value below it
        while top - lo > 1:
            mid = (lo + top) // 2
            lo, top = (mid, top) if fits(mid) else (lo, mid)
        return lo

    def estimate_bytes(self) -> int:
        """Return the bytes the run will allocate at most; the runner refuses what exceeds the budget."""
        return 0

    def estimate_work(self) -> float:
        """Return the multiply-adds (or element operations) the run will do at most; the runner refuses more than its budget."""
        return 0.0

    def roles(self) -> dict[str, str]:
        """Return the fields the current settings use, each with the string key of its label (default: all, by name)."""
        return {s.name: s.name for s in self.specs()}

    @classmethod
    def linked(cls, name: str, value: Any) -> dict[str, Any]:
        """Return the fields that take new values when field `name` becomes `value` (sizes per op, say)."""
        return {}

    def to_query(self, prefix: str) -> dict[str, str]:
        """Return every field as `prefix.name -> text`, the form st.query_params holds."""
        return {f"{prefix}.{s.name}": encode(s, getattr(self, s.name)) for s in self.specs()}

    @classmethod
    def from_query(cls, query: Mapping[str, str], prefix: str) -> tuple[Self, list[Rejected]]:
        """Build Params from a query mapping; never raises.

        Missing fields take their defaults, except that a choice the link sets brings its linked
        values (`linked`: an op's own sizes) unless the link gives them too. Each unreadable or
        out-of-bounds value falls back to its default and is reported. When the combination breaks a
        cross-field rule, the field it names is brought within the rule's limit (`max`) when it
        says one, else reset; each field is reported once, and the link's other values are kept.
        """
        values: dict[str, Any] = {}
        rejected: list[Rejected] = []
        specs = {spec.name: spec for spec in cls.specs()}
        for spec in specs.values():
            raw = query.get(f"{prefix}.{spec.name}")
            if raw is None:
                continue
            try:
                value = decode(spec, raw)
                check_value(spec, value)
            except InvalidParams as e:
                rejected.append(Rejected(spec.name, e.key, e.info))
                continue
            values[spec.name] = value
        for name in list(values):
            for other, value in cls.linked(name, values[name]).items():
                if f"{prefix}.{other}" not in query or other not in values:
                    values[other] = value
        reported = {r.field for r in rejected}
        for _ in range(2 * len(specs) + 2):
            candidate = cls(**values)
            try:
                candidate.validate()
                return candidate, rejected
            except InvalidParams as e:
                if e.field not in reported:
                    rejected.append(Rejected(e.field, e.key, e.info))
                    reported.add(e.field)
                limit = _within_limit(specs.get(e.field), e.info)
                if limit is not None and values.get(e.field, getattr(candidate, e.field, None)) != limit:
                    values[e.field] = limit
                elif e.field in values:
                    del values[e.field]
                else:  # the field is already at its default: one of the link's other values must go
                    given = [n for n in values if n != e.field]
                    if not given:
                        break
                    values.pop(given[-1])
        return cls(), rejected


def _within_limit(spec: FieldSpec | None, info: Mapping[str, Any]) -> Any:
    """Return the value a cross-field rule's message allows for a numeric field (its `max` or `hi`), or None."""
    if spec is None or spec.kind not in ("int", "float"):
        return None
    limit = info.get("max", info.get("hi"))
    if not isinstance(limit, int | float) or isinstance(limit, bool):
        return None
    value = int(limit) if spec.kind == "int" else float(limit)
    try:
        check_value(spec, value)
    except InvalidParams:
        return None
    return value


def check_value(spec: FieldSpec, value: Any) -> None:
    """Raise InvalidParams if value does not fit spec (type, bounds, choices, length)."""
    meta, name = spec.meta, spec.name
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidParams(name, "wrong_type", expected="bool")
    elif spec.kind in ("int", "float"):
        ok_types: tuple[type, ...] = (int,) if spec.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise InvalidParams(name, "wrong_type", expected=spec.kind)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParams(name, "not_finite")
        if "lo" in meta and not meta["lo"] <= value <= meta["hi"]:
            raise InvalidParams(name, "out_of_range", lo=meta["lo"], hi=meta["hi"], value=value)
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise InvalidParams(name, "wrong_type", expected="str")
        if "choices" in meta and value not in meta["choices"]:
            raise InvalidParams(name, "not_a_choice", choices=", ".join(meta["choices"]))
        if "max_len" in meta and len(value) > meta["max_len"]:
            raise InvalidParams(name, "too_long", max_len=meta["max_len"])
    elif spec.kind == "strs":
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise InvalidParams(name, "wrong_type", expected="list")
        allowed = meta.get("choices", ())
        for v in value:
            if v not in allowed:
                raise InvalidParams(name, "not_a_choice", choices=", ".join(allowed))
        if len(set(value)) != len(value):
            raise InvalidParams(name, "duplicate")
    elif spec.kind == "ints":
        _check_ints(spec, value)


def _check_ints(spec: FieldSpec, value: Any) -> None:
    meta, name = spec.meta, spec.name
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InvalidParams(name, "wrong_type", expected="ints")
    if not meta.get("min_dims", 0) <= len(value) <= meta.get("max_dims", 8):
        raise InvalidParams(name, "bad_length", lo=meta.get("min_dims", 0), hi=meta.get("max_dims", 8))
    inferred = 0
    for v in value:
        if v == -1 and meta.get("allow_infer"):
            inferred += 1
            continue
        if not meta["lo"] <= v <= meta["hi"]:
            raise InvalidParams(name, "out_of_range", lo=meta["lo"], hi=meta["hi"], value=v)
    if inferred > 1:
        raise InvalidParams(name, "one_infer")


def encode(spec: FieldSpec, value: Any) -> str:
    """Return the URL text of a value: 2x3x4 for shapes, 1/0 for booleans, a,b for lists."""
    if spec.kind == "bool":
        return "1" if value else "0"
    if spec.kind == "ints":
        return str(spec.meta.get("sep", "x")).join(str(v) for v in value)
    if spec.kind == "strs":
        return ",".join(value)
    if spec.kind == "float":
        return repr(float(value))
    return str(value)


def decode(spec: FieldSpec, raw: str) -> Any:
    """Parse URL text into the field's type; raise InvalidParams(key='unreadable') on junk."""
    limit = max(MAX_RAW_LEN, int(spec.meta.get("max_len", 0)))  # free text may be as long as it is allowed to be
    if not isinstance(raw, str) or len(raw) > limit:
        raise InvalidParams(spec.name, "unreadable")
    text = raw.strip()
    try:
        if spec.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if spec.kind == "int":
            return _parse_int(text)
        if spec.kind == "float":
            # float() also reads "1_0" as 10 and Unicode digits ("٣", "１"): a link carries plain ASCII decimals only.
            if not text.isascii() or "_" in text:
                raise ValueError(text)
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
            return number
        if spec.kind == "ints":
            if text == "":
                return ()
            parts = text.replace(",", "x").replace("×", "x").lower().split("x")
            return tuple(_parse_int(p.strip()) for p in parts)
        if spec.kind == "strs":
            return tuple(p.strip() for p in text.split(",") if p.strip())
        return text
    except (ValueError, OverflowError):
        raise InvalidParams(spec.name, "unreadable") from None


def _parse_int(text: str) -> int:
    """Parse a plain decimal integer of at most 40 digits (int() would accept '1_000' and 4300 digits).

    A number that is merely too large is readable: the bounds check then says what range is allowed.
    """
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 40:
        raise ValueError(text)
    return int(text)


def parse_ints(spec: FieldSpec, text: str) -> tuple[int, ...]:
    """Parse and check a typed shape such as '2x3'; raise InvalidParams with a key on failure."""
    value = decode(spec, text)
    check_value(spec, value)
    return tuple(value)
