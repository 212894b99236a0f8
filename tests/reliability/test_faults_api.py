"""Admin API faults the export survives: 429/5xx everywhere, tokens lost mid-run, stale nonces, slow jobs.

Every test runs the provider's real HTTP code against the local emulator with a fault injected,
and checks what came out (the result, the emulator's record of what was sent), not how.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_atlasflex.hooks.api_protocol import RetryPolicy
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.airflow_compat import TaskDeferred
from tests.reliability.conftest import FakeClock, files_under
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

FAST = RetryPolicy(max_retries=5, backoff_base=0.01, backoff_max=0.05)
# One of each: what Atlas' gateway answers when it is overloaded or restarting.
TRANSIENT = ((429, 1), (500, None), (502, None), (503, None), (504, None))


def inject_transient(emu, operation: str) -> None:
    """429 with Retry-After: 1, then 500, 502, 503 and 504: the next five calls of ``operation`` fail."""
    for nth, (status, retry_after) in enumerate(TRANSIENT, start=1):
        emu.faults.add(operation=operation, status=status, retry_after=retry_after, nth=nth)


def statuses(emu, operation: str) -> list[int]:
    """Statuses of the authenticated answers (Digest challenges left out)."""
    return [x.status for x in emu.requests.by_operation(operation) if x.principal is not None]


def all_statuses(emu, operation: str) -> list[int]:
    return [x.status for x in emu.requests.by_operation(operation)]


def assert_waited_retry_after(emu, operation: str, seconds: float = 1.0) -> None:
    calls = [x for x in emu.requests.by_operation(operation) if x.principal is not None or x.operation == "oauthToken"]
    limited = next(i for i, x in enumerate(calls) if x.status == 429)
    gap = calls[limited + 1].started_at - (calls[limited].started_at + calls[limited].duration)
    assert gap >= seconds, f"resent {gap:.2f} s after a 429 with Retry-After: {seconds:g}"


# ---- 429 and 5xx ------------------------------------------------------------------------------


def _prepare(emu, operation: str) -> dict[str, Any]:
    """Objects the call needs (a restore job for the restore-job reads), made before any fault."""
    snap = emu.newest_completed_snapshot_id("alpha")
    facts: dict[str, Any] = {"snap": snap}
    if operation in ("listGroupFlexClusterBackupRestoreJobs", "getGroupFlexClusterBackupRestoreJob"):
        hook = AtlasFlexHook(retry_policy=FAST)
        facts["job"] = hook.request_snapshot_download("alpha", snap)["id"]
        hook.close()
    return facts


def _call_sync(operation: str, facts: dict[str, Any]) -> Any:
    hook = AtlasFlexHook(retry_policy=FAST)
    try:
        if operation == "getGroupFlexCluster":
            return hook.get_flex_cluster("alpha")["name"]
        if operation == "listGroupFlexClusterBackupSnapshots":
            return [s["id"] for s in hook.list_snapshots("alpha")]
        if operation == "getGroupFlexClusterBackupSnapshot":
            return hook.get_snapshot("alpha", facts["snap"])["id"]
        if operation == "downloadGroupFlexClusterBackup":
            return hook.request_snapshot_download("alpha", facts["snap"])["snapshotId"]
        if operation == "listGroupFlexClusterBackupRestoreJobs":
            return [j["id"] for j in hook.list_restore_jobs("alpha")]
        if operation == "getGroupFlexClusterBackupRestoreJob":
            return hook.get_restore_job("alpha", facts["job"])["id"]
    finally:
        hook.close()
    raise AssertionError(operation)


async def _call_async(operation: str, facts: dict[str, Any]) -> Any:
    hook = AtlasFlexAsyncHook(retry_policy=FAST)
    try:
        if operation == "getGroupFlexCluster":
            return (await hook.get_flex_cluster("alpha"))["name"]
        if operation == "getGroupFlexClusterBackupRestoreJob":
            return (await hook.get_restore_job("alpha", facts["job"]))["id"]
    finally:
        await hook.aclose()
    raise AssertionError(operation)


SYNC_OPERATIONS = (
    "getGroupFlexCluster",
    "listGroupFlexClusterBackupSnapshots",
    "getGroupFlexClusterBackupSnapshot",
    "downloadGroupFlexClusterBackup",
    "listGroupFlexClusterBackupRestoreJobs",
    "getGroupFlexClusterBackupRestoreJob",
)
ASYNC_OPERATIONS = ("getGroupFlexCluster", "getGroupFlexClusterBackupRestoreJob")


@reliability(
    "fault-survived",
    "429 with Retry-After: 1, then 500, 502, 503 and 504, on each Admin API operation the provider calls "
    "(sync hook, and the triggerer's async hook)",
    "Waited at least the Retry-After (measured) before resending, backed off on each 5xx, and got the "
    "same answer as without faults; the download POST created exactly one restore job",
    "Nothing: the task succeeds; the log shows 'Retrying Atlas request in ... s'",
)
@pytest.mark.parametrize(
    ("hook_kind", "operation", "auth"),
    [("sync", op, "digest") for op in SYNC_OPERATIONS]
    + [("async", op, "service_account") for op in ASYNC_OPERATIONS],
    ids=[f"sync-{op}" for op in SYNC_OPERATIONS] + [f"async-{op}" for op in ASYNC_OPERATIONS],
)
def test_429_and_5xx_on_every_admin_api_operation(emu, atlas_conn, hook_kind, operation, auth):
    atlas_conn(emu, auth)
    facts = _prepare(emu, operation)
    if operation == "downloadGroupFlexClusterBackup":
        expected = facts["snap"]  # a first POST would leave a job for the retry to find
    else:
        expected = asyncio.run(_call_async(operation, facts)) if hook_kind == "async" else _call_sync(operation, facts)
    emu.clear_requests()
    inject_transient(emu, operation)

    got = asyncio.run(_call_async(operation, facts)) if hook_kind == "async" else _call_sync(operation, facts)

    assert got == expected
    assert statuses(emu, operation) == [429, 500, 502, 503, 504, 200]
    assert_waited_retry_after(emu, operation)
    if operation == "downloadGroupFlexClusterBackup":
        assert len(emu.restore_jobs("alpha")) == 1  # 5xx answered before acting: resent, no duplicate


@reliability(
    "fault-survived",
    "429 with Retry-After: 1, then 500, 502, 503 and 504, on the OAuth token endpoint",
    "Waited the Retry-After, backed off on each 5xx, then got one token and used it",
    "Nothing: the call succeeds; one active token, no extra token requested",
)
def test_429_and_5xx_on_the_token_endpoint(emu, atlas_conn):
    atlas_conn(emu, "service_account")
    inject_transient(emu, "oauthToken")

    hook = AtlasFlexHook(retry_policy=FAST)
    assert hook.get_flex_cluster("alpha")["name"] == "alpha"
    assert [s["id"] for s in hook.list_snapshots("alpha")] == emu.snapshot_ids("alpha")

    assert all_statuses(emu, "oauthToken") == [429, 500, 502, 503, 504, 200]
    assert_waited_retry_after(emu, "oauthToken")
    assert emu.active_token_count(emu.service_account.client_id) == 1


@reliability(
    "fault-survived",
    "Atlas answers the download POST with 500 after it created the restore job",
    "Looked for a live DOWNLOAD job for the snapshot before resending, found it and used it",
    "Nothing: one restore job, not two",
)
@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_download_fails_after_the_job_was_created(emu, atlas_conn, status):
    atlas_conn(emu, "digest")
    emu.faults.add(operation="downloadGroupFlexClusterBackup", status=status, after_effect=True)

    context = make_context()
    result = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha").execute(context)

    jobs = emu.restore_jobs("alpha")
    assert [j["id"] for j in jobs] == [result["id"]]
    assert context["ti"].pushed["restore_job_id"] == result["id"]
    assert statuses(emu, "downloadGroupFlexClusterBackup") == [status]  # never POSTed twice


# ---- authentication lost mid-run --------------------------------------------------------------


@reliability(
    "fault-survived",
    "The service account's bearer token expires, or is revoked, between tasks of a run",
    "Got 401, fetched one new token, repeated the call once",
    "Nothing: the export completes with identical bytes; two tokens requested in all",
)
@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_bearer_token_lost_mid_run(emu, atlas_conn, tmp_path, how):
    atlas_conn(emu, "service_account")
    job = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha").execute(make_context())
    (emu.expire_all_tokens if how == "expired" else emu.revoke_all_tokens)()

    result = AtlasFlexSnapshotToStorageOperator(
        task_id="copy", cluster_name="alpha", restore_job_id=job["id"], dst=f"file://{tmp_path}/{{snapshot_id}}.tgz"
    ).execute(make_context())

    assert result["sha256"] == emu.expected_sha256(job["snapshotId"])
    assert all_statuses(emu, "oauthToken") == [200, 200]
    assert all_statuses(emu, "getGroupFlexClusterBackupRestoreJob") == [401, 200]
    name = f"{job['snapshotId']}.tgz"
    assert files_under(tmp_path) == [name, f"{name}.json", f"{name}.sha256"]  # the export and its sidecars


NONCE_TTL = 300.0


class NonceGoesStale(FakeClock):
    """After :meth:`arm`, time jumps past the nonce lifetime right after the emulator's next Digest challenge.

    So the client answers that challenge with a nonce the server now calls stale.
    """

    def __init__(self) -> None:
        super().__init__()
        self._emu: Any = None
        self._armed_at: int | None = None

    def arm(self, emu) -> None:
        self._emu = emu
        self._armed_at = self._challenges()

    def _challenges(self) -> int:
        return sum(1 for x in self._emu.requests if x.status == 401) if self._emu is not None else 0

    def __call__(self) -> float:
        if self._armed_at is not None and self._challenges() > self._armed_at:
            self._armed_at = None
            self.advance(NONCE_TTL + 1)
        return self.now


@reliability(
    "fault-survived",
    "The Digest nonce goes stale before the API key's answer reaches Atlas (401 with stale=true)",
    "Asked for a fresh challenge and answered it once, without counting it as wrong keys",
    "Nothing: the call succeeds (POST included: one restore job)",
)
@pytest.mark.parametrize("hook_kind", ["sync", "async"])
def test_stale_digest_nonce_is_rechallenged(make_emulator, atlas_conn, hook_kind):
    clock = NonceGoesStale()
    emu = make_emulator(clock=clock, nonce_ttl=NONCE_TTL)
    atlas_conn(emu, "digest")
    snap = emu.newest_completed_snapshot_id("alpha")
    job = AtlasFlexHook(retry_policy=FAST).request_snapshot_download("alpha", snap)

    clock.arm(emu)
    if hook_kind == "sync":
        operation = "downloadGroupFlexClusterBackup"
        again = AtlasFlexHook(retry_policy=FAST).request_snapshot_download("alpha", emu.snapshot_ids("alpha")[1])
        assert again["snapshotId"] == emu.snapshot_ids("alpha")[1] and len(emu.restore_jobs("alpha")) == 2
    else:
        operation = "getGroupFlexClusterBackupRestoreJob"

        async def read() -> dict[str, Any]:
            hook = AtlasFlexAsyncHook(retry_policy=FAST)
            try:
                return await hook.get_restore_job("alpha", job["id"])
            finally:
                await hook.aclose()

        assert asyncio.run(read())["id"] == job["id"]

    answers = [x.response_headers.get("WWW-Authenticate", "") for x in emu.requests.by_operation(operation)][-4:]
    assert all_statuses(emu, operation)[-4:] == [401, 401, 401, 200]
    # Atlas sends stale=true only for a stale nonce, and no stale flag at all otherwise.
    assert "stale" not in answers[0] and "stale=true" in answers[1]
    # Both hooks keep one Digest state per session: the retry first reuses the (stale) nonce with the next
    # nonce count, gets a second stale=true and answers that fresh challenge.
    assert "stale=true" in answers[2]


# ---- a slow restore job -----------------------------------------------------------------------


@reliability(
    "fault-survived",
    "A slow restore job (PENDING, QUEUED, RUNNING for a while), sensor in poke mode",
    "Polled every poke_interval until the link was ready, well within the sensor's timeout",
    "The sensor succeeds and returns the job with the link's query replaced by <redacted>",
)
def test_slow_restore_job_poke(make_emulator, atlas_conn):
    emu = make_emulator(restore_duration=1.2)
    atlas_conn(emu, "digest")
    job = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha").execute(make_context())
    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job["id"], poke_interval=0.2, timeout=60, mode="poke",
        deferrable=False,
    )
    started = time.monotonic()
    ready = sensor.execute(make_context())
    elapsed = time.monotonic() - started

    seen = [x.json()["status"] for x in emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob") if x.status == 200]
    assert seen[-1] == "COMPLETED" and {"PENDING", "RUNNING"} <= set(seen[:-1])
    assert 0.5 < elapsed < 30
    assert ready["id"] == job["id"] and ready["snapshotUrl"].endswith("?<redacted>")


@reliability(
    "fault-survived",
    "A slow restore job, sensor deferrable",
    "Released the worker at once (TaskDeferred); the trigger polled Atlas asynchronously and fired "
    "success when the link was ready",
    "The sensor resumes and succeeds; no worker slot held while waiting",
)
def test_slow_restore_job_deferrable(make_emulator, atlas_conn):
    emu = make_emulator(restore_duration=1.2)
    atlas_conn(emu, "service_account")
    job = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha").execute(make_context())
    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job["id"], poke_interval=0.2, timeout=60, deferrable=True
    )
    started = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(make_context())
    assert time.monotonic() - started < 1.0  # the worker is free long before the job is ready
    polls_before = len(emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob"))

    async def first_event() -> Any:
        trigger = deferred.value.trigger
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=30))

    assert event.payload["status"] == "success" and event.payload["job"]["id"] == job["id"]
    assert "Signature" not in repr(event.payload)
    polls = [x for x in emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob")][polls_before:]
    assert len(polls) >= 2 and polls[-1].json()["status"] == "COMPLETED"
    assert sensor.execute_complete(make_context(), event.payload)["id"] == job["id"]
