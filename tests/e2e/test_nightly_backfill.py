"""A gap-free archive: after an outage, one night of the real nightly DAG fills every hole Atlas still can.

Night 1 archives ``alpha``'s snapshot of six days ago (the newest Atlas then had: backups had
stopped, so that night fails as stale). Then Atlas takes six daily snapshots, while no night runs.
Night 2 copies the newest and backfills the five missing in between, oldest first, each one
byte-identical, and its report lists them. Night 3, the same day, copies nothing: ``unchanged``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import dags_test_in_process
from tests.e2e.conftest import read_xcoms
from tests.reliability.registry import reliability

DAY = 86_400.0


def night(sandbox, emu, exports: Path, date: str):
    return dags_test_in_process(sandbox, emu, exports, date=date)


def archived(exports: Path) -> dict[str, Path]:
    return {p.name[: -len(".tgz")]: p for p in exports.rglob("*.tgz")}


@pytest.mark.e2e
@reliability(
    "freshness",
    "The archive holds a cluster's snapshot of 6 days ago; Atlas took 6 daily snapshots since while no night ran "
    "(real airflow dags test, three nights)",
    "The next night copied the newest and backfilled the 5 missing ones, oldest first, byte-identical; a third "
    "night the same day copied nothing",
    "Night 2's report: 'alpha exported' plus 5 'backfilled' rows (snapshot, finish time, bytes), summary "
    "'1 exported, 5 backfilled'; night 3: 'alpha unchanged'",
)
def test_one_night_fills_the_archive_after_an_outage(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=(), snapshot_size=100_000, restore_duration=1.0) as emu:
        emu.add_cluster("alpha", snapshots=2, newest_age=6 * DAY)
        first = emu.newest_completed_snapshot_id("alpha")
        result = night(sandbox, emu, exports, "2026-11-20")
        assert not result.succeeded  # a 6-day-old newest snapshot is stale: that night fails
        assert set(archived(exports)) == {first}

        # the outage: six daily snapshots, no night ran
        taken = [emu.add_snapshot("alpha", "COMPLETED", taken_ago=days * DAY) for days in (5, 4, 3, 2, 1, 0.1)]
        result = night(sandbox, emu, exports, "2026-11-21")
        assert result.succeeded, result.tail()
        held = archived(exports)
        assert set(held) == {first, *taken}
        for snapshot_id in taken:
            assert hashlib.sha256(held[snapshot_id].read_bytes()).hexdigest() == emu.expected_sha256(snapshot_id)

        plan = read_xcoms(sandbox, "plan_exports")[-1]
        assert [(e["snapshot_id"], e["backfill"]) for e in plan["exports"]] == [
            *((s, True) for s in taken[:5]),
            (taken[5], False),
        ]
        report = read_xcoms(sandbox, "night_report", "report")[-1]
        assert [(r["outcome"], r["snapshot_id"]) for r in report] == [
            ("exported", taken[5]),
            *(("backfilled", s) for s in taken[:5]),
        ]
        assert all(r["bytes"] == 100_000 for r in report) and "1 exported, 5 backfilled" in result.output

        # the same day again: nothing to copy, the newest is already in the archive
        before = {p: p.stat().st_mtime_ns for p in exports.rglob("*")}
        result = night(sandbox, emu, exports, "2026-11-22")
        assert result.succeeded, result.tail()
        report = read_xcoms(sandbox, "night_report", "report")[-1]
        assert [(r["cluster_name"], r["outcome"], r["snapshot_id"]) for r in report] == [
            ("alpha", "unchanged", taken[5])
        ]
        assert {p: p.stat().st_mtime_ns for p in exports.rglob("*")} == before
        assert "0 exported (0 bytes), 1 unchanged" in result.output
