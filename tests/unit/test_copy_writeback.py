"""The copy hands a local file's bytes to the kernel's writeback as it goes, not all at the commit's fsync.

A structural regression test, not a timing: left alone, the kernel keeps a whole snapshot dirty
until the commit's fsync, which then writes it all after the download (0.5 s per GiB on the
development machine, on the copy's clock). The writer starts the writeback of every
``WRITEBACK_STEP`` bytes (``posix_fadvise(DONTNEED)`` on the dirty range, which waits for nothing
and drops no dirty page), and the bytes in the file stay exactly the bytes written.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from airflow_provider_atlasflex.transfers import download_output
from airflow_provider_atlasflex.transfers.download_output import WRITEBACK_STEP, writer_for

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise is Linux/BSD only")

MIB = 1024 * 1024


def _chunks(total: int, size: int) -> list[bytes]:
    return [bytes([i % 251]) * min(size, total - start) for i, start in enumerate(range(0, total, size))]


@pytest.mark.parametrize("opener", ["buffered", "raw"])
def test_local_file_writeback_starts_every_step_over_contiguous_ranges(tmp_path, monkeypatch, opener):
    calls: list[tuple[int, int, int, int]] = []
    monkeypatch.setattr(download_output.os, "posix_fadvise", lambda *args: calls.append(args))
    path = tmp_path / "copy.tgz"
    total = 3 * WRITEBACK_STEP + 3 * MIB + 5
    chunks = _chunks(total, MIB)
    with open(path, "wb", buffering=-1 if opener == "buffered" else 0) as out:
        write = writer_for(out)
        for chunk in chunks:
            write(memoryview(chunk))
        fd = out.fileno()

    assert [c[0] for c in calls] == [fd] * len(calls)
    assert {c[3] for c in calls} == {os.POSIX_FADV_DONTNEED}
    assert len(calls) == 3
    position = 0
    for _, offset, length, _ in calls:
        assert offset == position and length >= WRITEBACK_STEP
        position += length
    assert total - position < WRITEBACK_STEP  # the rest is the commit's fsync's
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(b"".join(chunks)).digest()


def test_writeback_advice_refused_still_writes_every_byte(tmp_path, monkeypatch):
    def refuse(*args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(download_output.os, "posix_fadvise", refuse)
    path = tmp_path / "copy.tgz"
    chunks = _chunks(2 * WRITEBACK_STEP + 7, MIB)
    with open(path, "wb") as out:
        write = writer_for(out)
        for chunk in chunks:
            write(memoryview(chunk))
    assert path.read_bytes() == b"".join(chunks)


def test_writeback_is_not_asked_of_outputs_that_are_not_local_files(monkeypatch):
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(download_output.os, "posix_fadvise", lambda *args: calls.append(args))
    out = io.BytesIO()
    write = writer_for(out)
    for chunk in _chunks(2 * WRITEBACK_STEP, MIB):
        write(memoryview(chunk))
    assert calls == [] and len(out.getvalue()) == 2 * WRITEBACK_STEP


def test_a_pipe_is_written_without_writeback_advice() -> None:
    """A pipe has a descriptor but no position or range to write back: it is written plainly, not refused."""
    read_fd, write_fd = os.pipe()
    with open(write_fd, "wb") as out, open(read_fd, "rb") as back:
        assert download_output.local_fd(out) is None
        write = writer_for(out)
        write(memoryview(b"x" * 1000))
        out.flush()
        assert back.read(1000) == b"x" * 1000
