"""The restore-drill example DAG, run by real ``airflow dags test`` against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, DagTestResult, emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import read_xcoms
from tests.reliability.registry import reliability

DAG_ID = "atlas_flex_restore_drill"
SCRATCH = "restore-drill-scratch"
ENV = {
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
    "ATLAS_FLEX_POLL_SECONDS": "1",
    # What is drilled is deployment configuration (a Variable), not run conf.
    "AIRFLOW_VAR_ATLASFLEX_DRILL_SOURCE_CLUSTERS": '["alpha"]',
}
CREATE = "createGroupFlexClusterBackupRestoreJob"


@contextmanager
def drill_emulator(**kwargs: Any) -> Iterator[AtlasEmulator]:
    """The emulator with clusters alpha and beta and the scratch cluster."""
    with AtlasEmulator(clusters=("alpha", "beta"), **{"snapshot_size": 100_000, "restore_duration": 1.0, **kwargs}) as emu:
        emu.add_cluster(SCRATCH, snapshots=0)
        yield emu


def drill(sandbox: AirflowSandbox, emu: AtlasEmulator, **kwargs: Any) -> DagTestResult:
    env = {**ENV, **kwargs.pop("env", {})}
    connections = {"mongodb_atlas_default": emulator_connection(emu, "digest")}
    return sandbox.dags_test(DAG_ID, connections=connections, env=env, timeout=180, **kwargs)


def restores_into(emu: AtlasEmulator, source: str, target: str) -> list[dict[str, Any]]:
    return [j for j in emu.restore_jobs(source) if j["deliveryType"] == "RESTORE" and j["targetDeploymentItemName"] == target]


def test_restore_drill_restores_the_newest_snapshot_into_the_scratch_cluster(sandbox):
    """Deferrable: the wait runs in the trigger (inline under ``dags test``), reused from the sensor."""
    with drill_emulator(snapshot_size=200_000, restore_duration=3.0) as emu:
        newest = emu.newest_completed_snapshot_id("alpha")
        result = drill(
            sandbox, emu, logical_date="2026-11-22", env={"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
        )
        assert result.succeeded, result.tail()
        assert "new_state=deferred" in result.output
        assert emu.restored_snapshot(SCRATCH) == newest
        restores = [j for j in emu.restore_jobs("alpha") if j["deliveryType"] == "RESTORE"]
        assert len(restores) == 1 and restores[0]["targetDeploymentItemName"] == SCRATCH
        [outcome] = read_xcoms(sandbox, "drill_outcome")[-1]
        assert outcome["snapshot_id"] == newest and outcome["scratch_cluster"] == SCRATCH
        assert outcome["status"] == "COMPLETED" and outcome["restore_job_id"] == restores[0]["id"]
        assert f"Restore drill passed: snapshot {newest} of alpha (taken " in result.output
        assert emu.api_key.private_key not in result.output


@reliability(
    "freshness",
    "The restore drill runs again a week later: last week's COMPLETED restore of the same snapshot into the same "
    "scratch cluster is still listed by Atlas",
    "Each DAG run starts its own RESTORE job; a job is reused only when Atlas scheduled it since this run started "
    "(an earlier try of the same run), never an earlier run's",
    "Two drill runs, two restore jobs in Atlas; each run's outcome names its own job",
)
def test_two_drill_runs_each_start_their_own_restore(sandbox):
    with drill_emulator() as emu:
        newest = emu.newest_completed_snapshot_id("alpha")
        first = drill(sandbox, emu, logical_date="2026-11-22")
        assert first.succeeded, first.tail()
        [job_one] = restores_into(emu, "alpha", SCRATCH)
        assert job_one["status"] == "COMPLETED" and job_one["snapshotId"] == newest
        second = drill(sandbox, emu, logical_date="2026-11-29")
        assert second.succeeded, second.tail()
        jobs = restores_into(emu, "alpha", SCRATCH)
        assert len(jobs) == 2 and len(emu.requests.by_operation(CREATE)) >= 2
        job_two = next(j for j in jobs if j["id"] != job_one["id"])
        assert job_two["status"] == "COMPLETED" and job_two["snapshotId"] == newest
        [outcome] = read_xcoms(sandbox, "drill_outcome")[-1]
        assert outcome["restore_job_id"] == job_two["id"]
        assert "was started by this DAG run" not in second.output


@reliability(
    "freshness",
    "Atlas missed its daily flex snapshots: the newest COMPLETED snapshot finished two days before the drill",
    "The drill fails before any restore starts: the snapshot is older than max_snapshot_age (36 hours)",
    "A failed drill naming the snapshot, its finish time and its age, and how to proceed; no restore job",
)
def test_restore_drill_fails_on_a_stale_snapshot(sandbox):
    with drill_emulator() as emu:
        for snapshot_id in emu.snapshot_ids("alpha")[:2]:  # today's and yesterday's snapshots never happened
            emu.retire_snapshot(snapshot_id)
        stale = emu.newest_completed_snapshot_id("alpha")
        finished = emu.state.snapshot("alpha", stale).finished
        assert finished is not None
        finish_time = datetime.fromtimestamp(int(finished), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = drill(sandbox, emu)
        assert not result.succeeded
        assert re.search(
            rf"Snapshot {stale} of 'alpha' finished at {finish_time}, (\d+)\.\d hours ago: older than "
            r"max_snapshot_age \(36 hours\)",
            result.output,
        ), result.tail()
        assert emu.requests.by_operation(CREATE) == []
        assert emu.restored_snapshot(SCRATCH) is None


@reliability(
    "hostile",
    "A user allowed to trigger the restore drill passes source_cluster / scratch_cluster in run conf, to copy a "
    "production cluster's data into a cluster they read, or to overwrite a production cluster",
    "The DAG has no params: the clusters drilled and the scratch target come only from the Variables "
    "atlasflex_drill_source_clusters / atlasflex_drill_scratch_cluster; conf is ignored",
    "The drill restores the configured cluster into the configured scratch cluster; 'beta' is neither read nor written",
)
def test_restore_drill_conf_cannot_pick_the_source_or_the_target(sandbox):
    with drill_emulator() as emu:
        emu.add_cluster("restore-drill-other", snapshots=0)  # a scratch name the old param would have taken
        result = drill(sandbox, emu, conf={"source_cluster": "beta", "scratch_cluster": "restore-drill-other"})
        assert result.succeeded, result.tail()
        assert emu.restored_snapshot(SCRATCH) == emu.newest_completed_snapshot_id("alpha")
        assert emu.restored_snapshot("restore-drill-other") is None
        assert emu.restore_jobs("beta") == [] and emu.restored_snapshot("beta") is None
        assert all(call.path_params.get("name") != "beta" for call in emu.requests)
