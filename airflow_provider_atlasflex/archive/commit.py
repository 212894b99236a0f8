"""Publishing one verified export at ``dst``: a private temporary object per attempt, then an atomic commit.

Why an object with ``open()``/``output()``/``commit()``/``abort()``: two task instances (a zombie and
its retry, duplicate mapped items, two DAGs) may copy to the same ``dst`` at once. Each attempt
therefore writes its own temporary object, under a unique name, and publishes exactly that object:

* :class:`LocalExportCommit` (``file://``): the temporary file ``.<name>.<random>.atlasflex-partial``
  is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (never through a planted symlink), mode
  ``file_mode``, and held under an exclusive ``flock`` while the attempt lives. The commit fsyncs it,
  checks that its name still points at the file this attempt wrote, then publishes it with
  ``link(2)`` (``overwrite=False``: atomic no-clobber, ``EEXIST`` means another writer committed
  first) or ``rename(2)`` (``overwrite=True``: atomic replace), and fsyncs the directory.
* :class:`FsspecExportCommit` (any other fsspec filesystem): the same unique temporary name, then
  ``mv``. A generic filesystem offers no atomic no-clobber, so with ``overwrite=False`` the check
  for an existing ``dst`` and the move are two steps (a writer racing in between can be
  overwritten by the same snapshot's bytes); file modes and fsync do not apply. An object-store
  strategy (e.g. a multipart upload to the final key with ``If-None-Match: *``) can slot in as
  another subclass.

The window between the publish and the sidecars (written by the caller): with ``hold_dst_lock`` a
local commit takes an exclusive ``flock`` on ``.<name>.atlasflex-lock`` beside ``dst`` just before
its publish and keeps it until :meth:`ExportCommit.release`, so two writers' publish-then-sidecars
never interleave (retention takes the same lock, :class:`DestinationLock`, to delete an export). The wait
for it is bounded (``lock_timeout``, default 5 minutes): a hung holder fails later writers with a
retryable :class:`DestinationLockedError` naming the lock file instead of blocking them for ever. The caller re-checks :meth:`ExportCommit.still_published` and the sidecars before
reporting success. Where there are no locks (generic fsspec, S3, a filesystem without ``flock``)
only that re-check remains: a writer overtaken in the window reports failure, but its sidecars may
then sit beside the other writer's bytes until that writer's own sidecars land (or a retry); the
verify operator reports such a mismatch.

Leftovers of dead attempts (any name matching ``.*.atlasflex-partial`` in the directory) are swept
when an attempt opens: on local disks as soon as no live process holds their lock; elsewhere once
they are older than :data:`STALE_PARTIAL_AGE`. (On a network filesystem whose locks are not shared
between hosts, a live attempt of another host can lose its temporary file this way: it then fails
at its commit, which checks the file is still its own; it never publishes other bytes.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import re
import secrets
import stat
import time
from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_atlasflex.defaults import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, DEFAULT_LOCK_TIMEOUT
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotTransferError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

PARTIAL_SUFFIX = ".atlasflex-partial"
# Beside dst on local disks: held from just before the publish until the sidecars are written and re-checked.
LOCK_SUFFIX = ".atlasflex-lock"
# Any temporary object of ours, current (.<name>.<random>.atlasflex-partial) or from older versions.
PARTIAL_NAME = re.compile(r"^\..+" + re.escape(PARTIAL_SUFFIX) + "$")
# Where locks cannot tell a dead attempt from a live one, a temporary this old is abandoned: a live
# copy keeps writing (its mtime moves) and cannot outlive its links (4 h each, one refresh).
STALE_PARTIAL_AGE = 24 * 3600.0
# How long a writer waits for the per-dst lock (DEFAULT_LOCK_TIMEOUT, in defaults): far longer than any publish
# + sidecars (milliseconds), short enough that a hung holder fails the waiting task visibly, within its retries,
# instead of holding its slot for ever.
MAX_LOCK_TIMEOUT = 24 * 3600.0
_LOCK_FIRST_PAUSE, _LOCK_MAX_PAUSE = 0.01, 1.0
LOCAL_PROTOCOLS = ("file", "local")

log = logging.getLogger(__name__)


class DestinationExistsError(SnapshotTransferError):
    """``overwrite=False`` and ``dst`` exists: another writer committed first (nothing was replaced)."""


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
                while (taken := _try_lock(fd)) is False:
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
                        if _same_inode(os.fstat(fd), _lstat(self.path)):
                            os.unlink(self.path)
                    os.close(fd)
                    log.warning("%s has no file locks: the export and its sidecars are re-checked, not locked", self.path)
                    return False
                if _same_inode(os.fstat(fd), _lstat(self.path)):
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
                if _same_inode(os.fstat(fd), _lstat(self.path)):
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


def check_modes(file_mode: Any, dir_mode: Any) -> None:
    """Refuse modes that are not plain permission bits or that lock the owner out."""
    for name, mode, owner in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise AtlasFlexConfigError(
                f"{name} must be permission bits from 0o000 to 0o777 (e.g. {owner:#o}), got {mode!r}."
            )
        if mode & owner != owner:
            raise AtlasFlexConfigError(
                f"{name}={mode:#o} takes the owner's own access away; it must include {owner:#o} (e.g. {owner:#o})."
            )
        if mode & 0o002:
            raise AtlasFlexConfigError(
                f"{name}={mode:#o} lets every local user modify backups; drop the world-writable bit (e.g. {owner:#o})."
            )


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def refuse_unsafe_destination(dst: ObjectStoragePath) -> bool:
    """Raise if ``dst`` is a directory, a symlink or another non-file; return whether it exists."""
    if is_local(dst):
        try:
            st = os.lstat(dst.path)
        except (FileNotFoundError, NotADirectoryError):
            return False  # (a file where a parent directory should be fails when the commit creates it)
        _refuse_non_file(dst, st.st_mode)
        return True
    if dst.fs.isdir(dst.path):
        raise SnapshotTransferError(
            f"{dst} is a directory, not a file: refusing to copy into it. Point dst at a file name, e.g. "
            ".../{snapshot_id}.tgz."
        )
    return bool(dst.exists())


def _refuse_non_file(dst: Any, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise SnapshotTransferError(
            f"{dst} is a symbolic link: refusing to write through or replace it (it may point anywhere). "
            "Remove the link, or point dst at a real file path."
        )
    if stat.S_ISDIR(mode):
        raise SnapshotTransferError(
            f"{dst} is a directory, not a file: refusing to copy into it. Point dst at a file name, e.g. "
            ".../{snapshot_id}.tgz."
        )
    if not stat.S_ISREG(mode):
        raise SnapshotTransferError(f"{dst} exists and is not a regular file (a device, FIFO or socket): refusing.")


def export_commit(
    dst: ObjectStoragePath,
    *,
    overwrite: bool,
    file_mode: int = DEFAULT_FILE_MODE,
    dir_mode: int = DEFAULT_DIR_MODE,
    hold_dst_lock: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> ExportCommit:
    """The commit strategy for ``dst``'s filesystem.

    ``hold_dst_lock`` (local disks): ``commit()`` takes the per-``dst`` lock and keeps it until
    :meth:`ExportCommit.release`, so the publish and the sidecars of one attempt are never interleaved
    with another attempt's; it waits at most ``lock_timeout`` seconds for a writer holding it
    (then :class:`DestinationLockedError`).
    """
    if is_local(dst):
        return LocalExportCommit(
            dst,
            overwrite=overwrite,
            file_mode=file_mode,
            dir_mode=dir_mode,
            hold_dst_lock=hold_dst_lock,
            lock_timeout=lock_timeout,
        )
    from airflow_provider_atlasflex.archive import object_store_commit  # imports this module

    if object_store_commit.is_s3(dst):
        return object_store_commit.S3MultipartExportCommit(dst, overwrite=overwrite)
    return FsspecExportCommit(dst, overwrite=overwrite)


class ExportCommit(ABC):
    """One attempt's temporary object for ``dst`` and its publication.

    ``open()`` creates the temporary object; ``output()`` (re)opens it for writing from byte 0;
    ``commit(size)`` publishes it at ``dst`` (raising :class:`DestinationExistsError` when
    ``overwrite=False`` and ``dst`` exists); ``abort()`` removes this attempt's temporary object
    and never anything else. Usable as a context manager that aborts unless committed.
    """

    def __init__(self, dst: ObjectStoragePath, *, overwrite: bool) -> None:
        self.dst = dst
        self.overwrite = overwrite
        self.temporary_name = f".{dst.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
        self.committed = False

    @property
    def temporary(self) -> ObjectStoragePath:
        return self.dst.parent / self.temporary_name

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def output(self) -> BinaryIO: ...

    @abstractmethod
    def commit(self, size: int) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    def still_published(self) -> bool:
        """After ``commit()``: whether ``dst`` still is the object this attempt published (True if unknowable)."""
        return self.committed

    def release(self) -> None:
        """Release the per-``dst`` lock taken by ``commit()`` (if any); idempotent."""

    def __enter__(self) -> ExportCommit:  # noqa: PYI034 - typing.Self needs 3.11
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()
        self.release()


class LocalExportCommit(ExportCommit):
    """Local disk: exclusive, locked, fsynced temporary file; ``link`` or ``rename``; directory fsync."""

    def __init__(
        self,
        dst: ObjectStoragePath,
        *,
        overwrite: bool,
        file_mode: int,
        dir_mode: int,
        hold_dst_lock: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        super().__init__(dst, overwrite=overwrite)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.hold_dst_lock = hold_dst_lock
        self._directory = os.path.dirname(dst.path)
        self._fd: int | None = None
        self.lock_timeout = lock_timeout
        self._lock: DestinationLock | None = None
        self._inode: tuple[int, int] | None = None

    @property
    def _tmp(self) -> str:
        return os.path.join(self._directory, self.temporary_name)

    @property
    def _dst(self) -> str:
        return str(self.dst.path)

    def open(self) -> None:
        make_private_dirs(self._directory, self.dir_mode)
        sweep_dead_partials_local(self._directory)
        for _ in range(5):
            fd = os.open(
                self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode
            )
            try:
                if _try_lock(fd) is not False and _same_inode(os.fstat(fd), _lstat(self._tmp)):
                    os.fchmod(fd, self.file_mode)  # exact mode, whatever the umask
                    st = os.fstat(fd)
                    self._fd, self._inode = fd, (st.st_dev, st.st_ino)
                    return
            except BaseException:
                os.close(fd)
                raise
            # A sweeper took this name between our create and our lock: leave it to the sweeper.
            os.close(fd)
            self.temporary_name = f".{self.dst.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
        raise SnapshotTransferError(f"could not create a private temporary file in {self._directory}")

    def output(self) -> BinaryIO:
        fd = self._require_fd()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        return os.fdopen(os.dup(fd), "wb")

    def commit(self, size: int) -> None:
        fd = self._require_fd()
        os.fsync(fd)
        written = os.fstat(fd).st_size
        if written != size:
            raise SnapshotTransferError(f"the temporary file holds {written} bytes, not the {size} verified; not committed")
        if not _same_inode(os.fstat(fd), _lstat(self._tmp)):
            raise SnapshotTransferError(
                f"the temporary file {self._tmp} was replaced or removed by another process; not committed. Keep "
                "the destination directory private to the Airflow user."
            )
        if self.hold_dst_lock:
            self._lock_dst()
        if self.overwrite:
            existing = _lstat(self._dst)
            if existing is not None:
                _refuse_non_file(self.dst, existing.st_mode)
            os.replace(self._tmp, self._dst)
        else:
            self._link_no_clobber()
        fsync_directory(self._directory)
        self.committed = True
        self._close()
        if not self.overwrite and not self.still_published():
            raise SnapshotTransferError(
                f"{self.dst} does not hold the file this attempt wrote after the commit: its temporary file was "
                "swapped by another process. Keep the destination directory private to the Airflow user."
            )

    def still_published(self) -> bool:
        published = _lstat(self._dst)
        return self.committed and published is not None and (published.st_dev, published.st_ino) == self._inode

    def _lock_dst(self) -> None:
        """Take ``.<name>.atlasflex-lock`` beside ``dst``, waiting at most ``lock_timeout`` (see :class:`DestinationLock`)."""
        if self._lock is None:
            lock = DestinationLock(self._dst, file_mode=self.file_mode)
            lock.acquire(self.lock_timeout, waiting_for="publish this attempt's verified copy")
            self._lock = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _link_no_clobber(self) -> None:
        try:
            os.link(self._tmp, self._dst, follow_symlinks=False)
        except FileExistsError:
            raise DestinationExistsError(
                f"{self.dst} appeared while copying (another writer committed first) and overwrite=False"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links here (some network or FAT filesystems): check, then rename; not atomic.
            log.warning("%s does not support hard links; committing by check-then-rename", self._directory)
            if _lstat(self._dst) is not None:
                raise DestinationExistsError(
                    f"{self.dst} appeared while copying (another writer committed first) and overwrite=False"
                ) from None
            os.rename(self._tmp, self._dst)
            return
        os.unlink(self._tmp)

    def abort(self) -> None:
        """Remove this attempt's temporary file, only if its name still points at our file."""
        if self._fd is not None:
            current = _lstat(self._tmp)
            if current is not None and (current.st_dev, current.st_ino) == self._inode:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp)
            self._close()

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("ExportCommit.open() was not called, or the commit is finished")
        return self._fd

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # also releases the lock


