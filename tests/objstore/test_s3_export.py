"""Exports to S3 (moto server, the amazon provider, s3fs): one multipart upload to the final key.

Every test checks what a user of the bucket would see: the object at the key is exactly what
Atlas served (or absent), and no multipart upload (hidden, billable parts) is left pending.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive import object_store_commit
from airflow_provider_atlasflex.archive.object_store_commit import S3MultipartExportCommit
from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.objstore.conftest import REPO, S3Server
from tests.reliability.registry import reliability
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


@reliability(
    "fault-survived",
    "S3 destination: the download is cut at 12 MiB (one part uploaded), then the server ignores Range and sends "
    "the whole file again",
    "Aborted the first multipart upload and uploaded the file from byte 0 in a new one",
    "Nothing: the object is byte-identical; no multipart upload is left; the result reports restarts=1",
)
def test_download_restart_starts_a_new_upload_and_aborts_the_first(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn
):
    emu = make_emulator(snapshot_size=20 * MIB)
    atlas_conn(emu, "digest")
    emu.faults.add(operation="snapshotFile", cut_after_bytes=12 * MIB, nth=1)
    emu.faults.add(operation="snapshotFile", ignore_range=True, nth=2)
    job = request_link()
    snapshot_id = job["snapshotId"]

    result = copy(bucket, s3_conn, job["id"])

    s3 = moto_server.client()
    key = f"exports/alpha/{RUN_DATE}/{snapshot_id}.tgz"
    assert object_sha256(s3, bucket, key) == (emu.snapshot_size_of(snapshot_id), emu.expected_sha256(snapshot_id))
    assert (result["attempts"], result["resumes"], result["restarts"]) == (2, 0, 1)
    assert pending_uploads(s3, bucket) == []


@reliability(
    "fault-clear-failure",
    "S3 destination: the snapshot turns out corrupt at 30 MiB, after 3 parts of its multipart upload went out",
    "Uploaded parts straight to the final key as the download streamed; the gzip check failed before completion, "
    "so the upload was aborted",
    "A clear error; no object, no sidecar and no pending multipart upload (no hidden billable parts)",
)
def test_failure_mid_upload_leaves_no_object_and_no_pending_upload(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, monkeypatch
):
    emu = make_emulator(snapshot_size=40 * MIB)
    atlas_conn(emu, "digest")
    emu.faults.add(operation="snapshotFile", corrupt_at=30 * MIB, times=None)
    sent: list[int] = []
    upload_part = S3MultipartExportCommit._upload_part

    def counting(self, upload_id, number, data):  # the real call, counted
        sent.append(len(data))
        return upload_part(self, upload_id, number, data)

    monkeypatch.setattr(S3MultipartExportCommit, "_upload_part", counting)
    job = request_link()

    with pytest.raises(SnapshotTransferError, match="gzip"):
        copy(bucket, s3_conn, job["id"])

    assert sum(sent) >= 3 * 8 * MIB  # the failure came mid-upload, with parts already at the store
    s3 = moto_server.client()
    assert keys(s3, bucket) == []
    assert pending_uploads(s3, bucket) == []


@reliability(
    "fault-clear-failure",
    "S3 destination, overwrite=True: an earlier export sits at the key; the new download is corrupt at 30 MiB",
    "Uploaded parts to the final key, but S3 keeps serving the earlier object until completion; the gzip check "
    "failed, so the upload was aborted instead",
    "A clear error; the earlier export is untouched (same bytes, same ETag); no multipart upload is left",
)
def test_failed_replacement_leaves_the_earlier_object_untouched(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn
):
    emu = make_emulator(snapshot_size=40 * MIB)
    atlas_conn(emu, "digest")
    job = request_link()
    key = f"exports/alpha/{RUN_DATE}/{job['snapshotId']}.tgz"
    s3 = moto_server.client()
    earlier = s3.put_object(Bucket=bucket, Key=key, Body=b"an earlier export")["ETag"]
    emu.faults.add(operation="snapshotFile", corrupt_at=30 * MIB, times=None)

    with pytest.raises(SnapshotTransferError, match="gzip"):
        copy(bucket, s3_conn, job["id"], overwrite=True)

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"an earlier export"
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == earlier
    assert keys(s3, bucket) == [key]
    assert pending_uploads(s3, bucket) == []


KILLED_WORKER_STALE_AGE = 2.0


@reliability(
    "fault-survived",
    "S3 destination: the worker is killed (SIGKILL) mid-upload, leaving a multipart upload with parts; the task "
    "is retried",
    "The retry aborted the dead attempt's upload to the same key (idle longer than the stale age: 4 min by "
    "default, 2 s here) and uploaded again",
    "Nothing: the object is byte-identical to what Atlas served, and no multipart upload is left pending",
)
def test_worker_killed_mid_upload_then_retry_leaves_no_pending_upload(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, tmp_path, monkeypatch
):
    emu = make_emulator(snapshot_size=40 * MIB)
    atlas_conn(emu, "digest")
    # The first GET is cut after 20 MiB (two 8 MiB parts went out); the resume hangs: the worker dies mid-upload.
    emu.faults.add(operation="snapshotFile", cut_after_bytes=20 * MIB, nth=1)
    hang = emu.faults.add(operation="snapshotFile", delay=8, nth=2)
    job = request_link()
    snapshot_id = job["snapshotId"]
    dst = f"s3://{bucket}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz"
    key = f"exports/alpha/{RUN_DATE}/{snapshot_id}.tgz"
    s3 = moto_server.client()

    worker, _ = start_worker(
        tmp_path, "killed", cluster_name="alpha", restore_job_id=job["id"], dst=dst, dst_conn_id=s3_conn
    )
    try:
        deadline = time.monotonic() + 60
        while not (hang.fired and pending_uploads(s3, bucket) and len(parts_of(s3, bucket, pending_uploads(s3, bucket)[0])) >= 2):
            assert worker.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never got stuck mid-upload"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    left = pending_uploads(s3, bucket)
    assert [u["Key"] for u in left] == [key]  # what a killed task leaves: hidden parts at the final key
    assert sum(p["Size"] for p in parts_of(s3, bucket, left[0])) >= 16 * MIB
    assert keys(s3, bucket) == []  # and no object: S3 shows nothing until completion

    # Airflow retries the task in a new process (here, this one) once the dead upload is idle long enough.
    monkeypatch.setattr(object_store_commit, "STALE_UPLOAD_AGE", KILLED_WORKER_STALE_AGE)
    time.sleep(KILLED_WORKER_STALE_AGE + 1.5)
    result = copy(bucket, s3_conn, request_link()["id"], dst=dst)

    assert object_sha256(s3, bucket, key) == (emu.snapshot_size_of(snapshot_id), emu.expected_sha256(snapshot_id))
    assert result["sha256"] == emu.expected_sha256(snapshot_id)
    assert pending_uploads(s3, bucket) == []
    assert keys(s3, bucket) == [key, f"{key}.json", f"{key}.sha256"]


@reliability(
    "hostile",
    "S3 destination: a second writer starts on the same key while the first one's download is stalled "
    "(no part for longer than the stale age)",
    "The stalled writer's heartbeat kept its upload fresh, so the second writer's clean-up of dead attempts left "
    "it alone; both exported",
    "Nothing: the live upload is never aborted; the object is what Atlas served; no multipart upload is left",
)
def test_a_stalled_live_upload_is_not_taken_for_a_dead_one(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, tmp_path
):
    emu = make_emulator(snapshot_size=20 * MIB)
    atlas_conn(emu, "digest")
    emu.faults.add(operation="snapshotFile", cut_after_bytes=10 * MIB, nth=1)
    stall = emu.faults.add(operation="snapshotFile", delay=12, nth=2)
    job = request_link()
    snapshot_id = job["snapshotId"]
    dst = f"s3://{bucket}/exports/{{snapshot_id}}.tgz"
    key = f"exports/{snapshot_id}.tgz"
    s3 = moto_server.client()

    worker, out = start_worker(
        tmp_path, "stalled", cluster_name="alpha", restore_job_id=job["id"], dst=dst, dst_conn_id=s3_conn,
        settings={"HEARTBEAT_INTERVAL": 0.5},
    )
    deadline = time.monotonic() + 60
    while not (stall.fired and pending_uploads(s3, bucket)):
        assert worker.poll() is None, (tmp_path / "stalled.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker never stalled mid-upload"
        time.sleep(0.05)
    time.sleep(6)  # longer than the stale age below since its one full part went out
    live = pending_uploads(s3, bucket)
    # A second writer of the same key cleans up dead attempts as it opens: here with a 4 s stale age
    # (8 heartbeats of 0.5 s, a margin for a loaded machine).
    other = S3MultipartExportCommit(
        ObjectStoragePath(f"s3://{bucket}/{key}", conn_id=s3_conn), overwrite=True, stale_upload_age=4.0
    )
    other.open()
    assert pending_uploads(s3, bucket) == live

    report = worker_report(worker, out, timeout=120)
    assert report["ok"], report
    assert object_sha256(s3, bucket, key) == (emu.snapshot_size_of(snapshot_id), emu.expected_sha256(snapshot_id))
    assert pending_uploads(s3, bucket) == []



RACE_ROUNDS = 10


def race(tmp_path: Path, name: str, workers: list[dict[str, Any]], rounds: int) -> list[list[dict[str, Any]]]:
    """Run ``rounds`` exports in each worker process, releasing all workers together for each round.

    Returns the reports by round: ``[[worker 0's report, worker 1's report, ...], ...]``.
    """
    barrier = tmp_path / name
    started = [start_worker(tmp_path, f"{name}-{i}", barrier=str(barrier), **args) for i, args in enumerate(workers)]
    for number in range(rounds):
        deadline = time.monotonic() + 180
        while len(list(tmp_path.glob(f"{name}-{number}.*.ready"))) < len(started):
            assert all(p.poll() is None for p, _ in started), [o.with_suffix(".log").read_text()[-2000:] for _, o in started]
            assert time.monotonic() < deadline, f"the racing workers never got ready for round {number}"
            time.sleep(0.02)
        (tmp_path / f"{name}-{number}").touch()
    for process, _ in started:
        process.wait(300)
    reports = [[json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")] for _, out in started]
    assert all(len(r) == rounds for r in reports), reports
    return [list(by_round) for by_round in zip(*reports)]


@reliability(
    "hostile",
    f"S3 destination, overwrite=False: two worker processes export different snapshots to the same key at the "
    f"same moment ({RACE_ROUNDS} rounds)",
    "Each uploaded its own multipart upload; the completions were conditional (If-None-Match: *): the store "
    "accepted one and refused the other (412), whose upload was aborted",
    "Exactly one task succeeds and the object holds exactly its bytes; the other fails saying another writer "
    "committed first; no multipart upload is left",
)
def test_overwrite_false_two_writers_of_different_bytes_exactly_one_wins(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, tmp_path
):
    emu = make_emulator(snapshot_size=12 * MIB, clusters=("alpha",))
    atlas_conn(emu, "digest")
    first, second = [s.id for s in emu.state.snapshots("alpha") if s.status == "COMPLETED"][:2]
    s3 = moto_server.client()
    workers = [
        {
            "cluster_name": "alpha",
            "restore_job_id": request_link(snapshot_id=sid)["id"],
            "dst_conn_id": s3_conn,
            "rounds": [{"dst": f"s3://{bucket}/race-{n}/{{cluster_name}}.tgz"} for n in range(RACE_ROUNDS)],
        }
        for sid in (first, second)
    ]
    refused_at_completion = 0
    for number, reports in enumerate(race(tmp_path, "different", workers, RACE_ROUNDS)):
        winners = [r for r in reports if r["ok"]]
        assert len(winners) == 1, json.dumps(reports, indent=1)
        loser = next(r for r in reports if not r["ok"])
        assert "already exists" in loser["error"] or "appeared while copying" in loser["error"], loser
        refused_at_completion += "If-None-Match" in loser["error"]
        size, sha256 = object_sha256(s3, bucket, f"race-{number}/alpha.tgz")
        assert (size, sha256) == (winners[0]["result"]["bytes"], winners[0]["result"]["sha256"])
        assert sha256 == emu.expected_sha256(winners[0]["result"]["snapshot_id"])
    assert pending_uploads(s3, bucket) == []
    # The writers were released together: the store's conditional completion, not the operator's early
    # existence check, decided the race (at least once; a loaded machine may stagger some rounds).
    print(f"different-bytes race: {refused_at_completion} of {RACE_ROUNDS} rounds refused at completion (412)")
    assert refused_at_completion >= 1


@reliability(
    "hostile",
    f"S3 destination, overwrite=False: two worker processes export the same snapshot to the same key at the same "
    f"moment ({RACE_ROUNDS} rounds)",
    "One conditional completion won; the other writer found the same bytes at the key (re-hashed) and kept them, "
    "or refused to trust an export whose sidecars were not written yet",
    "Every task that succeeds has exactly its bytes at the key (what Atlas served); no multipart upload is left",
)
def test_overwrite_false_two_writers_of_the_same_bytes_never_report_bytes_not_at_the_key(
    make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, tmp_path
):
    emu = make_emulator(snapshot_size=12 * MIB, clusters=("alpha",))
    atlas_conn(emu, "digest")
    job = request_link()
    expected = (emu.snapshot_size_of(job["snapshotId"]), emu.expected_sha256(job["snapshotId"]))
    s3 = moto_server.client()
    worker = {
        "cluster_name": "alpha",
        "restore_job_id": job["id"],
        "dst_conn_id": s3_conn,
        "rounds": [{"dst": f"s3://{bucket}/same-{n}/{{snapshot_id}}.tgz"} for n in range(RACE_ROUNDS)],
    }
    outcomes = []
    for number, reports in enumerate(race(tmp_path, "same", [worker, worker], RACE_ROUNDS)):
        assert any(r["ok"] for r in reports), reports
        assert object_sha256(s3, bucket, f"same-{number}/{job['snapshotId']}.tgz") == expected
        for report in reports:
            if report["ok"]:
                assert (report["result"]["bytes"], report["result"]["sha256"]) == expected
            else:
                assert "already exists" in report["error"] or "appeared while copying" in report["error"], report
        outcomes.append(sorted(r["ok"] for r in reports))
    assert pending_uploads(s3, bucket) == []
    print("same-bytes race outcomes (ok per writer):", outcomes)


LARGE = 512 * MIB
SMALL = 32 * MIB


@reliability(
    "fault-survived",
    "S3 destination: a 512 MiB snapshot, exported by a worker process (baseline: a 32 MiB one, same run)",
    "Streamed it into 8 MiB parts of one multipart upload to the final key, completed after the size, sha256 and "
    "gzip checks; no temporary object, no server-side copy",
    "The object is byte-identical; the worker's peak memory growth stays within 48 MiB of the small export's",
)
def test_512_mib_export_with_flat_memory(make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn, tmp_path):
    s3 = moto_server.client()
    growth = {}
    for size in (SMALL, LARGE):
        emu = make_emulator(snapshot_size=size, clusters=("alpha",))
        atlas_conn(emu, "digest")
        job = request_link()
        snapshot_id = job["snapshotId"]
        expected = (emu.snapshot_size_of(snapshot_id), emu.expected_sha256(snapshot_id))
        dst = f"s3://{bucket}/{size // MIB}/{{snapshot_id}}.tgz"
        started = time.monotonic()
        worker, out = start_worker(
            tmp_path, f"export-{size // MIB}", cluster_name="alpha", restore_job_id=job["id"], dst=dst,
            dst_conn_id=s3_conn,
        )
        report = worker_report(worker, out, timeout=600)
        seconds = time.monotonic() - started
        assert report["ok"], report
        assert (report["result"]["bytes"], report["result"]["sha256"]) == expected
        assert object_sha256(s3, bucket, f"{size // MIB}/{snapshot_id}.tgz") == expected
        growth[size] = report["rss_growth"]
        print(
            f"{size // MIB} MiB to S3: {seconds:.1f} s with the worker's start-up, peak RSS growth "
            f"{report['rss_growth'] / MIB:.1f} MiB"
        )
        emu.stop()
    assert pending_uploads(s3, bucket) == []
    assert growth[LARGE] <= growth[SMALL] + 48 * MIB, growth


@reliability(
    "fault-clear-failure",
    "The destination's S3 bucket does not exist (a typo in the root, a deleted bucket)",
    "Failed before downloading a byte, without retries (no retry can create the bucket); nothing written",
    "'Export of snapshot <id> of 'alpha' to s3://no-such-bucket/... (connection '<conn>') failed: the S3 bucket "
    "'no-such-bucket' does not exist (looked up with connection '<conn>'). Create the bucket, or fix the "
    "destination root ...' (the URL never carries the connection id)",
)
def test_a_missing_bucket_fails_fast_naming_bucket_and_connection(make_emulator, atlas_conn, moto_server, bucket, s3_conn):
    from airflow_provider_atlasflex.exceptions import DestinationMissingError
    from tests.airflow_compat import NO_RETRY_EXCEPTION

    emu = make_emulator(snapshot_size=1 * MIB)
    atlas_conn(emu, "digest")
    job = request_link()["id"]
    with pytest.raises(DestinationMissingError) as failed:
        copy("no-such-bucket", s3_conn, job)
    message = str(failed.value)
    assert isinstance(failed.value, NO_RETRY_EXCEPTION)  # not retried
    assert "the S3 bucket 'no-such-bucket' does not exist" in message and f"connection {s3_conn!r}" in message
    assert f"{s3_conn}@" not in message and "s3://no-such-bucket/exports/alpha/" in message
    assert "Create the bucket, or fix the destination root" in message  # the fix, not only the fault
    assert emu.requests.by_operation("snapshotFile") == []  # nothing was downloaded
