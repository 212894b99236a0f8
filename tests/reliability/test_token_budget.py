"""Service-account tokens: shared across task processes, under the token endpoint's limits, revoked.

Airflow runs every task in its own (forked) process. These tests fork real processes that use
the hook the way tasks do, against the emulator with Atlas' token limits enforced.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.hooks.token_cache import TokenCache
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.reliability.registry import reliability

CLUSTERS = 50


@pytest.fixture
def emulator(monkeypatch) -> Iterator[AtlasEmulator]:
    names = tuple(f"cluster-{i:02d}" for i in range(CLUSTERS))
    with AtlasEmulator(clusters=names, snapshots_per_cluster=1, restore_duration=0.0, enforce_token_limits=True) as emu:
        yield emu


def connect(monkeypatch, emu: AtlasEmulator, **extra) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(emu, "service_account", **extra)))


def run_task_processes(work: Callable[[int], None], count: int, parallel: int = 8) -> list[int]:
    """Run ``work(i)`` in ``count`` forked processes, like Airflow's task supervisor does."""

    def child(i: int) -> None:
        TOKEN_CACHE.clear()  # a task process starts with nothing cached in memory
        try:
            work(i)
            code = 0
        except BaseException:  # noqa: BLE001 - a forked child reports any failure as its exit code
            code = 1
        atexit._run_exitfuncs()  # the supervisor runs the handlers a task registered
        os._exit(code)

    context = multiprocessing.get_context("fork")
    codes: list[int] = []
    for start in range(0, count, parallel):
        batch = [context.Process(target=child, args=(i,)) for i in range(start, min(start + parallel, count))]
        for process in batch:
            process.start()
        for process in batch:
            process.join(60)
            codes.append(process.exitcode)
    return codes


@reliability(
    "secret",
    "50 clusters, each task in its own process, service-account auth, Atlas' 10 token requests a minute enforced",
    "one token fetched and shared through the host's private token store (0600 file, 0700 directory)",
    "no 429 from the token endpoint; at most 2 token requests and 2 active tokens for the whole run",
)
def test_fifty_task_processes_share_one_token(emulator, monkeypatch):
    connect(monkeypatch, emulator)

    def export_one_cluster(i: int) -> None:
        cluster = f"cluster-{i:02d}"
        hook = AtlasFlexHook()
        snapshot = hook.get_newest_completed_snapshot(cluster)["id"]
        job = hook.request_snapshot_download(cluster, snapshot)
        hook.get_restore_job(cluster, job["id"])

    codes = run_task_processes(export_one_cluster, CLUSTERS)
    assert codes == [0] * CLUSTERS
    client = emulator.service_account.client_id
    assert emulator.token_requests(client) <= 2
    assert emulator.active_token_count(client) <= 2
    assert all(len(emulator.restore_jobs(f"cluster-{i:02d}")) == 1 for i in range(CLUSTERS))


@reliability(
    "secret",
    "connection extra sharing_scope='process': each task process gets its own token",
    "the process revokes its token when it exits",
    "no token is left active after the tasks end (the 100-token cap is never approached)",
)
def test_private_tokens_are_revoked_when_the_process_exits(emulator, monkeypatch):
    connect(monkeypatch, emulator, sharing_scope="process")
    codes = run_task_processes(lambda i: AtlasFlexHook().get_flex_cluster(f"cluster-{i:02d}"), 5)
    assert codes == [0] * 5
    client = emulator.service_account.client_id
    assert emulator.token_requests(client) == 5
    assert emulator.active_token_count(client) == 0


@reliability(
    "secret",
    "a shared token revoked in Atlas while task processes still hold it",
    "the next process gets 401, drops the stored token, fetches one new token and carries on",
    "the task succeeds; exactly one extra token request",
)
def test_revoked_shared_token_is_replaced_once(emulator, monkeypatch):
    connect(monkeypatch, emulator)
    assert run_task_processes(lambda i: AtlasFlexHook().get_flex_cluster("cluster-00"), 2) == [0, 0]
    emulator.revoke_all_tokens()
    assert run_task_processes(lambda i: AtlasFlexHook().get_flex_cluster("cluster-01"), 3) == [0, 0, 0]
    assert emulator.token_requests(emulator.service_account.client_id) == 2


def test_async_hook_reuses_the_token_the_sync_hook_stored(emulator, monkeypatch):
    connect(monkeypatch, emulator)
    AtlasFlexHook().get_flex_cluster("cluster-00")
    TOKEN_CACHE.clear()  # as in the triggerer, another process: only the host store is shared

    async def poll() -> None:
        hook = AtlasFlexAsyncHook()
        try:
            await hook.get_flex_cluster("cluster-01")
        finally:
            await hook.aclose()

    asyncio.run(poll())
    assert emulator.token_requests(emulator.service_account.client_id) == 1


@pytest.mark.parametrize("mode", [0o755, 0o770])
def test_store_refuses_a_directory_others_can_read(tmp_path, mode):
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(mode)
    cache = TokenCache(store_dir=store)
    from airflow_provider_atlasflex.hooks.oauth_token import CachedToken

    cache.put("k", CachedToken("secret-token", 9e12, 0), lambda _: None)
    assert list(store.iterdir()) == []  # kept in memory only
    assert cache.get("k").access_token == "secret-token"


def test_stored_token_file_is_private(tmp_path):
    from airflow_provider_atlasflex.hooks.oauth_token import CachedToken

    store = tmp_path / "store"
    cache = TokenCache(store_dir=store)
    cache.put("k", CachedToken("secret-token", 9e12, 0), lambda _: None)
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    (token_file,) = store.glob("*.json")
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert TokenCache(store_dir=store).get("k").access_token == "secret-token"
