"""OAuth 2.0 client-credentials tokens for Atlas service accounts, cached per process.

Atlas allows 10 token requests a minute and 100 active tokens per service account, so a token
is fetched once, shared by every hook in the process that uses the same credentials, reused
until shortly before it expires, and revoked when the process is done with it.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import AtlasApiError
from airflow_provider_atlasflex.hooks.api_protocol import REVOKE_PATH, TOKEN_PATH, ApiCall

# Refresh this long before expires_in so a token never expires mid-request.
EXPIRY_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - EXPIRY_MARGIN_SECONDS


@dataclass(frozen=True)
class FormCall(ApiCall):
    """A call to the OAuth endpoints: form-encoded body, Basic auth, plain JSON answer."""

    form: tuple[tuple[str, str], ...] = ()

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}

    def body(self) -> bytes:
        return urlencode(self.form).encode()


def basic_authorization(client_id: str, client_secret: str) -> str:
    raw = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_call() -> FormCall:
    return FormCall(operation="oauthToken", method="POST", path=TOKEN_PATH, form=(("grant_type", "client_credentials"),))


def revoke_call(token: str) -> FormCall:
    return FormCall(
        operation="oauthRevoke",
        method="POST",
        path=REVOKE_PATH,
        form=(("token", token), ("token_type_hint", "access_token")),
    )


def parse_token(payload: Any, credential_label: str) -> CachedToken:
    """Check the token endpoint's answer and register the token with the log masker."""
    if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
        raise AtlasApiError(
            f"The Atlas token endpoint answered without an access_token for the {credential_label}; "
            "check the connection host points at Atlas.",
            operation="oauthToken",
        )
    token = payload["access_token"]
    mask_secret(token)
    try:
        expires_in = float(payload.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return CachedToken(token, time.time() + expires_in)


class TokenCache:
    """Process-wide store of service-account tokens, keyed by base URL and credentials."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, CachedToken] = {}
        self._revokers: dict[str, Callable[[str], None]] = {}
        self._exit_hook_pid: int | None = None

    @staticmethod
    def key(base_url: str, client_id: str, client_secret: str) -> str:
        return hashlib.sha256(f"{base_url}\0{client_id}\0{client_secret}".encode()).hexdigest()

    def get(self, key: str) -> CachedToken | None:
        with self._lock:
            token = self._tokens.get(key)
        return token if token is not None and token.fresh(time.time()) else None

    def put(self, key: str, token: CachedToken, revoker: Callable[[str], None]) -> None:
        with self._lock:
            self._tokens[key] = token
            self._revokers[key] = revoker
            # Registered lazily and per process: Airflow's task supervisor forks, and only runs
            # the exit handlers a child registered after the fork.
            if self._exit_hook_pid != os.getpid():
                self._exit_hook_pid = os.getpid()
                atexit.register(self.revoke_all)

    def invalidate(self, key: str, access_token: str | None = None) -> None:
        """Forget a token Atlas refused (only if it is still the cached one)."""
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and (access_token is None or current.access_token == access_token):
                del self._tokens[key]

    def revoke_all(self) -> int:
        """Revoke every cached token that has not expired; returns how many were revoked."""
        with self._lock:
            items = [(k, t, self._revokers.get(k)) for k, t in self._tokens.items()]
            self._tokens.clear()
            self._revokers.clear()
        revoked = 0
        now = time.time()
        for _key, token, revoker in items:
            if revoker is None or token.expires_at <= now:
                continue
            try:
                revoker(token.access_token)
                revoked += 1
            except Exception:  # best effort at exit: an unrevoked token still expires within the hour
                pass
        return revoked


TOKEN_CACHE = TokenCache()