class FsspecExportCommit(ExportCommit):
    """Any fsspec filesystem: unique temporary object, then ``mv``; best effort, not atomic no-clobber."""

    def open(self) -> None:
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_partials(self.dst.parent)

    def output(self) -> BinaryIO:
        return self.temporary.open("wb")  # type: ignore[return-value]

    def commit(self, size: int) -> None:
        fs, tmp, dst = self.temporary.fs, self.temporary.path, self.dst.path
        written = fs.size(tmp)
        if written != size:
            raise SnapshotTransferError(f"the temporary object holds {written} bytes, not the {size} verified; not committed")
        if fs.isdir(dst):
            raise SnapshotTransferError(f"{self.dst} is a directory, not a file: refusing to copy into it.")
        if not self.overwrite and fs.exists(dst):  # check-then-move: the best a generic filesystem offers
            raise DestinationExistsError(f"{self.dst} appeared while copying (another writer committed first) and overwrite=False")
        fs.mv(tmp, dst)
        self.committed = True
        self._size = size

    def still_published(self) -> bool:
        """Best effort: ``dst`` exists with this attempt's size (the caller also compares the sidecar's sha256)."""
        if not self.committed:
            return False
        try:
            return bool(self.dst.fs.size(self.dst.path) == getattr(self, "_size", None))
        except (OSError, FileNotFoundError):
            return False

    def abort(self) -> None:
        with contextlib.suppress(OSError, FileNotFoundError):
            if self.temporary.exists():
                self.temporary.unlink()


