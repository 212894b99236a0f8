"""In real Airflow, an error no retry can fix fails the task at its first try (the DAG sets retries=2)."""

from __future__ import annotations

import sqlite3

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import run_nightly, task_log_files
from tests.reliability.registry import reliability


@reliability(
    "fault-clear-failure",
    "In a real nightly run (LocalExecutor, DAG retries=2 with 5-minute delays): the cluster is deleted between "
    "discovery and the link request (Atlas answers 404 CLUSTER_NOT_FOUND)",
    "request_link failed at its first try (state failed, try 1, not up_for_retry); the run ended in seconds "
    "instead of holding the slot for the retries",
    "The task log names the cluster and project and says to check cluster_name; the night's report names it",
)
def test_unknown_cluster_fails_the_task_without_retries(sandbox, tmp_path):
    with AtlasEmulator(clusters=("alpha",), snapshot_size=100_000, restore_duration=0.0) as emu:
        # Discovery sees the cluster; from the link request on, Atlas says it no longer exists.
        emu.faults.add(
            operation="downloadGroupFlexClusterBackup", status=404, error_code="CLUSTER_NOT_FOUND", times=10
        )
        result = run_nightly(sandbox, emu, tmp_path / "exports", auth="digest", deferrable=False,
                             clusters=("alpha",), timeout=240)
        posts = [x for x in emu.requests.by_operation("downloadGroupFlexClusterBackup") if x.status != 401]
    assert not result.succeeded, result.tail()
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT state, try_number FROM task_instance WHERE task_id = 'export_cluster.request_link'"
        ).fetchall()
    assert rows == [("failed", 1)], rows
    assert [x.status for x in posts] == [404], "the task was retried"
    logs = task_log_files(sandbox)[("export_cluster.request_link", 0)]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "'alpha'" in text and "AtlasNotFoundError" in text
    assert "Check cluster_name" in text
