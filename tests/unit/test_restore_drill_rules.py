"""The restore operator's drill rules against the emulator: whose restore job may be reused, how old the
snapshot may be, which clusters may be overwritten (real HTTP, no Airflow DB)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError, StaleSnapshotError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.airflow_compat import TaskDeferred
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

SCRATCH = "restore-drill-scratch"
CREATE = "createGroupFlexClusterBackupRestoreJob"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    TOKEN_CACHE.clear()
    with AtlasEmulator(clusters=("alpha", "beta"), snapshot_size=20_000, restore_duration=0.2, seed="drills") as e:
        e.add_cluster(SCRATCH, snapshots=0)
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(e, "digest")))
        yield e
    TOKEN_CACHE.clear()


def new_run() -> SimpleNamespace:
    """A DAG run that starts now. Atlas dates have whole seconds: wait past the second of earlier jobs."""
    time.sleep(1.1)
    now = datetime.now(timezone.utc)
    return SimpleNamespace(start_date=now, run_after=now)


def attempt(run: Any, **kwargs: Any) -> dict[str, Any]:
    """One try of the restore task in DAG run ``run``."""
    context = make_context()
    context["dag_run"] = run
    arguments = {"cluster_name": "alpha", "target_cluster_name": SCRATCH, "deferrable": False, "poll_interval": 0.05}
    return AtlasFlexRestoreSnapshotOperator(task_id="restore", **{**arguments, **kwargs}).execute(context)


def restores(emu: AtlasEmulator, target: str = SCRATCH) -> list[dict[str, Any]]:
    return [j for j in emu.restore_jobs("alpha") if j["deliveryType"] == "RESTORE" and j["targetDeploymentItemName"] == target]


# ---- whose job is reused ------------------------------------------------------------------------


@reliability(
    "freshness",
    "A restore drill runs again while Atlas still lists the previous run's COMPLETED restore of the same "
    "snapshot into the same scratch cluster",
    "The new DAG run starts its own restore job; the earlier run's job is not taken for this run's",
    "Each run's result is its own job; Atlas shows one restore per run",
)
def test_a_new_dag_run_restores_anew(emu):
    first = attempt(new_run())
    second = attempt(new_run())
    assert first["status"] == second["status"] == "COMPLETED"
    assert second["id"] != first["id"] and second["snapshotId"] == first["snapshotId"]
    assert len(restores(emu)) == 2


@reliability(
    "fault-survived",
    "The restore task's worker dies right after Atlas accepted the restore request (before anything was recorded); "
    "last week's COMPLETED restore of the same snapshot is also listed",
    "The retry in the same DAG run finds the job Atlas scheduled since the run started and waits for it; no "
    "second restore, and last week's job is not taken for it",
    "The drill passes on the job its first try started; one restore job for the run",
)
def test_a_retry_after_dying_right_after_the_post_waits_for_that_job(emu, monkeypatch):
    last_week = attempt(new_run())
    run = new_run()
    real_request = AtlasFlexHook.request_restore

    def dies_after_post(self: AtlasFlexHook, *args: Any, **kwargs: Any) -> dict[str, Any]:
        real_request(self, *args, **kwargs)
        raise SystemExit("worker killed right after Atlas accepted the POST")

    monkeypatch.setattr(AtlasFlexHook, "request_restore", dies_after_post)
    with pytest.raises(SystemExit):
        attempt(run)
    monkeypatch.setattr(AtlasFlexHook, "request_restore", real_request)
    [started] = [j for j in restores(emu) if j["id"] != last_week["id"]]
    retried = attempt(run)
    assert retried["id"] == started["id"] and retried["status"] == "COMPLETED"
    assert len(restores(emu)) == 2  # last week's and this run's, nothing more


@reliability(
    "fault-survived",
    "The restore request gets a 500 (Atlas may or may not have created the job) while an older COMPLETED restore "
    "of the same snapshot into the same target is listed",
    "Before sending the POST again the hook looks only for a job that was not there before the POST: it returns "
    "the new job if Atlas made one, else sends the POST again; the old job is never returned",
    "Exactly one new restore job, never none (the old one passed off as new) and never two",
)
@pytest.mark.parametrize("created", [False, True], ids=["not-created", "created"])
def test_reconciling_a_lost_answer_never_returns_an_older_job(emu, created):
    old = attempt(new_run())
    emu.faults.add(operation=CREATE, status=500, after_effect=created)
    hook = AtlasFlexHook()
    try:
        job = hook.request_restore("alpha", old["snapshotId"], SCRATCH)
    finally:
        hook.close()
    assert job["id"] != old["id"] and job["snapshotId"] == old["snapshotId"]
    assert len(restores(emu)) == 2
    answered = [x.status for x in emu.requests.by_operation(CREATE) if x.status != 401]  # 401: Digest's first leg
    assert answered == ([200, 500] if created else [200, 500, 200])


def test_a_foreign_restore_still_running_into_the_target_is_not_raced(emu):
    emu.restore_duration = 30.0
    with pytest.raises(TaskDeferred):
        attempt(new_run(), deferrable=True)
    with pytest.raises(AtlasFlexError, match=f"is still restoring into '{SCRATCH}'; it was not started by this DAG run"):
        attempt(new_run())
    assert len(restores(emu)) == 1


def test_the_run_start_is_the_later_of_start_date_and_run_after_never_after_this_try():
    op = AtlasFlexRestoreSnapshotOperator(task_id="restore", cluster_name="alpha", target_cluster_name=SCRATCH)
    now = datetime.now(timezone.utc)
    context = make_context()
    # `airflow dags test <past date>` sets the run's start_date to that date; run_after is the real start.
    context["dag_run"] = SimpleNamespace(start_date=now - timedelta(days=14), run_after=now)
    assert op._run_started(context) == now
    context["dag_run"] = SimpleNamespace(start_date=now + timedelta(days=1), run_after=now)
    context["ti"].start_date = now + timedelta(seconds=5)
    assert op._run_started(context) == now + timedelta(seconds=5)


# ---- how old the snapshot may be ----------------------------------------------------------------


@reliability(
    "freshness",
    "The restore drill's newest snapshot (or the snapshot_id it was given) finished longer ago than "
    "max_snapshot_age (default 36 hours)",
    "The restore task fails before any restore starts (no task retries: a missed daily snapshot does not "
    "appear within minutes)",
    "An error naming the snapshot, its finishTime and its age in hours, and how to proceed (max_snapshot_age=None)",
)
def test_a_snapshot_older_than_max_snapshot_age_fails_the_drill(emu):
    newest = emu.newest_completed_snapshot_id("alpha")
    with pytest.raises(StaleSnapshotError, match=rf"Snapshot {newest} of 'alpha' finished at 20\S+Z, \d+\.\d hours ago"):
        attempt(new_run(), max_snapshot_age=timedelta(minutes=30))
    oldest = emu.snapshot_ids("alpha")[-1]
    with pytest.raises(StaleSnapshotError, match=f"Snapshot {oldest} .* older than max_snapshot_age \\(36 hours\\)"):
        attempt(new_run(), snapshot_id=oldest)
    assert emu.requests.by_operation(CREATE) == []
    job = attempt(new_run(), snapshot_id=oldest, max_snapshot_age=None)  # chosen on purpose
    assert job["snapshotId"] == oldest and job["status"] == "COMPLETED"


def test_a_snapshot_without_a_finish_time_fails_the_age_check(emu):
    running = emu.add_snapshot("alpha", status="RUNNING")
    with pytest.raises(StaleSnapshotError, match=f"Snapshot {running} of 'alpha' has no readable finishTime"):
        attempt(new_run(), snapshot_id=running)
    assert emu.requests.by_operation(CREATE) == []


# ---- which clusters may be overwritten ----------------------------------------------------------


@reliability(
    "hostile",
    "The restore task is pointed at a production cluster ('beta') as its target, e.g. through a template or a "
    "copied DAG",
    "Refused before any request: the target must match target_pattern (default restore-drill*, not templated) "
    "unless the task sets allow_any_target=True; the source itself also needs allow_restore_over_source=True",
    "An error saying which pattern the name missed and the three ways to fix it; nothing restored",
)
@pytest.mark.parametrize("target", ["beta", "prod-restore-drill", "Restore-Drill-x"])
def test_a_target_outside_target_pattern_is_refused_before_any_request(emu, target):
    with pytest.raises(AtlasFlexConfigError, match=f"'{target}': its name does not match target_pattern 'restore-drill\\*'"):
        attempt(new_run(), target_cluster_name=target)
    assert len(emu.requests) == 0


def test_target_pattern_and_allow_any_target(emu):
    emu.add_cluster("scratch-1", snapshots=0)
    assert attempt(new_run(), target_cluster_name="scratch-1", target_pattern="scratch-*")["status"] == "COMPLETED"
    assert attempt(new_run(), target_cluster_name="beta", allow_any_target=True)["status"] == "COMPLETED"
    with pytest.raises(AtlasFlexConfigError, match="Refusing to restore cluster 'alpha' over itself"):
        attempt(new_run(), target_cluster_name="alpha", allow_any_target=True)
    emu.clear_requests()
    for bad, message in [
        ({"target_pattern": ""}, "target_pattern must be a non-empty glob"),
        ({"target_pattern": None}, "target_pattern must be a non-empty glob"),
        ({"allow_any_target": "True"}, "allow_any_target must be True or False"),
        ({"max_snapshot_age": -1}, "max_snapshot_age must be zero or more"),
    ]:
        with pytest.raises(AtlasFlexConfigError, match=message):
            attempt(None, **bad)
    assert len(emu.requests) == 0


def test_a_retry_after_the_snapshot_crossed_max_snapshot_age_waits_for_its_restore(emu):
    """The age is judged when the run starts its restore; the retry of that run is not failed by the clock."""
    run = new_run()
    first = attempt(run, max_snapshot_age=timedelta(days=30))
    again = attempt(run, max_snapshot_age=timedelta(minutes=1))  # the snapshot is older than this by now
    assert again["id"] == first["id"] and len(restores(emu)) == 1
    with pytest.raises(StaleSnapshotError):  # a new run judges it again
        attempt(new_run(), max_snapshot_age=timedelta(minutes=1))
