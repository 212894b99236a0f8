"""The per-``dst`` lock: whoever holds it sees an export and its sidecars consistent (local disks).

Why: a copy publishes the export and then writes its sidecars, and retention deletes the export
and then its sidecars; two of them on one ``dst`` must never interleave. Both take this lock, an
exclusive ``flock`` on ``.<name>.atlasflex-lock`` beside ``dst``, for the whole of their steps
(see :mod:`.commit` for the writer's window). The wait for it is bounded, so a hung holder fails
the others visibly instead of blocking them for ever.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import time
from typing import Any

from airflow_provider_atlasflex.archive.local_disk import lstat_or_none, same_file, try_flock
from airflow_provider_atlasflex.defaults import DEFAULT_FILE_MODE, DEFAULT_LOCK_TIMEOUT
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotTransferError

# Beside dst on local disks: held from just before the publish until the sidecars are written and re-checked.
LOCK_SUFFIX = ".atlasflex-lock"
# How long a writer waits for the per-dst lock (DEFAULT_LOCK_TIMEOUT, in defaults): far longer than any publish
# + sidecars (milliseconds), short enough that a hung holder fails the waiting task visibly, within its retries,
# instead of holding its slot for ever.
MAX_LOCK_TIMEOUT = 24 * 3600.0
_LOCK_FIRST_PAUSE, _LOCK_MAX_PAUSE = 0.01, 1.0

log = logging.getLogger(__name__)


class DestinationLockedError(SnapshotTransferError):
    """The per-``dst`` lock stayed held by another process for the whole wait (retryable: nothing was changed)."""


def check_lock_timeout(value: Any, what: str = "lock_timeout") -> float:
    """Seconds to wait for the per-``dst`` lock: a finite number from 0 to :data:`MAX_LOCK_TIMEOUT`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= MAX_LOCK_TIMEOUT
    ):
        raise AtlasFlexConfigError(
            f"{what} must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT:g} (default {DEFAULT_LOCK_TIMEOUT:g}: "
            f"how long a copy waits for another task writing the same dst), got {value!r}."
        )
    return float(value)


class DestinationLock:
    """The per-``dst`` lock: an exclusive ``flock`` on ``.<name>.atlasflex-lock`` beside ``dst`` (local disks).

    Taken by a commit from just before its publish until its sidecars are written and re-checked,
    and by retention around the deletion of an export and its sidecars: whoever holds it sees the
    file and its sidecars consistent. The wait is bounded (a hung holder, e.g. a stuck NFS write or
    a SIGSTOPped task, must not block every later writer for ever, silently, holding a worker slot):
    after ``timeout`` seconds :class:`DestinationLockedError` names the lock file. The lock is freed
    by the kernel when its holder dies; a holder removes the lock file when it releases it (while
    still holding it), and a waiter that then finds its name pointing elsewhere retries on the new file.
    The lock file is never opened through a symlink and must be a regular file.
    """

    def __init__(self, dst_path: str, *, file_mode: int = DEFAULT_FILE_MODE) -> None:
        directory, name = os.path.split(dst_path)
        self.dst_path = dst_path
        self.path = os.path.join(directory, f".{name}{LOCK_SUFFIX}")
        self.file_mode = file_mode
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float, *, waiting_for: str) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (0: one try); False if the filesystem has no locks.

        ``waiting_for`` says what the caller needs it for, in the one log line written while waiting.
        Raises :class:`DestinationLockedError` when another process holds it for the whole wait.
        """
        if self._fd is not None:
            return True
        deadline = time.monotonic() + timeout
        pause, announced = _LOCK_FIRST_PAUSE, False
        for _ in range(1000):  # a new lock file per release by a holder: bounded, like the wait itself
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise SnapshotTransferError(f"{self.path} is not a regular file: refusing it as the lock of {self.dst_path}")
                while (taken := try_flock(fd)) is False:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DestinationLockedError(self._held_too_long(timeout))
                    if not announced:
                        announced = True
                        log.info(
                            "Waiting up to %g s for the lock %s to %s: another task or process is writing or "
                            "deleting %s right now",
                            timeout, self.path, waiting_for, self.dst_path,
                        )
                    time.sleep(min(pause, remaining))
                    pause = min(pause * 2, _LOCK_MAX_PAUSE)
                if taken is None:
                    with contextlib.suppress(OSError):  # nothing to hold: leave no lock file behind
                        if same_file(os.fstat(fd), lstat_or_none(self.path)):
                            os.unlink(self.path)
                    os.close(fd)
                    log.warning("%s has no file locks: the export and its sidecars are re-checked, not locked", self.path)
                    return False
                if same_file(os.fstat(fd), lstat_or_none(self.path)):
                    self._fd = fd
                    return True
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # its holder removed it while we waited: take the new one
        raise SnapshotTransferError(f"could not take the lock {self.path} of {self.dst_path}: it keeps being replaced")

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if same_file(os.fstat(fd), lstat_or_none(self.path)):
                    os.unlink(self.path)  # while still holding it: waiters then retry on a new file
            except OSError as exc:  # the export is committed either way; a stale lock file is harmless
                log.warning("Could not remove the lock file %s: %s", self.path, exc)
            finally:
                os.close(fd)  # releases the flock

    def _held_too_long(self, timeout: float) -> str:
        return (
            f"gave up after {timeout:g} s waiting for the lock {self.path}: another task or process is still "
            f"writing (or deleting) {self.dst_path} and held the lock all that time. Nothing was changed; retry "
            "later. If no other task should be writing it, look for a stuck one (a hung network-filesystem write, a "
            "stopped or zombie task) holding it, e.g. with `fuser -v` or `lsof` on the lock file, and stop it: the "
            "lock frees itself when its holder dies. Raise lock_timeout to wait longer."
        )
