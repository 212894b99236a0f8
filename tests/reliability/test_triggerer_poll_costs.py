"""What one poll of a deferred wait costs the triggerer, counted (issue 8, goal 4).

Regression tests, not timings: 500 waits in one triggerer must not write a log line per poll,
open a connection per trigger, or send more than one request per poll.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.testing.emulator.state import _QUEUED_AT as QUEUED_AT
from airflow_provider_atlasflex.testing.emulator.state import _RUNNING_AT as RUNNING_AT
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger


class LogLines:
    """Stands in for the trigger's logger and keeps what it was asked to write."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message, *args, **kwargs: self.lines.append((level, message % args if args else message))


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    with AtlasEmulator(clusters=("alpha",), snapshots_per_cluster=1, snapshot_size=10_000, restore_duration=1e6) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(emu, "service_account")))
        yield emu


def pending_job(emu: AtlasEmulator) -> str:
    return emu.state.create_download("alpha", emu.newest_completed_snapshot_id("alpha")).id


async def last_event(trigger: AtlasFlexRestoreJobTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


def test_a_long_wait_logs_status_changes_not_every_poll(
    emulator: AtlasEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that stays PENDING for a dozen polls gets one line, and one more when its status changes."""
    log = LogLines()
    monkeypatch.setattr(AtlasFlexRestoreJobTrigger, "log", property(lambda self: log))
    job_id = pending_job(emulator)
    trigger = AtlasFlexRestoreJobTrigger(
        cluster_name="alpha",
        restore_job_id=job_id,
        group_id=None,
        atlas_conn_id="mongodb_atlas_default",
        poll_interval=0.05,
        end_time=time.time() + 60,
    )

    def polls() -> int:
        return sum(1 for x in emulator.requests.by_operation("getGroupFlexClusterBackupRestoreJob") if x.path.endswith(job_id))

    async def main() -> dict[str, Any]:
        wait = asyncio.ensure_future(last_event(trigger))
        while polls() < 12:
            await asyncio.sleep(0.02)
        job = emulator.state.job_by_id(job_id)
        assert job is not None
        job.created = emulator.state.clock() - 0.5 * (QUEUED_AT + RUNNING_AT) * job.duration  # QUEUED, not ready
        seen = polls()
        while polls() < seen + 6:
            await asyncio.sleep(0.02)
        emulator.complete_restore_job(job_id)
        return await wait

    assert (asyncio.run(main()))["status"] == "success"
    status_lines = [text for _, text in log.lines if job_id in text]
    assert polls() >= 18
    assert len(status_lines) == 2, status_lines
    assert "PENDING" in status_lines[0] and "QUEUED" in status_lines[1]


def test_the_shared_client_keeps_no_cookie() -> None:
    """One client serves every credential of a host: a cookie one answer sets must not ride along with the others."""
    import httpx

    from airflow_provider_atlasflex.hooks import shared_clients

    settings = shared_clients.ClientSettings("https://cloud.mongodb.com", True, None, 30.0, "test")
    client = shared_clients._build(settings)
    try:
        request = httpx.Request("GET", "https://cloud.mongodb.com/api/atlas/v2/groups")
        answer = httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"}, request=request)
        client.cookies.extract_cookies(answer)
        assert not client.cookies
        assert "cookie" not in client.build_request("GET", "https://cloud.mongodb.com/api/atlas/v2/groups").headers
    finally:
        asyncio.run(client.aclose())


def wait_on_a_slow_api(emulator: AtlasEmulator, waits: int, *, delay: float, polls_before_ready: int) -> None:
    """``waits`` triggers poll jobs whose every poll answers after ``delay`` s; the jobs complete once the
    emulator has answered ``polls_before_ready`` polls in all; every trigger must then report success."""
    jobs = [pending_job(emulator) for _ in range(waits)]
    # Slow answers (like Atlas' real latency) keep many polls waiting at once: the pool opens all it may.
    emulator.faults.add("getGroupFlexClusterBackupRestoreJob", delay=delay, times=None)

    async def main() -> list[dict[str, Any]]:
        async def wait(job_id: str) -> dict[str, Any]:
            trigger = AtlasFlexRestoreJobTrigger(
                cluster_name="alpha",
                restore_job_id=job_id,
                group_id=None,
                atlas_conn_id="mongodb_atlas_default",
                poll_interval=0.2,
                end_time=time.time() + 60,
            )
            return await last_event(trigger)

        gathered = asyncio.gather(*(wait(j) for j in jobs))
        while len(emulator.requests.by_operation("getGroupFlexClusterBackupRestoreJob")) < polls_before_ready:
            await asyncio.sleep(0.02)
        for job_id in jobs:
            emulator.complete_restore_job(job_id)
        return await gathered

    assert [e["status"] for e in asyncio.run(main())] == ["success"] * waits


def test_triggers_poll_over_at_most_max_connections(emulator: AtlasEmulator) -> None:
    """100 triggers polling a slow API: at most 4 kept-alive connections per lane (each one costs every request)."""
    from airflow_provider_atlasflex.hooks import shared_clients

    accepted: list[object] = []
    server = emulator._server
    assert server is not None
    original = server.process_request
    server.process_request = lambda request, address: (accepted.append(address), original(request, address))[1]
    wait_on_a_slow_api(emulator, 100, delay=0.1, polls_before_ready=200)
    assert shared_clients.MAX_CONNECTIONS <= 4
    lanes = -(-100 // shared_clients.WAITS_PER_LANE)  # 4 lanes for 100 waits
    assert len(accepted) <= 4 * lanes + 1  # + the token request's own connection, if any


def test_a_slow_api_gets_more_polls_in_flight_over_more_lanes(
    emulator: AtlasEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At real latency 4 requests in flight would cap a triggerer at ~20 polls/s: 100 waits use 4 lanes at once."""
    import httpx

    from airflow_provider_atlasflex.hooks import shared_clients

    in_flight, peak = 0, 0
    send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await send(self, *args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    wait_on_a_slow_api(emulator, 100, delay=0.2, polls_before_ready=100)
    lanes = -(-100 // shared_clients.WAITS_PER_LANE)
    assert 2 * shared_clients.MAX_CONNECTIONS < peak <= lanes * shared_clients.MAX_CONNECTIONS
