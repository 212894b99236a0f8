"""Fault knobs: windows (nth/times), filters, effects, and their wire shapes."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import digest_session, get_token, post_json


def _job_url(emu: AtlasEmulator, owner: requests.Session) -> str:
    sid = emu.newest_completed_snapshot_id("alpha")
    job = post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).json()
    return emu.cluster_url("alpha") + f"/backup/restoreJobs/{job['id']}"


def test_429_with_retry_after(emu: AtlasEmulator, owner: requests.Session) -> None:
    fault = emu.faults.add(operation="downloadGroupFlexClusterBackup", status=429, retry_after=2, times=1)
    url = emu.cluster_url("alpha") + "/backup/download"
    sid = emu.newest_completed_snapshot_id("alpha")
    r = post_json(owner, url, {"snapshotId": sid})
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.headers["X-Error-Code"] == "RATE_LIMITED_TOKEN_BUCKET"
    assert r.json()["detail"].startswith("Please retry after 2 seconds.")
    assert "RateLimit-Limit" in r.headers
    assert emu.restore_jobs("alpha") == []  # fired before acting
    assert post_json(owner, url, {"snapshotId": sid}).status_code == 200
    assert fault.fired == 1 and fault.seen == 2 and fault.exhausted


def test_times_and_nth(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = _job_url(emu, owner)
    emu.faults.add(operation="getGroupFlexClusterBackupRestoreJob", status=503, times=2, nth=3)
    got = [owner.get(url).status_code for _ in range(6)]
    assert got == [200, 200, 503, 503, 200, 200]
    r = next(x for x in emu.requests if x.status == 503)
    assert r.response_headers["X-Error-Code"] == "SERVICE_UNAVAILABLE"


def test_forever_and_clear(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.faults.add(operation="getGroupFlexCluster", status=500, times=None)
    assert [owner.get(emu.cluster_url("alpha")).status_code for _ in range(3)] == [500, 500, 500]
    body = owner.get(emu.cluster_url("alpha")).json()
    assert body["errorCode"] == "UNEXPECTED_ERROR" and body["error"] == 500
    emu.faults.clear()
    assert owner.get(emu.cluster_url("alpha")).status_code == 200


def test_cluster_filter(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.faults.add(operation="getGroupFlexCluster", status=500, cluster="beta", times=None)
    assert owner.get(emu.cluster_url("alpha")).status_code == 200
    assert owner.get(emu.cluster_url("beta")).status_code == 500


def test_delay(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.faults.add(operation="listGroupFlexClusterBackupSnapshots", delay=0.4)
    t0 = time.monotonic()
    assert owner.get(emu.cluster_url("alpha") + "/backup/snapshots").status_code == 200
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    owner.get(emu.cluster_url("alpha") + "/backup/snapshots")
    assert time.monotonic() - t0 < 0.3


def test_after_effect_creates_the_job_then_fails(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.faults.add(operation="downloadGroupFlexClusterBackup", status=500, after_effect=True)
    sid = emu.newest_completed_snapshot_id("alpha")
    r = post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid})
    assert r.status_code == 500
    jobs = emu.restore_jobs("alpha")
    assert len(jobs) == 1 and jobs[0]["snapshotId"] == sid


def test_injected_401_is_recovered_by_digest_clients(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = _job_url(emu, owner)
    emu.faults.add(operation="getGroupFlexClusterBackupRestoreJob", status=401, times=1)
    # requests' HTTPDigestAuth answers a 401 challenge once per request: the retry succeeds
    assert owner.get(url).status_code == 200
    statuses = [x.status for x in emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob")]
    assert statuses[-2:] == [401, 200]
    # bearer clients see the 401
    token = get_token(emu).json()["access_token"]
    emu.faults.add(operation="getGroupFlexClusterBackupRestoreJob", status=401, times=1)
    r = requests.get(url, headers={"Accept": owner.headers["Accept"], "Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["errorCode"] == "UNAUTHORIZED"


def test_unauthenticated_calls_do_not_consume_faults(emu: AtlasEmulator) -> None:
    fault = emu.faults.add(operation="getGroupFlexCluster", status=500, nth=2)
    s = digest_session(emu)
    assert s.get(emu.cluster_url("alpha")).status_code == 200  # 401 challenge leg + call 1
    assert s.get(emu.cluster_url("alpha")).status_code == 500  # call 2
    assert fault.seen == 2


def test_oauth_faults(emu: AtlasEmulator) -> None:
    emu.faults.add(operation="oauthToken", status=500, times=1)
    r = get_token(emu)
    assert r.status_code == 500 and r.json()["errorCode"] == "UNEXPECTED_ERROR"
    assert get_token(emu).status_code == 200
    emu.faults.add(operation="oauthToken", status=429, retry_after=7)
    r = get_token(emu)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    sa = emu.service_account
    emu.faults.add(operation="oauthRevoke", status=503)
    r = requests.post(f"{emu.base_url}/api/oauth/revoke", auth=(sa.client_id, sa.client_secret), data={"token": "x"})
    assert r.status_code == 503


def test_snapshot_file_faults(emu: AtlasEmulator, owner: requests.Session) -> None:
    sid = emu.newest_completed_snapshot_id("alpha")
    url = post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).json()["snapshotUrl"]
    emu.faults.add(operation="snapshotFile", ignore_range=True)
    r = requests.get(url, headers={"Range": "bytes=100-"})
    assert r.status_code == 200 and len(r.content) == emu.snapshot_size_of(sid)
    assert requests.get(url, headers={"Range": "bytes=100-"}).status_code == 206
    emu.faults.add(operation="snapshotFile", status=503, retry_after=1)
    r = requests.get(url)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and b"<Error>" in r.content
    cut = emu.faults.add(operation="snapshotFile", cut_after_bytes=1000, times=2)
    assert requests.head(url).status_code == 200  # HEAD does not consume a body fault
    assert cut.seen == 0
    for _ in range(2):
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url)
    assert len(requests.get(url).content) == emu.snapshot_size_of(sid)


def test_fault_validation(emu: AtlasEmulator) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        emu.faults.add(operation="getCluster", status=500)
    with pytest.raises(ValueError):
        emu.faults.add(operation="getGroupFlexCluster", cut_after_bytes=10)
    with pytest.raises(ValueError):
        emu.faults.add(operation="getGroupFlexCluster")
    with pytest.raises(ValueError):
        emu.faults.add(operation="getGroupFlexCluster", status=200)
    with pytest.raises(ValueError):
        emu.faults.add(operation="getGroupFlexCluster", delay=1, after_effect=True)
    assert len(emu.faults) == 0


def test_fault_bookkeeping_is_recorded(emu: AtlasEmulator, owner: requests.Session) -> None:
    fault = emu.faults.add(operation="getGroupFlexCluster", status=409, error_code="CLUSTER_BUSY", detail="busy")
    r = owner.get(emu.cluster_url("alpha"))
    assert r.status_code == 409 and r.json()["errorCode"] == "CLUSTER_BUSY" and r.json()["detail"] == "busy"
    assert emu.requests[-1].faults == [fault.id]
    assert emu.faults.pending() == []
