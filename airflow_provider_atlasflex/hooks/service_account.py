"""OAuth 2.0 client-credentials tokens for Atlas service accounts, cached per process.

Atlas allows 10 token requests a minute and 100 active tokens per service account, so a token
is fetched once, shared by every hook that uses the same credentials (across the host's task
processes by default), reused until shortly before it expires, and revoked when it is replaced
or, for unshared tokens, when the process exits.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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
    issued_at: float = 0.0

    def fresh(self, now: float) -> bool:
        """Usable for a while yet: refreshed 2 minutes (or a tenth of its life) before it expires."""
        lifetime = self.expires_at - (self.issued_at or self.expires_at - 3600)
        return now < self.expires_at - min(EXPIRY_MARGIN_SECONDS, lifetime / 10)


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
    now = time.time()
    return CachedToken(token, now + expires_in, now)


class TokenCache:
    """Service-account tokens, keyed by base URL and credentials.

    ``shared=True`` (the connection's default, ``token_sharing: host``) also keeps the token in a
    private file (0600, in a 0700 directory owned by this user) so that every task process on the
    host reuses one token: Airflow runs each task in its own process, and a night of 50 clusters
    would otherwise ask for 100+ tokens against a limit of 10 a minute. A token that is replaced
    before it expired is revoked. ``shared=False`` keeps tokens in this process only and revokes
    them when the process exits.
    """

    def __init__(self, store_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._tokens: dict[str, CachedToken] = {}
        self._revokers: dict[str, Callable[[str], None]] = {}
        self._private: set[str] = set()
        self._store_dir = store_dir
        self._exit_hook_pid: int | None = None

    @staticmethod
    def key(base_url: str, client_id: str, client_secret: str) -> str:
        return hashlib.sha256(f"{base_url}\0{client_id}\0{client_secret}".encode()).hexdigest()

    # ---- reading ---------------------------------------------------------------------------

    def get(self, key: str, *, shared: bool = True) -> CachedToken | None:
        """A fresh token from memory or (shared) from the host store; None when one must be fetched."""
        now = time.time()
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.fresh(now):
            return token
        if shared:
            stored = self._read(key)
            if stored is not None and stored.fresh(now):
                with self._lock:
                    self._tokens[key] = stored
                return stored
        return None

    def acquire(
        self,
        key: str,
        fetch: Callable[[], CachedToken],
        revoker: Callable[[str], None],
        *,
        shared: bool = True,
    ) -> CachedToken:
        """Return a fresh token, fetching one at most once across this host's processes."""
        with self._fetch_lock, self._host_lock(key, shared):
            token = self.get(key, shared=shared)
            if token is not None:
                return token
            previous = self._tokens.get(key) or (self._read(key) if shared else None)
            token = fetch()
            self.put(key, token, revoker, shared=shared)
            if previous is not None and previous.access_token != token.access_token and previous.expires_at > time.time():
                _quietly(revoker, previous)  # replaced before it expired: do not leave it active
            return token

    def put(self, key: str, token: CachedToken, revoker: Callable[[str], None], *, shared: bool = True) -> None:
        with self._lock:
            self._tokens[key] = token
            self._revokers[key] = revoker
            if shared:
                self._private.discard(key)
            else:
                self._private.add(key)
            # Registered lazily and per process: Airflow's task supervisor forks, and only runs
            # the exit handlers a child registered after the fork.
            if not shared and self._exit_hook_pid != os.getpid():
                self._exit_hook_pid = os.getpid()
                atexit.register(self.revoke_private)
        if shared:
            self._write(key, token)

    def invalidate(self, key: str, access_token: str | None = None) -> None:
        """Forget a token Atlas refused (only if it is still the cached one)."""
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and (access_token is None or current.access_token == access_token):
                del self._tokens[key]
        stored = self._read(key)
        if stored is not None and (access_token is None or stored.access_token == access_token):
            self._path(key).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every token this process holds in memory (tests use this)."""
        with self._lock:
            self._tokens.clear()
            self._revokers.clear()
            self._private.clear()

    def revoke_private(self) -> int:
        """Revoke this process's unshared tokens that have not expired; returns how many."""
        with self._lock:
            items = [(self._tokens.pop(k), self._revokers.pop(k, None)) for k in list(self._private) if k in self._tokens]
            self._private.clear()
        now = time.time()
        return sum(_quietly(revoker, token) for token, revoker in items if revoker and token.expires_at > now)

    # ---- the host store --------------------------------------------------------------------

    def _directory(self) -> Path | None:
        directory = self._store_dir or Path(
            os.environ.get("ATLASFLEX_TOKEN_DIR") or Path(tempfile.gettempdir()) / f"airflow-atlasflex-{os.getuid()}"
        )
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = directory.lstat()
        except OSError:
            return None
        # Only a real directory that this user owns and nobody else can read may hold tokens.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        return directory

    def _path(self, key: str) -> Path:
        directory = self._directory()
        return (directory or Path("/nonexistent")) / f"{key}.json"

    def _read(self, key: str) -> CachedToken | None:
        if self._directory() is None:
            return None
        try:
            data = json.loads(self._path(key).read_text())
            token = CachedToken(str(data["access_token"]), float(data["expires_at"]), float(data.get("issued_at", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        mask_secret(token.access_token)
        return token

    def _write(self, key: str, token: CachedToken) -> None:
        directory = self._directory()
        if directory is None:
            return
        payload = json.dumps({"access_token": token.access_token, "expires_at": token.expires_at, "issued_at": token.issued_at})
        try:
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".token-")
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(temporary, directory / f"{key}.json")
        except OSError:
            pass

    @contextlib.contextmanager
    def _host_lock(self, key: str, shared: bool) -> Iterator[None]:
        directory = self._directory() if shared else None
        if directory is None:
            yield
            return
        with open(directory / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _quietly(revoker: Callable[[str], None], token: CachedToken) -> bool:
    """Best-effort revocation: an unrevoked token still expires within the hour."""
    try:
        revoker(token.access_token)
        return True
    except Exception:
        return False


TOKEN_CACHE = TokenCache()
