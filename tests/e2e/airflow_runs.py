"""Helpers for the end-to-end tests that run the nightly DAG through Airflow's LocalExecutor.

``run_nightly`` is ``airflow dags test --use-executor`` (see ``AirflowSandbox.dags_test``): every
task runs in its own supervised process, talks to a real Execution API server and writes its own
log file under the sandbox's log folder; deferrable runs resume through a real ``airflow triggerer``.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, DagTestResult, emulator_connection
from airflow_provider_atlasflex.testing.demo import file_sha256
from tests.e2e.conftest import DAG_ID

CLUSTERS = ("alpha", "beta")
RUN_DATE = "2026-11-20"
MAPPED_TASKS = ("export_cluster.request_link", "export_cluster.wait_for_link", "export_cluster.copy_to_storage")
UNMAPPED_TASKS = (
    "export_selection", "destination", "discover_clusters", "plan_exports", "clusters_to_export", "night_report"
)
ALL_TASKS = (*UNMAPPED_TASKS, *MAPPED_TASKS)

# A task's supervisor reports it done about 5 s after the task process finished (its select
# timeout), and ``dags test --use-executor`` will not queue a resumed deferred task while its
# first workload is still reported running. Restore jobs that take longer than that keep the
# trigger from firing inside that window (the triggerer is not what is under test there).
RESTORE_SECONDS = 8.0


def run_nightly(
    sandbox: AirflowSandbox,
    emu: Any,
    exports: Path,
    *,
    auth: str,
    deferrable: bool,
    clusters: tuple[str, ...] = CLUSTERS,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    **connection_extra: Any,
) -> DagTestResult:
    """The nightly DAG for ``clusters`` through the LocalExecutor (and a triggerer when deferrable); ``env`` adds variables."""
    return sandbox.dags_test(
        DAG_ID,
        logical_date=RUN_DATE,
        conf={"clusters": list(clusters)},
        connections={"mongodb_atlas_default": emulator_connection(emu, auth, **connection_extra)},
        env={
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(deferrable),
            "ATLAS_FLEX_POLL_SECONDS": "1",
            # The destination is deployment configuration (a Variable), not run conf.
            "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            **(env or {}),
        },
        use_executor=True,
        triggerer=deferrable,
        timeout=timeout,
    )


_LOG_PATH = re.compile(
    r"dag_id=(?P<dag>[^/]+)/run_id=[^/]+/task_id=(?P<task>[^/]+)/(?:map_index=(?P<map>-?\d+)/)?"
    r"attempt=\d+\.log(?P<trigger>\.trigger\.\d+\.log)?$"
)


def task_log_files(sandbox: AirflowSandbox) -> dict[tuple[str, int], list[Path]]:
    """Task log files Airflow wrote, by (task_id, map_index); trigger logs count for their task."""
    found: dict[tuple[str, int], list[Path]] = defaultdict(list)
    for path in sorted(sandbox.log_folder.rglob("*")):
        match = _LOG_PATH.search(path.relative_to(sandbox.log_folder).as_posix())
        if path.is_file() and match and match["dag"] == DAG_ID:
            found[(match["task"], int(match["map"] or -1))].append(path)
    return dict(found)


def database_text(sandbox: AirflowSandbox) -> dict[str, str]:
    """Every table of the sandbox's metadata database as text, by table name."""
    tables: dict[str, str] = {}
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for name in names:
            rows = db.execute(f'SELECT * FROM "{name}"').fetchall()
            tables[name] = "\n".join(" | ".join(_text(v) for v in row) for row in rows)
    return tables


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def assert_exported_identically(emu: Any, exports: Path, clusters: tuple[str, ...] = CLUSTERS) -> None:
    """Exactly the newest snapshot of each cluster at its path (with its two sidecars), byte-identical, nothing else."""
    expected = {c: emu.newest_completed_snapshot_id(c) for c in clusters}
    found = sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file())
    exported = [f"{c}/{RUN_DATE}/{s}.tgz" for c, s in expected.items()]
    assert found == sorted(f"{name}{suffix}" for name in exported for suffix in ("", ".json", ".sha256"))
    for cluster, snapshot_id in expected.items():
        path = exports / cluster / RUN_DATE / f"{snapshot_id}.tgz"
        assert file_sha256(path) == emu.expected_sha256(snapshot_id), f"{cluster}: bytes differ from what Atlas served"


def dags_test_in_process(
    sandbox: AirflowSandbox, emu: Any, exports: Path, *, date: str, dag_id: str = DAG_ID, timeout: float = 300
) -> DagTestResult:
    """Plain ``airflow dags test`` of ``dag_id`` (poke mode, Digest) writing to ``exports`` (the Variable)."""
    return sandbox.dags_test(
        dag_id,
        logical_date=date,
        connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
        env={
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
            "ATLAS_FLEX_POLL_SECONDS": "1",
            "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
        },
        timeout=timeout,
    )
