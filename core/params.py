"""Experiment parameters: one declaration drives validation, widgets, the URL codec and tests.

A Params subclass is a frozen dataclass. Each field's metadata says what values it accepts:

    rows: int = field(default=3, metadata=bounds(1, 6))
    fn: str = field(default="randn", metadata=choices("rand", "randn"))
    shape: tuple[int, ...] = field(default=(2, 3), metadata=shape_spec(max_dims=4, lo=1, hi=6))

Errors carry a message *key* and its arguments, never an English sentence: the UI translates them.
"""

from __future__ import annotations

import dataclasses
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


def bounds(lo: float, hi: float, step: float | None = None) -> dict[str, Any]:
    """Field metadata for a number between lo and hi inclusive."""
    return {"lo": lo, "hi": hi, "step": step}


def choices(*values: str) -> dict[str, Any]:
    """Field metadata for a string (or tuple of strings) drawn from a fixed list."""
    return {"choices": tuple(values)}


def shape_spec(
    max_dims: int, lo: int, hi: int, min_dims: int = 1, allow_infer: bool = False, sep: str = "x"
) -> dict[str, Any]:
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

    def estimate_bytes(self) -> int:
        """Return the bytes the run will allocate at most; the runner refuses what exceeds the budget."""
        return 0

    def to_query(self, prefix: str) -> dict[str, str]:
        """Return every field as `prefix.name -> text`, the form st.query_params holds."""
        return {f"{prefix}.{s.name}": encode(s, getattr(self, s.name)) for s in self.specs()}

    @classmethod
    def from_query(cls, query: Mapping[str, str], prefix: str) -> tuple[Self, list[Rejected]]:
        """Build Params from a query mapping; never raises.

        Missing fields take their defaults; each unusable value falls back to the default and is
        reported. If the combination is still invalid (a cross-field rule), the offending field
        is reset; if that does not help, everything is reset to defaults.
        """
        values: dict[str, Any] = {}
        rejected: list[Rejected] = []
        for spec in cls.specs():
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
        for _ in range(len(values) + 1):
            candidate = cls(**values)
            try:
                candidate.validate()
                return candidate, rejected
            except InvalidParams as e:
                rejected.append(Rejected(e.field, e.key, e.info))
                if e.field not in values:
                    break
                del values[e.field]
        return cls(), rejected


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
