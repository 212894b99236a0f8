"""Triggers in one triggerer share one HTTP client per event loop and connection settings (issue 8, goal 4).

Regression tests, not timings: they count clients built, connections opened and requests sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_atlasflex.hooks import shared_clients
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

CLUSTERS = ("alpha", "beta")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    with AtlasEmulator(clusters=CLUSTERS, snapshots_per_cluster=1, snapshot_size=10_000, restore_duration=0.0) as emu:
        for conn_id, timeout in (("mongodb_atlas_default", 60), ("atlas_other_timeout", 30)):
            fields = emulator_connection(emu, "service_account")
            fields["extra"]["timeout"] = timeout
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        yield emu


def jobs(emu: AtlasEmulator, count: int) -> list[tuple[str, str]]:
    out = []
    for i in range(count):
        cluster = CLUSTERS[i % 2]
        out.append((cluster, emu.state.create_download(cluster, emu.newest_completed_snapshot_id(cluster)).id))
    return out


def trigger(cluster: str, job_id: str, conn_id: str = "mongodb_atlas_default", **kwargs: Any) -> AtlasFlexRestoreJobTrigger:
    return AtlasFlexRestoreJobTrigger(
        cluster_name=cluster,
        restore_job_id=job_id,
        group_id=None,
        atlas_conn_id=conn_id,
        poll_interval=0.2,
        end_time=time.time() + 60,
        **kwargs,
    )


async def first_event(t: AtlasFlexRestoreJobTrigger) -> dict[str, Any]:
    async for event in t.run():
        return dict(event.payload)
    raise AssertionError("no event")


def test_triggers_in_one_loop_share_one_client(emulator: AtlasEmulator) -> None:
    before = shared_clients.clients_created()
    waits = shared_clients.WAITS_PER_LANE

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger(c, j)) for c, j in jobs(emulator, waits)))

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success"] * waits
    assert shared_clients.clients_created() - before == 1
    assert emulator.token_requests(emulator.service_account.client_id) == 1


def test_other_connection_settings_get_their_own_client(emulator: AtlasEmulator) -> None:
    before = shared_clients.clients_created()

    async def main() -> list[dict[str, Any]]:
        waits = [first_event(trigger(c, j)) for c, j in jobs(emulator, 10)]
        waits += [first_event(trigger(c, j, "atlas_other_timeout")) for c, j in jobs(emulator, 10)]
        return await asyncio.gather(*waits)

    assert [e["status"] for e in asyncio.run(main())] == ["success"] * 20
    assert shared_clients.clients_created() - before == 2


def test_each_event_loop_gets_its_own_client_closed_with_the_loop(emulator: AtlasEmulator) -> None:
    before = shared_clients.clients_created()
    leased: list[Any] = []

    async def main() -> None:
        (cluster, job_id), = jobs(emulator, 1)
        await first_event(trigger(cluster, job_id))
        loop_clients = shared_clients._registry[asyncio.get_running_loop()]
        leased.extend(lane.client for lanes in loop_clients.values() for lane in lanes)

    asyncio.run(main())
    asyncio.run(main())
    assert shared_clients.clients_created() - before == 2
    assert len(leased) == 2 and all(client.is_closed for client in leased)  # closed when asyncio.run ended


def test_polls_reuse_kept_alive_connections(emulator: AtlasEmulator) -> None:
    """Several polls of 20 triggers go over a few kept-alive connections, not one connection per request."""
    accepted: list[object] = []
    server = emulator._server
    assert server is not None
    original = server.process_request
    server.process_request = lambda request, address: (accepted.append(address), original(request, address))[1]
    emulator.restore_duration = 1e6
    waits = jobs(emulator, 20)

    def complete_after_three_polls() -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            gets = emulator.requests.by_operation("getGroupFlexClusterBackupRestoreJob")
            if all(sum(1 for x in gets if x.path.endswith(j)) >= 3 for _, j in waits):
                break
            time.sleep(0.05)
        for _, job_id in waits:
            emulator.complete_restore_job(job_id)

    watcher = threading.Thread(target=complete_after_three_polls)
    watcher.start()

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger(c, j)) for c, j in waits))

    assert [e["status"] for e in asyncio.run(main())] == ["success"] * 20
    watcher.join()
    gets = emulator.requests.by_operation("getGroupFlexClusterBackupRestoreJob")
    assert len(gets) >= 80  # at least four polls each
    assert len(accepted) <= 21  # at most one connection per concurrent trigger (+ the token request)


def test_first_poll_waits_for_the_time_the_sensor_passed(emulator: AtlasEmulator) -> None:
    (cluster, job_id), = jobs(emulator, 1)
    first_poll_at = time.time() + 0.5
    event = asyncio.run(first_event(trigger(cluster, job_id, first_poll_at=first_poll_at)))
    assert event["status"] == "success"
    (get,) = emulator.requests.by_operation("getGroupFlexClusterBackupRestoreJob")
    assert get.started_at >= first_poll_at - 0.01


def test_many_waits_spread_over_a_few_lanes() -> None:
    """A large triggerer opens a lane per WAITS_PER_LANE waits, up to MAX_LANES, and balances waits across them."""
    settings = shared_clients.ClientSettings("https://cloud.mongodb.com", True, None, 30.0, "test")
    before = shared_clients.clients_created()

    async def main() -> tuple[list[int], int]:
        leased = [shared_clients.lease(settings) for _ in range(500)]
        lanes = shared_clients._registry[asyncio.get_running_loop()][settings]
        counts = sorted(lane.leases for lane in lanes)
        gates = {id(shared_clients.gate(settings, client)) for client in leased}
        for client in leased:
            await shared_clients.release(settings, client)
        return counts, len(gates)

    counts, gates = asyncio.run(main())
    assert len(counts) == shared_clients.MAX_LANES == gates  # one gate (MAX_CONNECTIONS in flight) per lane
    assert sum(counts) == 500 and counts[-1] - counts[0] <= 1
    assert shared_clients.clients_created() - before == shared_clients.MAX_LANES


def test_two_first_calls_of_one_hook_lease_one_client(emulator: AtlasEmulator) -> None:
    """Concurrent first calls of one async hook must not lease twice (a lease never released keeps a lane open)."""
    from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook

    async def main() -> tuple[bool, int, int]:
        hook = AtlasFlexAsyncHook()
        first, second = await asyncio.gather(hook.client(), hook.client())
        lanes = shared_clients._registry[asyncio.get_running_loop()]
        leases = sum(lane.leases for settings_lanes in lanes.values() for lane in settings_lanes)
        await hook.aclose()
        left = sum(lane.leases for settings_lanes in lanes.values() for lane in settings_lanes)
        return first is second, leases, left

    same, leases, left = asyncio.run(main())
    assert same and leases == 1 and left == 0
