"""The example nightly DAG, run by real ``airflow dags test`` against the emulator.

The project holds three flex clusters, one with backup disabled: discovery finds all three, the
two that can be exported are exported byte-identically, the third is skipped, and the night's
report (XCom ``report`` of ``night_report``) says exactly that.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import DAG_ID, read_xcoms

CLUSTERS = ("alpha", "beta")
NO_BACKUP = "nobackup"
RUN_DATE = "2026-11-20"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rendered_map_indexes(sandbox: AirflowSandbox, task_id: str) -> dict[int, str]:
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT map_index, rendered_map_index FROM task_instance WHERE task_id = ?", (task_id,)
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("mode", "auth"),
    [("poke", "digest"), ("deferrable", "service_account")],
    ids=["poke-digest", "deferrable-service-account"],
)
def test_nightly_export_discovers_exports_and_reports(sandbox, tmp_path, mode, auth):
    exports = tmp_path / "exports"
    elsewhere = tmp_path / "chosen-by-conf"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=3_000_000, restore_duration=2.0) as emu:
        emu.add_cluster(NO_BACKUP, snapshots=0, backup_enabled=False)
        result = sandbox.dags_test(
            DAG_ID,
            logical_date=RUN_DATE,
            # No cluster list: every flex cluster of the project. A destination in conf is ignored.
            conf={"destination_root": elsewhere.as_uri()},
            connections={"mongodb_atlas_default": emulator_connection(emu, auth)},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(mode == "deferrable"),
                "ATLAS_FLEX_POLL_SECONDS": "1",
                "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            },
            timeout=240,
        )
        assert result.succeeded, result.tail()
        deferred = "new_state=deferred" in result.output
        assert deferred is (mode == "deferrable")
        assert not elsewhere.exists(), "run conf chose where a backup went"

        # discovery saw three clusters and kept two
        discovery = read_xcoms(sandbox, "discover_clusters")[-1]
        assert [c["cluster_name"] for c in discovery["exportable"]] == list(CLUSTERS)
        assert [(s["cluster_name"], "backup is disabled" in s["reason"]) for s in discovery["skipped"]] == [
            (NO_BACKUP, True)
        ]

        expected = {c: emu.newest_completed_snapshot_id(c) for c in CLUSTERS}
        exported = sorted(str(p.relative_to(exports)) for p in exports.rglob("*") if p.is_file())
        assert exported == sorted(
            f"{c}/{RUN_DATE}/{expected[c]}.tgz{sidecar}" for c in CLUSTERS for sidecar in ("", ".json", ".sha256")
        )
        for cluster, snapshot_id in expected.items():
            path = exports / cluster / RUN_DATE / f"{snapshot_id}.tgz"
            assert path.stat().st_size == emu.snapshot_size_of(snapshot_id)
            assert sha256_of(path) == emu.expected_sha256(snapshot_id)

        # restore-job metadata reached XCom, without the link's credential
        jobs = read_xcoms(sandbox, "export_cluster.request_link")
        ids = read_xcoms(sandbox, "export_cluster.request_link", "restore_job_id")
        copies = read_xcoms(sandbox, "export_cluster.copy_to_storage")
        assert sorted(jobs) == sorted(ids) == sorted(copies) == [0, 1]
        for index, cluster in enumerate(CLUSTERS):
            emulator_jobs = {j["id"] for j in emu.restore_jobs(cluster)}
            assert ids[index] in emulator_jobs and jobs[index]["id"] == ids[index]
            assert jobs[index]["snapshotId"] == expected[cluster] and jobs[index]["deliveryType"] == "DOWNLOAD"
            assert copies[index]["sha256"] == emu.expected_sha256(expected[cluster])
            assert copies[index]["cluster_name"] == cluster and copies[index]["restore_job_id"] == ids[index]
        # one DOWNLOAD job per exported cluster, none for the skipped one
        assert all(len(emu.restore_jobs(c)) == 1 for c in CLUSTERS) and emu.restore_jobs(NO_BACKUP) == []

        # each mapped instance is labelled with its cluster in the UI
        for task_id in ("export_cluster.request_link", "export_cluster.copy_to_storage"):
            assert rendered_map_indexes(sandbox, task_id) == {0: "alpha", 1: "beta"}

        # the night's report: 2 exported, 1 skipped, 0 failed, logged as one table
        report = read_xcoms(sandbox, "night_report", "report")[-1]
        outcomes = {r["cluster_name"]: r["outcome"] for r in report}
        assert outcomes == {"alpha": "exported", "beta": "exported", NO_BACKUP: "skipped"}
        for row in report:
            if row["outcome"] == "exported":
                sha = emu.expected_sha256(expected[row["cluster_name"]])
                assert row["sha256_prefix"] == sha[:12] and row["bytes"] == emu.snapshot_size_of(expected[row["cluster_name"]])
        assert "2 exported" in result.output and "1 skipped, 0 failed" in result.output

        secrets = [emu.api_key.private_key, emu.service_account.client_secret, "Signature="]
        assert not [s for s in secrets if s in result.output]


def test_nightly_report_fails_the_run_when_a_cluster_fails(sandbox, tmp_path):
    """One export fails (its restore job FAILED): the other is exported, the report names the failure."""
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=1_000_000, restore_duration=1.0) as emu:
        emu.fail_next_restore_job("beta", count=10)
        result = sandbox.dags_test(
            DAG_ID,
            logical_date=RUN_DATE,
            conf={"clusters": list(CLUSTERS)},
            connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
                "ATLAS_FLEX_POLL_SECONDS": "1",
                "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            },
            timeout=240,
        )
        assert not result.succeeded
        report = read_xcoms(sandbox, "night_report", "report")[-1]
        assert {r["cluster_name"]: r["outcome"] for r in report} == {"alpha": "exported", "beta": "failed"}
        # the reason names the task that failed (Airflow's task states of the run)
        assert "export_cluster.wait_for_link failed" in next(r["reason"] for r in report if r["cluster_name"] == "beta")
        assert "1 cluster(s) failed tonight: beta" in result.output
        assert (exports / "alpha" / RUN_DATE / f"{emu.newest_completed_snapshot_id('alpha')}.tgz").is_file()
