"""The host token store: service-account tokens in private files, shared by every task process on the host.

Why: Airflow runs each task in its own process, and a night of 50 clusters would otherwise ask
for 100+ tokens against Atlas' limit of 10 a minute. The files hold bearer tokens, so the store
is a 0700 directory owned by this user (0600 files), under no parent another user could swap;
a directory that is not safe is refused (once, with a warning naming it and the fix) for a
private fallback under this user's own cache, or, without one, for no host store at all. A lock
file per token serialises the fetch across the host's processes (see :mod:`.token_cache`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pwd
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken

log = logging.getLogger(__name__)


class HostTokenStore:
    """Tokens by cache key in ``store_dir`` (default ``$ATLASFLEX_TOKEN_DIR``, else ``<tmp>/airflow-atlasflex-<uid>``)."""

    def __init__(self, store_dir: Path | None = None) -> None:
        self._store_dir = store_dir
        self._refused_dirs: set[Path] = set()

    def directory(self) -> Path | None:
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
        directory = self.directory()
        return (directory or Path("/nonexistent")) / f"{key}.json"

    def read(self, key: str) -> CachedToken | None:
        if self.directory() is None:
            return None
        try:
            data = json.loads(self._path(key).read_text())
            token = CachedToken(str(data["access_token"]), float(data["expires_at"]), float(data.get("issued_at", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        mask_secret(token.access_token)
        return token

    def write(self, key: str, token: CachedToken) -> None:
        directory = self.directory()
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

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _lock_file(self, key: str, enabled: bool) -> int | None:
        directory = self.directory() if enabled else None
        if directory is None:
            return None
        try:
            return os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return None

    @contextlib.contextmanager
    def lock(self, key: str, enabled: bool) -> Iterator[None]:
        """Hold the host lock of ``key`` (a no-op when not ``enabled`` or without a store)."""
        fd = self._lock_file(key, enabled)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.asynccontextmanager
    async def alock(self, key: str, enabled: bool) -> AsyncIterator[None]:
        """The host lock, polled: a blocking flock would stall every trigger on the event loop."""
        fd = self._lock_file(key, enabled)
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
