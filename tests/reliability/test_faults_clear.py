"""Faults that must fail clearly and lose nothing.

Each test injects the fault into the local emulator (or the destination), runs the provider's real
code, and checks three things a person on call needs: one actionable error line that names the
cluster and the snapshot (or restore job), no partial or new file at the destination, and an
existing good export left exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_atlasflex.exceptions import (
    AtlasApiError,
    AtlasAuthenticationError,
    AtlasNotFoundError,
    AtlasPermissionError,
    AtlasRateLimitError,
    RestoreJobFailedError,
    SnapshotLinkExpiredError,
    SnapshotTransferError,
)
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.reliability.conftest import FakeClock, files_under
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

RUN_DATE = "2026-11-28"  # make_context()'s logical date
GOOD_EXPORT = b"an export that an earlier night verified\n"


def request_link(cluster: str = "alpha", **kwargs: Any) -> dict[str, Any]:
    return AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name=cluster, **kwargs).execute(
        make_context()
    )


def copy(root: Path | str, job_id: str, cluster: str = "alpha", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("dst", f"{root}/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz")
    kwargs.setdefault("chunk_size", 16 * 1024)
    kwargs.setdefault("max_download_attempts", 3)
    kwargs.setdefault("link_refresh_poll_interval", 0.05)
    return AtlasFlexSnapshotToStorageOperator(
        task_id="copy_to_storage", cluster_name=cluster, restore_job_id=job_id, **kwargs
    ).execute(make_context())


def one_actionable_line(exc: BaseException, *must_name: str) -> str:
    """The error is one line, names what it must, and tells the reader what to do."""
    message = str(exc)
    assert "\n" not in message, message
    for name in must_name:
        assert name in message, f"{name!r} missing from: {message}"
    return message


def seed_good_export(root: Path, snapshot_id: str, cluster: str = "alpha") -> Path:
    path = root / cluster / RUN_DATE / f"{snapshot_id}.tgz"
    path.parent.mkdir(parents=True)
    path.write_bytes(GOOD_EXPORT)
    return path


def api_calls(emu) -> list[tuple[str, int]]:
    """(operation, status) of every authenticated Admin API answer and token request."""
    return [(x.operation, x.status) for x in emu.requests if x.principal is not None or x.operation == "oauthToken"]


# ---- the restore job or snapshot is gone or bad ------------------------------------------------


@reliability(
    "fault-clear-failure",
    "Atlas ends the DOWNLOAD restore job FAILED",
    "The sensor stopped at the first poke that saw FAILED (no waiting out the timeout, no retry: "
    "AirflowFailException); the copy task, if run on that job, wrote nothing",
    "'Atlas reports restore job <id> (snapshot <id>, cluster 'alpha') as FAILED. Request the download again ...'",
)
def test_restore_job_failed(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    emu.fail_next_restore_job("alpha")
    job = request_link()

    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job["id"], poke_interval=0.05, timeout=30, deferrable=False
    )
    with pytest.raises(RestoreJobFailedError) as failed:
        sensor.execute(make_context())
    one_actionable_line(failed.value, "FAILED", job["id"], job["snapshotId"], "'alpha'", "Request the download again")
    polls = [x for x in emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob") if x.status == 200]
    assert polls[-1].json()["status"] == "FAILED"

    with pytest.raises(RestoreJobFailedError) as copying:
        copy(tmp_path.as_uri(), job["id"])
    one_actionable_line(copying.value, "FAILED", job["snapshotId"])
    assert files_under(tmp_path) == []
    assert emu.requests.by_operation("snapshotFile") == []


@reliability(
    "fault-clear-failure",
    "snapshot_id names a snapshot Atlas no longer has (older than the 8-day retention)",
    "The download request got 404 once and was not retried; no restore job was created",
    "'Snapshot <id> of cluster 'alpha' in project <id> was not found (HTTP 404 RESOURCE_NOT_FOUND: ...). "
    "Flex snapshots are kept 8 days; ...'",
)
def test_snapshot_not_found(emu, atlas_conn):
    atlas_conn(emu, "service_account")
    gone = emu.snapshot_ids("alpha")[-1]
    emu.retire_snapshot(gone)

    with pytest.raises(AtlasNotFoundError) as failed:
        request_link(snapshot_id=gone)

    one_actionable_line(failed.value, gone, "'alpha'", emu.group_id, "kept 8 days", "omit snapshot_id to use the newest")
    assert failed.value.status == 404
    assert statuses_of(emu, "downloadGroupFlexClusterBackup") == [404]
    assert emu.restore_jobs("alpha") == []


@reliability(
    "fault-clear-failure",
    "The link expired before the copy, and by then retention has removed the snapshot",
    "Tried once to request a fresh link; Atlas answered 404; nothing was downloaded or written",
    "'Snapshot <id> of cluster 'alpha' in project <id> is gone from Atlas (HTTP 404 ...), and this copy needed a new "
    "link for it (...). Flex snapshots are kept 8 days: clear the task that requested the download (it takes the "
    "newest snapshot), then this copy task.'",
)
def test_link_expired_and_snapshot_retired(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    emu.expire_link(job["id"])
    emu.retire_snapshot(job["snapshotId"])

    with pytest.raises(AtlasNotFoundError) as failed:
        copy(tmp_path.as_uri(), job["id"])

    message = one_actionable_line(
        failed.value, job["snapshotId"], "'alpha'", "kept 8 days", "clear the task that requested the download"
    )
    assert "snapshot_id" not in message  # the copy task has no snapshot_id to omit
    assert statuses_of(emu, "downloadGroupFlexClusterBackup") == [200, 404]
    assert emu.requests.by_operation("snapshotFile") == []
    assert files_under(tmp_path) == []


def statuses_of(emu, operation: str) -> list[int]:
    return [x.status for x in emu.requests.by_operation(operation) if x.principal is not None]


@reliability(
    "fault-clear-failure",
    "cluster_name names no cluster in the project",
    "One 404 CLUSTER_NOT_FOUND, not retried; nothing created",
    "'No cluster named 'gamma' exists in project <id> (HTTP 404 CLUSTER_NOT_FOUND ...). Check cluster_name and the project id ...'",
)
def test_cluster_not_found(emu, atlas_conn):
    atlas_conn(emu, "digest")
    with pytest.raises(AtlasNotFoundError) as failed:
        request_link("gamma")
    one_actionable_line(failed.value, "'gamma'", emu.group_id, "CLUSTER_NOT_FOUND", "Check cluster_name")
    assert [status for _, status in api_calls(emu)] == [404]


@reliability(
    "fault-clear-failure",
    "cluster_name names a dedicated (non-flex) cluster",
    "One 400 CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API, not retried; nothing created",
    "'Cluster 'legacy-m10' in project <id> is not a flex cluster (...). This provider exports flex-cluster backups only ...'",
)
def test_non_flex_cluster(emu, atlas_conn):
    atlas_conn(emu, "service_account")
    with pytest.raises(AtlasApiError) as failed:
        request_link("legacy-m10")
    one_actionable_line(failed.value, "'legacy-m10'", emu.group_id, "not a flex cluster", "Cloud Backup API")
    assert failed.value.error_code == "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API"
    assert [status for op, status in api_calls(emu) if op != "oauthToken"] == [400]


# ---- credentials and limits --------------------------------------------------------------------


@reliability(
    "fault-clear-failure",
    "Wrong credentials: a wrong API private key (Digest), or a wrong service-account secret",
    "Stopped at the first 401: no retry, no token loop, nothing created",
    "'Atlas rejected the API key '<public key>' (or service account '<client id>') for ... (HTTP 401 ...). "
    "Check the connection's Login (the API public key) and Password (the private key) ...' (for a service account: "
    "the client id, the client secret and its expiry); the secret itself never shown",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_wrong_credentials(emu, atlas_conn, auth):
    wrong = "wrong-" + ("0" * 30)
    atlas_conn(emu, auth, password=wrong)
    principal = emu.api_key.public_key if auth == "digest" else emu.service_account.client_id

    with pytest.raises(AtlasAuthenticationError) as failed:
        request_link()

    message = one_actionable_line(failed.value, principal, "Login (the ")
    assert wrong not in message
    # each credential type gets its own advice, never the other's
    if auth == "digest":
        assert "API public key" in message and "service account" not in message.lower()
    else:
        assert "client secret" in message and "API key" not in message
    if auth == "digest":
        # The challenge, then one answer that was refused: never a second try with the same keys.
        assert [x.status for x in emu.requests] == [401, 401]
    else:
        assert [(x.operation, x.status) for x in emu.requests] == [("oauthToken", 401)]
    assert emu.restore_jobs("alpha") == []


@reliability(
    "fault-clear-failure",
    "Credentials without the role to request a download (Project Read Only key or service account)",
    "Reading worked; the download POST got 403 and was not retried; nothing created",
    "'The API key '<key>' may not call downloadGroupFlexClusterBackup on cluster 'alpha' ... Grant it the "
    "Project Backup Export Operator (or Project Owner) role ...'",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_missing_role(emu, atlas_conn, auth):
    if auth == "digest":
        atlas_conn(emu, auth, login=emu.read_only_api_key.public_key, password=emu.read_only_api_key.private_key)
    else:
        account = emu.read_only_service_account
        atlas_conn(emu, auth, login=account.client_id, password=account.client_secret)

    with pytest.raises(AtlasPermissionError) as failed:
        request_link()

    one_actionable_line(
        failed.value, "'alpha'", "downloadGroupFlexClusterBackup", "Grant it the Project Backup Export Operator"
    )
    assert statuses_of(emu, "downloadGroupFlexClusterBackup") == [403]
    assert emu.restore_jobs("alpha") == []


@reliability(
    "fault-clear-failure",
    "The service account already holds Atlas' cap of 100 active access tokens",
    "The token request got 403 'Access Token limit reached' once; no retry loop against the token endpoint",
    "'The service account '<id>' has reached Atlas' cap of 100 active access tokens (...). Revoke unused tokens ...'",
)
def test_token_cap_reached(make_emulator, atlas_conn):
    clock = FakeClock()
    emu = make_emulator(clock=clock)
    account = emu.service_account
    for n in range(100):  # 10 a minute is the endpoint's own limit: pace them like a busy fleet would
        if n and n % 10 == 0:
            clock.advance(61)
        requests.post(
            f"{emu.base_url}/api/oauth/token",
            auth=(account.client_id, account.client_secret),
            data={"grant_type": "client_credentials"},
            timeout=10,
        ).raise_for_status()
    clock.advance(61)
    assert emu.active_token_count(account.client_id) == 100
    emu.clear_requests()
    atlas_conn(emu, "service_account")

    with pytest.raises(AtlasPermissionError) as failed:
        request_link()

    one_actionable_line(failed.value, account.client_id, "100 active access tokens", "Revoke unused tokens")
    assert [(x.operation, x.status) for x in emu.requests] == [("oauthToken", 403)]


@reliability(
    "fault-clear-failure",
    "Atlas keeps answering 429 (or 503) to the snapshot list for longer than the retry budget (max_retries=2)",
    "Tried 3 times with back-off, honouring Retry-After, then stopped",
    "'Atlas kept rate-limiting listGroupFlexClusterBackupSnapshots on cluster 'alpha' ... after 3 attempts ... "
    "Run fewer exports at once ... or raise the connection's max_retries' (503: '... after 3 attempts; Atlas "
    "may be having an incident, the task can be retried')",
)
@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_outlasts_the_retry_budget(emu, atlas_conn, status):
    atlas_conn(emu, "digest", max_retries=2)
    emu.faults.add(operation="listGroupFlexClusterBackupSnapshots", status=status, retry_after=0, times=None)

    expected = AtlasRateLimitError if status == 429 else AtlasApiError
    with pytest.raises(expected) as failed:
        request_link()

    message = one_actionable_line(failed.value, "'alpha'", "after 3 attempts")
    assert ("Run fewer exports at once" in message) if status == 429 else ("can be retried" in message)
    assert statuses_of(emu, "listGroupFlexClusterBackupSnapshots") == [status] * 3
    assert emu.restore_jobs("alpha") == []


# ---- the download or the destination goes wrong -------------------------------------------------


@reliability(
    "fault-clear-failure",
    "A byte of the .tgz is corrupted in transit (size and headers unchanged), on every attempt; an "
    "earlier good export sits at dst and overwrite=True",
    "The streaming gzip check (CRC-32) failed; the temporary file was deleted; the good export kept",
    "'Export of snapshot <id> of 'alpha' to <dst> failed: the file is not valid gzip data (...). Nothing was "
    "committed (an export already at dst is untouched); a retry downloads it again. If the same damage comes back, "
    "... export a newer one ...'",
)
def test_corrupt_download_never_replaces_a_good_export(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    good = seed_good_export(tmp_path, job["snapshotId"])
    emu.faults.add(operation="snapshotFile", corrupt_at=emu.snapshot_size_of(job["snapshotId"]) // 2, times=None)

    with pytest.raises(SnapshotTransferError) as failed:
        copy(tmp_path.as_uri(), job["id"], overwrite=True)

    one_actionable_line(failed.value, job["snapshotId"], "'alpha'", "not valid gzip data", "a retry downloads it again")
    assert good.read_bytes() == GOOD_EXPORT
    assert files_under(tmp_path) == [str(good.relative_to(tmp_path))]


@reliability(
    "fault-clear-failure",
    "Every download attempt is cut short of Content-Length (the size never matches)",
    "Resumed with Range up to max_download_attempts=3, then gave up; the temporary file was deleted",
    "'Export of snapshot <id> of 'alpha' to <dst> failed: download of <host/path, no signature> failed "
    "after 3 attempts: connection lost at N of M bytes (...). ... nothing was committed; Airflow's task retries "
    "apply. If it persists, check this worker's network and proxy to the storage host, or raise "
    "max_download_attempts'",
)
def test_size_never_matches(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "service_account")
    job = request_link()
    emu.faults.add(operation="snapshotFile", cut_after_bytes=50_000, times=None)

    with pytest.raises(SnapshotTransferError) as failed:
        copy(tmp_path.as_uri(), job["id"])

    message = one_actionable_line(
        failed.value, job["snapshotId"], "'alpha'", "after 3 attempts", "connection lost at",
        "Airflow's task retries apply", "raise max_download_attempts",
    )
    assert "Signature" not in message
    assert len(emu.requests.by_operation("snapshotFile")) == 3
    assert files_under(tmp_path) == []


@reliability(
    "fault-clear-failure",
    "The link is refused (403) again after one fresh link was requested",
    "Used its one link refresh (a NEW restore job, never the refused one), then stopped; nothing written",
    "'... the snapshot link <host/path> was refused (HTTP 403) by the storage host (it was already a newly "
    "requested link). Clear the copy task to retry: after a refusal it requests a new restore job and link ...'",
)
def test_link_refused_twice(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    emu.faults.add(operation="snapshotFile", status=403, times=None)

    with pytest.raises(SnapshotLinkExpiredError) as failed:
        copy(tmp_path.as_uri(), job["id"])

    message = one_actionable_line(failed.value, job["snapshotId"], "'alpha'", "Clear the copy task")
    assert "Signature" not in message
    assert statuses_of(emu, "downloadGroupFlexClusterBackup") == [200, 200]  # a new job, not the refused one
    assert [x.status for x in emu.requests.by_operation("snapshotFile")] == [403, 403]
    assert files_under(tmp_path) == []


@reliability(
    "fault-clear-failure",
    "An export already exists at dst and overwrite=False (the default), e.g. a re-run of the same night",
    "Copied into its own temporary file to compare, then refused at the no-clobber commit; the existing file "
    "untouched",
    "'Export of snapshot <id> of 'alpha' to <dst> failed: <dst> already exists and overwrite=False, and it has "
    "no .json sidecar ...; it does not hold the <n> bytes ... Atlas served now ...: it was left untouched. Delete "
    "the file (or set overwrite=True to replace it).'",
)
def test_existing_export_is_not_replaced(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    good = seed_good_export(tmp_path, job["snapshotId"])

    with pytest.raises(SnapshotTransferError) as failed:
        copy(tmp_path.as_uri(), job["id"])

    one_actionable_line(failed.value, job["snapshotId"], "'alpha'", "overwrite=True")
    assert good.read_bytes() == GOOD_EXPORT
    assert not [p for p in good.parent.iterdir() if p != good], "a temporary file or sidecar was left"


@reliability(
    "fault-clear-failure",
    "The destination cannot be written: a path component is a regular file, so no directory can be made",
    "Failed before downloading; nothing written anywhere",
    "'Export of snapshot <id> of 'alpha' failed writing to <dst>: <OS reason>. Check the destination is "
    "writable and has space; nothing was committed.'",
)
def test_destination_not_writable(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    blocker = tmp_path / "exports"
    blocker.write_text("a file where the export directory should be")

    with pytest.raises(SnapshotTransferError) as failed:
        copy((tmp_path / "exports").as_uri(), job["id"])

    one_actionable_line(failed.value, job["snapshotId"], "'alpha'", "Check the destination is writable")
    assert files_under(tmp_path) == ["exports"]
    assert blocker.read_text() == "a file where the export directory should be"


class FullDiskFileSystem(LocalFileSystem):
    """The local disk, except that writes fail with ENOSPC once ``space`` bytes were written."""

    protocol = ("fulldisk",)
    space = 150_000

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        handle = super()._open(path, mode, block_size, **kwargs)
        if "w" in mode:
            write, used = handle.write, [0]

            def write_until_full(data: bytes) -> int:
                if used[0] + len(data) > self.space:
                    raise OSError(errno.ENOSPC, "No space left on device")
                used[0] += len(data)
                return write(data)

            handle.write = write_until_full
        return handle

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("fulldisk://"):
            path = path[len("fulldisk://") :]
        return super()._strip_protocol(path)


@pytest.fixture
def full_disk() -> Iterator[None]:
    """Airflow's object storage resolves ``fulldisk://`` to :class:`FullDiskFileSystem` for this test."""
    import importlib
    import warnings

    import fsspec
    from airflow.sdk.io import attach
    from airflow.sdk.io import store as io_store

    fsspec.register_implementation("fulldisk", FullDiskFileSystem, clobber=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # universal_pathlib warns it has no dedicated class for the scheme
        attach("fulldisk", fs=FullDiskFileSystem())
        yield
    io_store._STORE_CACHE.pop("fulldisk", None)
    importlib.import_module("fsspec.registry")._registry.pop("fulldisk", None)


@reliability(
    "fault-clear-failure",
    "The destination fills up (ENOSPC) part-way through the copy; an earlier good export sits at dst, overwrite=True",
    "Stopped at the failed write; deleted the temporary file; the good export kept",
    "'Export of snapshot <id> of 'alpha' failed writing to <dst>: No space left on device. Check the "
    "destination is writable and has space; nothing was committed.'",
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_destination_full(emu, atlas_conn, tmp_path, full_disk):
    atlas_conn(emu, "service_account")
    job = request_link()
    good = seed_good_export(tmp_path, job["snapshotId"])
    assert emu.snapshot_size_of(job["snapshotId"]) > FullDiskFileSystem.space

    with pytest.raises(SnapshotTransferError) as failed:
        copy(f"fulldisk://{tmp_path}", job["id"], overwrite=True)

    one_actionable_line(failed.value, job["snapshotId"], "'alpha'", "No space left on device", "has space")
    assert good.read_bytes() == GOOD_EXPORT
    assert files_under(tmp_path) == [str(good.relative_to(tmp_path))]
    assert hashlib.sha256(good.read_bytes()).hexdigest() == hashlib.sha256(GOOD_EXPORT).hexdigest()


# ---- a restore job that never gets ready ---------------------------------------------------------


@reliability(
    "fault-clear-failure",
    "The restore job is not ready by the sensor's timeout (poke mode)",
    "Polled until the timeout, then failed with AirflowSensorTimeout (not retried: waiting again "
    "needs a person to look)",
    "'Restore job <id> of cluster 'alpha' was not ready within the sensor's timeout of 1 s (...). Atlas may "
    "be slow or stuck: check the job in the Atlas UI, then clear the sensor ...'",
)
def test_restore_job_outlasts_the_sensor_timeout_poke(make_emulator, atlas_conn):
    from airflow_provider_atlasflex.compat import AirflowSensorTimeout

    emu = make_emulator(restore_duration=3600)
    atlas_conn(emu, "digest")
    job = request_link()
    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job["id"], poke_interval=0.2, timeout=1,
        mode="poke", deferrable=False,
    )
    with pytest.raises(AirflowSensorTimeout) as timed_out:
        sensor.execute(make_context())

    one_actionable_line(timed_out.value, job["id"], "'alpha'", "timeout of 1 s", "clear the sensor")
    assert len(statuses_of(emu, "getGroupFlexClusterBackupRestoreJob")) >= 2


@reliability(
    "fault-clear-failure",
    "The restore job is not ready by the sensor's timeout (deferrable mode: the trigger's own deadline)",
    "The trigger stopped polling at its deadline and fired a timeout event; the resumed sensor failed",
    "'Restore job <id> of cluster 'alpha' was still PENDING when the sensor's timeout ran out. Atlas may be "
    "slow or stuck: check the job in the Atlas UI, then clear the sensor ...'",
)
def test_restore_job_outlasts_the_sensor_timeout_deferrable(make_emulator, atlas_conn):
    import asyncio

    from airflow_provider_atlasflex.compat import AirflowSensorTimeout
    from tests.airflow_compat import TaskDeferred

    emu = make_emulator(restore_duration=3600)
    atlas_conn(emu, "service_account")
    job = request_link()
    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job["id"], poke_interval=0.2, timeout=1, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(make_context())

    async def first_event() -> Any:
        async for event in deferred.value.trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=20))
    assert event.payload["status"] == "timeout"
    with pytest.raises(AirflowSensorTimeout) as timed_out:
        sensor.execute_complete(make_context(), event.payload)
    one_actionable_line(timed_out.value, job["id"], "'alpha'", "still PENDING", "timeout ran out", "clear the sensor")
