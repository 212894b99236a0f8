"""Exports to S3 (moto server, the amazon provider, s3fs): one multipart upload to the final key.

Every test checks what a user of the bucket would see: the object at the key is exactly what
Atlas served (or absent), and no multipart upload (hidden, billable parts) is left pending.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.objstore.conftest import REPO, S3Server
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

MIB = 1024 * 1024
RUN_DATE = "2026-11-28"  # make_context()'s logical date


# ---- helpers --------------------------------------------------------------------------------


def request_link(cluster: str = "alpha", snapshot_id: str | None = None) -> dict[str, Any]:
    return AtlasFlexSnapshotDownloadOperator(
        task_id="request_link", cluster_name=cluster, snapshot_id=snapshot_id
    ).execute(make_context())


def copy(bucket: str, conn_id: str, job_id: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("dst", f"s3://{bucket}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz")
    return AtlasFlexSnapshotToStorageOperator(
        task_id="copy_to_storage", cluster_name="alpha", restore_job_id=job_id, dst_conn_id=conn_id, **kwargs
    ).execute(make_context())


def object_sha256(s3: Any, bucket: str, key: str) -> tuple[int, str]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    for piece in iter(lambda: body.read(4 * MIB), b""):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def pending_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def parts_of(s3: Any, bucket: str, upload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", []))


def start_worker(tmp_path: Path, name: str, **args: Any) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / f"{name}.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.objstore.worker", json.dumps(args)],
        cwd=REPO,
        env=dict(os.environ),
        stdout=out.open("w"),
        stderr=(tmp_path / f"{name}.log").open("w"),
        text=True,
    )
    return process, out


def worker_report(process: subprocess.Popen[str], out: Path, timeout: float = 300) -> dict[str, Any]:
    process.wait(timeout)
    lines = out.read_text().strip().splitlines()
    assert lines, f"worker printed nothing (exit {process.returncode}); see {out.with_suffix('.log')}"
    return dict(json.loads(lines[-1]))


# ---- tests ----------------------------------------------------------------------------------


def test_export_lands_at_the_final_key_with_sidecars_and_a_plain_url(make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn):
    emu = make_emulator(snapshot_size=20 * MIB)
    atlas_conn(emu, "digest")
    job = request_link()
    snapshot_id = job["snapshotId"]
    result = copy(bucket, s3_conn, job["id"])

    s3 = moto_server.client()
    key = f"exports/alpha/{RUN_DATE}/{snapshot_id}.tgz"
    assert keys(s3, bucket) == [key, f"{key}.json", f"{key}.sha256"]
    assert object_sha256(s3, bucket, key) == (emu.snapshot_size_of(snapshot_id), emu.expected_sha256(snapshot_id))
    assert result["sha256"] == emu.expected_sha256(snapshot_id)
    assert result["path"] == f"s3://{bucket}/{key}"  # no connection id inside the URL
    assert result["dst_conn_id"] == s3_conn
    assert result["sha256_file"] == f"s3://{bucket}/{key}.sha256"
    assert pending_uploads(s3, bucket) == []
    # Written once, to the final key: no temporary object was ever created or copied.
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"').endswith("-3")  # 8 + 8 + 4 MiB parts
