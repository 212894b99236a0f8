"""SnapshotArchive: exact sizes, valid gzip/tar, random access equals sequential."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile

import pytest

from airflow_provider_atlasflex.testing.emulator import SnapshotArchive, minimum_snapshot_size

SID = "0123456789abcdef01234567"
GID = "abcdefabcdefabcdefabcdef"


def _archive(size: int, sid: str = SID) -> SnapshotArchive:
    return SnapshotArchive(snapshot_id=sid, cluster_name="alpha", group_id=GID, size=size, mtime=1_700_000_000)


def test_minimum_size_is_exact() -> None:
    m = minimum_snapshot_size("alpha", SID, GID, 1_700_000_000)
    data = _archive(m).read_all()
    assert len(data) == m
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getmembers()[1].size == 0
    with pytest.raises(ValueError, match=f"minimum is {m} bytes"):
        _archive(m - 1)


@pytest.mark.parametrize("extra", [0, 1, 2, 7, 511, 512, 517, 65_535, 65_540, 131_070, 1_000_000])
def test_exact_size_and_valid(extra: int) -> None:
    size = minimum_snapshot_size("alpha", SID, GID, 1_700_000_000) + extra
    a = _archive(size)
    data = a.read_all()
    assert len(data) == size
    payload = gzip.decompress(data)
    assert len(payload) == a.payload_len and len(payload) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"alpha-{SID}/manifest.json", f"alpha-{SID}/snapshot.data"]
        for m in members:
            assert len(tar.extractfile(m).read()) == m.size  # type: ignore[union-attr]
    assert a.sha256() == hashlib.sha256(data).hexdigest()


def test_random_ranges_match_sequential() -> None:
    a = _archive(300_001)
    full = a.read_all()
    rng = random.Random(7)
    for _ in range(200):
        s = rng.randrange(len(full))
        e = rng.randrange(s, len(full) + 1)
        assert b"".join(_archive(300_001).iter_range(s, e)) == full[s:e]
    with pytest.raises(ValueError):
        list(a.iter_range(10, 5))


def test_filler_is_not_periodic() -> None:
    """Every 64 KiB chunk differs, so a resume at a wrong offset changes the hash."""
    a = _archive(2_000_000)
    start = a._filler_start  # type: ignore[attr-defined]
    chunks = {a.payload(start + k * 65536, 65536) for k in range(20)}
    assert len(chunks) == 20


def test_crc_cached_from_sequential_read() -> None:
    a = _archive(200_000)
    assert a._crc is None  # type: ignore[attr-defined]
    data = a.read_all()
    assert a._crc is not None  # type: ignore[attr-defined]
    fresh = _archive(200_000)
    assert b"".join(fresh.iter_range(len(data) - 8)) == data[-8:]  # trailer alone computes the CRC
