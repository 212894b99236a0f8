"""Freshness: is every cluster protected right now? Stale, aged-out and new clusters, judged for real.

Discovery runs against the emulator (real HTTP); the report is built from what discovery returned.
The real nightly DAG runs of the same situations are in tests/e2e/test_nightly_freshness.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError
from airflow_provider_atlasflex.freshness import describe_age, judge_cluster
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from airflow_provider_atlasflex.operators.night_report import (
    AtlasFlexNightReportOperator,
    build_night_report,
    render_table,
)
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.reliability.registry import reliability
from tests.unit.fake_context import PullingTI, make_context

DAY = 86_400.0
NOW = datetime(2026, 12, 6, 3, 30, tzinfo=timezone.utc)
RPO = timedelta(hours=36)
GRACE = timedelta(hours=26)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    TOKEN_CACHE.clear()
    with AtlasEmulator(clusters=("fresh",), snapshot_size=20_000, restore_duration=0.0, seed="freshness") as e:
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(e, "digest")))
        yield e
    TOKEN_CACHE.clear()


def discover(**kwargs: Any) -> dict[str, Any]:
    return AtlasFlexClusterDiscoveryOperator(task_id="discover", **kwargs).execute(make_context())


def stopped_backups(emu: AtlasEmulator, name: str) -> None:
    """Atlas' last good snapshot is 6.9 days old and the two taken since FAILED."""
    emu.add_cluster(name, snapshots=2, newest_age=6.9 * DAY)
    emu.add_snapshot(name, "FAILED", taken_ago=2 * DAY)
    emu.add_snapshot(name, "FAILED", taken_ago=1 * DAY)


