"""``sharing_scope: deployment``: one service-account token for every host of a distributed deployment.

With the Celery or Kubernetes executor each task may run on another machine (or in its own pod),
so a per-host token store still makes one token per host, and a busy night breaks Atlas's limits
of 10 token requests a minute and 100 active tokens. Every Airflow deployment already has a
shared, access-controlled store that tasks and the triggerer can write through the Task SDK: its
Variables (encrypted at rest with the deployment's Fernet key). The token is kept there:

- encrypted again with a key derived from the connection's client secret, so a user who can read
  Variables but not the connection sees only ciphertext, and a rotated secret simply starts a
  new record (the Variable name is derived from the secret too; the old record is unreadable);
- under a name containing ``token``, which Airflow masks in the UI, the REST API and task logs;
- never in a log line, an XCom or an exception.

Variables have no compare-and-swap, so hosts agree with a lease and read-backs: a host that finds
no fresh token writes a short lease, waits a moment and reads again; only the host whose lease
survived asks Atlas, the others wait for its token. If two hosts still both fetch (a lease lost in
a race), each reads back after publishing and the one whose token was overwritten adopts the
stored one and revokes its own, so the deployment converges on one token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken

if TYPE_CHECKING:
    from airflow_provider_atlasflex.hooks.connection_config import AtlasConnectionConfig

log = logging.getLogger(__name__)

# "token" in the name makes Airflow mask the value in the UI, the REST API and logs.
VARIABLE_PREFIX = "atlasflex_oauth_token_"
LEASE_SECONDS = 20.0
SETTLE_SECONDS = 0.4
POLL_SECONDS = 0.25
PUBLISH_ATTEMPTS = 3


class VariableTransport(Protocol):
    """Read and write one Airflow Variable (no compare-and-swap: last writer wins)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class AirflowVariables:
    """Variables through the Task SDK (tasks and, on Airflow 3, the triggerer); blocking calls."""

    def get(self, key: str) -> str | None:
        from airflow.sdk import Variable

        value = Variable.get(key, default=None)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        from airflow.sdk import Variable

        Variable.set(
            key,
            value,
            description="Atlas service-account access token shared by the deployment's task processes "
            "(airflow-provider-atlasflex, sharing_scope: deployment); encrypted, safe to delete.",
        )


