"""The bytes of one multipart upload: part sizes, the part buffer, and the heartbeat that keeps it fresh.

Why apart from the commit (:mod:`.object_store_commit`): the download writes a file, S3 takes
numbered parts. :class:`PartWriter` is that file: it buffers one part at a time (memory stays at
one part), uploads each part as it fills, records what it sent (numbers, sizes, MD5s) for the
commit to check, and while no part goes out it touches the upload every heartbeat so other
writers do not take it for a dead attempt's.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.exceptions import SnapshotTransferError

if TYPE_CHECKING:
    from airflow_provider_atlasflex.archive.object_store_commit import S3MultipartExportCommit

MIB = 1024 * 1024
PART_SIZE = 8 * MIB
MAX_PART_SIZE = 64 * MIB
PARTS_PER_SIZE_STEP = 1000  # the part size doubles after each 1000 parts, up to MAX_PART_SIZE
MAX_PARTS = 10_000

log = logging.getLogger(__name__)


def part_size_for(part_number: int, base: int = PART_SIZE) -> int:
    """The size of part ``part_number`` (1-based): ``base``, doubling after each 1000 parts, at most 64 MiB."""
    return min(MAX_PART_SIZE, base << ((part_number - 1) // PARTS_PER_SIZE_STEP))


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    md5: str


class PartWriter(io.RawIOBase):
    """The file the download writes: buffers one part, uploads it, keeps the upload alive while idle.

    ``close()`` uploads nothing: the tail waits for :meth:`S3MultipartExportCommit.commit` so a failed
    download costs no extra request, and nothing is ever completed here.
    """

    def __init__(self, owner: S3MultipartExportCommit) -> None:
        super().__init__()
        self._owner = owner
        self._buffer = bytearray()
        self._lock = threading.Lock()  # one request at a time: a part or a heartbeat
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._last_sent = time.monotonic()
        self.upload_id: str | None = None
        self.parts: list[Part] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self.written += len(view)
        while len(self._buffer) >= self._next_size():
            self._send(self._next_size())
        return len(view)

    def _next_size(self) -> int:
        return part_size_for(len(self.parts) + 1, self._owner.part_size)

    def _send(self, size: int) -> None:
        data = bytes(self._buffer[:size])
        with self._lock:
            if self.upload_id is None:
                self.upload_id = self._owner._create_upload()
                self._start_heartbeat()
            number = len(self.parts) + 1
            if number > MAX_PARTS:
                raise SnapshotTransferError(f"the export of {self._owner.dst} needs more than {MAX_PARTS} parts")
            self.parts.append(self._owner._upload_part(self.upload_id, number, data))
            self._last_sent = time.monotonic()
        del self._buffer[:size]

    def flush_tail(self) -> None:
        if self._buffer:
            self._send(len(self._buffer))

    def take_tail(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def multipart_etag(self) -> str:
        """The ETag S3 gives the completed object: MD5 of the parts' MD5s, then ``-<count>``."""
        digest = hashlib.md5(b"".join(bytes.fromhex(p.md5) for p in self.parts), usedforsecurity=False)
        return f'"{digest.hexdigest()}-{len(self.parts)}"'

    # ---- heartbeat ---------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        interval = self._owner.heartbeat_interval
        if interval <= 0:
            return
        self._heartbeat = threading.Thread(target=self._beat, args=(interval,), name="atlasflex-s3-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval / 2):
            if time.monotonic() - self._last_sent < interval or not self._lock.acquire(blocking=False):
                continue
            try:
                if self.upload_id is None or self._stop.is_set():
                    continue
                # The bytes waiting for the next part, as that part: the full part replaces it later, and
                # completion lists only the parts this writer recorded.
                self._owner._call(
                    "upload_part",
                    Bucket=self._owner.bucket,
                    Key=self._owner.key,
                    UploadId=self.upload_id,
                    PartNumber=len(self.parts) + 1,
                    Body=bytes(self._buffer),
                )
                self._last_sent = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat only risks this attempt, never data
                log.debug("Heartbeat of the upload to %s failed: %s", self._owner.dst, exc)
            finally:
                self._lock.release()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