def snap(status: str, hours_ago: float, sid: str = "a" * 24) -> dict[str, Any]:
    when = (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": sid, "status": status, "scheduledTime": when, "finishTime": when}


# ---- the verdict, as a pure function --------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshots", "created_hours_ago", "verdict", "words"),
    [
        ([snap("COMPLETED", 20)], 400, "fresh", None),
        ([snap("COMPLETED", 40)], 400, "stale", "40.0 h old"),
        ([snap("FAILED", 10, "b" * 24), snap("COMPLETED", 30)], 400, "stale", "1 newer snapshot(s) FAILED"),
        ([snap("FAILED", 40, "b" * 24), snap("COMPLETED", 30)], 400, "fresh", None),  # an older failure is history
        ([], 5, "new", "created 5.0 h ago"),
        ([], 27, "stale", "no COMPLETED backup snapshot although the cluster was created 27.0 h ago"),
        ([snap("FAILED", 3)], 200, "stale", "1 snapshot(s) FAILED"),
        ([snap("COMPLETED", -5)], 400, "untrusted", "in the future"),
        ([{"id": "a" * 24, "status": "COMPLETED"}], 400, "stale", "no finish time"),
    ],
)
def test_judge_cluster(snapshots, created_hours_ago, verdict, words):
    created = (NOW - timedelta(hours=created_hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = judge_cluster({"createDate": created}, snapshots, now=NOW, max_age=RPO, new_cluster_grace=GRACE)
    assert found.verdict == verdict
    assert (found.reason is None) if words is None else (words in found.reason)


def test_cluster_without_create_date_and_snapshot_is_stale_not_new():
    found = judge_cluster({}, [], now=NOW, max_age=RPO, new_cluster_grace=GRACE)
    assert found.verdict == "stale" and "has no createDate" in found.reason


def test_age_reads_in_hours_then_days():
    assert describe_age(timedelta(hours=20.5)) == "20.5 h" and describe_age(timedelta(days=6.9)) == "6.9 days"


# ---- discovery against the emulator ---------------------------------------------------------


@reliability(
    "freshness",
    "Atlas' newest COMPLETED snapshot of a cluster is 6.9 days old and the two snapshots taken since FAILED",
    "Discovery marked the cluster stale (its old snapshot is still copied); the report's row is stale",
    "The night fails: '1 cluster(s) stale tonight: stopped (2 newer snapshot(s) FAILED ...; the newest "
    "COMPLETED one, <id>, is 6.9 days old)'; the row shows the snapshot id, finish time and age",
)
def test_stopped_backups_are_stale_and_fail_the_night(emu):
    stopped_backups(emu, "stopped")
    found = discover()
    assert [c["cluster_name"] for c in found["exportable"]] == ["fresh", "stopped"]
    (stale,) = found["stale"]
    old = emu.newest_completed_snapshot_id("stopped")
    assert stale["cluster_name"] == "stopped" and stale["snapshot_id"] == old
    assert "2 newer snapshot(s) FAILED" in stale["reason"] and "6.9 days old" in stale["reason"]
    assert 6.8 * 24 < stale["age_hours"] < 7 * 24
    exports = [{"sha256": "a" * 64, "bytes": 10, "snapshot_id": p["snapshot_id"]} for p in found["recovery_points"]]
    rows = build_night_report(found, exports)
    assert {r["cluster_name"]: r["outcome"] for r in rows} == {"fresh": "exported", "stopped": "stale"}
    row = next(r for r in rows if r["cluster_name"] == "stopped")
    assert row["snapshot_id"] == old and row["finished_at"] == stale["finished_at"] and row["age_hours"] > 163
    assert "6.9 days old" in render_table(rows)


@reliability(
    "freshness",
    "Every COMPLETED snapshot of a 30-day-old cluster has aged out (Atlas lists none)",
    "Discovery marked it stale (not skipped) and exported nothing for it",
    "The night fails: '1 cluster(s) stale tonight: aged (no COMPLETED backup snapshot although the cluster was "
    "created 30.0 days ago: every snapshot has aged out or failed)'",
)
def test_aged_out_cluster_is_stale_not_skipped(emu):
    emu.add_cluster("aged", snapshots=0, created_ago=30 * DAY)
    found = discover()
    assert [c["cluster_name"] for c in found["exportable"]] == ["fresh"] and found["skipped"] == []
    (stale,) = found["stale"]
    assert stale["cluster_name"] == "aged" and stale["snapshot_id"] is None
    assert "created 30.0 days ago" in stale["reason"]
    rows = build_night_report(found, [{"sha256": "a" * 64, "bytes": 10, "snapshot_id": "x"}])
    assert {r["cluster_name"]: r["outcome"] for r in rows} == {"fresh": "exported", "aged": "stale"}


@reliability(
    "freshness",
    "A cluster created 2 hours ago has no snapshot yet",
    "Discovery skipped it ('no COMPLETED backup snapshot yet ... about 24 h after creation'); not stale",
    "A skipped row with that reason; the night stays green",
)
def test_new_cluster_is_skipped(emu):
    emu.add_cluster("newbie", snapshots=0)
    found = discover()
    assert found["stale"] == []
    assert [(s["cluster_name"], "no COMPLETED backup snapshot yet" in s["reason"]) for s in found["skipped"]] == [
        ("newbie", True)
    ]


@reliability(
    "freshness",
    "Atlas dates a cluster's newest COMPLETED snapshot years in the future",
    "Discovery recorded the cluster as failed (its age cannot be judged) and exported the others",
    "A failed row: 'Atlas gave a bad answer about its snapshots: Atlas dates snapshot <id> at 2099-..., in the "
    "future'",
)
def test_snapshot_from_the_future_is_failed(emu):
    emu.add_cluster("liar", snapshots=1)
    emu.add_snapshot("liar", "COMPLETED", taken_ago=-50 * 365 * DAY)
    found = discover()
    assert [c["cluster_name"] for c in found["exportable"]] == ["fresh"]
    (failed,) = found["failed"]
    assert failed["cluster_name"] == "liar" and "in the future" in failed["reason"]


def test_max_snapshot_age_is_settable_and_checked_before_any_request(emu):
    emu.add_cluster("daily", snapshots=3, newest_age=40 * 3600)  # "fresh" is at most 25 h old
    assert [s["cluster_name"] for s in discover()["stale"]] == ["daily"]  # the default: 36 h
    assert discover(max_snapshot_age=timedelta(hours=48))["stale"] == []
    assert discover(max_snapshot_age=48 * 3600)["stale"] == []
    emu.clear_requests()
    with pytest.raises(AtlasFlexConfigError, match="max_snapshot_age must be longer than zero"):
        discover(max_snapshot_age=timedelta(0))
    with pytest.raises(AtlasFlexConfigError, match="new_cluster_grace must be zero or more"):
        discover(new_cluster_grace=-1)
    assert list(emu.requests) == []


# ---- the report ------------------------------------------------------------------------------

GROUP = "5f1b2c3d4e5f60718293a4b5"


def points(*entries: tuple[str, str, float]) -> dict[str, Any]:
    """A discovery result whose exportable clusters' snapshots finished ``hours`` before NOW."""
    made = [
        {
            "cluster_name": name,
            "group_id": GROUP,
            "verdict": "fresh",
            "snapshot_id": sid,
            "finished_at": (NOW - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "age_hours": hours,
        }
        for name, sid, hours in entries
    ]
    return {
        "exportable": [{"cluster_name": p["cluster_name"], "group_id": GROUP} for p in made],
        "recovery_points": made,
    }


def test_report_says_unchanged_when_the_archive_already_held_the_snapshot():
    discovery = points(("alpha", "1" * 24, 10), ("beta", "2" * 24, 10))
    exports = [
        {"sha256": "a" * 64, "bytes": 5, "snapshot_id": "1" * 24, "already_present": True},
        {"sha256": "b" * 64, "bytes": 7, "snapshot_id": "2" * 24, "already_present": False},
    ]
    rows = build_night_report(discovery, exports, now=NOW, max_snapshot_age=RPO)
    assert [r["outcome"] for r in rows] == ["unchanged", "exported"]
    assert render_table(rows).splitlines()[-1] == "1 exported (7 bytes), 1 unchanged, 0 stale, 0 skipped, 0 failed"


def test_report_judges_age_when_it_runs():
    """Fresh at discovery (35 h), but the copies took hours: at report time the snapshot is too old."""
    discovery = points(("alpha", "1" * 24, 37))
    rows = build_night_report(discovery, [{"sha256": "a" * 64, "bytes": 5, "snapshot_id": "1" * 24}], now=NOW,
                              max_snapshot_age=RPO)
    assert rows[0]["outcome"] == "stale" and "37.0 h old now" in rows[0]["reason"]
    # an export that took a newer snapshot than discovery saw is fresher: not judged stale
    newer = build_night_report(discovery, [{"sha256": "a" * 64, "bytes": 5, "snapshot_id": "9" * 24}], now=NOW,
                               max_snapshot_age=RPO)
    assert newer[0]["outcome"] == "exported"



def test_report_operator_fails_naming_stale_cluster_snapshot_and_age(emu):
    stopped_backups(emu, "stopped")
    found = discover()
    old = emu.newest_completed_snapshot_id("stopped")
    ti = PullingTI(
        {
            ("discover_clusters", -1): found,
            ("export_cluster.copy_to_storage", 0): {"sha256": "a" * 64, "bytes": 1, "snapshot_id": "f" * 24},
            ("export_cluster.copy_to_storage", 1): {"sha256": "b" * 64, "bytes": 1, "snapshot_id": old},
        }
    )
    with pytest.raises(AtlasFlexError) as raised:
        AtlasFlexNightReportOperator(task_id="night_report").execute({"ti": ti})
    message = str(raised.value)
    assert message.startswith("1 cluster(s) stale tonight: stopped (")
    assert old in message and "6.9 days old" in message
    assert [r["outcome"] for r in ti.pushed["report"]] == ["exported", "stale"]
    with pytest.raises(AtlasFlexConfigError, match="max_snapshot_age"):
        AtlasFlexNightReportOperator(task_id="night_report", max_snapshot_age="36h").execute({"ti": ti})
