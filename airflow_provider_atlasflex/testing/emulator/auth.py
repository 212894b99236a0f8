"""Authentication as Atlas does it: HTTP Digest API keys and OAuth2 service accounts.

Why real crypto rather than "any header passes": the provider under test must prove
that it negotiates Digest (challenge, nonce reuse, stale nonces) and manages OAuth
tokens (caching, expiry, revocation, per-client limits) correctly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import ApiErrorResponse

__all__ = [
    "PROJECT_OWNER",
    "PROJECT_READ_ONLY",
    "ApiKey",
    "AuthError",
    "DigestAuthenticator",
    "OAuthError",
    "Principal",
    "ServiceAccount",
    "TokenStore",
]

PROJECT_OWNER = "GROUP_OWNER"
PROJECT_READ_ONLY = "GROUP_READ_ONLY"
REALM = "MMS Public API"


class ApiKey(NamedTuple):
    """A programmatic API key (Digest user = public key, password = private key)."""

    public_key: str
    private_key: str


class ServiceAccount(NamedTuple):
    """An OAuth2 service account (client-credentials grant)."""

    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Principal:
    """Who made an authenticated Admin API call, and with which roles."""

    kind: str  # "digest" | "bearer"
    name: str  # public key or client id
    roles: tuple[str, ...]


class AuthError(ApiErrorResponse):
    """401 ApiError that also carries the Digest challenge."""


class OAuthError(Exception):
    """An OAuth endpoint error: HTTP status plus a JSON body and headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


_DIGEST_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_digest(header: str) -> dict[str, str]:
    """Parse the parameters of an ``Authorization: Digest ...`` header."""
    _, _, rest = header.partition(" ")
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _DIGEST_PARAM.finditer(rest)
    }


@dataclass
class _Nonce:
    issued: float
    last_nc: int = 0


