"""Writing the copy's buffers into its output file: whole writes, and early writeback for local files.

The copy reuses a few buffers (``copy_pipeline``), so a write must be done with its buffer when
it returns: built-in files write from it directly, any other file object gets a copy (it may keep
the object it was given).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from typing import Any, BinaryIO

from airflow_provider_atlasflex.defaults import MIB
from airflow_provider_atlasflex.exceptions import SnapshotTransferError

# A local file's written bytes are handed to the kernel's writeback every this many bytes, so the
# commit's fsync finds little left to flush instead of the whole file (and dirty memory stays bounded).
WRITEBACK_STEP = 8 * MIB


def no_output(data: memoryview) -> None:
    """The writer while no output is open."""
    raise SnapshotTransferError("the download has no open output")


def writer_for(out: BinaryIO) -> Callable[[memoryview], object]:
    """A write that is done with the buffer when it returns: others get a copy, as they may keep it."""
    if _copies_on_write(out):
        fd = local_fd(out)
        if fd is not None and hasattr(os, "posix_fadvise"):
            return _EarlyWriteback(out, fd)
        return lambda data: _write_all(out, data)
    return lambda data: out.write(bytes(data))


class _EarlyWriteback:
    """Write, and start the kernel's writeback of every :data:`WRITEBACK_STEP` bytes written.

    Why: the commit fsyncs the file; left to itself the kernel keeps a whole snapshot dirty in the
    page cache until then, and the fsync writes it all after the download, on the copy's clock
    (0.5 s per GiB on the development machine). On Linux ``posix_fadvise(DONTNEED)`` on a dirty
    range starts its writeback without waiting for it (what ``sync_file_range`` does; CPython does
    not expose that) and drops no page still dirty, so the disk works while the network does. The
    commit's fsync still guarantees durability; elsewhere the advice is a no-op.
    """

    def __init__(self, out: BinaryIO, fd: int) -> None:
        self._out, self._fd = out, fd
        self._start = self._end = out.tell()

    def __call__(self, data: memoryview) -> None:
        _write_all(self._out, data)
        self._end += len(data)
        if self._end - self._start >= WRITEBACK_STEP:
            self._out.flush()
            try:
                os.posix_fadvise(self._fd, self._start, self._end - self._start, os.POSIX_FADV_DONTNEED)
            except OSError:  # a hint only: file systems that refuse it get the commit's fsync alone
                pass
            self._start = self._end


def local_fd(out: Any) -> int | None:
    """The descriptor of a built-in local file object (or one fsspec wraps), else None."""
    inner: Any = getattr(out, "f", None) if type(out).__name__ == "LocalFileOpener" else out
    if type(inner) not in (io.BufferedWriter, io.FileIO, io.BufferedRandom):
        return None
    try:
        fd = int(inner.fileno())
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe or socket has no range to write back
            return None
        inner.tell()
    except (OSError, ValueError):
        return None
    return fd


def _copies_on_write(out: Any) -> bool:
    if type(out) in (io.BufferedWriter, io.FileIO, io.BytesIO, io.BufferedRandom):
        return True
    # fsspec's local files wrap a built-in file object.
    inner = getattr(out, "f", None)
    return type(out).__name__ == "LocalFileOpener" and inner is not None and _copies_on_write(inner)


def _write_all(out: Any, data: memoryview) -> None:
    written = out.write(data)
    while written is not None and written < len(data):  # raw files may write part of it
        data = data[written:]
        written = out.write(data)
