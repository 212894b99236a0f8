"""The one tar walk that says whether inflated bytes form a complete tar archive, with flat memory.

Why one: the copy (before it commits) and the scrub (months later) must agree on what a valid
archive is, or a file the copy committed is "damaged" for the scrub. Why a walk: a gzip stream
made of several members can be cut cleanly after any of them, and without a Content-Length
nothing else shows it; ``tarfile``'s stream mode stops quietly at a truncated or garbled header.
A tar archive ends with two 512-byte zero blocks: walking the member headers as the bytes pass
(never holding more than one header, plus a bounded pax record) proves it whole in one pass.

The walk reads what Python's ``tarfile`` reads, and no more: ustar/GNU/pax headers with their
checksum and numeric fields, octal or base-256 numbers, pax ``size`` overrides (global ones too),
GNU long names/links, old GNU sparse members with their extension blocks (their data is the
stored size), and pax sparse members. It is stricter where ``tarfile`` stops quietly: a garbled
header, a lone zero block, a malformed pax record or a missing end marker is damage. Member data
is not looked into: the sparse map that pax sparse 1.0 stores at the start of a member's data is
data (gzip's CRC32 guards it), so a map garbled before compression passes here and fails in tarfile.
"""

from __future__ import annotations

from airflow_provider_atlasflex.exceptions import SnapshotTransferError

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# Member types with no data after their header (tarfile reads none for links, directories and
# devices, even with a size set); any other type, unknown ones included, has data.
_NO_DATA_TYPES = frozenset(b"123456")
_REGULAR_TYPES = frozenset(b"07\0S")  # what tarfile's isreg() calls a file: their sizes add up
_PAX_TYPES = frozenset(b"xX")
_GLOBAL_PAX = ord("g")
_GNU_SPARSE = ord("S")
_METADATA_TYPES = frozenset(b"gLKxX")  # describe the next member; are none themselves
# Numeric header fields tarfile parses (mode, uid, gid, size, mtime, devmajor, devminor).
_NUMBER_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337), (337, 345))
# A pax extended header is parsed for its size records; a larger one is refused, so a hostile
# archive cannot make the walk hold much memory.
MAX_PAX_HEADER = 1 << 20


class ArchiveDamage(SnapshotTransferError):
    """The bytes are not a complete gzip-compressed tar archive (the message says where and why)."""


