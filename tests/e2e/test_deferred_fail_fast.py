"""In real Airflow, an error no retry can fix found by the triggerer fails the deferred sensor at try 1."""

from __future__ import annotations

import sqlite3

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import run_nightly, task_log_files
from tests.reliability.registry import reliability

POLL = "getGroupFlexClusterBackupRestoreJob"


@reliability(
    "fault-clear-failure",
    "In a real deferrable nightly run (LocalExecutor and a triggerer, DAG retries=2 with 5-minute delays): the "
    "restore job disappears while the triggerer waits for it (Atlas answers 404 on every poll after the first)",
    "wait_for_link failed at its first try (state failed, try 1, not up_for_retry): the trigger's error event "
    "named AtlasNotFoundError and the resumed sensor re-raised it",
    "The task log names the restore job and cluster and says to check restore_job_id or clear the task that "
    "requested it; no 5-minute retries hold the run",
)
def test_unfixable_error_in_the_triggerer_fails_the_sensor_without_retries(sandbox, tmp_path):
    with AtlasEmulator(clusters=("alpha",), snapshot_size=100_000, restore_duration=60.0) as emu:
        # The sensor's own first look (in the worker) sees the job; every poll after it is a 404.
        emu.faults.add(operation=POLL, status=404, error_code="RESTORE_JOB_NOT_FOUND", nth=2, times=None)
        result = run_nightly(sandbox, emu, tmp_path / "exports", auth="digest", deferrable=True,
                             clusters=("alpha",), timeout=300)
        polls = [x.status for x in emu.requests.by_operation(POLL) if x.status != 401]
    assert not result.succeeded, result.tail()
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT state, try_number FROM task_instance WHERE task_id = 'export_cluster.wait_for_link'"
        ).fetchall()
    assert rows == [("failed", 1)], rows
    assert polls[0] == 200 and polls[1:] == [404], f"the 404 was not met once, by the trigger: {polls}"
    logs = task_log_files(sandbox)[("export_cluster.wait_for_link", 0)]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "AtlasNotFoundError" in text and "'alpha'" in text
    assert "Check restore_job_id" in text and "kept 8 days" not in text  # a job's fix, not a snapshot's
