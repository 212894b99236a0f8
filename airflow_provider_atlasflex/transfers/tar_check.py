"""Incremental tar structure check over the inflated stream, with flat memory.

Why: a gzip stream made of several members can be cut cleanly after any of them, and without a
Content-Length nothing else shows it. A tar archive ends with two 512-byte zero blocks; walking
the member headers as the bytes pass (never holding more than one header, plus a bounded pax
record) proves the archive is whole without reading it twice or keeping it in memory.

The walk follows what Python's ``tarfile`` and GNU tar read: ustar/GNU/pax headers with their
checksum, octal or base-256 sizes, pax ``size`` overrides, GNU long names and old GNU sparse
extension blocks.
"""

from __future__ import annotations

from airflow_provider_atlasflex.exceptions import SnapshotTransferError

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# Member types whose data blocks follow the header. tarfile skips data for any type it does
# not know as well, and none for links, directories and devices (even if their size is set).
_NO_DATA_TYPES = frozenset(b"123456")
_PAX_TYPES = frozenset(b"xX")
_GNU_SPARSE = ord("S")
_METADATA_TYPES = frozenset(b"gLK")  # global pax header, GNU long name and long link
# A pax extended header is parsed for its "size" record; a larger one is refused, so a hostile
# archive cannot make the check hold much memory.
MAX_PAX_HEADER = 1 << 20


class TarStreamCheck:
    """Feed the inflated bytes in order; :meth:`finish` raises unless they form a complete tar archive."""

    def __init__(self) -> None:
        self._offset = 0  # bytes of tar stream consumed so far
        self._skip = 0  # data bytes of the current member still to pass
        self._header = bytearray()  # a header block split across two feeds
        self._pax: bytearray | None = None  # data of a pax header being collected
        self._pax_left = 0
        self._pax_pad = 0  # zero padding after the pax data
        self._next_size: int | None = None  # size given by the last pax header, for the next member
        self._sparse_blocks = False  # old GNU sparse extension blocks follow
        self._pending_data = 0  # data of the sparse member, after its extension blocks
        self._zero_blocks = 0  # consecutive zero header blocks
        self._ended = False  # two zero blocks seen: only zero padding may follow
        self.members = 0

    def feed(self, data: bytes) -> None:
        size = len(data)
        pos = 0
        while pos < size:
            if self._ended:
                if data.count(0, pos) != size - pos:
                    raise SnapshotTransferError(
                        f"the snapshot archive has data after its tar end-of-archive marker (byte {self._offset}); "
                        "it is not a single valid .tgz"
                    )
                self._offset += size - pos
                return
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                self._offset += step
                pos += step
                continue
            if self._pax is not None:
                step = min(self._pax_left, size - pos)
                self._pax += data[pos : pos + step]
                self._pax_left -= step
                self._offset += step
                pos += step
                if not self._pax_left:
                    self._end_pax()
                continue
            need = BLOCK - len(self._header)
            if not self._header and size - pos >= BLOCK:
                block = data[pos : pos + BLOCK]
            else:
                self._header += data[pos : pos + need]
                if len(self._header) < BLOCK:
                    self._offset += size - pos
                    return
                block = bytes(self._header)
                self._header.clear()
            step = min(need, BLOCK)
            pos += step
            self._offset += step
            self._on_block(block)

    def finish(self) -> None:
        """Raise unless the end-of-archive marker (two zero blocks after the last member) was seen."""
        if not self._ended:
            raise SnapshotTransferError(
                f"the snapshot archive ends after {self._offset} bytes of tar data without the tar end-of-archive "
                "marker (truncated, e.g. cut at a gzip member boundary)"
            )

    # ---- one header block -------------------------------------------------------------------

    def _on_block(self, block: bytes) -> None:
        if self._sparse_blocks:  # an old GNU sparse extension block: flag at byte 504
            self._sparse_blocks = block[504] != 0
            if not self._sparse_blocks:
                self._skip = self._pending_data
            return
        if block == _ZERO_BLOCK:
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self._ended = True
            return
        if self._zero_blocks:
            raise SnapshotTransferError(
                f"the snapshot archive has a lone zero block at byte {self._offset - 2 * BLOCK} followed by more "
                "members; it is not a valid tar archive"
            )
        _check_checksum(block, self._offset - BLOCK)
        size = _size_of(block, self._offset - BLOCK)
        kind = block[156]
        if self._next_size is not None and kind not in _PAX_TYPES and kind != ord("g"):
            size, self._next_size = self._next_size, None
        data = 0 if kind in _NO_DATA_TYPES else _padded(size)
        if kind in _PAX_TYPES:
            if size > MAX_PAX_HEADER:
                raise SnapshotTransferError(
                    f"the snapshot archive has a {size}-byte pax header at byte {self._offset - BLOCK} "
                    f"(more than {MAX_PAX_HEADER}); refusing to check it"
                )
            self._pax, self._pax_left, self._pax_pad = bytearray(), size, data - size
            if not size:
                self._end_pax()
            return
        if kind not in _METADATA_TYPES:
            self.members += 1
        if kind == _GNU_SPARSE and block[482]:
            self._sparse_blocks, self._pending_data = True, data
            return
        self._skip = data

    def _end_pax(self) -> None:
        assert self._pax is not None
        self._next_size = _pax_size(bytes(self._pax), self._offset)
        self._pax = None
        self._skip = self._pax_pad


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _check_checksum(block: bytes, offset: int) -> None:
    field = block[148:156]
    digits = field.split(b"\0", 1)[0].strip(b" ")
    try:
        stored = int(digits, 8)
    except ValueError:
        stored = -1
    unsigned = sum(block) - sum(field) + 8 * 32
    if stored == unsigned:
        return
    # Old tars summed signed bytes; tarfile accepts both.
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    if stored != signed:
        raise SnapshotTransferError(
            f"the snapshot archive has no valid tar header at byte {offset} (checksum mismatch): the gzip data "
            "does not hold a tar archive, or it is corrupt"
        )


def _size_of(block: bytes, offset: int) -> int:
    field = block[124:136]
    if field[0] == 0x80:  # GNU base-256, positive
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise SnapshotTransferError(
            f"the snapshot archive has a tar header with an unreadable size at byte {offset}; it is corrupt"
        ) from None


def _pax_size(records: bytes, offset: int) -> int | None:
    """The ``size`` record of a pax extended header ("<len> size=<n>\\n"), if any."""
    pos = 0
    size: int | None = None
    while pos < len(records):
        space = records.find(b" ", pos)
        try:
            length = int(records[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        if length <= 0 or pos + length > len(records):
            if not records[pos:].strip(b"\0"):
                break  # padding
            raise SnapshotTransferError(f"the snapshot archive has a malformed pax header before byte {offset}")
        key, _, value = records[space + 1 : pos + length - 1].partition(b"=")
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                raise SnapshotTransferError(
                    f"the snapshot archive has a pax size record that is not a number before byte {offset}"
                ) from None
        pos += length
    return size
