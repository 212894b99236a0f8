"""At DEBUG, no link query reaches a real task log: urllib3 prints every request line at that level.

One nightly run through the LocalExecutor with ``[logging] logging_level = DEBUG`` and a download cut
once (so the copy resumes and sends a second request line), scanned like the INFO runs of
``test_task_log_secrets``: every log file, the CLI and api-server output, the metadata database.
"""

from __future__ import annotations

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import CLUSTERS, RESTORE_SECONDS, assert_exported_identically, run_nightly, task_log_files
from tests.e2e.test_task_log_secrets import assert_no_secret_anywhere
from tests.reliability.registry import reliability


@reliability(
    "hostile",
    "A real nightly run with Airflow's logging_level=DEBUG (urllib3 logs each request line, path and "
    "query, at DEBUG) and one download cut that makes the copy resume",
    "Exported every cluster; the link's query was registered with Airflow's masker and redacted in the "
    "transport loggers before any handler saw it",
    "urllib3's DEBUG request lines in the task logs end '?<redacted>' (or ***); no query string, Signature= "
    "or key in any log file, the CLI or api-server output, XCom or the metadata database",
)
def test_debug_run_writes_no_link_query_to_task_logs(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=RESTORE_SECONDS) as emu:
        emu.faults.add(operation="snapshotFile", cut_after_bytes=700_000)
        result = run_nightly(
            sandbox, emu, exports, auth="digest", deferrable=False, timeout=240,
            env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"},
        )
        assert result.succeeded, result.tail()
        assert_exported_identically(emu, exports)
    copy_logs = "".join(
        p.read_text() for (task, _), paths in task_log_files(sandbox).items() if task.endswith("copy_to_storage")
        for p in paths
    )
    request_lines = [line for line in copy_logs.splitlines() if "GET /backup-download/" in line]
    assert len(request_lines) >= 3, "no urllib3 DEBUG request line in the copy logs: DEBUG was not on"
    assert all("?<redacted>" in line or "?***" in line for line in request_lines), request_lines[:3]
    assert_no_secret_anywhere(sandbox, result, emu, "digest")