class DigestAuthenticator:
    """RFC 7616 Digest (MD5, qop=auth) with nonce expiry and nc replay checks."""

    def __init__(self, keys: Mapping[ApiKey, tuple[str, ...]], clock: Callable[[], float], nonce_ttl: float) -> None:
        self._keys = {k.public_key: k for k in keys}
        self._roles = {k.public_key: tuple(r) for k, r in keys.items()}
        self._clock = clock
        self._nonce_ttl = nonce_ttl
        self._nonces: dict[str, _Nonce] = {}
        self._lock = threading.Lock()

    def challenge(self, stale: bool = False) -> str:
        """A fresh ``WWW-Authenticate`` value (the nonce is remembered)."""
        nonce = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            # Forget nonces long past their lifetime so the table stays small.
            if len(self._nonces) > 10_000:
                horizon = now - 2 * self._nonce_ttl
                self._nonces = {n: v for n, v in self._nonces.items() if v.issued > horizon}
            self._nonces[nonce] = _Nonce(issued=now)
        # As documented for Atlas: no domain, and stale=true only when the nonce was stale.
        challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
        return challenge + ", stale=true" if stale else challenge

    def unauthorized(self, detail: str, stale: bool = False) -> AuthError:
        return AuthError(
            401,
            "UNAUTHORIZED",
            detail,
            headers={"WWW-Authenticate": self.challenge(stale=stale)},
        )

    def authenticate(self, header: str, method: str, uri: str) -> Principal:
        """Verify a Digest ``Authorization`` header or raise a 401 ``AuthError``."""
        params = parse_digest(header)
        username = params.get("username", "")
        key = self._keys.get(username)
        required = ("username", "realm", "nonce", "uri", "response")
        if any(p not in params for p in required) or key is None:
            raise self.unauthorized("You are not authorized for this resource.")
        if params["realm"] != REALM:
            raise self.unauthorized("You are not authorized for this resource.")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm != "MD5":
            raise self.unauthorized(f"Unsupported digest algorithm {algorithm}.")
        # The digest-uri must name the request target (clients send path?query).
        if params["uri"] != uri and params["uri"] != uri.split("?", 1)[0]:
            raise self.unauthorized("Digest uri does not match the request.")
        qop = params.get("qop")
        ha1 = hashlib.md5(f"{username}:{REALM}:{key.private_key}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{params['uri']}".encode()).hexdigest()
        if qop == "auth":
            nc_text, cnonce = params.get("nc", ""), params.get("cnonce", "")
            if not nc_text or not cnonce:
                raise self.unauthorized("You are not authorized for this resource.")
            expected = hashlib.md5(f"{ha1}:{params['nonce']}:{nc_text}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        elif qop is None:
            raise self.unauthorized("Digest qop=auth is required.")
        else:
            raise self.unauthorized(f"Unsupported digest qop {qop}.")
        if not hmac.compare_digest(expected, params["response"].lower()):
            raise self.unauthorized("You are not authorized for this resource.")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            raise self.unauthorized("Malformed nonce count.") from None
        with self._lock:
            entry = self._nonces.get(params["nonce"])
            if entry is None:
                stale_unknown = True
            else:
                stale_unknown = False
                expired = self._clock() - entry.issued > self._nonce_ttl
                if not expired and nc > entry.last_nc:
                    entry.last_nc = nc
                    return Principal("digest", username, self._roles[username])
        if stale_unknown:
            # A nonce we never issued (or forgot): the credentials are right, so a
            # client may simply retry with the fresh challenge.
            raise self.unauthorized("Unknown digest nonce.", stale=True)
        if expired:
            raise self.unauthorized("Digest nonce expired.", stale=True)
        # Replayed / non-increasing nc: refuse, but as "stale" so honest clients recover.
        raise self.unauthorized("Digest nonce count must increase.", stale=True)


@dataclass
class _Token:
    client_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class _ClientStats:
    requests_total: int = 0
    window: deque[float] = field(default_factory=deque)


class TokenStore:
    """OAuth2 client-credentials tokens with Atlas's per-client limits."""

    RATE_WINDOW = 60.0
    RATE_LIMIT = 10
    ACTIVE_LIMIT = 100

    def __init__(
        self,
        accounts: Mapping[ServiceAccount, tuple[str, ...]],
        clock: Callable[[], float],
        token_ttl: float,
        enforce_limits: bool,
    ) -> None:
        self._accounts = {a.client_id: a for a in accounts}
        self._roles = {a.client_id: tuple(r) for a, r in accounts.items()}
        self._clock = clock
        self.token_ttl = token_ttl
        self.enforce_limits = enforce_limits
        self._tokens: dict[str, _Token] = {}
        self._stats: dict[str, _ClientStats] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- endpoint
    def _client_from_basic(self, header: str | None, form: dict[str, str]) -> ServiceAccount:
        client_id = client_secret = None
        if header and header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            client_id, sep, client_secret = decoded.partition(":")
            if not sep:
                client_id = client_secret = None
        elif "client_id" in form:  # RFC 6749 2.3.1 allows body credentials
            client_id, client_secret = form.get("client_id"), form.get("client_secret", "")
        account = self._accounts.get(client_id or "")
        if account is None or not hmac.compare_digest(account.client_secret, client_secret or ""):
            raise OAuthError(
                401,
                {"error": "invalid_client", "error_description": "Invalid client credentials."},
                {"WWW-Authenticate": 'Basic realm="MongoDB Atlas"'},
            )
        return account

    def issue(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        """Handle ``POST /api/oauth/token``; returns the token JSON or raises OAuthError."""
        account = self._client_from_basic(authorization, form)
        now = self._clock()
        with self._lock:
            stats = self._stats.setdefault(account.client_id, _ClientStats())
            stats.requests_total += 1
            while stats.window and now - stats.window[0] >= self.RATE_WINDOW:
                stats.window.popleft()
            if self.enforce_limits and len(stats.window) >= self.RATE_LIMIT:
                retry = max(1, int(self.RATE_WINDOW - (now - stats.window[0])) + 1)
                body = {
                    "detail": f"Too many token requests. Please retry after {retry} seconds.",
                    "error": 429,
                    "errorCode": "RATE_LIMITED",
                    "parameters": [],
                    "reason": "Too Many Requests",
                }
                raise OAuthError(429, body, {"Retry-After": str(retry), "X-Error-Code": "RATE_LIMITED"})
            stats.window.append(now)
        grant = form.get("grant_type")
        if grant is None:
            raise OAuthError(400, {"error": "invalid_request", "error_description": "Missing grant_type."})
        if grant != "client_credentials":
            raise OAuthError(
                400, {"error": "unsupported_grant_type", "error_description": f"Unsupported grant_type {grant}."}
            )
        with self._lock:
            if self.enforce_limits and self._active_locked(account.client_id, now) >= self.ACTIVE_LIMIT:
                raise OAuthError(403, {"error": "access_denied", "error_description": "Access Token limit reached"})
            token = secrets.token_urlsafe(48)
            self._tokens[token] = _Token(account.client_id, now + self.token_ttl)
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl)}

    def revoke(self, authorization: str | None, form: dict[str, str]) -> None:
        """Handle ``POST /api/oauth/revoke`` (RFC 7009: unknown tokens are not an error)."""
        account = self._client_from_basic(authorization, form)
        token = form.get("token")
        if not token:
            raise OAuthError(400, {"error": "invalid_request", "error_description": "Missing token."})
        with self._lock:
            entry = self._tokens.get(token)
            if entry is not None and entry.client_id == account.client_id:
                entry.revoked = True

    # ------------------------------------------------------------ admin API
    def authenticate(self, token: str) -> Principal:
        """Resolve a bearer token or raise a 401 ApiError."""
        now = self._clock()
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                detail = "Invalid access token."
            elif entry.revoked:
                detail = "Access token has been revoked."
            elif now >= entry.expires_at:
                detail = "Access token has expired."
            else:
                return Principal("bearer", entry.client_id, self._roles[entry.client_id])
        raise ApiErrorResponse(
            401, "UNAUTHORIZED", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )

    # ---------------------------------------------------------- test knobs
    def _active_locked(self, client_id: str, now: float) -> int:
        return sum(
            1 for t in self._tokens.values() if t.client_id == client_id and not t.revoked and now < t.expires_at
        )

    def active_count(self, client_id: str) -> int:
        with self._lock:
            return self._active_locked(client_id, self._clock())

    def issued(self, client_id: str | None = None) -> list[str]:
        """Every access token issued so far (revoked and expired ones too), oldest first."""
        with self._lock:
            return [t for t, entry in self._tokens.items() if client_id is None or entry.client_id == client_id]

    def requests_total(self, client_id: str) -> int:
        with self._lock:
            stats = self._stats.get(client_id)
            return stats.requests_total if stats else 0

    def revoke_all(self) -> None:
        with self._lock:
            for t in self._tokens.values():
                t.revoked = True

    def expire_all(self) -> None:
        """Make every issued token expired now (for token-refresh tests)."""
        now = self._clock()
        with self._lock:
            for t in self._tokens.values():
                t.expires_at = min(t.expires_at, now)
