"""AtlasFlexExportVerifyOperator and the re-read under it: passes intact exports, names every difference."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
import tracemalloc

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import (
    ExportVerificationError,
    TarStreamLister,
    check_content,
)
from airflow_provider_atlasflex.archive.manifest import (
    ManifestError,
    read_manifest,
    read_sha256_sidecar,
    sidecar_paths,
)
from airflow_provider_atlasflex.archive.scan import scan_exports
from airflow_provider_atlasflex.operators.export_verify import RESULTS_XCOM_KEY
from tests.unit import export_fixtures
from tests.unit.export_fixtures import commit_export, flip_byte, make_tgz, relative_files, verify

storage_root = export_fixtures.storage_root  # file:// and memory://
WHEN = export_fixtures.WHEN


# ---- one file -----------------------------------------------------------------------------------


def test_intact_export_verifies(storage_root):
    path = commit_export(storage_root, "alpha", WHEN)
    data = path.read_bytes()
    operator, context = verify(path=str(path))
    [result] = operator.execute(context)
    assert result["status"] == "verified" and result["problems"] == []
    assert (result["bytes"], result["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert (result["gzip_members"], result["tar_members"], result["tar_member_bytes"]) == (1, 2, 50_000)
    assert result["cluster_name"] == "alpha"
    assert context["ti"].pushed == {}


def test_flipped_byte_in_the_gzip_trailer_is_detected(tmp_path):
    """The CRC32 in the trailer is checked too, not only the deflate data."""
    path = commit_export(ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN)
    flip_byte(path, len(path.read_bytes()) - 6)
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError, match="incorrect (data|length) check|Incorrect checksum"):
        operator.execute(context)


def test_tar_without_end_marker_is_damaged(tmp_path):
    inflated = gzip.decompress(make_tgz(members=1))
    header_and_data = 512 + 50_000 + (-50_000 % 512)
    path = commit_export(
        ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN, data=gzip.compress(inflated[:header_and_data])
    )
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError, match="no end-of-archive marker after 1 member"):
        operator.execute(context)


def test_size_mismatch_is_named(tmp_path):
    path = commit_export(ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN)
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError) as failure:
        operator.execute(context)
    size = len(path.read_bytes())
    assert f"bytes: the manifest says {size - 10}, the file has {size}" in str(failure.value)


@pytest.mark.parametrize("sidecar", ["sha256", "manifest"])
def test_missing_sidecar_is_unproven(storage_root, sidecar):
    path = commit_export(storage_root, "alpha", WHEN)
    getattr(sidecar_paths(path), sidecar).unlink()
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError) as failure:
        operator.execute(context)
    assert f"{path}: unproven: no " in str(failure.value)
    assert "the file is unproven" in str(failure.value)
    [result] = context["ti"].pushed[RESULTS_XCOM_KEY]
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # still re-read and reported


def test_checksum_sidecar_naming_another_file_is_unproven(tmp_path):
    path = commit_export(ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar_paths(path).sha256.write_text(f"{sha}  other.tgz\n")
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError, match="is not a sha256sum line for"):
        operator.execute(context)


def test_sidecar_formats(tmp_path):
    """The .sha256 is what ``sha256sum -c`` reads; the manifest has the agreed fields."""
    path = commit_export(ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar_paths(path).sha256.read_text() == f"{sha}  {path.name}\n"
    assert read_sha256_sidecar(path) == sha
    manifest = read_manifest(path)
    assert manifest["format"] == "atlasflex-export/1" and manifest["file"] == path.name
    assert manifest["snapshot"]["finishTime"] == "2026-11-28T03:00:00Z"
    sidecar_paths(path).manifest.write_text('{"format": "atlasflex-export/1", "file": "x.tgz"}')
    with pytest.raises(ManifestError, match="'snapshot_id' is missing"):
        read_manifest(path)


# ---- a scrub of a whole tree ----------------------------------------------------------------------


def populate(root: ObjectStoragePath) -> list[ObjectStoragePath]:
    exports = [commit_export(root, cluster, WHEN, night=n) for n, cluster in enumerate(("alpha", "beta", "gamma"))]
    (root / "README.txt").write_text("not an export")
    (root / "alpha" / "inventory.json").write_text('{"owner": "someone else"}')
    (root / "alpha" / ".x.tgz.abc.atlasflex-partial").write_bytes(b"in progress")
    return exports


def test_scrub_passes_over_intact_exports_and_ignores_foreign_files(storage_root):
    exports = populate(storage_root)
    operator, context = verify(root=str(storage_root))
    results = operator.execute(context)
    assert sorted(r["path"] for r in results) == sorted(str(p) for p in exports)
    assert {r["status"] for r in results} == {"verified"}


def test_scrub_reports_unproven_files_and_a_flipped_byte(storage_root):
    exports = populate(storage_root)
    flip_byte(exports[1], 100)
    stray = storage_root / "alpha" / "copied-by-hand.tgz"
    stray.write_bytes(make_tgz())
    operator, context = verify(root=str(storage_root))
    with pytest.raises(ExportVerificationError) as failure:
        operator.execute(context)
    message = str(failure.value)
    assert message.startswith(f"2 of 4 export(s) under {storage_root} failed verification")
    assert f"{exports[1]}: mismatch: " in message
    assert f"{stray}: unproven: no manifest sidecar copied-by-hand.tgz.json" in message
    statuses = {r["path"]: r["status"] for r in context["ti"].pushed[RESULTS_XCOM_KEY]}
    assert statuses == {
        str(exports[0]): "verified",
        str(exports[1]): "mismatch",
        str(exports[2]): "verified",
        str(stray): "unproven",
    }


def test_scrub_reports_a_manifest_whose_export_is_gone(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = populate(root)
    exports[0].unlink()
    operator, context = verify(root=str(root))
    with pytest.raises(ExportVerificationError, match="missing: the export file is missing"):
        operator.execute(context)


def test_scrub_of_an_empty_root_fails_unless_allowed(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    root.mkdir()
    (root / "README.txt").write_text("nothing here")
    operator, context = verify(root=str(root))
    with pytest.raises(ExportVerificationError, match=r"No export was found under .* \(1 file\(s\) listed"):
        operator.execute(context)
    operator, context = verify(root=str(root), allow_empty=True)
    assert operator.execute(context) == []


def test_scan_never_follows_a_manifest_to_another_file(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    path = commit_export(root, "alpha", WHEN)
    victim = root / "alpha" / "victim.tgz"
    victim.write_bytes(b"someone else's")
    sidecar_paths(path).manifest.rename(sidecar_paths(victim).manifest)  # victim.tgz.json describes <snap>.tgz
    scan = scan_exports(root)
    assert scan.exports == []
    assert sorted(str(p) for p, _ in scan.unproven) == sorted([str(path), str(victim)])


def test_logs_one_line_per_file(storage_root, caplog, capsys):
    caplog.set_level(logging.INFO)
    exports = populate(storage_root)
    operator, context = verify(root=str(storage_root))
    operator.execute(context)
    logged = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    for path in exports:
        assert logged.count(f"Verified {path}: ") == 1


# ---- the re-read itself -------------------------------------------------------------------------


def tar_bytes(fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for name, size in (("a" * 150 + "/long-name.bson", 1000), ("small", 1), ("empty", 0), ("x" * 99, 513)):
            info = tarfile.TarInfo(name)
            info.size = size
            if fmt == tarfile.PAX_FORMAT:
                info.pax_headers = {"comment": "caf\u00e9"}
            tar.addfile(info, io.BytesIO(b"z" * size))
        directory = tarfile.TarInfo("dir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "small"
        tar.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
@pytest.mark.parametrize("chunk_size", [1024, 8 * 1024 * 1024])
def test_tar_listing_agrees_with_tarfile(tmp_path, fmt, chunk_size):
    data = tar_bytes(fmt)
    path = ObjectStoragePath(f"file://{tmp_path}/x.tgz")
    path.write_bytes(data)
    content = check_content(path, chunk_size)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert content.damage is None
    assert content.tar_members == len(members) == 6
    assert content.tar_member_bytes == sum(m.size for m in members if m.isreg()) == 1514


def test_bad_tar_header_checksum_is_damage():
    lister = TarStreamLister()
    block = bytearray(tarfile.TarInfo("x").tobuf())
    block[0] ^= 0x20  # the name changes, the stored checksum does not
    with pytest.raises(Exception, match="checksum mismatch"):
        lister.feed(bytes(block))


def test_concatenated_gzip_members_and_trailing_garbage(tmp_path):
    path = ObjectStoragePath(f"file://{tmp_path}/x.tgz")
    data = make_tgz()
    path.write_bytes(data + gzip.compress(b""))
    assert check_content(path).damage is None and check_content(path).gzip_members == 2
    path.write_bytes(data + b"<html>")
    assert "trailing bytes without the gzip signature" in (check_content(path).damage or "")
    path.write_bytes(b"<html>error</html>")
    assert "does not start with the gzip signature" in (check_content(path).damage or "")


def test_memory_stays_flat_on_a_highly_compressible_archive(tmp_path):
    """256 MiB of zeros inflate from ~250 kB: the re-read holds a bounded amount, not the archive."""
    payload = 256 * 1024 * 1024
    raw = tmp_path / "zeros.tgz"
    with gzip.open(raw, "wb", compresslevel=1) as handle:
        info = tarfile.TarInfo("dump/zeros.bson")
        info.size = payload
        handle.write(info.tobuf())
        block = bytes(1024 * 1024)
        for _ in range(payload // len(block)):
            handle.write(block)
        handle.write(bytes(1024))
    path = ObjectStoragePath(f"file://{raw}")
    tracemalloc.start()
    try:
        content = check_content(path, chunk_size=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert content.damage is None and content.tar_member_bytes == payload
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while reading {payload / 1e6:.0f} MB inflated"
    assert relative_files(ObjectStoragePath(f"file://{tmp_path}")) == ["zeros.tgz"]


def test_a_path_that_does_not_exist_is_missing(tmp_path):
    operator, context = verify(path=f"file://{tmp_path}/alpha/none.tgz")
    with pytest.raises(ExportVerificationError, match="none.tgz: missing: the file does not exist"):
        operator.execute(context)
