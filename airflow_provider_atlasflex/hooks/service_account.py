"""OAuth 2.0 client-credentials tokens for Atlas service accounts, cached per process.

Atlas allows 10 token requests a minute and 100 active tokens per service account, so a token
is fetched once, shared by every hook that uses the same credentials (across the host's task
processes by default), reused until shortly before it expires, and revoked when it is replaced
or, for unshared tokens, when the process exits.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlencode

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import AtlasApiError
from airflow_provider_atlasflex.hooks.api_protocol import REVOKE_PATH, TOKEN_PATH, ApiCall

log = logging.getLogger(__name__)

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

    ``shared=True`` (``token_sharing: host``, and the host layer of ``deployment``) also keeps the
    token in a private file (0600, in a 0700 directory owned by this user) so that every task
    process on the host reuses one token: Airflow runs each task in its own process, and a night of
    50 clusters would otherwise ask for 100+ tokens against a limit of 10 a minute. A token that is
    replaced before it expired is revoked. ``shared=False`` keeps tokens in this process only and
    revokes them when the process exits.

    Fetching is single-flight: however many threads, event loops (the triggerer's triggers) and
    processes on the host want a token at once, one of them asks Atlas and the others wait for its
    answer. With a ``deployment`` store (``token_sharing: deployment``) the hosts of a distributed
    deployment also agree on one token (see :mod:`.deployment_tokens`).
    """

    def __init__(self, store_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, CachedToken] = {}
        self._revokers: dict[str, Callable[[str], None]] = {}
        self._private: set[str] = set()
        self._flights: dict[str, tuple[Future[CachedToken], int]] = {}
        self._store_dir = store_dir
        self._exit_hook_pid: int | None = None
        self._refused_dirs: set[Path] = set()

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
                with self._host_lock(key, shared and self._leads(key, flight)):
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
                async with self._async_host_lock(key, shared and self._leads(key, flight)):
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
        on_disk = (yield partial(self._read, key)) if shared else None
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
            self._write(key, token)

    def invalidate(self, key: str, access_token: str | None = None, deployment: DeploymentStore | None = None) -> None:
        """Forget a token Atlas refused (only if it is still the cached one), here, on the host and in the deployment."""
        if deployment is not None and access_token is not None:
            deployment.forget(access_token)
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
        """The host store: the configured directory, or a private fallback when that one is not safe."""
        configured = self._store_dir or Path(
            os.environ.get("ATLASFLEX_TOKEN_DIR") or Path(tempfile.gettempdir()) / f"airflow-atlasflex-{os.getuid()}"
        )
        problem = _private_directory_problem(configured)
        if problem is None:
            return configured
        fallback = private_fallback_directory()
        usable = (
            fallback
            if fallback is not None and fallback != configured and _private_directory_problem(fallback) is None
            else None
        )
        if configured not in self._refused_dirs:
            self._refused_dirs.add(configured)
            log.warning(
                "Not keeping Atlas service-account tokens in %s: it %s. %s Fix: remove that directory (or give it "
                "to this user with mode 0700), or set ATLASFLEX_TOKEN_DIR to a directory owned by the Airflow user "
                "with mode 0700.",
                configured,
                problem,
                f"Using the private directory {fallback} instead." if usable else
                "No private fallback directory is usable either, so each task process fetches its own token.",
            )
        return usable

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

    def _lock_file(self, key: str, shared: bool) -> int | None:
        directory = self._directory() if shared else None
        if directory is None:
            return None
        try:
            return os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return None

    @contextlib.contextmanager
    def _host_lock(self, key: str, shared: bool) -> Iterator[None]:
        fd = self._lock_file(key, shared)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.asynccontextmanager
    async def _async_host_lock(self, key: str, shared: bool) -> AsyncIterator[None]:
        """The host lock, polled: a blocking flock would stall every trigger on the event loop."""
        fd = self._lock_file(key, shared)
        if fd is None:
            yield
            return
        try:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
            yield
        finally:
            os.close(fd)


class DeploymentStore(Protocol):
    """Where the hosts of a deployment agree on one token (``token_sharing: deployment``)."""

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


def _private_directory_problem(directory: Path) -> str | None:
    """Why ``directory`` may not hold tokens (None: it is a real 0700 directory owned by this user)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
    except OSError as exc:
        return f"cannot be created or read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}, not by this user (uid {os.getuid()})"
    if info.st_mode & 0o077:
        return f"can be reached by other users (mode {stat.S_IMODE(info.st_mode):04o}, not 0700)"
    return _parent_problem(directory)


def _parent_problem(directory: Path) -> str | None:
    """Why another user could swap ``directory`` for one of theirs (None: no parent lets them).

    A parent another user owns, or may write without the sticky bit (``HOME=/tmp`` in a container:
    ``/tmp/.cache`` created by someone else), lets that user rename our directory away and put a
    symbolic link of theirs in its place between our check and our use.
    """
    for parent in directory.absolute().parents:
        try:
            info = parent.lstat()
        except OSError:
            continue
        if info.st_uid not in (0, os.getuid()):
            return f"lies under {parent}, which uid {info.st_uid} owns"
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return f"lies under {parent}, which other users may write (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def private_fallback_directory() -> Path | None:
    """A per-user directory under this user's own cache, which other local users cannot pre-create.

    As XDG says: ``$XDG_CACHE_HOME`` (when absolute), else ``$HOME/.cache``, else the passwd entry's
    home. A container running under an arbitrary UID (OpenShift, ``runAsUser``) may have no passwd
    entry and no ``$HOME``: then there is no fallback (None), never an exception.
    """
    for base, suffix in ((os.environ.get("XDG_CACHE_HOME"), ()), (os.environ.get("HOME"), (".cache",))):
        if base and os.path.isabs(base):
            return Path(base, *suffix) / "airflow-provider-atlasflex" / "tokens"
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # no passwd entry for this UID
        return None
    return Path(home, ".cache", "airflow-provider-atlasflex", "tokens") if os.path.isabs(home) else None


def _revoke_all(revoker: Callable[[str], None], tokens: list[CachedToken]) -> int:
    return sum(_quietly(revoker, token) for token in tokens)


def _quietly(revoker: Callable[[str], None], token: CachedToken) -> bool:
    """Best-effort revocation: an unrevoked token still expires within the hour."""
    try:
        revoker(token.access_token)
        return True
    except Exception:  # noqa: BLE001 - any failure: the token expires on its own
        return False


TOKEN_CACHE = TokenCache()
