"""Every request the provider's hooks send, and every answer they get, judged by the official spec."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from airflow_provider_atlasflex.exceptions import AtlasApiError
from airflow_provider_atlasflex.hooks.api_protocol import RetryPolicy
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.conformance._openapi import validate_exchange

HOOK_OPERATIONS = {
    "getGroupFlexCluster",
    "downloadGroupFlexClusterBackup",
    "listGroupFlexClusterBackupRestoreJobs",
    "getGroupFlexClusterBackupRestoreJob",
    "listGroupFlexClusterBackupSnapshots",
    "getGroupFlexClusterBackupSnapshot",
    "listGroupFlexClusters",
    "listGroups",
    "createGroupFlexClusterBackupRestoreJob",
}
FAST = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02)


@pytest.fixture
def emulator() -> Iterator[AtlasEmulator]:
    TOKEN_CACHE.clear()
    with AtlasEmulator(clusters=("alpha",), non_flex_clusters=("legacy-m10",), restore_duration=0.2) as emu:
        emu.add_cluster("restore-drill-scratch", snapshots=0, backup_enabled=False)
        emu.add_cluster("fresh", snapshots=0, state="CREATING")
        emu.add_project("second-project")
        yield emu
    TOKEN_CACHE.clear()


def use(monkeypatch, emu, auth, conn_id="mongodb_atlas_default", **fields):
    conn = {**emulator_connection(emu, auth), **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def exercise(hook: AtlasFlexHook, emu: AtlasEmulator) -> None:
    """Drive every hook method through success and error paths."""
    hook.get_flex_cluster("alpha")
    snapshots = hook.list_snapshots("alpha", items_per_page=3)
    hook.get_snapshot("alpha", snapshots[0]["id"])
    newest = hook.get_newest_completed_snapshot("alpha")["id"]
    job = hook.request_snapshot_download("alpha", newest)
    hook.get_restore_job("alpha", job["id"])
    hook.list_restore_jobs("alpha", items_per_page=1)
    hook.find_reusable_download_job("alpha", newest)
    hook.list_flex_clusters(items_per_page=1)
    hook.list_groups(items_per_page=1)
    restore = hook.request_restore("alpha", newest, "restore-drill-scratch")
    assert hook.find_restore_job("alpha", newest, "restore-drill-scratch", emu.group_id)["id"] == restore["id"]
    failures = [
        lambda: hook.get_flex_cluster("no-such-cluster"),
        lambda: hook.get_flex_cluster("legacy-m10"),
        lambda: hook.get_snapshot("alpha", "0" * 24),
        lambda: hook.get_restore_job("alpha", "f" * 24),
        lambda: hook.list_snapshots("alpha", group_id="a" * 24),
        lambda: hook.list_flex_clusters("a" * 24),
        lambda: hook.request_restore("alpha", newest, "ghost"),
    ]
    for call in failures:
        with pytest.raises(AtlasApiError):
            call()
    emu.faults.add(operation="getGroupFlexCluster", status=429, retry_after=0, times=1)
    emu.faults.add(operation="listGroupFlexClusterBackupSnapshots", status=500, times=1)
    emu.faults.add(operation="listGroups", status=429, retry_after=0, times=1)
    emu.faults.add(operation="listGroupFlexClusters", status=500, times=1)
    hook.get_flex_cluster("alpha")
    hook.list_snapshots("alpha")
    hook.list_groups()
    hook.list_flex_clusters()


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_sync_hook_requests_and_responses_conform(openapi_spec, emulator, monkeypatch, auth):
    use(monkeypatch, emulator, auth)
    exercise(AtlasFlexHook(retry_policy=FAST), emulator)
    checked = _validate_all(openapi_spec, emulator)
    assert HOOK_OPERATIONS <= checked
    statuses = {x.status for x in emulator.requests if x.operation in HOOK_OPERATIONS}
    assert {200, 400, 404, 429, 500} <= statuses


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_refused_credentials_conform(openapi_spec, emulator, monkeypatch, auth):
    use(monkeypatch, emulator, auth)
    read_only = emulator.read_only_api_key if auth == "digest" else emulator.read_only_service_account
    login, password = read_only
    use(monkeypatch, emulator, auth, login=login, password=password)
    hook = AtlasFlexHook(retry_policy=FAST)
    snapshot = emulator.newest_completed_snapshot_id("alpha")
    with pytest.raises(AtlasApiError) as err:
        hook.request_snapshot_download("alpha", snapshot)
    assert err.value.status == 403
    if auth == "digest":
        use(monkeypatch, emulator, auth, password="wrong-private-key")
        with pytest.raises(AtlasApiError) as err:
            AtlasFlexHook(retry_policy=FAST).get_flex_cluster("alpha")
        assert err.value.status == 401
    assert {x.status for x in emulator.requests if x.operation in HOOK_OPERATIONS} >= {403}
    _validate_all(openapi_spec, emulator)


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_async_hook_requests_conform(openapi_spec, emulator, monkeypatch, auth):
    use(monkeypatch, emulator, auth)
    job = AtlasFlexHook().request_snapshot_download("alpha", emulator.newest_completed_snapshot_id("alpha"))

    async def run() -> None:
        hook = AtlasFlexAsyncHook()
        try:
            await hook.get_restore_job("alpha", job["id"])
            await hook.get_flex_cluster("alpha")
            with pytest.raises(AtlasApiError):
                await hook.get_flex_cluster("nope")
        finally:
            await hook.aclose()

    asyncio.run(run())
    assert "getGroupFlexClusterBackupRestoreJob" in _validate_all(openapi_spec, emulator)


def _validate_all(spec, emu: AtlasEmulator) -> set[str]:
    """Validate every recorded exchange; returns the spec operations that were checked."""
    checked: set[str] = set()
    for exchange in list(emu.requests):
        validate_exchange(spec, exchange)
        if exchange.operation in HOOK_OPERATIONS:
            checked.add(exchange.operation)
    return checked


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_connection_test_requests_and_responses_conform(openapi_spec, emulator, monkeypatch, auth):
    # listGroups (versioned 2023-01-01) and the two project probes, as the Test button sends them.
    use(monkeypatch, emulator, auth)
    ok, message = AtlasFlexHook(retry_policy=FAST).test_connection()
    assert ok, message
    _validate_all(openapi_spec, emulator)  # raises on any exchange the spec refuses, listGroups included
    sent = {x.operation for x in emulator.requests if x.principal}
    assert {"listGroups", "getGroupFlexCluster", "downloadGroupFlexClusterBackup"} <= sent
