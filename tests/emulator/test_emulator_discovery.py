"""Discovery (listGroupFlexClusters, listGroups) and RESTORE jobs in the emulator, over real HTTP."""

from __future__ import annotations

import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import FakeClock, digest_session, post_json

GROUPS_MEDIA = "application/vnd.atlas.2023-01-01+json"


def _clusters_url(emu: AtlasEmulator, group: str | None = None) -> str:
    return f"{emu.base_url}/api/atlas/v2/groups/{group or emu.group_id}/flexClusters"


def test_list_flex_clusters_reports_state_and_backup_setting(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.add_cluster("no-backup", snapshots=0, backup_enabled=False)
    emu.add_cluster("fresh", snapshots=0, state="CREATING")
    emu.set_cluster("beta", state="DELETING")
    r = owner.get(_clusters_url(emu))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.atlas.2024-11-13+json;charset=utf-8"
    body = r.json()
    by_name = {c["name"]: c for c in body["results"]}
    # flex clusters only: the dedicated legacy-m10 is not listed
    assert sorted(by_name) == ["alpha", "beta", "fresh", "no-backup"] and body["totalCount"] == 4
    assert by_name["alpha"]["stateName"] == "IDLE" and by_name["alpha"]["backupSettings"] == {"enabled": True}
    assert by_name["no-backup"]["backupSettings"] == {"enabled": False}
    assert by_name["fresh"]["stateName"] == "CREATING" and by_name["beta"]["stateName"] == "DELETING"
    assert emu.snapshot_ids("no-backup") == [] and emu.snapshot_ids("fresh") == []
    # the single-cluster GET agrees with the list
    assert owner.get(emu.cluster_url("no-backup")).json() == by_name["no-backup"]


def test_list_flex_clusters_paginates(emu: AtlasEmulator, owner: requests.Session) -> None:
    for i in range(5):
        emu.add_cluster(f"extra-{i}", snapshots=1)
    seen: list[str] = []
    for page in (1, 2, 3):
        body = owner.get(_clusters_url(emu), params={"itemsPerPage": 3, "pageNum": page}).json()
        seen += [c["name"] for c in body["results"]]
        rels = {link["rel"] for link in body["links"]}
        assert ("next" in rels) is (page < 3)
    assert seen == ["alpha", "beta"] + [f"extra-{i}" for i in range(5)]
    no_count = owner.get(_clusters_url(emu), params={"includeCount": "false"}).json()
    assert "totalCount" not in no_count


def test_list_flex_clusters_of_unknown_or_empty_project(emu: AtlasEmulator, owner: requests.Session) -> None:
    r = owner.get(_clusters_url(emu, "0" * 24))
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "GROUP_NOT_FOUND"
    empty = emu.add_project("empty-project")
    assert owner.get(_clusters_url(emu, empty)).json() == {
        "links": [{"href": f"{_clusters_url(emu, empty)}?pageNum=1&itemsPerPage=100", "rel": "self"}],
        "results": [],
        "totalCount": 0,
    }
    missing = owner.get(_clusters_url(emu, empty) + "/alpha")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "CLUSTER_NOT_FOUND"


def test_list_groups_needs_its_own_api_version(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = f"{emu.base_url}/api/atlas/v2/groups"
    refused = owner.get(url)  # the session's Accept is the flex version, 2024-11-13
    assert refused.status_code == 406 and refused.headers["X-Error-Code"] == "INVALID_VERSION_DATE"
    other = emu.add_project("second-project")
    r = owner.get(url, headers={"Accept": GROUPS_MEDIA})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == GROUPS_MEDIA + ";charset=utf-8"
    projects = r.json()["results"]
    assert [p["id"] for p in projects] == [emu.group_id, other] and r.json()["totalCount"] == 2
    assert projects[0]["clusterCount"] == 3 and projects[1]["clusterCount"] == 0  # alpha, beta, legacy-m10
    assert {"clusterCount", "created", "name", "orgId"} <= set(projects[0])
    page2 = owner.get(url, headers={"Accept": GROUPS_MEDIA}, params={"itemsPerPage": 1, "pageNum": 2}).json()
    assert [p["id"] for p in page2["results"]] == [other]
    reader = digest_session(emu, emu.read_only_api_key)
    assert reader.get(url, headers={"Accept": GROUPS_MEDIA}).status_code == 200


def test_restore_job_lifecycle_into_a_target(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    owner = digest_session(emu)
    sid = emu.newest_completed_snapshot_id("alpha")
    emu.add_cluster("scratch", snapshots=0)
    r = post_json(
        owner,
        emu.cluster_url("alpha") + "/backup/restoreJobs",
        {"snapshotId": sid, "targetDeploymentItemName": "scratch"},
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["deliveryType"] == "RESTORE" and job["status"] == "PENDING" and "snapshotUrl" not in job
    assert job["targetDeploymentItemName"] == "scratch" and job["targetProjectId"] == emu.group_id
    assert emu.restored_snapshot("scratch") is None
    url = emu.cluster_url("alpha") + f"/backup/restoreJobs/{job['id']}"
    seen = []
    for _ in range(12):
        seen.append(owner.get(url).json()["status"])
        clock.advance(1)
    assert seen[0] == "PENDING" and seen[-1] == "COMPLETED" and "RUNNING" in seen
    done = owner.get(url).json()
    assert "restoreFinishedDate" in done and "snapshotUrl" not in done and "expirationDate" not in done
    assert emu.restored_snapshot("scratch") == sid
    # sending the read-only deliveryType is refused, as by Atlas
    bad = post_json(
        owner,
        emu.cluster_url("alpha") + "/backup/restoreJobs",
        {"snapshotId": sid, "targetDeploymentItemName": "scratch", "deliveryType": "RESTORE"},
    )
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_ATTRIBUTE"


def test_restore_job_can_be_made_to_fail(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    owner = digest_session(emu)
    emu.fail_next_restore("alpha")
    sid = emu.newest_completed_snapshot_id("alpha")
    body = {"snapshotId": sid, "targetDeploymentItemName": "beta"}
    failing = post_json(owner, emu.cluster_url("alpha") + "/backup/restoreJobs", body).json()
    download = post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).json()
    clock.advance(11)
    assert emu.restore_job(failing["id"])["status"] == "FAILED"
    assert emu.restore_job(download["id"])["status"] == "COMPLETED"  # only RESTORE jobs were marked
    assert emu.restored_snapshot("beta") is None
