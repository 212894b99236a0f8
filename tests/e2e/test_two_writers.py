"""Two mapped copy tasks write the same ``dst`` at the same moment, in real Airflow (issue 7, item 1).

A small DAG written for this test (the example DAG is not changed): one link request, then the
transfer operator mapped over the same ``dst`` twice, run through the LocalExecutor so each mapped
task is its own supervised process. The emulator holds both file requests open so the copies
overlap: one commits, the other finds the identical export and succeeds without replacing it.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import read_xcoms, sandbox_with_dag
from tests.reliability.registry import reliability

DAG_ID = "atlas_flex_two_writers"
DAG_FILE = textwrap.dedent(
    """
    import os
    from datetime import datetime, timezone

    from airflow.sdk import DAG

    from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

    DST = os.environ.get("TWO_WRITERS_DST", "file:///nonexistent/{snapshot_id}.tgz")

    with DAG(dag_id="atlas_flex_two_writers", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
        link = AtlasFlexSnapshotDownloadOperator(task_id="request_link", cluster_name="alpha")
        AtlasFlexSnapshotToStorageOperator.partial(
            task_id="copy_to_storage", cluster_name="alpha", restore_job_id=link.output["restore_job_id"]
        ).expand(dst=[DST, DST])
    """
)


@reliability(
    "hostile",
    "In real Airflow (LocalExecutor): two mapped copy tasks of one snapshot to the same dst run at once "
    "(duplicate mapped items), overwrite=False",
    "Each task process wrote its own temporary file; one committed with a no-clobber link, the other found "
    "the identical export and did not replace it",
    "The run succeeds; one XCom result says already_present=True; one byte-identical export with its "
    "sidecars, no temporary file",
)
def test_two_mapped_tasks_write_one_dst(migrated_home: Path, tmp_path: Path) -> None:
    sandbox = sandbox_with_dag(migrated_home, tmp_path, "two_writers.py", DAG_FILE)
    exports = tmp_path / "exports"

    with AtlasEmulator(clusters=("alpha",), snapshot_size=2_000_000, restore_duration=0.0) as emu:
        # Hold both file requests open, the second one longer, so the two copies overlap.
        emu.faults.add(operation="snapshotFile", delay=4.0, nth=1)
        emu.faults.add(operation="snapshotFile", delay=6.0, nth=2)
        result = sandbox.dags_test(
            DAG_ID,
            logical_date="2026-11-20",
            connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
            env={"TWO_WRITERS_DST": f"{exports.as_uri()}/{{snapshot_id}}.tgz"},
            use_executor=True,
            timeout=240,
        )
        (tmp_path / "dags-test.out").write_text(result.output)
        assert result.succeeded, result.tail()
        snapshot_id = emu.newest_completed_snapshot_id("alpha")
        expected = emu.expected_sha256(snapshot_id)
        first, second = emu.requests.by_operation("snapshotFile")[:2]
        assert second.started_at < first.started_at + first.duration, "the two copies did not overlap"

    target = exports / f"{snapshot_id}.tgz"
    found = sorted(p.name for p in exports.iterdir())
    assert found == [target.name, f"{target.name}.json", f"{target.name}.sha256"], found
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    results = read_xcoms(sandbox, "copy_to_storage")
    assert sorted(results) == [0, 1]
    assert {r["sha256"] for r in results.values()} == {expected}
    assert sorted(r["already_present"] for r in results.values()) == [False, True]
