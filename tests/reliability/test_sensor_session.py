"""A sensor in poke mode keeps one hook session for its whole wait, and closes it however the wait ends.

Proved with the emulator's request log (every 401 challenge leg is recorded) and by counting the
hooks the sensor opens and closes. Issue 8, goal 5: one Digest challenge per task, not per poke.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from airflow_provider_atlasflex.compat import AirflowSensorTimeout
from airflow_provider_atlasflex.exceptions import AtlasNotFoundError, RestoreJobFailedError
from airflow_provider_atlasflex.hooks import atlas_flex
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.airflow_compat import TaskDeferred
from tests.reliability.conftest import FakeClock
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

POLL = "getGroupFlexClusterBackupRestoreJob"


class CountingHook(AtlasFlexHook):
    """The sensor's hook, recording every instance opened and closed."""

    opened: ClassVar[list[CountingHook]] = []
    closed: ClassVar[list[CountingHook]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountingHook.opened.append(self)

    def close(self) -> None:
        CountingHook.closed.append(self)
        super().close()


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> type[CountingHook]:
    monkeypatch.setattr(CountingHook, "opened", [])
    monkeypatch.setattr(CountingHook, "closed", [])
    monkeypatch.setattr(atlas_flex, "AtlasFlexHook", CountingHook)  # looked up there when execute() runs
    return CountingHook


class ClockedSensor(AtlasFlexSnapshotUrlSensor):
    """Each poke moves the emulator's clock on by ``step`` seconds (Atlas' time, not the test's)."""

    def __init__(self, *, clock: FakeClock, step: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.step = step

    def poke(self, context: Any) -> Any:
        try:
            return super().poke(context)
        finally:
            self.clock.advance(self.step)


def download_job(emu: AtlasEmulator, cluster: str = "alpha") -> str:
    """A DOWNLOAD job created on the emulator's side (no request in its log)."""
    return str(emu.state.create_download(cluster, emu.newest_completed_snapshot_id(cluster)).id)


@pytest.fixture
def clocked(make_emulator: Callable[..., AtlasEmulator], atlas_conn: Callable[..., None]) -> Any:
    """``clocked(auth)``: an emulator on a fake clock whose restore jobs are ready 30 s after creation."""

    def make(auth: str = "digest") -> tuple[AtlasEmulator, FakeClock]:
        clock = FakeClock()
        emu = make_emulator(clock=clock, restore_duration=30.0)
        atlas_conn(emu, auth, sharing_scope="process")
        return emu, clock

    return make


@reliability(
    "fault-survived",
    "A restore job that is not ready for the first 3 pokes of a poke-mode sensor (API-key Digest auth)",
    "The sensor kept one hook session for its whole wait: 1 challenge leg and 4 polls for the task (before: one "
    "challenge per poke), and closed it when the wait ended",
    "The link when it is ready; Atlas sees 5 requests instead of 8",
)
def test_poke_mode_pays_one_digest_challenge_for_the_whole_wait(clocked, hooks):
    emu, clock = clocked("digest")
    job_id = download_job(emu)
    sensor = ClockedSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job_id, deferrable=False,
        poke_interval=0.01, timeout=60, clock=clock, step=10.0,
    )
    job = sensor.execute(make_context())
    assert job["id"] == job_id and job["status"] == "COMPLETED"
    exchanges = emu.requests.snapshot()
    assert [x.status for x in exchanges] == [401, 200, 200, 200, 200], [(x.operation, x.status) for x in exchanges]
    assert {x.operation for x in exchanges} == {POLL}
    assert len(hooks.opened) == 1 and hooks.closed == hooks.opened
    assert sensor._hook is None


def test_service_account_pokes_share_one_session_and_token(clocked, hooks):
    emu, clock = clocked("service_account")
    job_id = download_job(emu)
    sensor = ClockedSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job_id, deferrable=False,
        poke_interval=0.01, timeout=60, clock=clock, step=10.0,
    )
    sensor.execute(make_context())
    polls = [x.status for x in emu.requests.by_operation(POLL)]
    assert polls == [200, 200, 200, 200]
    assert len(emu.requests.by_operation("oauthToken")) == 1
    assert len(hooks.opened) == 1 and hooks.closed == hooks.opened


@pytest.mark.parametrize("ending", ["failed-job", "api-error", "timeout", "deferred"])
def test_the_session_is_closed_however_the_wait_ends(make_emulator, atlas_conn, hooks, ending):
    emu = make_emulator(restore_duration=3600.0)
    atlas_conn(emu, "digest")
    if ending == "failed-job":
        emu.fail_next_restore_job("alpha")
        emu.restore_duration = 0.0
    job_id = download_job(emu)
    if ending == "api-error":
        emu.faults.add(operation=POLL, status=404, error_code="RESTORE_JOB_NOT_FOUND", nth=2)
    sensor = AtlasFlexSnapshotUrlSensor(
        task_id="wait", cluster_name="alpha", restore_job_id=job_id, deferrable=ending == "deferred",
        poke_interval=0.05, timeout=0.3,
    )
    expected: type[BaseException] = {
        "failed-job": RestoreJobFailedError,
        "api-error": AtlasNotFoundError,
        "timeout": AirflowSensorTimeout,
        "deferred": TaskDeferred,
    }[ending]
    with pytest.raises(expected):
        sensor.execute(make_context())
    assert len(hooks.opened) == 1 and hooks.closed == hooks.opened
    assert sensor._hook is None
    assert "session" not in hooks.opened[0].__dict__  # the HTTP session itself was closed and dropped
    challenges = [x for x in emu.requests if x.status == 401]
    assert len(challenges) == 1


def test_poke_called_alone_opens_and_closes_its_own_hook(emu, atlas_conn, hooks):
    atlas_conn(emu, "digest")
    sensor = AtlasFlexSnapshotUrlSensor(task_id="wait", cluster_name="alpha", restore_job_id=download_job(emu))
    assert sensor.poke(make_context()).is_done
    assert len(hooks.opened) == 1 and hooks.closed == hooks.opened


@reliability(
    "fault-survived",
    "A deferred wait with API-key Digest auth: the restore job is not ready for the trigger's first polls",
    "The trigger's hook answered one challenge for its whole wait and reused the nonce with an increasing "
    "nonce count on every later poll (before: one challenge per poll)",
    "The link when it is ready, with one 401 leg per wait instead of one per poll",
)
def test_trigger_pays_one_digest_challenge_for_its_whole_wait(make_emulator, atlas_conn):
    import asyncio
    import time

    from airflow_provider_atlasflex.testing.emulator.auth import parse_digest
    from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

    emu = make_emulator(restore_duration=0.6)
    atlas_conn(emu, "digest")
    job_id = download_job(emu)
    trigger = AtlasFlexRestoreJobTrigger(
        cluster_name="alpha", restore_job_id=job_id, group_id=None, atlas_conn_id="mongodb_atlas_default",
        poll_interval=0.2, end_time=time.time() + 30,
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    assert asyncio.run(first())["status"] == "success"
    exchanges = emu.requests.snapshot()
    assert len(exchanges) >= 4, "the job was ready too early to prove anything"
    assert [x.status for x in exchanges] == [401] + [200] * (len(exchanges) - 1)
    answers = [parse_digest(x.headers["Authorization"]) for x in exchanges if x.headers.get("Authorization")]
    assert len({a["nonce"] for a in answers}) == 1
    assert [a["nc"] for a in answers] == [f"{n:08x}" for n in range(1, len(answers) + 1)]
