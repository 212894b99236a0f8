"""Incremental gzip validation, so an HTML error page or a truncated file is never committed as a .tgz."""

from __future__ import annotations

import zlib

from airflow_provider_atlasflex.exceptions import SnapshotTransferError

GZIP_MAGIC = b"\x1f\x8b"
# Bound the memory a highly compressible chunk can expand into while it is checked.
_MAX_OUTPUT_PER_STEP = 1 << 20


class GzipStreamCheck:
    """Feed the downloaded bytes in order; :meth:`finish` raises unless they form complete gzip members."""

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(wbits=31)
        self._members = 0
        self._bytes_in_member = 0  # input given to the member being decoded now

    def feed(self, data: bytes | bytearray) -> None:
        pending = data
        try:
            while pending:
                if self._bytes_in_member == 0 and not pending.startswith(GZIP_MAGIC[: len(pending)]):
                    what = "does not start with" if self._members == 0 else "has trailing bytes without"
                    raise SnapshotTransferError(f"the snapshot file {what} the gzip signature (not a .tgz)")
                before = len(pending)
                self._decoder.decompress(pending, _MAX_OUTPUT_PER_STEP)
                if self._decoder.eof:
                    leftover = self._decoder.unused_data
                    self._members += 1
                    self._bytes_in_member = 0
                    self._decoder = zlib.decompressobj(wbits=31)
                    pending = leftover
                else:
                    pending = self._decoder.unconsumed_tail
                    self._bytes_in_member += before - len(pending)
        except zlib.error as exc:
            raise SnapshotTransferError(f"the snapshot file is not valid gzip data ({exc})") from None

    def finish(self) -> None:
        """Raise unless at least one gzip member ended and no member was left unfinished."""
        if self._members == 0 or self._bytes_in_member:
            raise SnapshotTransferError("the snapshot file ends in the middle of a gzip stream (truncated)")