class TarWalker:
    """Feed the inflated bytes in order; :meth:`finish` raises :class:`ArchiveDamage` unless they form a
    complete tar archive. ``members`` and ``member_bytes`` count entries and regular files' sizes as
    ``tarfile`` lists them (a sparse file counts its real size)."""

    def __init__(self) -> None:
        self.offset = 0  # bytes of tar stream consumed so far
        self.members = 0
        self.member_bytes = 0
        self._skip = 0  # data bytes of the current member still to pass
        self._header = bytearray()  # a header block split across two feeds
        self._pax: bytearray | None = None  # data of a pax header being collected
        self._pax_global = False
        self._pax_left = 0
        self._pax_pad = 0  # zero padding after the pax data
        self._next_size: int | None = None  # data size given by a pax header, for the next member
        self._next_real: int | None = None  # a pax (sparse) size as tarfile reports it
        self._global_size: int | None = None  # a "size" in a global pax header (applies with an x header)
        self._sparse_blocks = False  # old GNU sparse extension blocks follow
        self._pending_data = 0  # data of the sparse member, after its extension blocks
        self._in_member = False  # inside a member's data (for the truncation message)
        self._zero_blocks = 0  # consecutive zero header blocks
        self.ended = False  # two zero blocks seen: only zero padding may follow

    def feed(self, data: bytes) -> None:
        size = len(data)
        pos = 0
        while pos < size:
            if self.ended:
                if data.count(0, pos) != size - pos:
                    raise ArchiveDamage(
                        f"the archive has data after its tar end-of-archive marker (inflated offset {self.offset}); "
                        "it is not a single valid .tgz"
                    )
                self.offset += size - pos
                return
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                self.offset += step
                pos += step
                continue
            if self._pax is not None:
                step = min(self._pax_left, size - pos)
                self._pax += data[pos : pos + step]
                self._pax_left -= step
                self.offset += step
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
                    self.offset += size - pos
                    return
                block = bytes(self._header)
                self._header.clear()
            step = min(need, BLOCK)
            pos += step
            self.offset += step
            self._on_block(block)

    def finish(self) -> None:
        """Raise unless the end-of-archive marker (two zero blocks after the last member) was seen."""
        if self.ended:
            return
        if self._skip or self._header or self._pax is not None or self._sparse_blocks:
            where = f"inside entry {self.members}" if self._in_member else f"after {self.members} member(s)"
            raise ArchiveDamage(
                f"the tar archive is truncated {where} (inflated offset {self.offset}): no end-of-archive marker"
            )
        raise ArchiveDamage(
            f"the tar archive is truncated: no end-of-archive marker after {self.members} member(s) "
            f"(inflated offset {self.offset}; e.g. cut at a gzip member boundary)"
        )

    # ---- one header block -------------------------------------------------------------------

    def _on_block(self, block: bytes) -> None:
        at = self.offset - BLOCK
        if self._sparse_blocks:  # an old GNU sparse extension block: 21 entries, then the flag at 504
            for pos in range(0, 504, 12):
                _number(block[pos : pos + 12], at, "sparse map")
            self._sparse_blocks = block[504] != 0
            if not self._sparse_blocks:
                self._skip = self._pending_data
            return
        self._in_member = False
        if block == _ZERO_BLOCK:
            self._zero_blocks += 1
            self.ended = self._zero_blocks == 2
            return
        if self._zero_blocks:
            raise ArchiveDamage(f"a lone zero block before the tar header at inflated offset {at}")
        _check_checksum(block, at)
        for start, end in _NUMBER_FIELDS:
            _number(block[start:end], at, "numeric")
        size = _number(block[124:136], at, "size")
        kind = block[156]
        if size < 0:
            raise ArchiveDamage(f"invalid tar header (negative size) at inflated offset {at}")
        if kind in _PAX_TYPES or kind == _GLOBAL_PAX:
            if size > MAX_PAX_HEADER:
                raise ArchiveDamage(
                    f"an extended tar header of {size} bytes at inflated offset {at} (more than {MAX_PAX_HEADER}); "
                    "refusing to read it"
                )
            self._pax, self._pax_global = bytearray(), kind == _GLOBAL_PAX
            self._pax_left, self._pax_pad = size, _padded(size) - size
            if not size:
                self._end_pax()
            return
        if kind in _METADATA_TYPES:  # GNU long name / long link: the data is a name
            self._skip = _padded(size)
            return
        real = size
        if kind == _GNU_SPARSE:
            for pos in range(386, 482, 12):
                _number(block[pos : pos + 12], at, "sparse map")
            real = _number(block[483:495], at, "sparse real size")
        if self._next_size is not None:
            size = real = self._next_size
        if self._next_real is not None:
            real = self._next_real
        self._next_size = self._next_real = None
        if kind == 0 and block[:100].split(b"\0", 1)[0].endswith(b"/"):
            kind = ord("5")  # an old V7 directory: a regular type with a trailing slash (tarfile agrees)
        self.members += 1
        if kind in _REGULAR_TYPES:
            self.member_bytes += real
        data = 0 if kind in _NO_DATA_TYPES else _padded(size)
        self._in_member = data > 0
        if kind == _GNU_SPARSE and block[482]:
            self._sparse_blocks, self._pending_data = True, data
            return
        self._skip = data

    def _end_pax(self) -> None:
        assert self._pax is not None
        size, real = _pax_sizes(bytes(self._pax), self.offset)
        self._pax = None
        self._skip = self._pax_pad
        if self._pax_global:
            self._global_size = size if size is not None else self._global_size
            return
        # Like tarfile: an extended header's size, else a global one, governs the member; the first
        # of two extended headers in a row wins (tarfile applies the outer one last).
        if self._next_size is None:
            self._next_size = size if size is not None else self._global_size
        if self._next_real is None:
            self._next_real = real


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _number(field: bytes, at: int, what: str) -> int:
    """A numeric header field as tarfile's ``nti`` reads it: base-256, or octal text up to a NUL."""
    if field[0] in (0x80, 0xFF):  # GNU base-256 (0xff: negative)
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    try:
        return int(field.split(b"\0", 1)[0].decode("ascii").strip() or "0", 8)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveDamage(f"invalid tar header ({what} field {field!r}) at inflated offset {at}") from None


def _check_checksum(block: bytes, at: int) -> None:
    field = block[148:156]
    try:
        stored = _number(field, at, "checksum")
    except ArchiveDamage:
        stored = -1
    unsigned = sum(block) - sum(field) + 8 * 32
    if stored == unsigned:
        return
    # Old tars summed signed bytes; tarfile accepts both.
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    if stored != signed:
        raise ArchiveDamage(
            f"invalid tar header (checksum mismatch) at inflated offset {at}: the data is not a tar archive, "
            "or it is corrupt"
        )


def _pax_sizes(records: bytes, offset: int) -> tuple[int | None, int | None]:
    """The data size (``size``) and the reported size (``size``, ``GNU.sparse.size``/``realsize``, last
    wins as in tarfile) of a pax header's records ("<len> <key>=<value>\\n")."""
    pos = 0
    size: int | None = None
    real: int | None = None
    while pos < len(records):
        space = records.find(b" ", pos)
        try:
            length = int(records[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        if length <= 0 or pos + length > len(records) or records[pos + length - 1] != 0x0A:
            if not records[pos:].strip(b"\0"):
                break  # padding
            raise ArchiveDamage(f"a malformed pax header record before inflated offset {offset}")
        key, _, value = records[space + 1 : pos + length - 1].partition(b"=")
        if key in (b"size", b"GNU.sparse.size", b"GNU.sparse.realsize"):
            try:
                number = int(value)
            except ValueError:
                raise ArchiveDamage(
                    f"a pax {key.decode()} record that is not a number before inflated offset {offset}"
                ) from None
            if number < 0:
                raise ArchiveDamage(f"a negative pax {key.decode()} record before inflated offset {offset}")
            real = number
            if key == b"size":
                size = number
        elif key == b"GNU.sparse.map":  # pax sparse 0.1: tarfile reads "offset,size,..." as integers
            try:
                [int(number) for number in value.split(b",")]
            except ValueError:
                raise ArchiveDamage(f"a pax GNU.sparse.map record that is not numbers before inflated offset {offset}") from None
        pos += length
    return size, real
