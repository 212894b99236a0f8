"""The .tgz integrity check: gzip members (ISA-L and zlib) and the tar walk over the inflated stream."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotTransferError
from airflow_provider_atlasflex.transfers.gzip_check import GzipStreamCheck, inflater
from airflow_provider_atlasflex.transfers.tar_check import TarStreamCheck

INFLATERS = ["zlib", pytest.param("isal", marks=pytest.mark.skipif(inflater()[0] != "isal", reason="isal missing"))]


def make_tar(fmt: int = tarfile.GNU_FORMAT, sizes: tuple[int, ...] = (0, 1, 511, 512, 513, 70_000)) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for i, size in enumerate(sizes):
            info = tarfile.TarInfo(("deep/" * 40 if i == 2 else "") + f"dump/c{i}.bson")
            info.size = size
            if fmt == tarfile.PAX_FORMAT and i == 3:
                info.pax_headers = {"comment": "x" * 2000}
            tar.addfile(info, io.BytesIO(bytes([i]) * size))
        for kind in (tarfile.DIRTYPE, tarfile.SYMTYPE):
            info = tarfile.TarInfo(f"dump/t{kind!r}")
            info.type = kind
            info.linkname = "dump/c1.bson" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info)
    return buffer.getvalue()


def feed_in(check: TarStreamCheck | GzipStreamCheck, data: bytes, step: int) -> None:
    for start in range(0, len(data), step):
        check.feed(data[start : start + step])


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("step", [1, 100, 512, 4097, 1 << 20])
def test_complete_archives_pass_whatever_the_pieces(fmt, step):
    data = make_tar(fmt)
    check = TarStreamCheck()
    feed_in(check, data, step)
    check.finish()
    assert check.members == 8


def test_every_cut_before_the_end_marker_is_caught():
    data = make_tar(sizes=(3000, 5000))
    end = len(data.rstrip(b"\0"))  # the last member's data ends here; the end marker follows
    for cut in range(0, end + 1024, 97):
        check = TarStreamCheck()
        check.feed(data[:cut])
        with pytest.raises(SnapshotTransferError, match="end-of-archive marker"):
            check.finish()


def test_pax_size_override_is_followed():
    """A pax 'size' record governs the next member (how sizes over 8 GiB are written)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = 10_000
        info.pax_headers = {"size": "10000"}
        tar.addfile(info, io.BytesIO(b"\1" * 10_000))
    data = buffer.getvalue()
    check = TarStreamCheck()
    check.feed(data)
    check.finish()


def test_base256_size_is_read():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("x")
        info.size = 4096
        tar.addfile(info, io.BytesIO(b"\2" * 4096))
    data = bytearray(buffer.getvalue())
    data[124:136] = b"\x80" + (4096).to_bytes(11, "big")  # the same size, written as GNU base-256
    data[148:156] = b"        "
    data[148:155] = f"{sum(data[:512]):06o}\0".encode()
    check = TarStreamCheck()
    check.feed(bytes(data))
    check.finish()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: b"<html>not a tar</html>".ljust(512, b" ") + d[512:], "checksum mismatch"),
        (lambda d: d[:1024] + b"\0" * 512 + d[1024:], "lone zero block"),
        (lambda d: d + b"trailing data", "data after its tar end-of-archive marker"),
    ],
    ids=["not-a-header", "junk-after-one-zero-block", "data-after-the-end"],
)
def test_damaged_archives_are_refused(damage, message):
    check = TarStreamCheck()
    with pytest.raises(SnapshotTransferError, match=message):
        check.feed(damage(make_tar(sizes=(100, 200))))
        check.finish()


@pytest.mark.parametrize("name", INFLATERS)
@pytest.mark.parametrize("step", [1, 7, 65536, 1 << 22])
def test_gzip_members_and_tar_end_are_both_required(name, step):
    tar = make_tar(sizes=(200_000, 3_000_000))
    halves = [gzip.compress(tar[:100_352]), gzip.compress(tar[100_352:])]
    whole = GzipStreamCheck(inflater_name=name)
    feed_in(whole, b"".join(halves), step)
    whole.finish()
    assert whole.inflated == len(tar) and whole.inflater == name
    first_only = GzipStreamCheck(inflater_name=name)
    feed_in(first_only, halves[0], step)
    with pytest.raises(SnapshotTransferError, match="end-of-archive marker"):
        first_only.finish()


@pytest.mark.parametrize("name", INFLATERS)
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: g[:-8] + bytes([g[-8] ^ 1]) + g[-7:], "not valid gzip data"),  # CRC32
        (lambda g: g[:-1] + bytes([g[-1] ^ 1]), "not valid gzip data"),  # ISIZE
        (lambda g: g[:-5], "ends in the middle of a gzip stream"),
        (lambda g: g + b"PK\3\4", "trailing bytes without the gzip signature"),
        (lambda g: zlib.decompress(g, 31), "does not start with the gzip signature"),
    ],
    ids=["crc", "length", "truncated", "trailing-garbage", "plain-tar"],
)
def test_gzip_damage_is_refused(name, damage, message):
    check = GzipStreamCheck(inflater_name=name)
    with pytest.raises(SnapshotTransferError, match=message):
        check.feed(damage(gzip.compress(make_tar())))
        check.finish()


def test_a_bomb_slice_is_inflated_in_bounded_pieces():
    """1000:1 data: each decompress call returns at most the cap, and the stream is still checked whole."""
    tar = make_tar(sizes=(64 * 1024 * 1024,))
    check = GzipStreamCheck(inflater_name="zlib")
    check.feed(gzip.compress(tar, 9))
    check.finish()
    assert check.inflated == len(tar)


def test_unknown_inflater_is_a_config_error(monkeypatch):
    monkeypatch.setenv("ATLASFLEX_INFLATER", "brotli")
    with pytest.raises(AtlasFlexConfigError, match="ATLASFLEX_INFLATER='brotli' is not an inflater"):
        GzipStreamCheck()
