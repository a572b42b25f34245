"""Signed links and seat tokens: genuine ones verify, anything edited, truncated or forged does not."""

from __future__ import annotations

import base64
import json

import pytest

from classroom.links import (
    PARAM,
    Control,
    LinkSpec,
    canonical,
    link_query,
    read_seat_token,
    seat_token,
    sign,
    verify,
)

SECRET = b"s" * 32
SPEC = LinkSpec(
    "tensors",
    "create",
    "create",
    "zh",
    "ABC234",
    {"n": Control("locked", "500"), "fn": Control("hidden", "rand"), "seed": Control("free", "3")},
)


def test_a_genuine_link_verifies_to_its_spec() -> None:
    token = sign(SPEC, SECRET)
    assert verify(token, SECRET) == SPEC
    assert SPEC.fixed() == {"n": Control("locked", "500"), "fn": Control("hidden", "rand")}
    query = link_query(SPEC, token)
    assert query == {"lang": "zh", "tab": "create", "create.fn": "rand", "create.n": "500", "create.seed": "3", PARAM: token}


def test_the_encoding_is_canonical() -> None:
    reordered = LinkSpec("tensors", "create", "create", "zh", "ABC234", dict(reversed(list(SPEC.controls.items()))))
    assert canonical(reordered) == canonical(SPEC)
    assert sign(reordered, SECRET) == sign(SPEC, SECRET)


def _edited_payload(token: str) -> str:
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["controls"]["n"] = ["free", "999"]
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1],  # truncated signature
        lambda t: t[: len(t) // 2],  # truncated anywhere
        lambda t: t.split(".")[0],  # signature removed
        lambda t: t.split(".")[0] + "." + "A" * 43,  # forged signature
        lambda t: t + "x",
        lambda t: t.replace(".", ".."),
        _edited_payload,
        lambda t: "",
        lambda t: "é" * 10 + "." + "ü" * 43,
        lambda t: t * 200,  # huge
    ],
)
def test_anything_else_does_not_verify(tamper: object) -> None:
    token = sign(SPEC, SECRET)
    assert verify(tamper(token), SECRET) is None  # type: ignore[operator]


def test_another_secret_does_not_verify_and_modes_are_checked() -> None:
    assert verify(sign(SPEC, SECRET), b"other" * 8) is None
    assert verify(sign(SPEC, SECRET), b"") is None
    with pytest.raises(ValueError):
        sign(LinkSpec("tensors", "create", "create", "en", "", {"n": Control("readonly", "1")}), SECRET)


def test_seat_tokens_are_bound_to_student_and_class() -> None:
    token = seat_token(12, 3, SECRET)
    assert read_seat_token(token, SECRET) == (12, 3)
    student, klass, mac = token.split(".")
    for forged in [f"13.{klass}.{mac}", f"{student}.4.{mac}", f"{student}.{klass}.{mac[:-1]}", "12.3", "", "１２.3." + mac]:
        assert read_seat_token(forged, SECRET) is None
    assert read_seat_token(token, b"other") is None
    assert verify(token, SECRET) is None  # a seat token is no link
