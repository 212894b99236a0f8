"""An error the triggerer finds fails the deferred task the way it would have failed in the worker.

The trigger's "error" event names the error's class (from a fixed table) and whether a retry can
help; the sensor's and the restore operator's ``execute_complete`` re-raise that class, so an
error no retry can fix (404, wrong credentials, missing role) skips Airflow's retries and a
transient one (503, 429, token cap, network) keeps them. Checked through ``trigger.run()``
against the emulator, with the exception class the installed task runner itself catches.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import (
    AtlasApiError,
    AtlasAuthenticationError,
    AtlasFlexError,
    AtlasMissingRoleError,
    AtlasNotFoundError,
    AtlasPermissionError,
    AtlasRateLimitError,
    RestoreJobFailedError,
)
from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.triggers.restore_job import EVENT_ERRORS, AtlasFlexRestoreJobTrigger, event_error
from tests.airflow_compat import NO_RETRY_EXCEPTION
from tests.reliability.conftest import secrets_of
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

NO_RETRY = NO_RETRY_EXCEPTION
POLL = "getGroupFlexClusterBackupRestoreJob"
UNKNOWN_JOB = "0123456789abcdef01234567"


def trigger_event(cluster: str, job_id: str) -> dict[str, Any]:
    trigger = AtlasFlexRestoreJobTrigger(
        cluster_name=cluster, restore_job_id=job_id, group_id=None, atlas_conn_id="mongodb_atlas_default",
        poll_interval=0.05, end_time=time.time() + 20,
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


def resumed(event: dict[str, Any]) -> list[BaseException]:
    """What the sensor and the restore operator raise when resumed with ``event`` (after a round trip
    through JSON, as the event is stored in the metadata database)."""
    stored = json.loads(json.dumps(event))
    raised = []
    for task in (
        AtlasFlexSnapshotUrlSensor(task_id="wait", cluster_name="alpha", restore_job_id=UNKNOWN_JOB, deferrable=True),
        AtlasFlexRestoreSnapshotOperator(task_id="restore", cluster_name="alpha", target_cluster_name="beta"),
    ):
        with pytest.raises(AtlasFlexError) as failed:
            task.execute_complete(make_context(), stored)
        raised.append(failed.value)
    return raised


def setup(emu: AtlasEmulator, atlas_conn: Any, monkeypatch: pytest.MonkeyPatch, case: str) -> tuple[str, str]:
    """Make the emulator (or the connection) produce ``case``; returns the (cluster, job id) to wait for."""
    auth = "service_account" if case in ("wrong-client-secret", "token-cap") else "digest"
    connect: dict[str, Any] = {"max_retries": 1}
    if case == "wrong-api-key":
        connect["password"] = "wrong"
    if case == "wrong-client-secret":
        connect["password"] = "mdb_sa_sk_wrong"
    atlas_conn(emu, auth, **connect)
    if case == "refused":
        fields = json.loads(os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"])
        fields["host"] = "http://127.0.0.1:1"  # nothing listens on port 1
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))
    if case == "failed-job":
        emu.fail_next_restore_job("alpha")
    job_id = str(emu.state.create_download("alpha", emu.newest_completed_snapshot_id("alpha")).id)
    faults = {
        "missing-role": {"status": 403, "error_code": "USER_UNAUTHORIZED"},
        "token-cap": {"status": 403, "error_code": "FORBIDDEN", "detail": "Service account token limit reached"},
        "503": {"status": 503, "retry_after": 0},
        "429": {"status": 429, "retry_after": 0},
    }
    if case in faults:
        emu.faults.add(operation=POLL, times=None, **faults[case])
    if case == "unknown-job":
        return "alpha", UNKNOWN_JOB
    if case == "unknown-cluster":
        return "nosuch", job_id
    return "alpha", job_id


@reliability(
    "fault-clear-failure",
    "Deferred wait (sensor or restore operator): the triggerer meets an error no retry can fix: an unknown "
    "restore job or cluster (404), a wrong API key or service-account secret (401), a missing role (403), "
    "a FAILED job",
    "The trigger's error event names the error class (from a fixed table, no secret); the resumed task "
    "re-raises that class, an AirflowFailException, so it fails at once without Airflow's retries",
    "The same clear error as in poke mode (cluster, job, credential and fix), at try 1",
)
@pytest.mark.parametrize(
    "case, status, expected, fragment, fix",
    [
        ("unknown-job", "error", AtlasNotFoundError, UNKNOWN_JOB, "Check restore_job_id"),
        ("unknown-cluster", "error", AtlasNotFoundError, "nosuch", "Check cluster_name"),
        ("wrong-api-key", "error", AtlasAuthenticationError, "API key", "Password (the private key)"),
        ("wrong-client-secret", "error", AtlasAuthenticationError, "service account", "Password (the client secret)"),
        ("missing-role", "error", AtlasMissingRoleError, "403", "Grant it the Project Read Only role"),
        ("failed-job", "failed", RestoreJobFailedError, "FAILED", "Request the download again"),
    ],
    ids=["unknown-job", "unknown-cluster", "wrong-api-key", "wrong-client-secret", "missing-role", "failed-job"],
)
def test_unfixable_trigger_errors_fail_without_retries(
    emu, atlas_conn, monkeypatch, no_secret_leaked, case, status, expected, fragment, fix
):
    cluster, job_id = setup(emu, atlas_conn, monkeypatch, case)
    event = trigger_event(cluster, job_id)
    assert event["status"] == status, event
    if status == "error":
        assert event["error"] == expected.__name__ and event["retryable"] is False
    for exc in resumed(event):
        assert type(exc) is expected
        assert isinstance(exc, NO_RETRY), f"{type(exc).__name__} would be retried by Airflow"
        assert fragment in str(exc)
        assert fix in str(exc), f"the fix is missing from: {exc}"  # what to do, not only what went wrong
        if case == "unknown-job":
            assert "snapshot" not in str(exc).lower(), f"advice for a snapshot, not a restore job: {exc}"
    no_secret_leaked(emu, None)  # nor in the trigger's logs
    assert not any(secret in json.dumps(event) for secret in secrets_of(emu))


@reliability(
    "fault-survived",
    "Deferred wait: the triggerer meets a transient error that outlasts the hook's retries: 503 or 429 on "
    "every poll, Atlas' cap of 100 active tokens (403), a connection refused",
    "The error event says retryable; the resumed task re-raises the same (retryable) class, so Airflow's task "
    "retries still apply",
    "The error names the Atlas incident, rate limit, token cap or network problem",
)
@pytest.mark.parametrize(
    "case, expected",
    [("503", AtlasApiError), ("429", AtlasRateLimitError), ("token-cap", AtlasPermissionError),
     ("refused", AtlasApiError)],
    ids=["503", "429", "token-cap", "refused"],
)
def test_transient_trigger_errors_keep_airflow_retries(emu, atlas_conn, monkeypatch, case, expected):
    cluster, job_id = setup(emu, atlas_conn, monkeypatch, case)
    event = trigger_event(cluster, job_id)
    assert event["status"] == "error" and event["error"] == expected.__name__ and event["retryable"] is True
    for exc in resumed(event):
        assert type(exc) is expected
        assert not isinstance(exc, NO_RETRY), f"{type(exc).__name__} would skip Airflow's retries"


def test_event_fields_rebuild_the_api_error():
    event = {
        "status": "error", "message": "HTTP 404 RESTORE_JOB_NOT_FOUND", "error": "AtlasNotFoundError",
        "retryable": False, "http_status": 404, "error_code": "RESTORE_JOB_NOT_FOUND",
    }
    exc = event_error(event)
    assert isinstance(exc, AtlasNotFoundError) and exc.status == 404 and exc.error_code == "RESTORE_JOB_NOT_FOUND"


@pytest.mark.parametrize(
    "error",
    [None, "builtins.SystemExit", "SystemExit", "AirflowFailException", "os.system", 42],
    ids=["older-trigger", "dotted-path", "builtin", "not-ours", "callable-path", "not-a-string"],
)
def test_an_event_names_only_classes_from_the_fixed_table(error):
    """An event is data: a name outside the table is never imported or looked up, and stays retryable."""
    event = {"status": "error", "message": "boom", "error": error, "retryable": False}
    exc = event_error(event)
    assert type(exc) is AtlasFlexError and str(exc) == "boom"
    assert not isinstance(exc, NO_RETRY)


def test_every_table_class_is_ours_and_rebuildable():
    for name, cls in EVENT_ERRORS.items():
        assert issubclass(cls, AtlasFlexError) and cls.__name__ == name
        rebuilt = event_error({"status": "error", "message": "m", "error": name})
        assert type(rebuilt) is cls and str(rebuilt) == "m"
