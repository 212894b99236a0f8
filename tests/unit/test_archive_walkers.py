"""The one .tgz walk, differentially against Python's ``tarfile``, as the copy and the scrub each run it.

Archives are made by ``tarfile`` (pax, GNU with long names and long links, ustar) and by GNU tar
(sparse members: old GNU format with extension blocks, pax sparse 1.0 and 0.1). Each complete
archive must be accepted by the copy's check (fed in pieces, as the download streams) and by the
scrub's re-read (a file on disk), with the member count and regular-file bytes ``tarfile`` lists.
Each truncated or garbled variant must be refused by both.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import check_content
from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.transfers.gzip_check import GzipStreamCheck

LONG = "dump/" + "very-long-directory-name/" * 6 + "collection.bson"  # > 100 characters


def tarfile_archive(fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for i, size in enumerate((0, 1, 511, 512, 513, 70_000)):
            info = tarfile.TarInfo(f"dump/c{i}.bson")
            info.size = size
            if fmt == tarfile.PAX_FORMAT and i == 3:
                info.pax_headers = {"comment": "x" * 2000, "path": "dump/\u00e9t\u00e9.bson"}
            tar.addfile(info, io.BytesIO(bytes([i]) * size))
        info = tarfile.TarInfo(LONG)  # GNU: an L member; ustar: split into prefix and name; pax: a path record
        info.size = 3000
        tar.addfile(info, io.BytesIO(b"\7" * 3000))
        for kind, name in ((tarfile.DIRTYPE, "dump"), (tarfile.SYMTYPE, "dump/link"), (tarfile.LNKTYPE, "dump/hard")):
            info = tarfile.TarInfo(name)
            info.type = kind
            # GNU: a K member (long link); pax: a linkpath record; ustar cannot (a short link instead)
            info.linkname = "" if kind == tarfile.DIRTYPE else ("dump/c1.bson" if fmt == tarfile.USTAR_FORMAT else LONG)
            tar.addfile(info)
    return buffer.getvalue()


def gnu_tar_sparse(tmp_path: Path, *options: str) -> bytes:
    """``tar --sparse`` over an 8 MiB file with 10 data segments (more than the 4 a GNU header holds)."""
    if shutil.which("tar") is None or b"GNU tar" not in subprocess.run(["tar", "--version"], check=False, capture_output=True).stdout:
        pytest.skip("GNU tar is not installed")
    work = tmp_path / "sparse-src"
    work.mkdir(exist_ok=True)
    target = work / "big.bson"
    with open(target, "wb") as handle:
        handle.truncate(8 << 20)
        for i in range(10):  # whole 4 KiB blocks of data: no zero block in the member's data
            handle.seek(i * 704_512 + 4096)
            handle.write(f"data{i:04d}".encode() * 512)
    subprocess.run(["tar", "--sparse", *options, "-cf", str(tmp_path / "out.tar"), "-C", str(work), "big.bson"], check=True)
    data = (tmp_path / "out.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if not all(member.issparse() for member in tar.getmembers()):
            pytest.skip("this file system keeps no holes: tar wrote no sparse member")
    return data


ARCHIVES = {
    "pax": lambda tmp: tarfile_archive(tarfile.PAX_FORMAT),
    "gnu-long-names": lambda tmp: tarfile_archive(tarfile.GNU_FORMAT),
    "ustar": lambda tmp: tarfile_archive(tarfile.USTAR_FORMAT),
    "gnu-sparse": lambda tmp: gnu_tar_sparse(tmp, "--format=gnu"),
    "pax-sparse-1.0": lambda tmp: gnu_tar_sparse(tmp, "--format=posix"),
    "pax-sparse-0.1": lambda tmp: gnu_tar_sparse(tmp, "--format=posix", "--sparse-version=0.1"),
}


def tarfile_listing(tar_bytes: bytes) -> tuple[int, int] | None:
    """(members, bytes of regular files) if tarfile lists the archive and reads every file's data, else None."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            members = tar.getmembers()
            for member in members:
                if member.isreg():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    if len(handle.read()) != member.size:
                        return None
    except (tarfile.TarError, EOFError, OSError, ValueError):  # tarfile raises ValueError on a garbled sparse map
        return None
    return len(members), sum(member.size for member in members if member.isreg())


