"""Opening files at rest for reading: only regular files, never through a symlink, never a blocking open.

Why: whoever can write into the destination can plant a symlink to ``/dev/zero``, a FIFO or a
device where an export or a sidecar should be. Following it would make a scrub read for ever,
block on the FIFO's open, or read a device with side effects. On the local filesystem the name
is checked with ``lstat`` first, then opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens
without waiting for a writer, a symlink swapped in meanwhile fails) and ``fstat`` decides on
the very file that was opened. Object stores (fsspec) hold no such files: they are opened as usual.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, BinaryIO

from airflow_provider_atlasflex.archive.local_disk import is_local

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """The name is a symlink, FIFO, device, socket or directory: it was not (or not further) read."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: object, mode: int) -> NotRegularFile:
    return NotRegularFile(errno.EINVAL, f"not a regular file ({kind_of(mode)}): not opened", str(path))


def open_regular(path: ObjectStoragePath) -> BinaryIO:
    """``path`` opened for binary reading if it is a regular file; :class:`NotRegularFile` otherwise.

    Other errors (missing, permission) raise the usual :class:`OSError`.
    """
    if not is_local(path):
        handle: BinaryIO = path.open("rb")
        return handle
    name = path.path
    mode = os.lstat(name).st_mode
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            raise _refuse(path, stat.S_IFLNK) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def plain_url(path: ObjectStoragePath) -> str:
    """``path`` as a URL without the connection id (``s3://bucket/key``, not ``s3://conn_id@bucket/key``).

    The connection travels separately (``dst_conn_id``), so the URL can be read by any tool.
    """
    return f"{path.protocol}://{path.path}"
