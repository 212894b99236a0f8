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
local commit takes the per-``dst`` lock (:class:`~.lock.DestinationLock`, ``.<name>.atlasflex-lock``
beside ``dst``) just before its publish and keeps it until :meth:`ExportCommit.release`, so two
writers' publish-then-sidecars never interleave (retention takes the same lock to delete an export).
The wait for it is bounded (``lock_timeout``, default 5 minutes): a hung holder fails later writers
with a retryable :class:`~.lock.DestinationLockedError` naming the lock file instead of blocking them
for ever. The caller re-checks :meth:`ExportCommit.still_published` and the sidecars before
reporting success. Where there are no locks (generic fsspec, S3, a filesystem without ``flock``)
only that re-check remains: a writer overtaken in the window reports failure, but its sidecars may
then sit beside the other writer's bytes until that writer's own sidecars land (or a retry); the
verify operator reports such a mismatch.

Leftovers of dead attempts are swept when an attempt opens (see :mod:`.partials`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_atlasflex.archive.local_disk import (
    fsync_directory,
    is_local,
    lstat_or_none,
    make_private_dirs,
    same_file,
    try_flock,
)
from airflow_provider_atlasflex.archive.lock import DestinationLock
from airflow_provider_atlasflex.archive.partials import PARTIAL_SUFFIX, sweep_dead_partials_local, sweep_stale_partials
from airflow_provider_atlasflex.defaults import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, DEFAULT_LOCK_TIMEOUT
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotTransferError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


class DestinationExistsError(SnapshotTransferError):
    """``overwrite=False`` and ``dst`` exists: another writer committed first (nothing was replaced)."""


def check_modes(file_mode: Any, dir_mode: Any) -> None:
    """Refuse modes that are not plain permission bits or that lock the owner out."""
    for name, mode, owner in (("file_mode", file_mode, 0o600), ("dir_mode", dir_mode, 0o700)):
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            if isinstance(mode, str):
                got = f"the string {mode!r} (write the number {owner:#o}, without quotes)"
            elif isinstance(mode, int) and not isinstance(mode, bool):
                got = f"{mode:#o} (setuid, setgid and sticky bits are refused)" if mode > 0 else f"{mode}"
            else:
                got = repr(mode)
            raise AtlasFlexConfigError(
                f"{name} must be permission bits from 0o000 to 0o777 (e.g. {owner:#o}), got {got}."
            )
        if mode & owner != owner:
            raise AtlasFlexConfigError(
                f"{name}={mode:#o} takes the owner's own access away; it must include {owner:#o} (e.g. {owner:#o})."
            )
        if mode & 0o002:
            raise AtlasFlexConfigError(
                f"{name}={mode:#o} lets every local user modify backups; drop the world-writable bit (e.g. {owner:#o})."
            )


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
                if try_flock(fd) is not False and same_file(os.fstat(fd), lstat_or_none(self._tmp)):
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
        if not same_file(os.fstat(fd), lstat_or_none(self._tmp)):
            raise SnapshotTransferError(
                f"the temporary file {self._tmp} was replaced or removed by another process; not committed. Keep "
                "the destination directory private to the Airflow user."
            )
        if self.hold_dst_lock:
            self._lock_dst()
        if self.overwrite:
            existing = lstat_or_none(self._dst)
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
        published = lstat_or_none(self._dst)
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
            if lstat_or_none(self._dst) is not None:
                raise DestinationExistsError(
                    f"{self.dst} appeared while copying (another writer committed first) and overwrite=False"
                ) from None
            os.rename(self._tmp, self._dst)
            return
        os.unlink(self._tmp)

    def abort(self) -> None:
        """Remove this attempt's temporary file, only if its name still points at our file."""
        if self._fd is not None:
            current = lstat_or_none(self._tmp)
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
