"""A small, real OpenID Connect provider for tests: the authorization code flow on a loopback port.

It serves what `st.login` (Authlib underneath) uses: the discovery document, an authorization
endpoint, a token endpoint issuing RS256-signed ID tokens, the JSON Web Key Set, and an end-session
endpoint for `st.logout`. It signs in `provider.user` at once, as a provider with a live session
would (no login form), and keeps a record of every request so a test can check what the client
sent. It checks what a real provider checks: the client's id and secret, registered redirect URIs,
single-use codes bound to their client and redirect URI, and PKCE (S256) when the client used it.

Standard library HTTP server in a thread; RSA from `cryptography` (which Authlib needs anyway).
Authlib reads the user from the ID token's claims, so there is no userinfo endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CODE_LIFETIME_S = 60
TOKEN_LIFETIME_S = 600


def b64url(data: bytes) -> str:
    """Return data as unpadded base64url text (JOSE's encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Grant:
    """An authorization code waiting for its token request."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: dict[str, Any]
    expires: float


@dataclass
class OidcProvider:
    """One client registration, one signing key, one signed-in user at a time (`user`, changeable between sign-ins)."""

    client_id: str = "torchlab-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user: dict[str, Any] = field(
        default_factory=lambda: {"sub": "teacher-1", "email": "teacher@school.example", "name": "Ada Teacher"}
    )
    redirect_uris: set[str] = field(default_factory=set)
    issuer: str = ""  # set by serve(): http://127.0.0.1:<port>
    authorizations: list[dict[str, str]] = field(default_factory=list)  # the query of each /authorize
    token_requests: list[dict[str, str]] = field(default_factory=list)  # the form of each /token (secret left out)
    logouts: list[dict[str, str]] = field(default_factory=list)  # the query of each /logout
    errors: list[str] = field(default_factory=list)  # every request refused, and why

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()

    # ---- what the endpoints answer

    def metadata(self) -> dict[str, Any]:
        """Return the discovery document (OpenID Connect Discovery 1.0)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "aud", "sub", "email", "email_verified", "name", "nonce", "iat", "exp"],
        }

    def jwks(self) -> dict[str, Any]:
        """Return the public signing key as a JWK Set."""
        numbers = self._key.public_key().public_numbers()
        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self._kid}
        return {"keys": [key | {"n": _int_b64url(numbers.n), "e": _int_b64url(numbers.e)}]}

    def sign(self, claims: dict[str, Any]) -> str:
        """Return claims as a compact JWS signed with RS256 under this provider's key id."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Answer /authorize: sign `user` in and redirect back with a code (or an error)."""
        with self._lock:
            self.authorizations.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            # Never redirect to an address that is not registered: say so here (RFC 6749 4.1.2.1).
            return self._refuse(400, f"unknown client or redirect_uri: {query.get('client_id')!r} {redirect_uri!r}")
        back: dict[str, str] = {}
        if "state" in query:
            back["state"] = query["state"]
        method = query.get("code_challenge_method", "plain" if "code_challenge" in query else None)
        if query.get("response_type") != "code":
            back |= {"error": "unsupported_response_type"}
        elif "openid" not in query.get("scope", "").split():
            back |= {"error": "invalid_scope", "error_description": "openid is required"}
        elif method not in (None, "S256"):
            back |= {"error": "invalid_request", "error_description": "only S256 PKCE"}
        else:
            code = secrets.token_urlsafe(24)
            grant = Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=query.get("nonce"),
                code_challenge=query.get("code_challenge"),
                code_challenge_method=method,
                user=dict(self.user),
                expires=time.time() + CODE_LIFETIME_S,
            )
            with self._lock:
                self._grants[code] = grant
            back["code"] = code
        if "error" in back:
            self._note(f"/authorize refused: {back}")
        return self._redirect(redirect_uri, back)

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """Answer /token: exchange a code for an access token and a signed ID token."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"} | {"client_id": client_id or ""})
            grant = self._grants.pop(form.get("code", ""), None)  # a code is used once, whatever happens next
        if client_id != self.client_id or not hmac.compare_digest(client_secret or "", self.client_secret):
            return self._json_error(401, "invalid_client", "wrong client id or secret")
        if form.get("grant_type") != "authorization_code":
            return self._json_error(400, "unsupported_grant_type", str(form.get("grant_type")))
        if grant is None or grant.expires < time.time() or grant.client_id != client_id:
            return self._json_error(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._json_error(400, "invalid_grant", "redirect_uri differs from the authorization request's")
        verifier = form.get("code_verifier")
        if grant.code_challenge is not None:
            expected = b64url(hashlib.sha256((verifier or "").encode("ascii")).digest())
            if not verifier or not hmac.compare_digest(expected, grant.code_challenge):
                return self._json_error(400, "invalid_grant", "PKCE code_verifier does not match")
        elif verifier:
            return self._json_error(400, "invalid_request", "code_verifier without a code_challenge")
        access_token = secrets.token_urlsafe(32)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "auth_time": now,
            "at_hash": b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16]),
            "email_verified": True,
            **grant.user,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "scope": "openid email profile",
            "id_token": self.sign(claims),
        }
        return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, json.dumps(body).encode()

    def logout(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Answer /logout (RP-initiated logout): back to a registered post_logout_redirect_uri."""
        with self._lock:
            self.logouts.append(dict(query))
        target = query.get("post_logout_redirect_uri", "")
        if target not in self.redirect_uris:
            return self._refuse(400, f"unregistered post_logout_redirect_uri {target!r}")
        return self._redirect(target, {"state": query["state"]} if "state" in query else {})

    # ---- plumbing

    def _note(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    def _refuse(self, status: int, why: str) -> tuple[int, dict[str, str], bytes]:
        self._note(why)
        return status, {"Content-Type": "text/plain; charset=utf-8"}, why.encode()

    def _json_error(self, status: int, error: str, description: str) -> tuple[int, dict[str, str], bytes]:
        self._note(f"/token {error}: {description}")
        body = json.dumps({"error": error, "error_description": description}).encode()
        return status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body

    @staticmethod
    def _redirect(uri: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(uri)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return 302, {"Location": urlunsplit(parts._replace(query=query)), "Cache-Control": "no-store"}, b""

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Route one request to its endpoint; return (status, headers, body)."""
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = (method, parts.path)
        if route == ("GET", "/.well-known/openid-configuration"):
            return 200, {"Content-Type": "application/json"}, json.dumps(self.metadata()).encode()
        if route == ("GET", "/jwks"):
            return 200, {"Content-Type": "application/json"}, json.dumps(self.jwks()).encode()
        if route == ("GET", "/authorize"):
            return self.authorize(query)
        if route == ("POST", "/token"):
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
            return self.token(form, headers.get("authorization"))
        if route == ("GET", "/logout"):
            return self.logout(query)
        return self._refuse(404, f"no endpoint {method} {parts.path}")

    @contextmanager
    def serve(self, host: str = "127.0.0.1") -> Iterator[OidcProvider]:
        """Serve on a free port of host (in a thread) until the block ends; `issuer` names it meanwhile."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, out_headers, out = provider.handle(method, self.path, body, headers)
                except Exception as e:  # a bug here must show in the test, not as a dropped connection
                    provider._note(f"{method} {self.path} raised {e!r}")
                    status, out_headers, out = 500, {"Content-Type": "text/plain"}, repr(e).encode()
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the provider's own records say what happened

        server = ThreadingHTTPServer((host, 0), Handler)
        server.daemon_threads = True
        self.issuer = f"http://{host}:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
