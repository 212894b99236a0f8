"""Transfer operator with requests-mock: commit by rename, verification, overwrite, bad input."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
import requests

from airflow_provider_atlasflex.exceptions import (
    AtlasFlexConfigError,
    SnapshotLinkExpiredError,
    SnapshotTransferError,
)
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.unit.conftest import CLUSTER, CLUSTER_URL, JOB, SNAP, job
from tests.unit.fake_context import make_context

JOB_URL = f"{CLUSTER_URL}/backup/restoreJobs/{JOB}"
LINK = f"https://download.test/{JOB}.tgz"


def make_tgz(size: int = 200_000) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = bytes(range(256)) * (size // 256)
        info = tarfile.TarInfo("dump/data.bson")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TGZ = make_tgz()


def transfer(tmp_path, **kwargs) -> AtlasFlexSnapshotToStorageOperator:
    kwargs.setdefault("dst", f"file://{tmp_path}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz")
    kwargs.setdefault("chunk_size", 4096)
    return AtlasFlexSnapshotToStorageOperator(task_id="copy", cluster_name=CLUSTER, restore_job_id=JOB, **kwargs)


SNAPSHOT_URL = f"{CLUSTER_URL}/backup/snapshots/{SNAP}"


@pytest.fixture(autouse=True)
def snapshot_resource(requests_mock):
    """The snapshot's Atlas metadata, recorded in the export's manifest sidecar."""
    return requests_mock.get(
        SNAPSHOT_URL, json={"id": SNAP, "status": "COMPLETED", "mongoDBVersion": "8.0.4", "finishTime": "2026-11-28T01:00:00Z"}
    )


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def export_files(name: str) -> list[str]:
    """An export and its two sidecars."""
    return [name, f"{name}.json", f"{name}.sha256"]


def test_streams_verifies_and_commits(requests_mock, digest_conn, tmp_path):
    requests_mock.get(JOB_URL, json=job())
    snapshot = requests_mock.get(LINK, content=TGZ, headers={"Content-Length": str(len(TGZ))})
    result = transfer(tmp_path).execute(make_context())
    target = tmp_path / "exports" / CLUSTER / "2026-11-28" / f"{SNAP}.tgz"
    assert target.read_bytes() == TGZ
    assert result["path"] == f"file://{target}"
    assert (result["bytes"], result["sha256"]) == (len(TGZ), hashlib.sha256(TGZ).hexdigest())
    assert (result["snapshot_id"], result["restore_job_id"], result["cluster_name"]) == (SNAP, JOB, CLUSTER)
    assert files_under(tmp_path) == export_files(f"exports/{CLUSTER}/2026-11-28/{SNAP}.tgz")
    # pre-signed: no Atlas credentials travel with the link
    assert "Authorization" not in snapshot.last_request.headers
    assert snapshot.last_request.qs["signature"] == ["sig-secret-123"]


def test_existing_export_is_not_replaced_by_default(requests_mock, digest_conn, tmp_path):
    requests_mock.get(JOB_URL, json=job())
    link = requests_mock.get(LINK, content=TGZ)
    target = tmp_path / "exports" / CLUSTER / "2026-11-28" / f"{SNAP}.tgz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"good old export")
    with pytest.raises(SnapshotTransferError, match="already exists and overwrite=False"):
        transfer(tmp_path).execute(make_context())
    # copied to a temporary file to compare (an export whose sidecars were lost would be proven), never to dst
    assert target.read_bytes() == b"good old export" and link.call_count == 1
    assert files_under(target.parent) == [target.name]


def test_overwrite_replaces_only_after_verification(requests_mock, digest_conn, tmp_path):
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, content=TGZ)
    target = tmp_path / "exports" / CLUSTER / "2026-11-28" / f"{SNAP}.tgz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")
    transfer(tmp_path, overwrite=True).execute(make_context())
    assert target.read_bytes() == TGZ


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"text": "<html>Access denied</html>", "status_code": 200}, "gzip signature"),
        ({"content": TGZ[:-100], "status_code": 200}, "truncated"),
        ({"content": TGZ, "status_code": 404}, "HTTP 404"),
    ],
    ids=["error-page", "truncated", "not-found"],
)
def test_bad_download_leaves_nothing_and_keeps_old_file(requests_mock, digest_conn, tmp_path, no_sleep, response, message):
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, **response)
    target = tmp_path / "exports" / CLUSTER / "2026-11-28" / f"{SNAP}.tgz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"good old export")
    with pytest.raises(SnapshotTransferError, match=message) as err:
        transfer(tmp_path, overwrite=True).execute(make_context())
    assert SNAP in str(err.value) and CLUSTER in str(err.value) and "sig-secret" not in str(err.value)
    assert files_under(tmp_path) == [f"exports/{CLUSTER}/2026-11-28/{SNAP}.tgz"]
    assert target.read_bytes() == b"good old export"


def test_size_mismatch_with_content_length_is_retried_then_fails(requests_mock, digest_conn, tmp_path, no_sleep):
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, content=TGZ[:1000], headers={"Content-Length": str(len(TGZ))})
    with pytest.raises(SnapshotTransferError):
        transfer(tmp_path, max_download_attempts=2).execute(make_context())
    assert files_under(tmp_path) == []


def test_expired_link_is_replaced_once(requests_mock, digest_conn, tmp_path, no_sleep):
    fresh = job(id="8a1b2c3d4e5f60718293a4b8", snapshotUrl="https://download.test/fresh.tgz?Signature=new")
    requests_mock.get(JOB_URL, json=job(expires="2020-01-01T00:00:00Z"))
    requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [], "totalCount": 0})
    post = requests_mock.post(f"{CLUSTER_URL}/backup/download", json=fresh)
    requests_mock.get("https://download.test/fresh.tgz", content=TGZ)
    result = transfer(tmp_path).execute(make_context())
    assert post.call_count == 1 and result["sha256"] == hashlib.sha256(TGZ).hexdigest()


def test_link_refused_mid_run_then_again_fails_clearly(requests_mock, digest_conn, tmp_path, no_sleep):
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, status_code=403, text="<Error>AccessDenied</Error>")
    requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [], "totalCount": 0})
    requests_mock.post(
        f"{CLUSTER_URL}/backup/download", json=job(id="8a1b2c3d4e5f60718293a4b8", snapshotUrl=LINK + "?again")
    )
    with pytest.raises(SnapshotLinkExpiredError, match="refused \\(HTTP 403\\)") as err:
        transfer(tmp_path).execute(make_context())
    assert "again" not in str(err.value) and "sig-secret" not in str(err.value)
    assert files_under(tmp_path) == []


def test_connection_cut_resumes_with_range(requests_mock, digest_conn, tmp_path, no_sleep):
    half = len(TGZ) // 2

    class CutStream(io.BytesIO):
        def read(self, n=-1, *args, **kwargs):
            data = super().read(n)
            if self.tell() >= half:
                raise requests.exceptions.ChunkedEncodingError("connection cut")
            return data

    calls = []

    def respond(request, context):
        calls.append(request.headers.get("Range"))
        if request.headers.get("Range"):
            start = int(request.headers["Range"].split("=")[1].rstrip("-"))
            context.status_code = 206
            context.headers["Content-Range"] = f"bytes {start}-{len(TGZ) - 1}/{len(TGZ)}"
            return TGZ[start:]
        context.headers["Content-Length"] = str(len(TGZ))
        return TGZ

    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, content=respond)
    result = transfer(tmp_path).execute(make_context())
    assert result["sha256"] == hashlib.sha256(TGZ).hexdigest()
    del CutStream  # the real cut is exercised against the emulator; here Range handling itself


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dst": "/tmp/no-scheme.tgz"}, "has no scheme"),
        ({"dst": "nosuchfs://bucket/x.tgz"}, "No filesystem handles dst scheme 'nosuchfs://'"),
        ({"dst": "file:///tmp/{cluster}/x.tgz"}, "unknown placeholder"),
        ({"dst": "file:///tmp/../etc/{snapshot_id}.tgz"}, "must not contain"),
        ({"dst": ""}, "dst must be a URL"),
        ({"dst": 42}, "dst must be a URL"),
        ({"overwrite": "yes"}, "overwrite must be True or False"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"max_download_attempts": 0}, "max_download_attempts"),
        ({"progress_interval": -1}, "progress_interval"),
        ({"dst_conn_id": ""}, "dst_conn_id"),
    ],
)
def test_bad_input_fails_before_network(requests_mock, snapshot_resource, digest_conn, tmp_path, kwargs, message):
    with pytest.raises(AtlasFlexConfigError, match=message):
        transfer(tmp_path, **kwargs).execute(make_context())
    assert requests_mock.call_count == 0 and not snapshot_resource.called
    assert files_under(tmp_path) == []


def test_date_placeholder_falls_back_to_run_after(requests_mock, digest_conn, tmp_path):
    from datetime import datetime, timezone
    from types import SimpleNamespace

    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, content=TGZ)
    context = make_context(logical_date=None)
    context["dag_run"] = SimpleNamespace(run_after=datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc))
    result = transfer(tmp_path).execute(context)
    assert "/2026-12-01/" in result["path"]


def test_gzip_magic_check_rejects_plain_tar(requests_mock, digest_conn, tmp_path, no_sleep):
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(LINK, content=gzip.decompress(TGZ))
    with pytest.raises(SnapshotTransferError, match="gzip"):
        transfer(tmp_path).execute(make_context())
