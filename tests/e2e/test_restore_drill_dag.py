"""The restore-drill example DAG, run by real ``airflow dags test`` against the emulator."""

from __future__ import annotations

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import read_xcoms

DAG_ID = "atlas_flex_restore_drill"
SCRATCH = "restore-drill-scratch"
ENV = {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False", "ATLAS_FLEX_POLL_SECONDS": "1"}


def test_restore_drill_restores_the_newest_snapshot_into_the_scratch_cluster(sandbox):
    """Deferrable: the wait runs in the trigger (inline under ``dags test``), reused from the sensor."""
    with AtlasEmulator(clusters=("alpha", "beta"), snapshot_size=200_000, restore_duration=3.0) as emu:
        emu.add_cluster(SCRATCH, snapshots=0)
        newest = emu.newest_completed_snapshot_id("alpha")
        result = sandbox.dags_test(
            DAG_ID,
            logical_date="2026-11-22",
            connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
            env={**ENV, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"},
            timeout=180,
        )
        assert result.succeeded, result.tail()
        assert "new_state=deferred" in result.output
        assert emu.restored_snapshot(SCRATCH) == newest
        restores = [j for j in emu.restore_jobs("alpha") if j["deliveryType"] == "RESTORE"]
        assert len(restores) == 1 and restores[0]["targetDeploymentItemName"] == SCRATCH
        outcome = read_xcoms(sandbox, "drill_outcome")[-1]
        assert outcome["snapshot_id"] == newest and outcome["scratch_cluster"] == SCRATCH
        assert outcome["status"] == "COMPLETED" and outcome["restore_job_id"] == restores[0]["id"]
        assert f"Restore drill passed: snapshot {newest} of alpha restored into {SCRATCH}" in result.output
        assert emu.api_key.private_key not in result.output


def test_restore_drill_conf_cannot_target_a_production_cluster(sandbox):
    """The scratch param only takes restore-drill* names: a trigger cannot overwrite 'beta'."""
    with AtlasEmulator(clusters=("alpha", "beta"), snapshot_size=200_000, restore_duration=1.0) as emu:
        result = sandbox.dags_test(
            DAG_ID,
            conf={"scratch_cluster": "beta"},
            connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
            env=ENV,
            timeout=180,
        )
        assert not result.succeeded
        assert "scratch_cluster" in result.output
        assert emu.requests.by_operation("createGroupFlexClusterBackupRestoreJob") == []
        assert emu.restored_snapshot("beta") is None
