"""Service-account tokens cached per process and host, fetched single-flight, revoked when replaced.

Atlas allows 10 token requests a minute and 100 active tokens per service account, so a token
is fetched once, shared by every hook that uses the same credentials (across the host's task
processes by default, through :mod:`.token_store`), reused until shortly before it expires, and
revoked when it is replaced or, for unshared tokens, when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken
from airflow_provider_atlasflex.hooks.token_store import HostTokenStore


class TokenCache:
    """Service-account tokens, keyed by base URL and credentials.

    ``shared=True`` (``sharing_scope: host``, and the host layer of ``deployment``) also keeps the
    token in a private file (0600, in a 0700 directory owned by this user) so that every task
    process on the host reuses one token: Airflow runs each task in its own process, and a night of
    50 clusters would otherwise ask for 100+ tokens against a limit of 10 a minute. A token that is
    replaced before it expired is revoked. ``shared=False`` keeps tokens in this process only and
    revokes them when the process exits.

    Fetching is single-flight: however many threads, event loops (the triggerer's triggers) and
    processes on the host want a token at once, one of them asks Atlas and the others wait for its
    answer. With a ``deployment`` store (``sharing_scope: deployment``) the hosts of a distributed
    deployment also agree on one token (see :mod:`.deployment_tokens`).
    """

    def __init__(self, store_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, CachedToken] = {}
        self._revokers: dict[str, Callable[[str], None]] = {}
        self._private: set[str] = set()
        self._flights: dict[str, tuple[Future[CachedToken], int]] = {}
        self.store = HostTokenStore(store_dir)  # the host layer (shared=True)
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
            stored = self.store.read(key)
            if stored is not None and stored.fresh(now):
                with self._lock:
                    self._tokens[key] = stored
                return stored
        return None

    # ---- single-flight acquisition ------------------------------------------------------------

    def acquire(
        self,
        key: str,
        fetch: Callable[[], CachedToken],
        revoker: Callable[[str], None],
        *,
        shared: bool = True,
        deployment: DeploymentStore | None = None,
    ) -> CachedToken:
        """Return a fresh token, fetching one at most once across this host's threads and processes."""
        while True:
            token = self.get(key, shared=shared)
            if token is not None:
                return token
            flight, leader = self._join(key, blocking=True)
            if not leader:
                try:
                    return flight.result()
                except _LeaderGone:
                    continue  # the fetching caller was cancelled: try again, maybe as the leader
            try:
                with self.store.lock(key, shared and self._leads(key, flight)):
                    steps = self._refresh(key, revoker, shared, deployment)
                    answer: Any = None
                    while True:
                        step = steps.send(answer)
                        answer = fetch() if step is _FETCH else cast(Callable[[], Any], step)()
            except StopIteration as done:
                self._land(key, flight, result=done.value)
                return cast(CachedToken, done.value)
            except BaseException as exc:
                self._land(key, flight, error=exc)
                raise

    async def aacquire(
        self,
        key: str,
        fetch: Callable[[], Awaitable[CachedToken]],
        revoker: Callable[[str], None],
        *,
        shared: bool = True,
        deployment: DeploymentStore | None = None,
    ) -> CachedToken:
        """:meth:`acquire` for an event loop: never blocks it (host lock polled, file and store I/O in threads)."""
        while True:
            token = self.get(key, shared=shared)
            if token is not None:
                return token
            flight, leader = self._join(key, blocking=False)
            if not leader:
                try:
                    return await _wait_for(flight)
                except _LeaderGone:
                    continue
            try:
                async with self.store.alock(key, shared and self._leads(key, flight)):
                    steps = self._refresh(key, revoker, shared, deployment)
                    answer: Any = None
                    while True:
                        step = steps.send(answer)
                        answer = await fetch() if step is _FETCH else await asyncio.to_thread(cast(Callable[[], Any], step))
            except StopIteration as done:
                self._land(key, flight, result=done.value)
                return cast(CachedToken, done.value)
            except BaseException as exc:
                self._land(key, flight, error=exc)
                raise

    def _join(self, key: str, *, blocking: bool) -> tuple[Future[CachedToken], bool]:
        """The fetch in progress for ``key`` (follow it), or a new one this caller leads.

        A blocking caller on the leader's own thread (a sync call made from inside the leading
        event loop) gets a flight of its own: waiting for the loop it is blocking would never end.
        """
        me = threading.get_ident()
        with self._lock:
            current = self._flights.get(key)
            if current is not None and (not blocking or current[1] != me):
                return current[0], False
            flight: Future[CachedToken] = Future()
            if current is None:
                self._flights[key] = (flight, me)
            return flight, True

    def _leads(self, key: str, flight: Future[CachedToken]) -> bool:
        """False for a same-thread flight of its own: the leader holds the host lock in this very thread."""
        with self._lock:
            current = self._flights.get(key)
            return current is not None and current[0] is flight

    def _land(
        self, key: str, flight: Future[CachedToken], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            current = self._flights.get(key)
            if current is not None and current[0] is flight:
                del self._flights[key]
        if error is None:
            flight.set_result(result)
        elif isinstance(error, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            flight.set_exception(_LeaderGone())  # followers retry; they are not cancelled with it
        else:
            flight.set_exception(error)

    def _refresh(
        self, key: str, revoker: Callable[[str], None], shared: bool, deployment: DeploymentStore | None
    ) -> Generator[object, Any, CachedToken]:
        """Under the host lock: find or fetch the token, store it, revoke what it replaces.

        Yields ``_FETCH`` (answer with a new token from Atlas) or a blocking callable to run
        (answer with its result), so the sync and async callers share this logic.
        """
        token = self.get(key, shared=shared)  # another process may have stored one while we waited
        if token is not None:
            return token
        with self._lock:
            in_memory = self._tokens.get(key)
        on_disk = (yield partial(self.store.read, key)) if shared else None
        replaced = [t for t in (in_memory, on_disk) if t is not None]
        found = (yield deployment.claim) if deployment is not None else None
        if found is not None and found.fresh(time.time()):
            token = found
        else:
            token = yield _FETCH
            if deployment is not None:
                winner, displaced = yield partial(deployment.publish, token)
                if winner.access_token != token.access_token:
                    displaced = [*displaced, token]  # another host's token won: ours must not stay active
                token = winner
                replaced.extend(displaced)
        mask_secret(token.access_token)
        yield partial(self.put, key, token, revoker, shared=shared)
        now = time.time()
        stale = {t.access_token: t for t in replaced if t.access_token != token.access_token and t.expires_at > now}
        if stale:
            yield partial(_revoke_all, revoker, list(stale.values()))
        return token

    # ---- writing ---------------------------------------------------------------------------

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
            self.store.write(key, token)

    def invalidate(self, key: str, access_token: str | None = None, deployment: DeploymentStore | None = None) -> None:
        """Forget a token Atlas refused (only if it is still the cached one), here, on the host and in the deployment."""
        if deployment is not None and access_token is not None:
            deployment.forget(access_token)
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and (access_token is None or current.access_token == access_token):
                del self._tokens[key]
        stored = self.store.read(key)
        if stored is not None and (access_token is None or stored.access_token == access_token):
            self.store.remove(key)

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


class DeploymentStore(Protocol):
    """Where the hosts of a deployment agree on one token (``sharing_scope: deployment``)."""

    def claim(self) -> CachedToken | None:
        """A fresh token another host stored, or None once this host may fetch one (blocking)."""

    def publish(self, token: CachedToken) -> tuple[CachedToken, list[CachedToken]]:
        """Store ``token``; returns the token that won (maybe another host's) and the ones it displaced."""

    def forget(self, access_token: str) -> None:
        """Drop ``access_token`` if it is still the stored one (Atlas refused it)."""


class _LeaderGone(Exception):
    """The caller fetching the token was cancelled; its followers try again."""


_FETCH = object()


async def _wait_for(flight: Future[CachedToken]) -> CachedToken:
    """Await a fetch led from any thread or event loop, without cancelling it if this waiter is cancelled."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def wake(_: Future[CachedToken]) -> None:
        loop.call_soon_threadsafe(settle)

    flight.add_done_callback(wake)
    await waiter
    return flight.result()


def _revoke_all(revoker: Callable[[str], None], tokens: list[CachedToken]) -> int:
    return sum(_quietly(revoker, token) for token in tokens)


def _quietly(revoker: Callable[[str], None], token: CachedToken) -> bool:
    """Best-effort revocation: an unrevoked token still expires within the hour."""
    try:
        revoker(token.access_token)
        return True
    except Exception:  # noqa: BLE001 - any failure: the token expires on its own
        return False