# ---- local helpers ---------------------------------------------------------------------------


def make_private_dirs(directory: str, dir_mode: int) -> list[str]:
    """Create ``directory`` and missing parents with exactly ``dir_mode``; return those created."""
    missing: list[str] = []
    current = os.path.abspath(directory)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path, dir_mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            continue  # another writer made it
        os.chmod(path, dir_mode)
        created.append(path)
    # Every new entry must be durable in its parent: alpha/ in the root AND 2026-11-28/ in alpha/.
    for path in created:
        fsync_directory(os.path.dirname(path))
    return created


def fsync_directory(directory: str) -> None:
    """Make a rename, link or create in ``directory`` durable (a no-op where directories cannot be fsynced)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def sweep_dead_partials_local(
    directory: str, max_age: float = STALE_PARTIAL_AGE, *, remove: bool = True
) -> list[str]:
    """Remove our temporary files in ``directory`` whose attempt is dead (its lock is free).

    Where the filesystem has no locks, only age can tell: files older than ``max_age`` are removed.
    Only regular files owned by this user are touched; a live attempt holds its lock, so it is
    never removed, however old its file. Returns the names removed (with ``remove=False``: those it would remove, for a dry run).
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if PARTIAL_NAME.fullmatch(name) and _remove_if_dead(os.path.join(directory, name), max_age, remove):
            removed.append(name)
    return removed


