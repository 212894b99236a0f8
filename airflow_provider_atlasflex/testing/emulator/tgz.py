"""Deterministic, exactly-sized, streamable ``.tgz`` snapshot files.

Why this shape: the emulator must serve multi-gigabyte snapshot files with flat
memory, an exact ``Content-Length`` chosen by the test, and support for byte
``Range`` requests.  A gzip member whose deflate stream uses only *stored* blocks
(no compression) has a layout that can be computed arithmetically:

    gzip header (10 bytes, + optional FCOMMENT used as padding)
    N x [5-byte stored-block header + up to 65535 payload bytes]
    trailer (CRC32 + ISIZE, 8 bytes)

so any byte range of the file can be produced on demand from the tar payload,
which itself is generated on demand (two tar members: a small JSON manifest and a
deterministic, non-periodic filler).  The result is a valid gzip-compressed tar
that ``tarfile.open(fileobj, "r:gz")`` and ``gzip.decompress`` read.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SnapshotArchive", "minimum_snapshot_size"]

_BLOCK = 65535  # max payload of one stored deflate block
_BLOCK_HDR = 5
_GZ_HDR = 10
_GZ_TRAILER = 8
_TAR_BLOCK = 512
_FILLER_CHUNK = 65536  # period of the filler pattern (each chunk gets a unique prefix)
_OUT_CHUNK = 1 << 20  # preferred size of the pieces yielded to the socket


def _pad512(n: int) -> int:
    return (n + _TAR_BLOCK - 1) // _TAR_BLOCK * _TAR_BLOCK


def _nblocks(payload_len: int) -> int:
    return max(1, (payload_len + _BLOCK - 1) // _BLOCK)


def _gzip_size(payload_len: int) -> int:
    """Size of a gzip file with a bare header holding ``payload_len`` stored bytes."""
    return _GZ_HDR + payload_len + _BLOCK_HDR * _nblocks(payload_len) + _GZ_TRAILER


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uname = info.gname = "mongodb"
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _layout(
    snapshot_id: str, cluster_name: str, group_id: str, mtime: int, mongodb_version: str
) -> tuple[bytes, bytes, str, int]:
    """Manifest header, manifest, filler member name, and payload size without filler."""
    prefix = f"{cluster_name}-{snapshot_id}"
    manifest = (
        json.dumps(
            {
                "snapshotId": snapshot_id,
                "clusterName": cluster_name,
                "groupId": group_id,
                "mongoDBVersion": mongodb_version,
                "generator": "airflow_provider_atlasflex.testing.emulator",
                "note": "Synthetic flex-cluster snapshot produced by the local Atlas emulator.",
            },
            indent=2,
            sort_keys=True,
        ).encode()
        + b"\n"
    )
    manifest_hdr = _tar_header(f"{prefix}/manifest.json", len(manifest), mtime)
    filler_name = f"{prefix}/snapshot.data"
    filler_hdr_len = len(_tar_header(filler_name, 0, mtime))
    fixed = len(manifest_hdr) + _pad512(len(manifest)) + filler_hdr_len + 2 * _TAR_BLOCK
    return manifest_hdr, manifest, filler_name, fixed


@dataclass(frozen=True)
class _Segment:
    start: int
    data: bytes | None  # None means "filler"
    length: int


class SnapshotArchive:
    """One snapshot's ``.tgz``: exact size, random access, streamed in pieces.

    ``size`` is the exact byte length of the file; ``iter_range`` yields its bytes.
    The CRC32 (needed for the gzip trailer) and the SHA-256 of the whole file are
    computed by streaming once and cached; a full sequential read computes the CRC
    on the fly so the first download does not pay twice.
    """

    def __init__(
        self,
        *,
        snapshot_id: str,
        cluster_name: str,
        group_id: str,
        size: int,
        mtime: int,
        mongodb_version: str = "8.0.4",
    ) -> None:
        self.snapshot_id = snapshot_id
        self.cluster_name = cluster_name
        self.size = size
        self.mtime = mtime
        self._lock = threading.Lock()
        self._crc: int | None = None
        self._sha256: str | None = None

        manifest_hdr, manifest, filler_name, fixed = _layout(
            snapshot_id, cluster_name, group_id, mtime, mongodb_version
        )
        if _gzip_size(fixed) > size:
            raise ValueError(
                f"snapshot_size={size} is too small for a valid .tgz; minimum is "
                f"{_gzip_size(fixed)} bytes for cluster {cluster_name!r}"
            )
        # Largest filler (a multiple of 512) that still fits; the rest is gzip-header slack.
        lo, hi = 0, (size - _gzip_size(fixed)) // _TAR_BLOCK + 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _gzip_size(fixed + mid * _TAR_BLOCK) <= size:
                lo = mid
            else:
                hi = mid
        filler_len = lo * _TAR_BLOCK
        self.payload_len = fixed + filler_len
        slack = size - _gzip_size(self.payload_len)
        self._gz_header = self._gzip_header(slack, mtime)
        assert _gzip_size(self.payload_len) + slack == size

        filler_hdr = _tar_header(filler_name, filler_len, mtime)
        segs: list[_Segment] = []
        pos = 0
        for data in (manifest_hdr, manifest + b"\0" * (_pad512(len(manifest)) - len(manifest)), filler_hdr):
            segs.append(_Segment(pos, data, len(data)))
            pos += len(data)
        segs.append(_Segment(pos, None, filler_len))
        self._filler_start = pos
        pos += filler_len
        segs.append(_Segment(pos, b"\0" * (2 * _TAR_BLOCK), 2 * _TAR_BLOCK))
        pos += 2 * _TAR_BLOCK
        assert pos == self.payload_len
        self._segments = segs
        self._nblocks = _nblocks(self.payload_len)
        self._blocks_start = len(self._gz_header)
        self._trailer_start = self._blocks_start + self.payload_len + _BLOCK_HDR * self._nblocks
        pattern_seed = hashlib.sha256(f"atlas-emulator-filler:{snapshot_id}".encode()).digest()
        self._pattern = hashlib.shake_256(pattern_seed).digest(_FILLER_CHUNK)
        self._tag = bytes.fromhex(snapshot_id) if len(snapshot_id) == 24 else pattern_seed[:12]

    # ----------------------------------------------------------------- building
    @staticmethod
    def _gzip_header(slack: int, mtime: int) -> bytes:
        if slack == 0:
            return b"\x1f\x8b\x08\x00" + struct.pack("<I", mtime & 0xFFFFFFFF) + b"\x00\xff"
        text = b"atlas-emulator synthetic flex snapshot "
        comment = (text * (slack // len(text) + 1))[: slack - 1] + b"\0"
        return b"\x1f\x8b\x08\x10" + struct.pack("<I", mtime & 0xFFFFFFFF) + b"\x00\xff" + comment

    # ------------------------------------------------------------ random access
    def _filler(self, off: int, n: int) -> bytes:
        """Filler bytes [off, off+n): each 64 KiB chunk = unique 16-byte tag + pattern."""
        out: list[bytes] = []
        end = off + n
        while off < end:
            k, inner = divmod(off, _FILLER_CHUNK)
            take = min(_FILLER_CHUNK - inner, end - off)
            chunk_head = self._tag + struct.pack(">I", k & 0xFFFFFFFF)
            if inner == 0 and take == _FILLER_CHUNK:
                out.append(chunk_head + self._pattern[16:])
            else:
                full = chunk_head + self._pattern[16:] if inner < 16 else None
                out.append(full[inner : inner + take] if full is not None else self._pattern[inner : inner + take])
            off += take
        return b"".join(out)

    def payload(self, off: int, n: int) -> bytes:
        """Uncompressed tar bytes [off, off+n)."""
        end = min(off + n, self.payload_len)
        out: list[bytes] = []
        for seg in self._segments:
            s, e = seg.start, seg.start + seg.length
            if e <= off or s >= end:
                continue
            a, b = max(off, s), min(end, e)
            if seg.data is None:
                out.append(self._filler(a - s, b - a))
            else:
                out.append(seg.data[a - s : b - s])
        return b"".join(out)

    def _iter_payload(self) -> Iterator[bytes]:
        for off in range(0, self.payload_len, _OUT_CHUNK):
            yield self.payload(off, min(_OUT_CHUNK, self.payload_len - off))

    def crc32(self) -> int:
        """CRC32 of the tar payload (streams it once, then cached)."""
        with self._lock:
            if self._crc is None:
                crc = 0
                for piece in self._iter_payload():
                    crc = zlib.crc32(piece, crc)
                self._crc = crc
            return self._crc

    def _trailer(self, crc: int | None = None) -> bytes:
        if crc is None:
            crc = self.crc32()
        return struct.pack("<II", crc, self.payload_len & 0xFFFFFFFF)

    def _iter_body(self, running_crc: bool) -> Iterator[tuple[int, bytes]]:
        """(file offset, bytes) of the whole file, in ~1 MiB pieces."""
        yield 0, self._gz_header
        pos = self._blocks_start
        crc = 0
        buf: list[bytes] = []
        buf_start = pos
        buf_len = 0
        for j in range(self._nblocks):
            p_off = j * _BLOCK
            p_len = min(_BLOCK, self.payload_len - p_off)
            final = 1 if j == self._nblocks - 1 else 0
            data = self.payload(p_off, p_len)
            if running_crc:
                crc = zlib.crc32(data, crc)
            buf.append(struct.pack("<BHH", final, p_len, p_len ^ 0xFFFF))
            buf.append(data)
            buf_len += _BLOCK_HDR + p_len
            if buf_len >= _OUT_CHUNK:
                yield buf_start, b"".join(buf)
                buf_start += buf_len
                buf, buf_len = [], 0
        if buf:
            yield buf_start, b"".join(buf)
        if running_crc:
            with self._lock:
                self._crc = crc
        yield self._trailer_start, self._trailer(crc if running_crc else None)

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the file bytes [start, end) (end exclusive, default: the whole file)."""
        if end is None:
            end = self.size
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"bad range [{start}, {end}) for size {self.size}")
        if start == end:
            return
        if start == 0 and end == self.size:
            for _, piece in self._iter_body(running_crc=self._crc is None):
                yield piece
            return
        # Partial range: jump straight to the first stored block that matters.
        if start < self._blocks_start:
            yield self._gz_header[start : min(end, self._blocks_start)]
        first_block = max(0, (start - self._blocks_start) // (_BLOCK + _BLOCK_HDR))
        buf: list[bytes] = []
        buf_len = 0
        for j in range(first_block, self._nblocks):
            b_start = self._blocks_start + j * (_BLOCK + _BLOCK_HDR)
            if b_start >= end:
                break
            p_off = j * _BLOCK
            p_len = min(_BLOCK, self.payload_len - p_off)
            b_end = b_start + _BLOCK_HDR + p_len
            if b_end <= start:
                continue
            final = 1 if j == self._nblocks - 1 else 0
            block = struct.pack("<BHH", final, p_len, p_len ^ 0xFFFF) + self.payload(p_off, p_len)
            lo, hi = max(start, b_start) - b_start, min(end, b_end) - b_start
            piece = block[lo:hi] if (lo, hi) != (0, len(block)) else block
            buf.append(piece)
            buf_len += len(piece)
            if buf_len >= _OUT_CHUNK:
                yield b"".join(buf)
                buf, buf_len = [], 0
        if buf:
            yield b"".join(buf)
        if end > self._trailer_start:
            t = self._trailer()
            yield t[max(start, self._trailer_start) - self._trailer_start : end - self._trailer_start]

    def sha256(self) -> str:
        """Hex SHA-256 of the whole file (streams it once, then cached)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            for piece in self.iter_range():
                h.update(piece)
            self._sha256 = h.hexdigest()
        return self._sha256

    def read_all(self) -> bytes:
        """Whole file in memory: only sensible for small sizes (tests)."""
        buf = io.BytesIO()
        for piece in self.iter_range():
            buf.write(piece)
        return buf.getvalue()


def minimum_snapshot_size(cluster_name: str, snapshot_id: str, group_id: str, mtime: int = 0) -> int:
    """Smallest ``snapshot_size`` that still yields a valid .tgz for that cluster/snapshot."""
    return _gzip_size(_layout(snapshot_id, cluster_name, group_id, mtime, "8.0.4")[3])
