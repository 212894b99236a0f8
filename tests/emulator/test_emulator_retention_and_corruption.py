"""``emu.retire_snapshot`` (the 8-day retention) and the ``corrupt_at`` download fault."""

from __future__ import annotations

import hashlib

import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import digest_session, post_json


def _cluster_url(emu: AtlasEmulator) -> str:
    return f"{emu.base_url}/api/atlas/v2/groups/{emu.group_id}/flexClusters/alpha/backup"


def test_a_retired_snapshot_is_gone_from_the_api(emu: AtlasEmulator) -> None:
    session = digest_session(emu)
    oldest = emu.snapshot_ids("alpha")[-1]
    emu.retire_snapshot(oldest)

    listed = session.get(f"{_cluster_url(emu)}/snapshots").json()["results"]
    assert oldest not in [s["id"] for s in listed]
    assert session.get(f"{_cluster_url(emu)}/snapshots/{oldest}").status_code == 404
    refused = post_json(session, f"{_cluster_url(emu)}/download", {"snapshotId": oldest})
    assert refused.status_code == 404 and refused.json()["errorCode"] == "RESOURCE_NOT_FOUND"
    assert emu.expected_sha256(oldest)  # its bytes stay known to tests
    with pytest.raises(KeyError):
        emu.retire_snapshot(oldest)


def test_a_link_issued_before_retirement_still_serves_the_file(emu: AtlasEmulator) -> None:
    session = digest_session(emu)
    snapshot_id = emu.newest_completed_snapshot_id("alpha")
    job = post_json(session, f"{_cluster_url(emu)}/download", {"snapshotId": snapshot_id}).json()
    emu.retire_snapshot(snapshot_id)

    url = emu.restore_job(job["id"])["snapshotUrl"]
    body = requests.get(url, timeout=10).content
    assert hashlib.sha256(body).hexdigest() == emu.expected_sha256(snapshot_id)


def test_corrupt_at_flips_one_byte_and_keeps_the_size(emu: AtlasEmulator) -> None:
    session = digest_session(emu)
    snapshot_id = emu.newest_completed_snapshot_id("alpha")
    job = post_json(session, f"{_cluster_url(emu)}/download", {"snapshotId": snapshot_id}).json()
    url = emu.restore_job(job["id"])["snapshotUrl"]
    emu.faults.add(operation="snapshotFile", corrupt_at=1234)

    bad = requests.get(url, timeout=10)
    good = emu.snapshot_bytes(snapshot_id)
    assert int(bad.headers["Content-Length"]) == len(bad.content) == len(good)
    assert [i for i, (a, b) in enumerate(zip(bad.content, good)) if a != b] == [1234]
    assert bad.content[1234] == good[1234] ^ 0xFF

    ranged = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=10)  # the fault fired once
    assert ranged.status_code == 206 and ranged.content == good[1000:]


def test_corrupt_at_outside_the_requested_range_changes_nothing(emu: AtlasEmulator) -> None:
    snapshot_id = emu.newest_completed_snapshot_id("alpha")
    job = post_json(digest_session(emu), f"{_cluster_url(emu)}/download", {"snapshotId": snapshot_id}).json()
    url = emu.restore_job(job["id"])["snapshotUrl"]
    emu.faults.add(operation="snapshotFile", corrupt_at=10)

    ranged = requests.get(url, headers={"Range": "bytes=100-"}, timeout=10)
    assert ranged.content == emu.snapshot_bytes(snapshot_id, 100)


def test_corrupt_at_is_only_for_the_download() -> None:
    with AtlasEmulator(snapshot_size=10_000) as emu, pytest.raises(ValueError, match="corrupt_at"):
        emu.faults.add(operation="getGroupFlexCluster", corrupt_at=3)
