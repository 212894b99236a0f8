"""Local-disk primitives shared by the commit, the per-``dst`` lock and the sweep of dead attempts.

Why one module: each of them creates, locks or removes files beside an export, and each must
tell "this name still points at the file I hold" from "someone swapped it" the same way
(``lstat`` against ``fstat``, regular files only), take ``flock`` the same way (without blocking,
and knowing a filesystem without locks), and make what it creates durable with the same fsyncs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

LOCAL_PROTOCOLS = ("file", "local")


def is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


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


def try_flock(fd: int) -> bool | None:
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


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def same_file(a: os.stat_result, b: os.stat_result | None) -> bool:
    """Whether ``b`` (a name's ``lstat``) is the very regular file ``a`` (an open file's ``fstat``) describes."""
    return b is not None and stat.S_ISREG(b.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
