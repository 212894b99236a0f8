"""Restore-job lifecycle: phases over time, FAILED jobs, links and their expiry."""

from __future__ import annotations

import time
from datetime import datetime

import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import FakeClock, digest_session, post_json


def _parse(ts: str) -> float:
    assert ts.endswith("Z")
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _download(emu: AtlasEmulator, s: requests.Session, cluster: str = "alpha") -> dict:
    sid = emu.newest_completed_snapshot_id(cluster)
    r = post_json(s, emu.cluster_url(cluster) + "/backup/download", {"snapshotId": sid})
    assert r.status_code == 200, r.text
    return r.json()


def test_phases_over_time(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu, s = clocked, digest_session(clocked)
    job = _download(emu, s)
    assert job["status"] == "PENDING" and job["deliveryType"] == "DOWNLOAD"
    assert len(job["id"]) == 24 and job["instanceName"] == "alpha" and job["projectId"] == emu.group_id
    assert "snapshotUrl" not in job and "expirationDate" not in job and "restoreFinishedDate" not in job
    url = emu.cluster_url("alpha") + f"/backup/restoreJobs/{job['id']}"
    seen = []
    for _ in range(11):
        seen.append(s.get(url).json()["status"])
        clock.advance(1)
    assert seen[0] == "PENDING" and seen[-1] == "COMPLETED"
    assert [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p] == [
        "PENDING",
        "QUEUED",
        "RUNNING",
        "COMPLETED",
    ]
    done = s.get(url).json()
    assert done["snapshotUrl"].startswith(f"{emu.base_url}/backup-download/{job['id']}/alpha-{job['snapshotId']}.tgz?")
    finished = _parse(done["restoreFinishedDate"])
    assert _parse(done["expirationDate"]) - finished == 4 * 3600
    assert finished - _parse(done["restoreScheduledDate"]) == 10
    assert "snapshotFinishedDate" in done
    assert emu.restore_jobs("alpha")[0] == done


def test_real_time_progress() -> None:
    with AtlasEmulator(snapshot_size=10_000, restore_duration=0.4) as emu:
        s = digest_session(emu)
        job = _download(emu, s)
        assert job["status"] == "PENDING"
        time.sleep(0.45)
        assert emu.restore_job(job["id"])["status"] == "COMPLETED"


def test_zero_duration_completes_at_once(emu: AtlasEmulator, owner: requests.Session) -> None:
    job = _download(emu, owner)
    assert job["status"] == "COMPLETED" and "snapshotUrl" in job


def test_jobs_listed_newest_first(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu, s = clocked, digest_session(clocked)
    ids = []
    for _ in range(3):
        ids.append(_download(emu, s)["id"])
        clock.advance(5)
    listed = s.get(emu.cluster_url("alpha") + "/backup/restoreJobs").json()
    assert [j["id"] for j in listed["results"]] == ids[::-1]
    assert listed["totalCount"] == 3
    assert [j["id"] for j in emu.restore_jobs("alpha")] == ids[::-1]
    assert s.get(emu.cluster_url("beta") + "/backup/restoreJobs").json()["results"] == []
    # a job is only visible under its own cluster
    assert s.get(emu.cluster_url("beta") + f"/backup/restoreJobs/{ids[0]}").status_code == 404


def test_fail_next_restore_job(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu, s = clocked, digest_session(clocked)
    emu.fail_next_restore_job("alpha")
    beta_job = _download(emu, s, "beta")
    failing = _download(emu, s)
    clock.advance(11)
    failed = emu.restore_job(failing["id"])
    assert failed["status"] == "FAILED" and "snapshotUrl" not in failed and "restoreFinishedDate" in failed
    assert emu.restore_job(beta_job["id"])["status"] == "COMPLETED"
    after = _download(emu, s)
    clock.advance(11)
    assert emu.restore_job(after["id"])["status"] == "COMPLETED"


def test_expire_link(emu: AtlasEmulator, owner: requests.Session) -> None:
    job = _download(emu, owner)
    assert requests.head(job["snapshotUrl"]).status_code == 200
    emu.expire_link(job["id"])
    r = requests.get(job["snapshotUrl"])
    assert r.status_code == 403 and b"expired" in r.content
    refreshed = emu.restore_job(job["id"])
    assert _parse(refreshed["expirationDate"]) <= time.time()
    # a new download request gives a working link again
    again = _download(emu, owner)
    assert requests.head(again["snapshotUrl"]).status_code == 200


def test_link_expires_with_time(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu, s = clocked, digest_session(clocked)
    job = _download(emu, s)
    clock.advance(10)
    url = emu.restore_job(job["id"])["snapshotUrl"]
    assert requests.head(url).status_code == 200
    clock.advance(4 * 3600 - 1)
    assert requests.head(url).status_code == 200
    clock.advance(1)
    assert requests.get(url).status_code == 403


def test_complete_restore_job_knob(clocked: AtlasEmulator) -> None:
    emu, s = clocked, digest_session(clocked)
    job = _download(emu, s)
    emu.complete_restore_job(job["id"])
    assert emu.restore_job(job["id"])["status"] == "COMPLETED"
