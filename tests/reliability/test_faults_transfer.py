"""Download faults the export survives: cuts, a server that ignores Range, a killed worker, expired links.

The snapshot file comes from the emulator's pre-signed link; every test checks the committed file
is byte-identical to what "Atlas" served (``emu.expected_sha256``) and that nothing else is left.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.transfers.resumable_download import ResumableDownload
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.reliability.conftest import files_under
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

REPO = Path(__file__).resolve().parents[2]
RUN_DATE = "2026-11-28"  # make_context()'s logical date


def request_link(cluster: str = "alpha") -> dict:
    return AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name=cluster).execute(make_context())


def copy(tmp_path: Path, job_id: str, cluster: str = "alpha", **kwargs) -> dict:
    kwargs.setdefault("dst", f"file://{tmp_path}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz")
    kwargs.setdefault("chunk_size", 16 * 1024)
    kwargs.setdefault("link_refresh_poll_interval", 0.1)
    return AtlasFlexSnapshotToStorageOperator(
        task_id="copy_to_storage", cluster_name=cluster, restore_job_id=job_id, **kwargs
    ).execute(make_context())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_exported(emu, tmp_path: Path, result: dict, snapshot_id: str, cluster: str = "alpha") -> None:
    """The one export (and its sidecars) is exactly what Atlas served; no temporary file is left."""
    target = tmp_path / "exports" / cluster / RUN_DATE / f"{snapshot_id}.tgz"
    name = f"{cluster}/{RUN_DATE}/{snapshot_id}.tgz"
    assert files_under(tmp_path / "exports") == [name, f"{name}.json", f"{name}.sha256"]
    assert target.with_name(target.name + ".sha256").read_text() == f"{result['sha256']}  {target.name}\n"
    assert sha256_of(target) == emu.expected_sha256(snapshot_id) == result["sha256"]
    assert result["bytes"] == target.stat().st_size == emu.snapshot_size_of(snapshot_id)


def statuses(emu, operation: str) -> list[int]:
    """Statuses of the authenticated answers (Digest challenges left out)."""
    return [x.status for x in emu.requests.by_operation(operation) if x.principal is not None]


def assert_resumed_from_kept_bytes(emu) -> list[int]:
    """Each resume asks for the byte after the last one kept: past the previous start, never past what came."""
    gets = emu.requests.by_operation("snapshotFile")
    assert gets[0].headers.get("Range") is None
    starts = [0]
    for previous, resume in itertools.pairwise(gets):
        start = int(resume.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        assert starts[-1] < start <= starts[-1] + previous.response_body_length
        starts.append(start)
    return starts[1:]


# ---- cut connections --------------------------------------------------------------------------


@reliability(
    "fault-survived",
    "The download connection cut three times part-way (after 60 kB, 50 kB and 40 kB)",
    "Resumed each time with 'Range: bytes=N-' from the last byte written, within max_download_attempts",
    "Nothing: identical bytes; the result reports attempts=4, resumes=3",
)
def test_download_cut_three_times_resumes_with_range(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    for nth, cut in enumerate((60_000, 50_000, 40_000), start=1):
        emu.faults.add(operation="snapshotFile", cut_after_bytes=cut, nth=nth)

    result = copy(tmp_path, job["id"])

    assert_exported(emu, tmp_path, result, job["snapshotId"])
    assert [x.response_body_length for x in emu.requests.by_operation("snapshotFile")][:3] == [60_000, 50_000, 40_000]
    assert len(assert_resumed_from_kept_bytes(emu)) == 3
    assert [x.status for x in emu.requests.by_operation("snapshotFile")] == [200, 206, 206, 206]
    assert (result["attempts"], result["resumes"], result["restarts"]) == (4, 3, 0)


@reliability(
    "fault-survived",
    "The download cut part-way, then the storage host ignores Range and sends the whole file again (200)",
    "Noticed the 200, discarded what it had and started over from byte 0",
    "Nothing: identical bytes; the result reports restarts=1",
)
def test_server_ignoring_range_restarts_the_copy(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "service_account")
    job = request_link()
    emu.faults.add(operation="snapshotFile", cut_after_bytes=150_000, nth=1)
    emu.faults.add(operation="snapshotFile", ignore_range=True, nth=2)

    result = copy(tmp_path, job["id"])

    assert_exported(emu, tmp_path, result, job["snapshotId"])
    assert len(assert_resumed_from_kept_bytes(emu)) == 1  # it did ask for a range; the server sent it all
    assert [x.status for x in emu.requests.by_operation("snapshotFile")] == [200, 200]
    assert (result["attempts"], result["resumes"], result["restarts"]) == (2, 0, 1)


# ---- the worker dies --------------------------------------------------------------------------

CHILD = """
import sys
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.unit.fake_context import make_context

job = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha").execute(make_context())
print("restore job", job["id"], flush=True)
AtlasFlexSnapshotToStorageOperator(
    task_id="copy_to_storage", cluster_name="alpha", restore_job_id=job["id"], dst=sys.argv[1], chunk_size=65536
).execute(make_context())
print("finished", flush=True)
"""


@reliability(
    "fault-survived",
    "The worker is killed (SIGKILL) mid-transfer, leaving a partial hidden file; the tasks are retried",
    "The retried download task reused the still-valid restore job; the retried copy deleted the dead "
    "try's partial file and copied from byte 0",
    "Nothing: identical bytes, one restore job, no partial file left",
)
def test_worker_killed_mid_transfer_then_retried(make_emulator, atlas_conn, tmp_path):
    emu = make_emulator(snapshot_size=4_000_000)
    atlas_conn(emu, "digest")
    # The first GET is cut after 1 MB; the resume then hangs, so the worker dies holding a partial file.
    emu.faults.add(operation="snapshotFile", cut_after_bytes=1_000_000, nth=1)
    hang = emu.faults.add(operation="snapshotFile", delay=8, nth=2)
    snapshot_id = emu.newest_completed_snapshot_id("alpha")
    dst = f"file://{tmp_path}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz"
    directory = tmp_path / "exports" / "alpha" / RUN_DATE

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-c", CHILD, dst], cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not (hang.fired and (partials := list(directory.glob(f".{snapshot_id}.tgz.*.atlasflex-partial")))
                   and partials[0].stat().st_size > 0):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker never got stuck holding a partial file"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
    (partial,) = partials
    left = partial.stat().st_size
    assert 0 < left < emu.snapshot_size_of(snapshot_id)
    assert len(emu.restore_jobs("alpha")) == 1
    gets_before_retry = len(emu.requests.by_operation("snapshotFile"))

    # Airflow retries the tasks in a new process: here, in this one.
    job = request_link()
    result = copy(tmp_path, job["id"], dst=dst)

    assert [j["id"] for j in emu.restore_jobs("alpha")] == [job["id"]]  # reused, not a second job
    assert_exported(emu, tmp_path, result, snapshot_id)
    retry_gets = emu.requests.by_operation("snapshotFile")[gets_before_retry:]
    assert [x.headers.get("Range") for x in retry_gets] == [None]  # started over: the partial was not trusted
    assert (result["attempts"], result["resumes"], result["restarts"]) == (1, 0, 0)


# ---- expired links ----------------------------------------------------------------------------


@reliability(
    "fault-survived",
    "The link expired before the copy task started (emulator expires it)",
    "Requested one fresh link for the same snapshot, waited for it, and copied",
    "Nothing: identical bytes; two restore jobs for the snapshot; the result reports link_refreshes=1",
)
def test_link_expired_before_the_transfer(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "service_account")
    job = request_link()
    emu.expire_link(job["id"])

    result = copy(tmp_path, job["id"])

    assert_exported(emu, tmp_path, result, job["snapshotId"])
    jobs = emu.restore_jobs("alpha")
    assert len(jobs) == 2 and {j["snapshotId"] for j in jobs} == {job["snapshotId"]}
    assert statuses(emu, "downloadGroupFlexClusterBackup") == [200, 200]  # ours + exactly one fresh
    fresh = jobs[0]["id"]
    assert [x.path.split("/")[2] for x in emu.requests.by_operation("snapshotFile")] == [fresh]
    assert result["link_refreshes"] == 1 and result["restore_job_id"] == job["id"]


@reliability(
    "fault-survived",
    "The link expires during the copy: the connection is cut, and the resume is refused with 403",
    "Requested one fresh link for the same snapshot and resumed on it from the last byte written",
    "Nothing: identical bytes; the result reports link_refreshes=1, resumes=1",
)
def test_link_expires_during_the_transfer(emu, atlas_conn, tmp_path, monkeypatch):
    atlas_conn(emu, "digest")
    job = request_link()
    emu.faults.add(operation="snapshotFile", cut_after_bytes=120_000, nth=1)
    attempts: list[int] = []
    attempt = ResumableDownload._attempt

    def expire_before_second_attempt(self):
        attempts.append(1)
        if len(attempts) == 2:
            emu.expire_link(job["id"])
        return attempt(self)

    monkeypatch.setattr(ResumableDownload, "_attempt", expire_before_second_attempt)

    result = copy(tmp_path, job["id"])

    assert_exported(emu, tmp_path, result, job["snapshotId"])
    gets = emu.requests.by_operation("snapshotFile")
    fresh = emu.restore_jobs("alpha")[0]["id"]
    resume = gets[1].headers.get("Range")
    assert [(x.path.split("/")[2], x.status, x.headers.get("Range")) for x in gets] == [
        (job["id"], 200, None),
        (job["id"], 403, resume),
        (fresh, 206, resume),
    ]
    assert 0 < int(resume.removeprefix("bytes=").removesuffix("-")) <= 120_000
    assert statuses(emu, "downloadGroupFlexClusterBackup") == [200, 200]  # ours + exactly one fresh
    assert (result["link_refreshes"], result["resumes"]) == (1, 1)


@reliability(
    "fault-survived",
    "The connection cut after 1 MB while the copy writes in its default 8 MiB chunks",
    "Wrote the bytes already received, then resumed with Range from there (at most one 256 KiB "
    "network read is lost, never the whole chunk)",
    "Nothing: identical bytes; the result reports resumes=1",
)
def test_cut_inside_a_large_write_chunk_keeps_what_arrived(make_emulator, atlas_conn, tmp_path):
    emu = make_emulator(snapshot_size=3_000_000)
    atlas_conn(emu, "digest")
    job = request_link()
    emu.faults.add(operation="snapshotFile", cut_after_bytes=1_000_000, nth=1)

    result = copy(tmp_path, job["id"], chunk_size=8 * 1024 * 1024)

    assert_exported(emu, tmp_path, result, job["snapshotId"])
    (resumed_at,) = assert_resumed_from_kept_bytes(emu)
    assert 1_000_000 - 256 * 1024 <= resumed_at <= 1_000_000
    assert (result["resumes"], result["restarts"]) == (1, 0)
