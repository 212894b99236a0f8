"""Admin API endpoints: shapes, pagination, envelope, pretty, validation, errors."""

from __future__ import annotations

import json

import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import MEDIA, digest_session, post_json

SUCCESS_CTYPE = "application/vnd.atlas.2024-11-13+json;charset=utf-8"


def _assert_api_error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Error-Code"] == code
    body = r.json()
    assert body["error"] == status and body["errorCode"] == code
    assert {"detail", "parameters", "reason"} <= set(body)
    return body


def test_identity_is_deterministic_per_seed() -> None:
    a = AtlasEmulator(seed="x", snapshot_size=10_000)
    b = AtlasEmulator(seed="x", snapshot_size=10_000)
    c = AtlasEmulator(seed="y", snapshot_size=10_000)
    assert a.group_id == b.group_id != c.group_id
    assert len(a.group_id) == 24 and int(a.group_id, 16) >= 0
    assert a.snapshot_ids("alpha") == b.snapshot_ids("alpha") != c.snapshot_ids("alpha")
    assert a.api_key == b.api_key and a.service_account == b.service_account
    assert a.service_account.client_id.startswith("mdb_sa_id_")
    assert a.api_key != a.read_only_api_key


def test_get_cluster(emu: AtlasEmulator, owner: requests.Session) -> None:
    r = owner.get(emu.cluster_url("alpha"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == SUCCESS_CTYPE
    assert int(r.headers["RateLimit-Limit"]) == 1200
    assert 0 <= int(r.headers["RateLimit-Remaining"]) < 1200
    assert int(r.headers["Content-Length"]) == len(r.content)
    body = r.json()
    assert body["name"] == "alpha" and body["groupId"] == emu.group_id
    assert body["providerSettings"]["providerName"] == "FLEX"
    assert body["stateName"] == "IDLE" and body["backupSettings"]["enabled"] is True
    assert body["links"][0]["href"] == emu.cluster_url("alpha")
    assert body["createDate"].endswith("Z")


def test_snapshots_list_and_get(emu: AtlasEmulator, owner: requests.Session) -> None:
    r = owner.get(emu.cluster_url("alpha") + "/backup/snapshots")
    body = r.json()
    assert body["totalCount"] == 8 and len(body["results"]) == 8
    ids = [s["id"] for s in body["results"]]
    assert ids == emu.snapshot_ids("alpha")
    times = [s["scheduledTime"] for s in body["results"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert all(s["status"] == "COMPLETED" for s in body["results"])
    assert [link["rel"] for link in body["links"]] == ["self"]
    one = owner.get(emu.cluster_url("alpha") + f"/backup/snapshots/{ids[0]}").json()
    assert one == body["results"][0]
    assert {"finishTime", "startTime", "expiration", "mongoDBVersion"} <= set(one)
    assert emu.newest_completed_snapshot_id("alpha") == ids[0]


def test_pagination(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = emu.cluster_url("alpha") + "/backup/snapshots"
    p1 = owner.get(url, params={"itemsPerPage": 3}).json()
    p3 = owner.get(url, params={"itemsPerPage": 3, "pageNum": 3}).json()
    p9 = owner.get(url, params={"itemsPerPage": 3, "pageNum": 9}).json()
    assert len(p1["results"]) == 3 and len(p3["results"]) == 2 and p9["results"] == []
    rels = {link["rel"]: link["href"] for link in p1["links"]}
    assert set(rels) == {"self", "next"}
    assert rels["next"].startswith(emu.base_url) and "pageNum=2" in rels["next"]
    follow = owner.get(rels["next"]).json()
    assert [s["id"] for s in follow["results"]] == emu.snapshot_ids("alpha")[3:6]
    assert {link["rel"] for link in p3["links"]} == {"self", "previous"}
    no_count = owner.get(url, params={"includeCount": "false"}).json()
    assert "totalCount" not in no_count and len(no_count["results"]) == 8


@pytest.mark.parametrize(
    "params",
    [{"itemsPerPage": 0}, {"itemsPerPage": 501}, {"itemsPerPage": "x"}, {"pageNum": 0}, {"includeCount": "yes"}],
)
def test_bad_list_query_is_400(emu: AtlasEmulator, owner: requests.Session, params: dict) -> None:
    r = owner.get(emu.cluster_url("alpha") + "/backup/restoreJobs", params=params)
    body = _assert_api_error(r, 400, "VALIDATION_ERROR")
    assert body["badRequestDetail"]["fields"][0]["field"] == next(iter(params))


def test_envelope_and_pretty(emu: AtlasEmulator, owner: requests.Session) -> None:
    single = owner.get(emu.cluster_url("alpha"), params={"envelope": "true"}).json()
    assert single["status"] == 200 and single["content"]["name"] == "alpha"
    listed = owner.get(emu.cluster_url("alpha") + "/backup/snapshots", params={"envelope": "true"}).json()
    assert listed["status"] == 200 and "results" in listed
    pretty = owner.get(emu.cluster_url("alpha"), params={"pretty": "true"})
    assert pretty.text.startswith("{\n  ") and json.loads(pretty.text)["name"] == "alpha"
    compact = owner.get(emu.cluster_url("alpha"))
    assert "\n" not in compact.text
    assert _assert_api_error(owner.get(emu.cluster_url("alpha"), params={"envelope": "1"}), 400, "VALIDATION_ERROR")


def test_not_found_errors(emu: AtlasEmulator, owner: requests.Session) -> None:
    body = _assert_api_error(owner.get(emu.cluster_url("ghost")), 404, "CLUSTER_NOT_FOUND")
    assert body["detail"] == f"No cluster named ghost exists in group {emu.group_id}."
    assert body["parameters"] == ["ghost", emu.group_id]
    other = "0" * 24
    r = owner.get(f"{emu.base_url}/api/atlas/v2/groups/{other}/flexClusters/alpha")
    assert other in _assert_api_error(r, 404, "GROUP_NOT_FOUND")["detail"]
    _assert_api_error(owner.get(emu.cluster_url("alpha") + f"/backup/snapshots/{other}"), 404, "RESOURCE_NOT_FOUND")
    _assert_api_error(owner.get(emu.cluster_url("alpha") + f"/backup/restoreJobs/{other}"), 404, "RESOURCE_NOT_FOUND")
    # a snapshot of another cluster is not found under this one
    beta_sid = emu.newest_completed_snapshot_id("beta")
    _assert_api_error(owner.get(emu.cluster_url("alpha") + f"/backup/snapshots/{beta_sid}"), 404, "RESOURCE_NOT_FOUND")
    _assert_api_error(owner.get(emu.base_url + "/api/atlas/v2/nothing"), 404, "RESOURCE_NOT_FOUND")


def test_non_flex_cluster_is_400(emu: AtlasEmulator, owner: requests.Session) -> None:
    for suffix in ("", "/backup/snapshots", "/backup/restoreJobs"):
        r = owner.get(emu.cluster_url("legacy-m10") + suffix)
        _assert_api_error(r, 400, "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API")


@pytest.mark.parametrize(
    "path",
    [
        "/api/atlas/v2/groups/NOT-HEX/flexClusters/alpha",
        "/api/atlas/v2/groups/{g}/flexClusters/-alpha",
        "/api/atlas/v2/groups/{g}/flexClusters/al_pha",
        "/api/atlas/v2/groups/{g}/flexClusters/alpha/backup/snapshots/ABCDEF0123456789abcdef01",
        "/api/atlas/v2/groups/{g}/flexClusters/alpha/backup/restoreJobs/123",
    ],
)
def test_bad_path_params_are_400(emu: AtlasEmulator, owner: requests.Session, path: str) -> None:
    r = owner.get(emu.base_url + path.format(g=emu.group_id))
    body = _assert_api_error(r, 400, "VALIDATION_ERROR")
    assert body["badRequestDetail"]["fields"]


def test_accept_header_must_name_the_version(emu: AtlasEmulator) -> None:
    for accept in ("application/json", "*/*", "application/vnd.atlas.2023-01-01+json", ""):
        s = digest_session(emu)
        s.headers["Accept"] = accept
        body = _assert_api_error(s.get(emu.cluster_url("alpha")), 406, "INVALID_VERSION_DATE")
        assert body["detail"] == "Invalid accept header or version date."
    s = digest_session(emu)
    s.headers["Accept"] = f"application/json, {MEDIA}"
    assert s.get(emu.cluster_url("alpha")).status_code == 200


def test_download_body_validation(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = emu.cluster_url("alpha") + "/backup/download"
    body = _assert_api_error(post_json(owner, url, {}), 400, "VALIDATION_ERROR")
    assert body["badRequestDetail"]["fields"][0]["field"] == "snapshotId"
    _assert_api_error(post_json(owner, url, {"snapshotId": "nothex"}), 400, "VALIDATION_ERROR")
    _assert_api_error(post_json(owner, url, {"snapshotId": 5}), 400, "VALIDATION_ERROR")
    sid = emu.newest_completed_snapshot_id("alpha")
    _assert_api_error(post_json(owner, url, {"snapshotId": sid, "extra": 1}), 400, "INVALID_ATTRIBUTE")
    _assert_api_error(owner.post(url, data=b"{", headers={"Content-Type": MEDIA}), 400, "INVALID_JSON")
    _assert_api_error(owner.post(url, json={"snapshotId": sid}), 415, "UNSUPPORTED_MEDIA_TYPE")
    _assert_api_error(owner.post(url), 400, "VALIDATION_ERROR")
    _assert_api_error(post_json(owner, url, {"snapshotId": "0" * 24}), 404, "RESOURCE_NOT_FOUND")
    assert emu.restore_jobs("alpha") == []  # nothing was created by the failures
    assert post_json(owner, url, {"snapshotId": sid}).status_code == 200


def test_download_of_unfinished_snapshot_is_a_validation_error(emu: AtlasEmulator, owner: requests.Session) -> None:
    """400 VALIDATION_ERROR naming snapshotId: a status and code the spec and the recorded traffic support.

    (The emulator used to answer 409 SNAPSHOT_NOT_COMPLETED, a code never seen on these endpoints.)
    """
    running = emu.add_snapshot("alpha", status="RUNNING")
    assert emu.snapshot_ids("alpha")[0] == running
    assert emu.newest_completed_snapshot_id("alpha") != running
    for suffix, body in (
        ("/backup/download", {"snapshotId": running}),
        ("/backup/restoreJobs", {"snapshotId": running, "targetDeploymentItemName": "beta"}),
    ):
        r = post_json(owner, emu.cluster_url("alpha") + suffix, body)
        _assert_api_error(r, 400, "VALIDATION_ERROR")
        assert r.json()["badRequestDetail"]["fields"] == [
            {"field": "snapshotId", "description": "must identify a COMPLETED snapshot"}
        ]
        assert "RUNNING" in r.json()["detail"]
    assert emu.restore_jobs("alpha") == []
    listed = owner.get(emu.cluster_url("alpha") + f"/backup/snapshots/{running}").json()
    assert listed["status"] == "RUNNING" and "finishTime" not in listed


def test_create_restore_job(emu: AtlasEmulator, owner: requests.Session) -> None:
    url = emu.cluster_url("alpha") + "/backup/restoreJobs"
    sid = emu.newest_completed_snapshot_id("alpha")
    r = post_json(owner, url, {"snapshotId": sid, "targetDeploymentItemName": "beta"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["deliveryType"] == "RESTORE" and "snapshotUrl" not in job
    assert job["targetDeploymentItemName"] == "beta" and job["targetProjectId"] == emu.group_id
    _assert_api_error(post_json(owner, url, {"snapshotId": sid}), 400, "VALIDATION_ERROR")
    _assert_api_error(
        post_json(owner, url, {"snapshotId": sid, "targetDeploymentItemName": "ghost"}), 404, "CLUSTER_NOT_FOUND"
    )
    _assert_api_error(
        post_json(owner, url, {"snapshotId": sid, "targetDeploymentItemName": "beta", "targetProjectId": "1" * 24}),
        404,
        "GROUP_NOT_FOUND",
    )
    # restoring into a dedicated (non-flex) cluster is allowed
    assert post_json(owner, url, {"snapshotId": sid, "targetDeploymentItemName": "legacy-m10"}).status_code == 200


def test_method_not_allowed(emu: AtlasEmulator, owner: requests.Session) -> None:
    r = owner.delete(emu.cluster_url("alpha"))
    _assert_api_error(r, 405, "METHOD_NOT_ALLOWED")


def test_keep_alive_reuses_one_connection(emu: AtlasEmulator, owner: requests.Session) -> None:
    for _ in range(5):
        assert owner.get(emu.cluster_url("alpha")).status_code == 200
    adapter = owner.get_adapter(emu.base_url)
    pools = list(adapter.poolmanager.pools._container.values())  # type: ignore[attr-defined]
    assert pools and pools[0].num_connections == 1


def test_recorded_exchanges(emu: AtlasEmulator, owner: requests.Session) -> None:
    emu.clear_requests()
    sid = emu.newest_completed_snapshot_id("alpha")
    post_json(owner, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid})
    ops = [(x.operation, x.status) for x in emu.requests]
    assert ops[-1] == ("downloadGroupFlexClusterBackup", 200)
    x = emu.requests.by_operation("downloadGroupFlexClusterBackup")[-1]
    assert x.method == "POST" and x.path.endswith("/backup/download") and x.query == {}
    assert x.headers["content-type"] == MEDIA and x.request_json() == {"snapshotId": sid}
    assert x.response_headers["Content-Type"] == SUCCESS_CTYPE and x.json()["snapshotId"] == sid
    assert x.path_params == {"groupId": emu.group_id, "name": "alpha"}
    assert x.principal == emu.api_key.public_key
    assert x.url.startswith(emu.base_url)
    assert len(emu.requests) == len(list(emu.requests))
    emu.clear_requests()
    assert len(emu.requests) == 0