class VariableTokenStore:
    """One service account's token in one Variable, agreed on by every host (see the module docstring).

    Fails soft: when Variables cannot be reached (outside a task, an API outage) the host behaves as
    with ``sharing_scope: host`` and says so once in the log.
    """

    def __init__(
        self,
        variables: VariableTransport,
        name: str,
        key: bytes,
        *,
        lease_seconds: float = LEASE_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from cryptography.fernet import Fernet

        self.name = name
        self._variables = variables
        self._fernet = Fernet(key)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease_seconds = lease_seconds
        self._settle_seconds = settle_seconds
        self._clock = clock
        self._sleep = sleep
        self._warned = False

    # ---- the protocol -----------------------------------------------------------------------

    def claim(self) -> CachedToken | None:
        """A fresh token another host stored, or None once this host holds the lease and may fetch."""
        give_up = self._clock() + 3 * self._lease_seconds
        while True:
            record = self._load()
            if record is None:
                return None  # Variables unreachable: fetch (host sharing still applies)
            token = self._fresh_token(record)
            if token is not None:
                return token
            if self._leased_by_other(record) and self._clock() < give_up:
                self._sleep(POLL_SECONDS * random.uniform(0.8, 1.2))
                continue
            record["lease"] = {"owner": self._owner, "until": self._clock() + self._lease_seconds}
            if not self._save(record):
                return None
            self._sleep(self._settle_seconds * random.uniform(1.0, 1.5))
            again = self._load()
            if again is None:
                return None
            token = self._fresh_token(again)
            if token is not None:
                return token
            if (again.get("lease") or {}).get("owner") == self._owner or self._clock() >= give_up:
                return None
            # Another host's lease was written after ours: wait for its token.

    def publish(self, token: CachedToken) -> tuple[CachedToken, list[CachedToken]]:
        """Store ``token``; returns the token in use afterwards and the stored ones it displaced."""
        displaced: list[CachedToken] = []
        for _ in range(PUBLISH_ATTEMPTS):
            record = self._load()
            if record is None:
                return token, displaced
            previous = _token_in(record)
            if previous is not None and previous.access_token != token.access_token:
                displaced.append(previous)
            if not self._save({"token": _as_dict(token)}):
                return token, displaced
            self._sleep(self._settle_seconds * random.uniform(1.0, 1.5))
            stored = self._load()
            if stored is None:
                return token, displaced
            current = self._fresh_token(stored)
            if current is not None:
                # Ours, or another host's that overwrote it: either way the one everybody reads now.
                return current, [t for t in displaced if t.access_token != current.access_token]
            # Overwritten by a lease or a "forget" that read the record before we wrote: write again.
        return token, displaced

    def forget(self, access_token: str) -> None:
        """Drop ``access_token`` if it is still the stored one (Atlas refused it)."""
        record = self._load()
        stored = _token_in(record) if record else None
        if record is not None and stored is not None and stored.access_token == access_token:
            record.pop("token", None)
            self._save(record)

    # ---- the record ------------------------------------------------------------------------

    def _fresh_token(self, record: dict[str, Any]) -> CachedToken | None:
        token = _token_in(record)
        if token is None:
            return None
        now = self._clock()
        if token.issued_at > now:
            # Written by a host whose clock is fast: the token expires that much earlier than it says.
            skew = token.issued_at - now
            token = CachedToken(token.access_token, token.expires_at - skew, token.issued_at - skew)
        return token if token.fresh(now) else None

    def _leased_by_other(self, record: dict[str, Any]) -> bool:
        lease = record.get("lease")
        if not isinstance(lease, dict) or lease.get("owner") == self._owner:
            return False
        try:
            remaining = float(lease.get("until", 0)) - self._clock()
        except (TypeError, ValueError):
            return False
        # A lease further out than any host would write comes from a fast clock: ignore it.
        return 0 < remaining <= self._lease_seconds * 1.5

    def _load(self) -> dict[str, Any] | None:
        """The decrypted record ({} when absent or unreadable); None when Variables cannot be reached."""
        try:
            raw = self._variables.get(self.name)
        except Exception as exc:  # noqa: BLE001 - any failure of the Variable API: fall back to host sharing
            self._unreachable(exc)
            return None
        if not raw:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            record = json.loads(self._fernet.decrypt(raw.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeError):
            return {}  # written with another secret, or damaged: treat as empty and replace it
        if not isinstance(record, dict):
            return {}
        token = _token_in(record)
        if token is not None:
            mask_secret(token.access_token)
        return record

    def _save(self, record: dict[str, Any]) -> bool:
        value = self._fernet.encrypt(json.dumps(record).encode()).decode("ascii")
        try:
            self._variables.set(self.name, value)
        except Exception as exc:  # noqa: BLE001 - any failure of the Variable API: fall back to host sharing
            self._unreachable(exc)
            return False
        return True

    def _unreachable(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "sharing_scope 'deployment': could not use Airflow Variable %s (%s); this process shares its "
                "Atlas token only with the task processes on its host. Check the task can read and write Variables.",
                self.name,
                type(exc).__name__,
            )


def _token_in(record: dict[str, Any]) -> CachedToken | None:
    data = record.get("token")
    if not isinstance(data, dict):
        return None
    try:
        return CachedToken(str(data["access_token"]), float(data["expires_at"]), float(data.get("issued_at", 0)))
    except (KeyError, TypeError, ValueError):
        return None


def _as_dict(token: CachedToken) -> dict[str, Any]:
    return {"access_token": token.access_token, "expires_at": token.expires_at, "issued_at": token.issued_at}


# ---- which store a connection uses ---------------------------------------------------------------

_variables: VariableTransport = AirflowVariables()
_stores: dict[str, VariableTokenStore] = {}
_stores_lock = threading.Lock()


def use_variables(transport: VariableTransport) -> None:
    """Point ``sharing_scope: deployment`` at another Variable transport (simulations and tests)."""
    global _variables
    with _stores_lock:
        _variables = transport
        _stores.clear()


def variable_name(base_url: str, client_id: str, client_secret: str) -> str:
    digest = hashlib.sha256(f"atlasflex-variable\0{base_url}\0{client_id}\0{client_secret}".encode()).hexdigest()
    return VARIABLE_PREFIX + digest[:24]


def encryption_key(base_url: str, client_id: str, client_secret: str) -> bytes:
    digest = hashlib.sha256(f"atlasflex-fernet-key\0{base_url}\0{client_id}\0{client_secret}".encode()).digest()
    return base64.urlsafe_b64encode(digest)


def deployment_store(config: AtlasConnectionConfig) -> VariableTokenStore | None:
    """The deployment-wide store for a connection with ``sharing_scope: deployment``; None otherwise."""
    if getattr(config, "token_sharing", "host") != "deployment" or config.auth_type != "service_account":
        return None
    name = variable_name(config.base_url, config.principal, config.secret)
    with _stores_lock:
        store = _stores.get(name)
        if store is None or store._owner.split(":")[1] != str(os.getpid()):
            store = _stores[name] = VariableTokenStore(
                _variables, name, encryption_key(config.base_url, config.principal, config.secret)
            )
        return store
