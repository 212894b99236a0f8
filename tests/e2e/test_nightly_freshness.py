"""Backups that stop must not leave the night green: the real nightly DAG judges each cluster's recovery point.

One project, four clusters: ``alpha`` is fresh; ``stopped``'s newest COMPLETED snapshot is 6.9 days
old and the two taken since FAILED; ``aged`` is a month old and has no snapshot left; ``newbie`` was
created two hours ago. Run through ``airflow dags test``, the night fails naming the two stale
clusters with their snapshot and age; the fresh one is exported, the new one skipped.
"""

from __future__ import annotations

import pytest

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import dags_test_in_process
from tests.e2e.conftest import read_xcoms
from tests.reliability.registry import reliability

RUN_DATE = "2026-11-20"
DAY = 86_400.0


@pytest.mark.e2e
@reliability(
    "freshness",
    "In one project: a cluster whose newest COMPLETED snapshot is 6.9 days old with two newer FAILED ones, a "
    "month-old cluster with no snapshot left, a cluster created 2 h ago, and a healthy one (real airflow dags test)",
    "The healthy cluster was exported, the stale one's old snapshot copied too, the new one skipped",
    "The run fails; night_report's error and table: '2 cluster(s) stale tonight: stopped (2 newer snapshot(s) "
    "FAILED ... is 6.9 days old); aged (no COMPLETED backup snapshot although the cluster was created 30.0 days "
    "ago ...)'",
)
def test_nightly_run_fails_naming_stale_clusters(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=("alpha",), snapshot_size=200_000, restore_duration=1.0) as emu:
        emu.add_cluster("stopped", snapshots=2, newest_age=6.9 * DAY)
        emu.add_snapshot("stopped", "FAILED", taken_ago=2 * DAY)
        emu.add_snapshot("stopped", "FAILED", taken_ago=1 * DAY)
        emu.add_cluster("aged", snapshots=0, created_ago=30 * DAY)
        emu.add_cluster("newbie", snapshots=0)
        result = dags_test_in_process(sandbox, emu, exports, date=RUN_DATE)
        assert not result.succeeded, "a night with stale clusters must fail"
        report = read_xcoms(sandbox, "night_report", "report")[-1]
        rows = {r["cluster_name"]: r for r in report}
        assert {name: r["outcome"] for name, r in rows.items()} == {
            "alpha": "exported",
            "stopped": "stale",
            "aged": "stale",
            "newbie": "skipped",
        }
        old = emu.newest_completed_snapshot_id("stopped")
        assert rows["stopped"]["snapshot_id"] == old and rows["stopped"]["age_hours"] > 6.8 * 24
        assert rows["alpha"]["snapshot_id"] == emu.newest_completed_snapshot_id("alpha")
        assert rows["alpha"]["age_hours"] < 36 and rows["alpha"]["finished_at"].endswith("Z")
        assert "2 cluster(s) stale tonight: stopped (2 newer snapshot(s) FAILED" in result.output
        assert "6.9 days old" in result.output and "created 30.0 days ago" in result.output
        assert (exports / "alpha" / RUN_DATE / f"{emu.newest_completed_snapshot_id('alpha')}.tgz").is_file()
        assert emu.restore_jobs("aged") == [] and emu.restore_jobs("newbie") == []
