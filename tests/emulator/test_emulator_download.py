"""The snapshot file: signed URL checks, Range/HEAD, tgz validity, streaming memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import current_rss, digest_session, post_json


@pytest.fixture
def link(emu: AtlasEmulator, owner: requests.Session) -> Iterator[tuple[str, str]]:
    sid = emu.newest_completed_snapshot_id("alpha")
    job = post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).json()
    yield job["snapshotUrl"], sid


def test_full_download_is_a_valid_tgz(emu: AtlasEmulator, link: tuple[str, str]) -> None:
    url, sid = link
    r = requests.get(url)  # no Atlas credentials needed
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/gzip"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert int(r.headers["Content-Length"]) == len(r.content) == 50_000 == emu.snapshot_size_of(sid)
    assert hashlib.sha256(r.content).hexdigest() == emu.expected_sha256(sid)
    assert r.content == emu.snapshot_bytes(sid)
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == [f"alpha-{sid}/manifest.json", f"alpha-{sid}/snapshot.data"]
        manifest = tar.extractfile(names[0]).read()  # type: ignore[union-attr]
        assert sid.encode() in manifest
    raw = gzip.decompress(r.content)
    with tarfile.open(fileobj=io.BytesIO(raw)) as plain_tar:
        assert plain_tar.getnames() == names
    x = emu.requests.by_operation("snapshotFile")[-1]
    assert x.response_body == b"" and x.response_body_length == 50_000 and x.status == 200


def test_content_differs_per_snapshot(emu: AtlasEmulator) -> None:
    a, b = emu.snapshot_ids("alpha")[:2]
    assert emu.expected_sha256(a) != emu.expected_sha256(b)
    again = AtlasEmulator(snapshot_size=50_000, seed="unit")
    assert again.expected_sha256(a) == emu.expected_sha256(a)  # deterministic per seed


def test_signature_checks(emu: AtlasEmulator, link: tuple[str, str]) -> None:
    url, _ = link
    base, query = url.split("?")
    assert requests.get(base).status_code == 403  # missing
    tampered_sig = url[:-1] + ("0" if url[-1] != "0" else "1")
    r = requests.get(tampered_sig)
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content
    expires = int(query.split("Expires=")[1].split("&")[0])
    later = url.replace(f"Expires={expires}", f"Expires={expires + 3600}")
    assert requests.get(later).status_code == 403  # extending the expiry breaks the signature
    other_path = url.replace("/alpha-", "/beta-")
    assert requests.get(other_path).status_code == 403


def test_range_requests(emu: AtlasEmulator, link: tuple[str, str]) -> None:
    url, sid = link
    full = emu.snapshot_bytes(sid)
    r = requests.get(url, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == full[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{len(full) - 1}/{len(full)}"
    assert int(r.headers["Content-Length"]) == len(full) - 1000
    r = requests.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == full[10:20]
    r = requests.get(url, headers={"Range": "bytes=-8"})
    assert r.status_code == 206 and r.content == full[-8:]
    r = requests.get(url, headers={"Range": "bytes=49990-99999"})
    assert r.status_code == 206 and r.content == full[49990:]
    r = requests.get(url, headers={"Range": f"bytes={len(full)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(full)}"
    r = requests.get(url, headers={"Range": "bytes=0-1,5-6"})  # multi-range: ignored
    assert r.status_code == 200 and r.content == full
    etag = requests.head(url).headers["ETag"]
    r = requests.get(url, headers={"Range": "bytes=5-", "If-Range": etag})
    assert r.status_code == 206
    r = requests.get(url, headers={"Range": "bytes=5-", "If-Range": '"other"'})
    assert r.status_code == 200


def test_head(emu: AtlasEmulator, link: tuple[str, str]) -> None:
    url, sid = link
    r = requests.head(url)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == emu.snapshot_size_of(sid)
    # the connection stays usable after HEAD
    with requests.Session() as s:
        assert s.head(url).status_code == 200
        assert len(s.get(url).content) == emu.snapshot_size_of(sid)


def test_resume_after_cut_gives_identical_file(emu: AtlasEmulator, link: tuple[str, str]) -> None:
    url, sid = link
    emu.faults.add(operation="snapshotFile", cut_after_bytes=12_345)
    got = b""
    with requests.get(url, stream=True) as r:
        assert r.status_code == 200
        with pytest.raises(requests.exceptions.RequestException):
            for chunk in r.iter_content(4096):
                got += chunk
    assert 0 < len(got) <= 12_345
    r = requests.get(url, headers={"Range": f"bytes={len(got)}-"})
    assert r.status_code == 206
    assert hashlib.sha256(got + r.content).hexdigest() == emu.expected_sha256(sid)
    cut = emu.requests.by_operation("snapshotFile")[-2]
    assert cut.response_body_length == 12_345


def test_too_small_snapshot_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="minimum is"):
        AtlasEmulator(snapshot_size=1000)


def test_streaming_50mb_keeps_memory_flat() -> None:
    if current_rss() is None:
        pytest.skip("needs /proc/self/statm to read the RSS")
    size = 50 * 1024 * 1024
    with AtlasEmulator(clusters=("alpha",), snapshot_size=size, snapshots_per_cluster=1, restore_duration=0) as emu:
        s = digest_session(emu)
        sid = emu.newest_completed_snapshot_id("alpha")
        url = post_json(s, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).json()["snapshotUrl"]
        before = current_rss() or 0
        h = hashlib.sha256()
        n = 0
        with requests.get(url, stream=True) as r:
            for chunk in r.iter_content(1 << 20):
                h.update(chunk)
                n += len(chunk)
        grown = (current_rss() or 0) - before
        assert n == size
        assert grown < 30 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB while streaming 50 MiB"
        assert h.hexdigest() == emu.expected_sha256(sid)
