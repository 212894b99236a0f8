"""The hourly protection check catches what the nightly DAG cannot report: nights that did not run.

The nightly DAG ran once: ``gamma`` was exported fresh; ``alpha``'s newest snapshot was then 40 h
old (that night failed as stale, but its copy is in the archive). Then the nightly DAG is paused:
Atlas takes a new snapshot of ``alpha`` (29 h ago, past the 26 h lag), ``beta``, a cluster that has
existed for 10 days, was never exported, and ``newbie``'s first snapshot finished 2 h ago. The real
``atlas_flex_protection_check`` DAG fails naming ``alpha`` (its new snapshot is not archived; the
newest export's is 40 h old) and ``beta`` (no export at all); ``gamma`` is protected and
``newbie`` pending its first nightly copy.
"""

from __future__ import annotations

import pytest

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import dags_test_in_process
from tests.e2e.conftest import DAG_ID, read_xcoms
from tests.reliability.registry import reliability

CHECK_DAG_ID = "atlas_flex_protection_check"
DAY = 86_400.0


def run(sandbox, dag_id, emu, exports, date):
    return dags_test_in_process(sandbox, emu, exports, date=date, dag_id=dag_id)


@pytest.mark.e2e
@reliability(
    "freshness",
    "The nightly DAG is paused after one run: Atlas keeps taking snapshots, one cluster's newest export is 40 h old, "
    "another cluster was never exported (real airflow dags test of the protection-check DAG)",
    "The hourly check listed the clusters and scanned the archive; it did not copy or change anything",
    "check_protection fails: '2 cluster(s) at risk: alpha (snapshot <id> finished 28.8 h ago and is not in the "
    "archive, nor anything newer (max_export_lag 26.0 h): its newest export (<path>) holds snapshot <old>, taken "
    "40.0 h ago); beta (... the archive holds no export of ours for it)'; a 2-hour-old first snapshot is pending",
)
def test_protection_check_catches_a_paused_nightly_dag(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=("gamma",), snapshot_size=50_000, restore_duration=1.0) as emu:
        emu.add_cluster("alpha", snapshots=2, newest_age=40 * 3600)
        old = emu.newest_completed_snapshot_id("alpha")
        nightly = run(sandbox, DAG_ID, emu, exports, "2026-11-20")
        assert not nightly.succeeded  # alpha was already stale that night
        assert (exports / "alpha" / "2026-11-20" / f"{old}.tgz").is_file()

        # the nightly DAG is paused from here on
        missed = emu.add_snapshot("alpha", "COMPLETED", taken_ago=1.2 * DAY)
        emu.add_cluster("beta", snapshots=8)
        emu.add_cluster("newbie", snapshots=1, created_ago=1.2 * DAY, newest_age=2 * 3600)
        before = sorted(p for p in exports.rglob("*"))
        check = run(sandbox, CHECK_DAG_ID, emu, exports, "2026-11-22")
        assert not check.succeeded
        assert f"2 cluster(s) at risk: alpha (snapshot {missed} finished 28.8 h ago and is not in the archive" in check.output
        assert f"holds snapshot {old}, taken 40." in check.output
        assert "the archive holds no export of ours for it)" in check.output and "beta (snapshot " in check.output
        verdict = read_xcoms(sandbox, "check_protection")
        assert verdict == {}  # it failed: no result; the log says newbie is pending
        assert "newbie (project" in check.output and "no export yet" in check.output
        assert sorted(p for p in exports.rglob("*")) == before  # a check never writes
        assert {j["deliveryType"] for c in ("alpha", "beta", "gamma") for j in emu.restore_jobs(c)} <= {"DOWNLOAD"}
        assert len(emu.restore_jobs("beta")) == 0

        # with the nightly DAG running again, the same check is green
        again = run(sandbox, DAG_ID, emu, exports, "2026-11-23")
        assert again.succeeded, again.tail()
        check = run(sandbox, CHECK_DAG_ID, emu, exports, "2026-11-23")
        assert check.succeeded, check.tail()
        verdict = read_xcoms(sandbox, "check_protection")[-1]
        assert sorted(e["cluster_name"] for e in verdict["protected"]) == ["alpha", "beta", "gamma", "newbie"]
        assert verdict["at_risk"] == [] and verdict["pending"] == []
