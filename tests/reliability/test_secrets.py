"""No credential reaches a log line, an exception, an XCom value or a repr: after runs that go well and runs that fail.

The secrets checked are the ones the run really used or could have used: the API private keys and
service-account secrets, every bearer token the emulator issued, and the signature (query string)
of every snapshot link it handed out. Logs are read both from Python logging and from stdout,
where Airflow's structlog writes them. The real task log files Airflow writes are checked by
``tests/e2e``.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.reliability.conftest import secrets_of
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


def run_export(tmp_path, cluster: str = "alpha", **copy_kwargs: Any) -> list[Any]:
    """The three tasks of the nightly DAG for one cluster; returns every XCom value they produced."""
    request_context = make_context()
    job = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name=cluster).execute(request_context)
    ready = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name=cluster, restore_job_id=job["id"], poke_interval=0.05, timeout=30,
        deferrable=False,
    ).execute(make_context())
    copy_kwargs.setdefault("dst", f"{tmp_path.as_uri()}/{{cluster_name}}/{{snapshot_id}}.tgz")
    result = AtlasFlexSnapshotToStorageOperator(
        task_id="copy_to_storage", cluster_name=cluster, restore_job_id=job["id"], chunk_size=16 * 1024,
        link_refresh_poll_interval=0.05, **copy_kwargs,
    ).execute(make_context())
    return [job, ready, result, request_context["ti"].pushed]


def assert_clean(values: list[Any], emu, *extra: str) -> None:
    text = json.dumps(values, default=str)
    for secret in secrets_of(emu, *extra):
        assert secret not in text, f"a secret ({secret[:6]}...) reached an XCom value"


@reliability(
    "secret",
    "A full export (request link, wait, copy) with each auth method, through a 429, a cut connection "
    "resumed with Range, and an expired link replaced by a fresh one",
    "Logged progress, retries, resumes and the link refresh by job id, snapshot id and host/path only",
    "No private key, client secret, bearer token or link signature in any log line, stdout, or XCom "
    "value (snapshotUrl in XCom ends '?<redacted>')",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_successful_export_leaks_nothing(emu, atlas_conn, no_secret_leaked, tmp_path, auth):
    atlas_conn(emu, auth)
    emu.faults.add(operation="getGroupFlexClusterBackupRestoreJob", status=429, retry_after=0)
    emu.faults.add(operation="snapshotFile", cut_after_bytes=100_000)
    emu.faults.add(operation="snapshotFile", status=403, nth=2)  # the resume finds the link refused

    values = run_export(tmp_path)

    result = values[2]
    assert result["sha256"] == emu.expected_sha256(result["snapshot_id"])
    assert result["link_refreshes"] == 1 and result["resumes"] == 1
    assert values[0]["snapshotUrl"].endswith("?<redacted>") if "snapshotUrl" in values[0] else True
    assert values[1]["snapshotUrl"].endswith("?<redacted>")
    logs = no_secret_leaked(emu)
    assert "Retrying Atlas request" in logs and "Requesting a fresh link" in logs  # the logs were really read
    assert "(getGroupFlexClusterBackupRestoreJob on cluster 'alpha'" in logs and "HTTP 429" in logs
    assert_clean(values, emu)
    if auth == "service_account":
        assert emu.issued_tokens(), "the run used bearer tokens, so the check covered them"


@reliability(
    "secret",
    "Failing runs: wrong private key / client secret, a link refused after its one refresh, a corrupt "
    "download, and a 500 whose detail echoes the request",
    "Failed with the usual clear error",
    "The error message, its repr and its pickled form (what Airflow stores and shows) hold no secret; "
    "the URL appears as host/path with '?<redacted>'",
)
@pytest.mark.parametrize(
    "failure", ["wrong-digest-key", "wrong-client-secret", "link-refused", "corrupt-download", "server-error"]
)
def test_failures_leak_nothing(emu, atlas_conn, no_secret_leaked, tmp_path, failure):
    wrong = "wrong-secret-0123456789abcdef"
    if failure == "wrong-digest-key":
        atlas_conn(emu, "digest", password=wrong)
    elif failure == "wrong-client-secret":
        atlas_conn(emu, "service_account", password=wrong)
    else:
        atlas_conn(emu, "service_account")
    if failure == "link-refused":
        emu.faults.add(operation="snapshotFile", status=403, times=None)
    elif failure == "corrupt-download":
        emu.faults.add(operation="snapshotFile", corrupt_at=1000, times=None)
    elif failure == "server-error":
        emu.faults.add(operation="getGroupFlexClusterBackupRestoreJob", status=500, times=None)

    with pytest.raises(AtlasFlexError) as failed:
        run_export(tmp_path)

    exc = failed.value
    no_secret_leaked(emu, exc, wrong)
    for form in (repr(exc), str(pickle.loads(pickle.dumps(exc))), repr(exc.args)):
        for secret in secrets_of(emu, wrong):
            assert secret not in form
    if failure == "link-refused":
        assert "?<redacted>" in str(exc)  # the link is named, its signature is not


@reliability(
    "secret",
    "Objects a user or Airflow may print: the hook, its connection config, and the connection test",
    "repr() of the config leaves the secret out; test_connection reports success or failure without it",
    "No secret in reprs or in the connection-test message (UI 'Test' button)",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_reprs_and_connection_test_leak_nothing(emu, atlas_conn, auth):
    atlas_conn(emu, auth)
    hook = AtlasFlexHook()
    ok, message = hook.test_connection()
    assert ok, message
    texts = [repr(hook.config), str(hook.config), message]

    atlas_conn(emu, auth, password="not-the-secret-9f8e7d")
    failed_ok, failed_message = AtlasFlexHook().test_connection()
    assert not failed_ok
    texts.append(failed_message)

    for secret in secrets_of(emu, "not-the-secret-9f8e7d"):
        for text in texts:
            assert secret not in text
