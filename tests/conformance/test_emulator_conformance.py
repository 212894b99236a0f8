"""Every emulator response (success and error paths) must match the Atlas OpenAPI spec.

A scenario drives each spec operation through 200, 400, 401, 403, 404, 409 (where
the operation declares it), 429 and 500; then every recorded exchange is judged
by the spec.  Exchanges the spec cannot judge are excluded explicitly below, each
with its reason.  Requests the test client sent are validated as well.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from openapi_core import OpenAPI
from requests.auth import HTTPDigestAuth

from airflow_provider_atlasflex.testing.emulator import API_OPERATIONS, AtlasEmulator, RecordedExchange
from tests.conformance._openapi import (
    ConformanceError,
    declared_statuses,
    exclusion_reason,
    validate_exchange,
    validate_request,
    validate_response,
)

MEDIA = "application/vnd.atlas.2024-11-13+json"
GROUPS_MEDIA = "application/vnd.atlas.2023-01-01+json"  # listGroups has its own version in the spec
GROUP_LEVEL_OPERATIONS = {"listGroupFlexClusters", "listGroups"}

# Responses the spec does not declare, excluded on purpose (status -> why it exists).
UNDECLARED_BY_DESIGN = {
    406: "Accept without the versioned media type: Atlas answers 406 INVALID_VERSION_DATE (not in spec)",
    415: "POST body with a non-versioned Content-Type: 415 (not in spec)",
    503: "injected 503 with Retry-After (the spec documents Retry-After for 503 but declares no 503 response)",
}
EXCLUDED_OPERATIONS = {
    "oauthToken": "OAuth token endpoint is outside the Admin API spec",
    "oauthRevoke": "OAuth revoke endpoint is outside the Admin API spec",
    "snapshotFile": "pre-signed storage download is outside the Admin API spec",
}
# 400 error codes caused by requests that the spec itself rejects.
SPEC_INVALID_REQUEST_CODES = {"VALIDATION_ERROR", "INVALID_JSON"}


@dataclass
class Drive:
    emu: AtlasEmulator
    owner: requests.Session
    reader: requests.Session

    def url(self, suffix: str = "", cluster: str = "alpha", group: str | None = None) -> str:
        g = group or self.emu.group_id
        return f"{self.emu.base_url}/api/atlas/v2/groups/{g}/flexClusters/{cluster}{suffix}"

    def post(self, session: requests.Session, suffix: str, body: Any, **kw: Any) -> requests.Response:
        return session.post(self.url(suffix, **kw), json=body, headers={"Content-Type": MEDIA})


def _session(emu: AtlasEmulator, key: Any) -> requests.Session:
    s = requests.Session()
    s.auth = HTTPDigestAuth(key.public_key, key.private_key)
    s.headers["Accept"] = MEDIA
    return s


@pytest.fixture(scope="module")
def scenario() -> Iterator[tuple[AtlasEmulator, list[RecordedExchange]]]:
    with AtlasEmulator(
        clusters=("alpha", "beta"),
        snapshot_size=20_000,
        snapshots_per_cluster=3,
        restore_duration=0.3,
        seed="conformance",
    ) as emu:
        # Discovery sees every cluster state and backup setting the spec allows.
        emu.add_cluster("no-backup", snapshots=0, backup_enabled=False)
        emu.add_cluster("fresh", snapshots=0, state="CREATING")
        emu.add_cluster("leaving", snapshots=2, state="DELETING")
        emu.add_project("empty-project")
        d = Drive(emu, _session(emu, emu.api_key), _session(emu, emu.read_only_api_key))
        _run(d)
        _run_discovery(d)
        yield emu, emu.requests.snapshot()


def _run(d: Drive) -> None:
    emu, owner, reader = d.emu, d.owner, d.reader
    sid = emu.newest_completed_snapshot_id("alpha")
    running = emu.add_snapshot("alpha", status="RUNNING")
    bad_hex = "z" * 24
    missing = "0" * 24

    # --- successes (incl. envelope / pretty / pagination variants)
    assert owner.get(d.url()).status_code == 200
    assert owner.get(d.url(), params={"envelope": "true", "pretty": "true"}).status_code == 200
    assert owner.get(d.url("/backup/snapshots")).status_code == 200
    assert owner.get(d.url("/backup/snapshots"), params={"itemsPerPage": 2, "pageNum": 2}).status_code == 200
    assert (
        owner.get(d.url("/backup/snapshots"), params={"includeCount": "false", "envelope": "true"}).status_code == 200
    )
    assert owner.get(d.url(f"/backup/snapshots/{sid}")).status_code == 200
    assert owner.get(d.url(f"/backup/snapshots/{sid}"), params={"envelope": "true"}).status_code == 200
    r = d.post(owner, "/backup/download", {"snapshotId": sid})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    assert owner.get(d.url(f"/backup/restoreJobs/{job_id}")).status_code == 200  # not yet completed
    r = d.post(owner, "/backup/restoreJobs", {"snapshotId": sid, "targetDeploymentItemName": "beta"})
    assert r.status_code == 200, r.text
    r = d.post(
        owner,
        "/backup/restoreJobs",
        {"snapshotId": sid, "targetDeploymentItemName": "beta", "targetProjectId": emu.group_id},
    )
    assert r.status_code == 200, r.text
    time.sleep(0.35)
    done = owner.get(d.url(f"/backup/restoreJobs/{job_id}"))
    assert done.json()["status"] == "COMPLETED" and "snapshotUrl" in done.json()
    assert owner.get(d.url("/backup/restoreJobs")).status_code == 200
    assert owner.get(d.url("/backup/restoreJobs"), params={"itemsPerPage": 1, "pageNum": 2}).status_code == 200
    assert reader.get(d.url("/backup/restoreJobs"), params={"includeCount": "false"}).status_code == 200
    assert requests.get(done.json()["snapshotUrl"]).status_code == 200  # excluded: storage host

    # --- every operation: 400 bad groupId, 404 group, 404 cluster, 400 non-flex, 401, faults
    ops: list[tuple[str, str, str, Any]] = [
        ("getGroupFlexCluster", "GET", "", None),
        ("downloadGroupFlexClusterBackup", "POST", "/backup/download", {"snapshotId": sid}),
        ("listGroupFlexClusterBackupRestoreJobs", "GET", "/backup/restoreJobs", None),
        (
            "createGroupFlexClusterBackupRestoreJob",
            "POST",
            "/backup/restoreJobs",
            {"snapshotId": sid, "targetDeploymentItemName": "beta"},
        ),
        ("getGroupFlexClusterBackupRestoreJob", "GET", f"/backup/restoreJobs/{job_id}", None),
        ("listGroupFlexClusterBackupSnapshots", "GET", "/backup/snapshots", None),
        ("getGroupFlexClusterBackupSnapshot", "GET", f"/backup/snapshots/{sid}", None),
    ]
    assert {op for op, *_ in ops} == set(API_OPERATIONS) - GROUP_LEVEL_OPERATIONS

    def call(method: str, suffix: str, body: Any, session: requests.Session = owner, **kw: Any) -> int:
        if method == "GET":
            return session.get(d.url(suffix, **kw)).status_code
        return d.post(session, suffix, body, **kw).status_code

    for op, method, suffix, body in ops:
        assert call(method, suffix, body, group=bad_hex) == 400, op
        assert call(method, suffix, body, group=missing) == 404, op
        assert call(method, suffix, body, cluster="nope") == 404, op
        assert call(method, suffix, body, cluster="-bad_name") == 400, op
        assert call(method, suffix.replace(job_id, missing).replace(sid, missing), body, cluster="legacy-m10") == 400
        # 401: no credentials at all, a wrong password, an unknown bearer token
        anon = requests.Session()
        anon.headers["Accept"] = MEDIA
        assert call(method, suffix, body, session=anon) == 401, op
        wrong = _session(emu, type(emu.api_key)(emu.api_key.public_key, "not-the-password"))
        assert call(method, suffix, body, session=wrong) == 401, op
        bearer = requests.Session()
        bearer.headers.update({"Accept": MEDIA, "Authorization": "Bearer nope"})
        assert call(method, suffix, body, session=bearer) == 401, op
        # injected faults
        for status, kw in ((429, {"retry_after": 3}), (500, {}), (403, {}), (503, {"retry_after": 1})):
            emu.faults.add(operation=op, status=status, **kw)
            assert call(method, suffix, body) == status, (op, status)
        if 409 in declared_statuses_cache(op):
            emu.faults.add(operation=op, status=409, error_code="CONFLICT")
            assert call(method, suffix, body) == 409, op
        # 406: missing versioned Accept
        plain = _session(emu, emu.api_key)
        plain.headers["Accept"] = "application/json"
        assert call(method, suffix, body, session=plain) == 406, op
    emu.faults.clear()

    # --- operation-specific errors
    for q in ({"itemsPerPage": 0}, {"itemsPerPage": 501}, {"pageNum": 0}, {"includeCount": "maybe"}, {"pretty": "x"}):
        assert owner.get(d.url("/backup/snapshots"), params=q).status_code == 400
        assert owner.get(d.url("/backup/restoreJobs"), params=q).status_code == 400
    assert owner.get(d.url(f"/backup/snapshots/{bad_hex}")).status_code == 400
    assert owner.get(d.url(f"/backup/snapshots/{missing}")).status_code == 404
    assert owner.get(d.url(f"/backup/restoreJobs/{bad_hex}")).status_code == 400
    assert owner.get(d.url(f"/backup/restoreJobs/{missing}")).status_code == 404
    assert d.post(owner, "/backup/download", {}).status_code == 400
    assert d.post(owner, "/backup/download", {"snapshotId": bad_hex}).status_code == 400
    assert d.post(owner, "/backup/download", {"snapshotId": missing}).status_code == 404
    assert d.post(owner, "/backup/download", {"snapshotId": running}).status_code == 400
    assert d.post(reader, "/backup/download", {"snapshotId": sid}).status_code == 403
    bad_json = owner.post(d.url("/backup/download"), data=b"{nope", headers={"Content-Type": MEDIA})
    assert bad_json.status_code == 400
    assert owner.post(d.url("/backup/download"), json={"snapshotId": sid}).status_code == 415
    assert d.post(owner, "/backup/restoreJobs", {"snapshotId": sid}).status_code == 400
    too_long = {"snapshotId": sid, "targetDeploymentItemName": "x" * 65}
    assert d.post(owner, "/backup/restoreJobs", too_long).status_code == 400
    assert (
        d.post(owner, "/backup/restoreJobs", {"snapshotId": sid, "targetDeploymentItemName": "ghost"}).status_code
        == 404
    )
    other_project = {"snapshotId": sid, "targetDeploymentItemName": "beta", "targetProjectId": missing}
    assert d.post(owner, "/backup/restoreJobs", other_project).status_code == 404
    assert (
        d.post(owner, "/backup/restoreJobs", {"snapshotId": running, "targetDeploymentItemName": "beta"}).status_code
        == 400
    )
    assert (
        d.post(reader, "/backup/restoreJobs", {"snapshotId": sid, "targetDeploymentItemName": "beta"}).status_code
        == 403
    )
    # after_effect fault: the job is created, then 500 comes back
    emu.faults.add(operation="downloadGroupFlexClusterBackup", status=500, after_effect=True)
    assert d.post(owner, "/backup/download", {"snapshotId": sid}).status_code == 500
    # a 429 from the (excluded) OAuth endpoint for completeness
    emu.faults.add(operation="oauthToken", status=429, retry_after=1)
    sa = emu.service_account
    assert (
        requests.post(
            f"{emu.base_url}/api/oauth/token",
            auth=(sa.client_id, sa.client_secret),
            data={"grant_type": "client_credentials"},
        ).status_code
        == 429
    )


def _run_discovery(d: Drive) -> None:
    """listGroupFlexClusters and listGroups through every declared status, pagination and envelope."""
    emu, owner, reader = d.emu, d.owner, d.reader
    clusters = f"{emu.base_url}/api/atlas/v2/groups/{emu.group_id}/flexClusters"
    groups = f"{emu.base_url}/api/atlas/v2/groups"
    g = {"Accept": GROUPS_MEDIA}
    assert owner.get(clusters).status_code == 200
    assert owner.get(clusters, params={"itemsPerPage": 2, "pageNum": 2}).status_code == 200
    assert owner.get(clusters, params={"includeCount": "false", "envelope": "true", "pretty": "true"}).status_code == 200
    assert reader.get(clusters).status_code == 200
    assert owner.get(groups, headers=g).status_code == 200
    assert owner.get(groups, headers=g, params={"itemsPerPage": 1, "pageNum": 2}).status_code == 200
    assert reader.get(groups, headers=g, params={"includeCount": "false", "envelope": "true"}).status_code == 200
    empty = next(p["id"] for p in owner.get(groups, headers=g).json()["results"] if p["name"] == "empty-project")
    assert owner.get(f"{emu.base_url}/api/atlas/v2/groups/{empty}/flexClusters").json()["results"] == []
    # listGroups is 2023-01-01 only: the flex version is refused (406, not in the spec)
    assert owner.get(groups).status_code == 406
    assert owner.get(clusters, headers=g).status_code == 406
    for op, url, headers in (("listGroupFlexClusters", clusters, {}), ("listGroups", groups, g)):
        for q in ({"itemsPerPage": 0}, {"itemsPerPage": 501}, {"pageNum": 0}, {"includeCount": "maybe"}):
            assert owner.get(url, headers=headers, params=q).status_code == 400, (op, q)
        anon = requests.Session()
        assert anon.get(url, headers={"Accept": headers.get("Accept", MEDIA)}).status_code == 401
        bearer = {"Accept": headers.get("Accept", MEDIA), "Authorization": "Bearer nope"}
        assert requests.get(url, headers=bearer).status_code == 401
        for status, kw in ((429, {"retry_after": 3}), (500, {}), (403, {}), (503, {"retry_after": 1})):
            emu.faults.add(operation=op, status=status, **kw)
            assert owner.get(url, headers=headers).status_code == status, (op, status)
        for status in {404, 409} & declared_statuses_cache(op):
            emu.faults.add(operation=op, status=status, error_code="CONFLICT" if status == 409 else None)
            assert owner.get(url, headers=headers).status_code == status, (op, status)
    bad_group = f"{emu.base_url}/api/atlas/v2/groups/{'z' * 24}/flexClusters"
    assert owner.get(bad_group).status_code == 400
    assert owner.get(f"{emu.base_url}/api/atlas/v2/groups/{'0' * 24}/flexClusters").status_code == 404
    emu.faults.clear()


SPEC_INVALID_WITHOUT_400 = "400 for a request the spec rejects, on an operation that declares no 400"


def _spec_rejects_request(spec: OpenAPI, x: RecordedExchange) -> bool:
    try:
        validate_request(spec, x)
    except ConformanceError:
        return True
    return False


_DECLARED: dict[str, set[int]] = {}


def declared_statuses_cache(op: str) -> set[int]:
    return _DECLARED[op]


@pytest.fixture(scope="module", autouse=True)
def _declared(openapi_spec: OpenAPI) -> None:
    for op in API_OPERATIONS:
        _DECLARED[op] = declared_statuses(openapi_spec, op)


def test_every_response_conforms(openapi_spec: OpenAPI, scenario: tuple[AtlasEmulator, list[RecordedExchange]]) -> None:
    _, exchanges = scenario
    failures: list[str] = []
    excluded: dict[str, int] = {}
    for x in exchanges:
        reason = exclusion_reason(openapi_spec, x)
        if reason is not None:
            if x.operation in EXCLUDED_OPERATIONS:
                excluded[EXCLUDED_OPERATIONS[x.operation]] = excluded.get(EXCLUDED_OPERATIONS[x.operation], 0) + 1
                continue
            if x.status == 400 and _spec_rejects_request(openapi_spec, x):
                # listGroupFlexClusters declares no 400, but a request the spec itself rejects (bad groupId,
                # itemsPerPage=0) still gets Atlas' 400 VALIDATION_ERROR: nothing else could answer it.
                excluded[SPEC_INVALID_WITHOUT_400] = excluded.get(SPEC_INVALID_WITHOUT_400, 0) + 1
                continue
            assert x.status in UNDECLARED_BY_DESIGN, f"unexpected undeclared response: {reason}"
            excluded[UNDECLARED_BY_DESIGN[x.status]] = excluded.get(UNDECLARED_BY_DESIGN[x.status], 0) + 1
            continue
        try:
            validate_response(openapi_spec, x)
        except ConformanceError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)
    assert excluded  # the exclusions above were really exercised


def test_scenario_covers_every_operation_and_status(
    openapi_spec: OpenAPI, scenario: tuple[AtlasEmulator, list[RecordedExchange]]
) -> None:
    _, exchanges = scenario
    seen: dict[str, set[int]] = {}
    for x in exchanges:
        if x.operation in API_OPERATIONS:
            seen.setdefault(x.operation, set()).add(x.status)
    for op in API_OPERATIONS:
        declared = declared_statuses(openapi_spec, op)
        assert declared <= seen.get(op, set()), (
            f"{op}: declared {sorted(declared)} but drove {sorted(seen.get(op, set()))}"
        )


def test_requests_sent_conform(openapi_spec: OpenAPI, scenario: tuple[AtlasEmulator, list[RecordedExchange]]) -> None:
    """Well-formed requests pass; the ones built to provoke a spec-level 400 are rejected by the spec too."""
    _, exchanges = scenario
    failures: list[str] = []
    checked = 0
    for x in exchanges:
        if x.operation not in API_OPERATIONS or x.status in (406, 415):
            continue  # 406/415 probes break the media-type rules on purpose
        if x.headers.get("Accept") == "application/json" or x.headers.get("Content-Type") == "application/json":
            continue  # the same probes' Digest challenge legs (answered 401 before the media check)
        code = x.response_headers.get("X-Error-Code")
        # A download/restore of a snapshot that is not COMPLETED is well-formed, but Atlas refuses it
        # with VALIDATION_ERROR too (the emulator's choice, see ProjectState._require_completed).
        semantic = b"must identify a COMPLETED snapshot" in (x.response_body or b"")
        spec_invalid = x.status == 400 and code in SPEC_INVALID_REQUEST_CODES and not semantic
        try:
            validate_request(openapi_spec, x)
            ok = True
        except ConformanceError as exc:
            ok, err = False, str(exc)
        checked += 1
        if spec_invalid and ok:
            failures.append(f"spec accepted a request the emulator rejected as {code}: {x.method} {x.url}")
        elif not spec_invalid and not ok:
            failures.append(err)
    assert checked > 100
    assert not failures, "\n\n".join(failures)


def test_validator_is_not_vacuous(
    openapi_spec: OpenAPI, scenario: tuple[AtlasEmulator, list[RecordedExchange]]
) -> None:
    """A broken body must be caught, or the conformance tests prove nothing."""
    _, exchanges = scenario
    ok = next(x for x in exchanges if x.operation == "getGroupFlexCluster" and x.status == 200)
    broken = RecordedExchange(**{**ok.__dict__, "response_body": b'{"name": 5, "stateName": "SLEEPY"}'})
    with pytest.raises(ConformanceError, match="stateName|providerSettings|name"):
        validate_response(openapi_spec, broken)
    wrong_type = RecordedExchange(**ok.__dict__)
    wrong_type.response_headers = type(ok.response_headers)([("Content-Type", "text/html")])
    with pytest.raises(ConformanceError):
        validate_response(openapi_spec, wrong_type)


def test_spec_strict_error_parameters(openapi_spec: OpenAPI) -> None:
    """With ``string_error_parameters=False`` errors validate with no waiver at all."""
    with AtlasEmulator(
        clusters=("alpha",), snapshot_size=10_000, snapshots_per_cluster=1, string_error_parameters=False
    ) as emu:
        s = _session(emu, emu.api_key)
        base = f"{emu.base_url}/api/atlas/v2/groups/{emu.group_id}/flexClusters"
        assert s.get(f"{base}/nope").status_code == 404
        assert s.get(f"{base}/legacy-m10").status_code == 400
        assert s.get(f"{base}/alpha/backup/snapshots/{'0' * 24}").status_code == 404
        for x in emu.requests:
            if x.status in (404, 400):
                validate_exchange(openapi_spec, x, allow_string_error_parameters=False)


def test_validate_exchange_on_a_whole_log(openapi_spec: OpenAPI) -> None:
    """The one-call helper the provider tests use: validates what it can, reports skips."""
    with AtlasEmulator(clusters=("alpha",), snapshot_size=10_000, snapshots_per_cluster=1, restore_duration=0) as emu:
        s = _session(emu, emu.api_key)
        sid = emu.newest_completed_snapshot_id("alpha")
        base = f"{emu.base_url}/api/atlas/v2/groups/{emu.group_id}/flexClusters/alpha"
        job = s.post(f"{base}/backup/download", json={"snapshotId": sid}, headers={"Content-Type": MEDIA}).json()
        assert requests.get(job["snapshotUrl"]).status_code == 200
        emu.faults.add(operation="getGroupFlexCluster", status=503)
        assert s.get(base).status_code == 503
        notes: list[str] = []
        for x in emu.requests:
            notes += validate_exchange(openapi_spec, x)
        assert any("snapshotFile" in n for n in notes) and any("503" in n for n in notes)
        unknown = requests.get(f"{emu.base_url}/api/atlas/v2/groups/{emu.group_id}/nope", headers={"Accept": MEDIA})
        assert unknown.status_code == 404
        with pytest.raises(ConformanceError, match="no spec operation"):
            validate_exchange(openapi_spec, emu.requests[-1])