def _remove_if_dead(path: str, max_age: float, remove: bool = True) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone, a symlink, or not ours to open
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return False
        # Lock free: its attempt is dead. Held: alive, whatever its age. No locks here: only age can tell.
        lock = _try_lock(fd)
        dead = lock is True or (lock is None and time.time() - st.st_mtime > max_age)
        if not dead or not _same_inode(st, _lstat(path)):
            return False
        if remove:
            os.unlink(path)
            log.warning("Removed %s, the temporary file of an earlier attempt that did not finish", path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_stale_partials(
    directory: ObjectStoragePath, max_age: float = STALE_PARTIAL_AGE, *, remove: bool = True
) -> list[str]:
    """Remove our temporary objects under ``directory`` older than ``max_age`` (filesystems without locks).

    Returns the names removed (with ``remove=False``: those it would remove, for a dry run).
    """
    removed: list[str] = []
    try:
        entries = directory.fs.ls(directory.path, detail=True)
    except (OSError, ValueError):
        return removed
    now = time.time()
    for entry in entries:
        name = str(entry.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        modified = _entry_time(entry)
        if entry.get("type") != "file" or not PARTIAL_NAME.fullmatch(name) or modified is None:
            continue
        if now - modified > max_age and not remove:
            removed.append(name)
        elif now - modified > max_age:
            with contextlib.suppress(OSError, FileNotFoundError):
                directory.fs.rm(entry["name"])
                log.warning("Removed %s/%s, a temporary object older than %d h", directory, name, max_age // 3600)
                removed.append(name)
    return removed


def _entry_time(entry: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
    return None


def _try_lock(fd: int) -> bool | None:
    """Take the attempt lock: True if taken, False if a live attempt holds it, None if the filesystem has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _same_inode(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and stat.S_ISREG(b.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
