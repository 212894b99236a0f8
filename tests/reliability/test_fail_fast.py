"""Errors no retry can fix fail the task without Airflow's retries; transient ones keep them.

"Without retries" means the exception is an ``AirflowFailException`` as the Task SDK's task runner
sees it (it fails the task at once instead of marking it up_for_retry). Checked on the real
operator against the emulator, with the class the installed task runner itself catches.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasApiError, AtlasFlexError
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from tests.airflow_compat import NO_RETRY_EXCEPTION
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

NO_RETRY = NO_RETRY_EXCEPTION


def request_link(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("cluster_name", "alpha")
    return AtlasFlexSnapshotDownloadOperator(task_id="request_link", **kwargs).execute(make_context())


@reliability(
    "fault-clear-failure",
    "Errors no retry can fix: an unknown cluster or project (404), a dedicated (non-flex) cluster (400), "
    "a wrong API key or service-account secret (401 after the one refresh), a read-only key asking for a "
    "download (403), a bad cluster name",
    "Failed the task at once, without Airflow's retries (an AirflowFailException); nothing requested twice",
    "One clear error naming the cluster/project/credential and the fix, instead of 20 minutes of retries "
    "that block the next run",
)
@pytest.mark.parametrize(
    "case, auth, connect, call, expected",
    [
        ("unknown-cluster", "digest", {}, {"cluster_name": "nosuch"}, "No cluster named 'nosuch'"),
        ("unknown-project", "service_account", {}, {"group_id": "0" * 24}, "000000000000000000000000"),
        ("non-flex-cluster", "digest", {}, {"cluster_name": "legacy-m10"}, "is not a flex cluster"),
        ("wrong-api-key", "digest", {"password": "wrong"}, {}, "Atlas rejected the API key"),
        ("wrong-client-secret", "service_account", {"password": "mdb_sa_sk_wrong"}, {}, "rejected the service account"),
        ("read-only-key", "digest", {"read_only": True}, {}, "Project Backup Export Operator"),
        ("bad-cluster-name", "digest", {}, {"cluster_name": "not a name!"}, "cluster_name"),
    ],
    ids=["unknown-cluster", "unknown-project", "non-flex-cluster", "wrong-api-key", "wrong-client-secret",
         "read-only-key", "bad-cluster-name"],
)
def test_unfixable_errors_fail_without_retries(emu, atlas_conn, case, auth, connect, call, expected):
    connect = dict(connect)
    if connect.pop("read_only", False):
        connect = {"login": emu.read_only_api_key.public_key, "password": emu.read_only_api_key.private_key}
    atlas_conn(emu, auth, **connect)
    with pytest.raises(AtlasFlexError) as failed:
        request_link(**call)
    assert isinstance(failed.value, NO_RETRY), f"{type(failed.value).__name__} would be retried by Airflow"
    assert expected in str(failed.value)
    posts = emu.requests.by_operation("downloadGroupFlexClusterBackup")
    assert len([x for x in posts if x.status != 401]) <= 1


@reliability(
    "fault-survived",
    "Transient errors outlast the hook's own retries: 503 or 429 on every call, a connection refused",
    "Failed this attempt with a retryable error, so Airflow's task retries (retries/retry_delay) still apply",
    "The error says the task can be retried (Atlas incident, rate limit, network)",
)
@pytest.mark.parametrize("status", [503, 429, None], ids=["503", "429", "refused"])
def test_transient_errors_keep_airflow_retries(emu, atlas_conn, monkeypatch, status):
    atlas_conn(emu, "digest", max_retries=1)
    if status is None:
        fields = json.loads(os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"])
        fields["host"] = "http://127.0.0.1:1"  # nothing listens on port 1
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))
    else:
        emu.faults.add(operation="listGroupFlexClusterBackupSnapshots", status=status, retry_after=0, times=None)
    with pytest.raises(AtlasApiError) as failed:
        request_link()
    assert not isinstance(failed.value, NO_RETRY), f"{type(failed.value).__name__} would skip Airflow's retries"