def copy_check(tgz: bytes) -> tuple[int, int] | str:
    """What the copy decides while the download streams: (members, bytes) or the damage."""
    check = GzipStreamCheck()
    try:
        for start in range(0, len(tgz), 7919):
            check.feed(tgz[start : start + 7919])
        check.finish()
    except SnapshotTransferError as exc:
        return str(exc)
    tar = getattr(check, "tar", None) or check._tar  # type: ignore[attr-defined]
    return tar.members, getattr(tar, "member_bytes", -1)


def scrub_check(tgz: bytes, tmp_path: Path) -> tuple[int, int] | str:
    """What the scrub decides re-reading the committed file."""
    path = tmp_path / "export.tgz"
    path.write_bytes(tgz)
    content = check_content(ObjectStoragePath(f"file://{path}"), chunk_size=4096)
    return content.damage or (content.tar_members, content.tar_member_bytes)


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_complete_archives_agree_with_tarfile(tmp_path, name):
    """Issue 15: a GNU sparse member the copy verified and committed was "damaged" for the scrub."""
    tar_bytes = ARCHIVES[name](tmp_path)
    listing = tarfile_listing(tar_bytes)
    assert listing is not None
    tgz = gzip.compress(tar_bytes)
    assert scrub_check(tgz, tmp_path) == listing
    assert copy_check(tgz) == listing


def variants(tar_bytes: bytes) -> dict[str, bytes]:
    """Truncated and garbled copies of a complete archive (as .tgz)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        headers = [member.offset for member in tar.getmembers()]
        end = tar.offset  # after the last member's data: where the end-of-archive marker starts
    out = {}
    for cut in sorted({256, 512, headers[-1] + 100, end - 1, end, end + 512, headers[len(headers) // 2] + 512}):
        out[f"tar-cut-{cut}"] = gzip.compress(tar_bytes[:cut])
    whole = gzip.compress(tar_bytes)
    for cut in (10, len(whole) // 2, len(whole) - 4):
        out[f"gzip-cut-{cut}"] = whole[:cut]
    for index, offset in enumerate(headers):
        flipped = bytearray(tar_bytes)
        flipped[offset + 1] ^= 0x20  # the name changes, the stored checksum does not
        out[f"bad-checksum-{index}"] = gzip.compress(bytes(flipped))
    garbled = bytearray(tar_bytes)
    last = headers[-1]
    garbled[last + 124 : last + 136] = b"zzzzzzzzzzz\0"  # an unreadable size, with a checksum that matches
    garbled[last + 148 : last + 156] = b"        "
    garbled[last + 148 : last + 155] = f"{sum(garbled[last : last + 512]):06o}\0".encode()
    out["garbled-size"] = gzip.compress(bytes(garbled))
    out["lone-zero-block"] = gzip.compress(tar_bytes[: headers[-1]] + bytes(512) + tar_bytes[headers[-1] :])
    out["data-after-the-end"] = gzip.compress(tar_bytes + b"junk")
    return out


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_truncated_and_garbled_archives_are_refused_by_both(tmp_path, name):
    tar_bytes = ARCHIVES[name](tmp_path)
    complete = tarfile_listing(tar_bytes)
    for variant, tgz in variants(tar_bytes).items():
        copy, scrub = copy_check(tgz), scrub_check(tgz, tmp_path)
        assert isinstance(copy, str) and isinstance(scrub, str), (variant, copy, scrub)
        if variant.startswith(("bad-checksum", "garbled")):
            # tarfile agrees these are not whole: it stops early or fails (it never lists them completely)
            try:
                listing = tarfile_listing(gzip.decompress(tgz))
            except OSError:
                listing = None
            assert listing != complete, variant

