"""Signed teacher links: which lesson and experiment, each control's value and mode, the language and the class.

A link carries its settings twice: as ordinary query parameters (what a student's page reads when
nothing is locked) and inside `_link=<payload>.<signature>`, where the payload is the canonical
JSON of a LinkSpec, base64url-encoded, and the signature its HMAC-SHA256 under the server's link
secret. A student who edits a locked value in the URL still has the teacher's value in the signed
payload; one who edits the payload or the signature has a link that no longer verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODES = ("free", "hidden", "locked")
PARAM = "_link"
MAX_TOKEN = 8192  # a longer _link is not even decoded
_DOMAIN = b"torchlab-link-v1\x00"  # the signature covers this purpose too: a seat token never verifies as a link
VERSION = 1


@dataclass(frozen=True)
class Control:
    """One control of the linked experiment: free, hidden or locked, at a value (the URL codec's text)."""

    mode: str
    value: str


@dataclass(frozen=True)
class LinkSpec:
    """What a teacher's link fixes: the page, the experiment (its URL prefix), the controls, the language, the class."""

    lesson: str
    experiment: str
    tab: str
    lang: str
    class_code: str = ""
    controls: Mapping[str, Control] = field(default_factory=dict)

    def fixed(self) -> dict[str, Control]:
        """Return the controls a student cannot change (hidden or locked)."""
        return {name: c for name, c in self.controls.items() if c.mode != "free"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(spec: LinkSpec) -> str:
    """Return the canonical encoding of a spec: sorted, compact JSON, base64url without padding."""
    body = {
        "v": VERSION,
        "lesson": spec.lesson,
        "exp": spec.experiment,
        "tab": spec.tab,
        "lang": spec.lang,
        "class": spec.class_code,
        "controls": {name: [c.mode, c.value] for name, c in sorted(spec.controls.items())},
    }
    return _b64(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _mac(payload: str, secret: bytes) -> str:
    return _b64(hmac.new(secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest())


def sign(spec: LinkSpec, secret: bytes) -> str:
    """Return the `_link` token of a spec: payload.signature."""
    for c in spec.controls.values():
        if c.mode not in MODES:
            raise ValueError(f"unknown control mode {c.mode!r}")
    payload = canonical(spec)
    return f"{payload}.{_mac(payload, secret)}"


def verify(token: str, secret: bytes) -> LinkSpec | None:
    """Return the spec of a genuine token; None for a forged, truncated, edited or malformed one (compared in constant time)."""
    if not secret or len(token) > MAX_TOKEN or token.count(".") != 1:
        return None
    payload, signature = token.split(".")
    try:
        expected = _mac(payload, secret)
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        return None
    try:
        return _parse(json.loads(_unb64(payload).decode("utf-8")))
    except (ValueError, binascii.Error, TypeError, KeyError):
        return None  # signed by us but not a spec we can read (another version): treated as unsigned


def _parse(body: Any) -> LinkSpec:
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise ValueError("not a version-1 link")
    texts = [body[k] for k in ("lesson", "exp", "tab", "lang", "class")]
    if not all(isinstance(x, str) for x in texts):
        raise ValueError("link fields must be text")
    controls: dict[str, Control] = {}
    for name, pair in dict(body["controls"]).items():
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in MODES and isinstance(pair[1], str)):
            raise ValueError(f"bad control {name!r}")
        controls[str(name)] = Control(pair[0], pair[1])
    return LinkSpec(texts[0], texts[1], texts[2], texts[3], texts[4], controls)


def link_query(spec: LinkSpec, token: str) -> dict[str, str]:
    """Return a link's query parameters: language, tab, every control's value under <experiment>.<field>, the token."""
    query = {"lang": spec.lang, "tab": spec.tab}
    query.update({f"{spec.experiment}.{name}": c.value for name, c in sorted(spec.controls.items())})
    query[PARAM] = token
    return query


def seat_token(student_id: int, class_id: int, secret: bytes) -> str:
    """Return the token that brings a student back to their seat after a reload: '<student>.<class>.<mac>'."""
    body = f"{student_id}.{class_id}"
    mac = _b64(hmac.new(secret, b"torchlab-seat-v1\x00" + body.encode("ascii"), hashlib.sha256).digest()[:18])
    return f"{body}.{mac}"


def read_seat_token(token: str, secret: bytes) -> tuple[int, int] | None:
    """Return (student id, class id) of a genuine seat token, else None."""
    parts = token.split(".")
    if not secret or len(token) > 80 or len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        return None
    student_id, class_id = int(parts[0]), int(parts[1])
    expected = seat_token(student_id, class_id, secret)
    return (student_id, class_id) if hmac.compare_digest(expected.encode("ascii"), token.encode("utf-8", "replace")) else None
