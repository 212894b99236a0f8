"""The night's plan (backfill, unchanged, backlog), the archive's holdings and the protection verdict, as units."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.archive.holdings import HeldExport, Holdings, archive_holdings
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.operators.export_plan import AtlasFlexExportPlanOperator, plan_exports
from airflow_provider_atlasflex.operators.protection_check import judge_protection
from tests.unit.fake_context import make_context

G = "5f1b2c3d4e5f60718293a4b5"
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=timezone.utc)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sid(cluster: str, day: int) -> str:
    return f"{cluster[:1].encode().hex()}{day:022x}"


def discovery(*clusters: str, days: int = 8) -> dict[str, Any]:
    """Each cluster with ``days`` daily COMPLETED snapshots, the newest 1 h old."""
    points = []
    for name in clusters:
        completed = [{"snapshot_id": sid(name, d), "finished_at": at(d + 1 / 24)} for d in range(days)]
        points.append(
            {"cluster_name": name, "group_id": G, "snapshot_id": completed[0]["snapshot_id"],
             "finished_at": completed[0]["finished_at"], "completed": completed}
        )
    return {"exportable": [{"cluster_name": n, "group_id": G} for n in clusters], "recovery_points": points}


def holding(**held: list[int]) -> Holdings:
    by_cluster = {
        (name, G): {
            sid(name, d): HeldExport(name, G, sid(name, d), f"file:///a/{name}/{d}.tgz", 10, "0" * 64,
                                     NOW - timedelta(days=d))
            for d in days
        }
        for name, days in held.items()
    }
    return Holdings(by_cluster, [])


def test_first_night_copies_only_the_newest():
    plan = plan_exports(discovery("alpha", "beta"), holding(), max_backfill=16)
    assert [(e["cluster_name"], e["snapshot_id"], e["backfill"]) for e in plan["exports"]] == [
        ("alpha", sid("alpha", 0), False),
        ("beta", sid("beta", 0), False),
    ]
    assert plan["held"] == [] and plan["backlog"] == []


def test_after_an_outage_every_hole_is_backfilled_oldest_first():
    plan = plan_exports(discovery("alpha"), holding(alpha=[6]), max_backfill=16)
    assert [(e["snapshot_id"], e["backfill"]) for e in plan["exports"]] == [
        *((sid("alpha", d), True) for d in (5, 4, 3, 2, 1)),
        (sid("alpha", 0), False),
    ]
    # the snapshot of 7 days ago predates the archive's series: not a hole
    assert sid("alpha", 7) not in {e["snapshot_id"] for e in plan["exports"]}


def test_a_hole_in_the_middle_and_a_series_older_than_the_window():
    plan = plan_exports(discovery("alpha"), holding(alpha=[0, 1, 3, 6]), max_backfill=16)
    assert [e["snapshot_id"] for e in plan["exports"]] == [sid("alpha", d) for d in (5, 4, 2)]
    assert [h["snapshot_id"] for h in plan["held"]] == [sid("alpha", 0)]
    # held exports Atlas no longer lists: every listed snapshot the archive lacks is a hole
    plan = plan_exports(discovery("alpha"), holding(alpha=[9]), max_backfill=16)
    assert [e["snapshot_id"] for e in plan["exports"] if e["backfill"]] == [sid("alpha", d) for d in range(7, 0, -1)]


def test_the_nightly_bound_leaves_a_backlog_newest_last():
    plan = plan_exports(discovery("alpha", "beta"), holding(alpha=[6], beta=[6]), max_backfill=4)
    backfilled = [e for e in plan["exports"] if e["backfill"]]
    assert len(backfilled) == 4 and {e["snapshot_id"] for e in backfilled} == {
        sid("alpha", 5), sid("beta", 5), sid("alpha", 4), sid("beta", 4)
    }
    assert len(plan["backlog"]) == 6 and all(e["finished_at"] > at(4) for e in plan["backlog"])
    assert plan_exports(discovery("alpha"), holding(alpha=[6]), max_backfill=0)["exports"] == [
        {"cluster_name": "alpha", "group_id": G, "snapshot_id": sid("alpha", 0), "finished_at": at(1 / 24),
         "backfill": False}
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"discovery": "{{ ti.xcom_pull('x') }}", "archive_root": "file:///a"}, "discovery must be the result"),
        ({"discovery": {"exportable": []}, "archive_root": "file:///a", "max_backfill": -1}, "max_backfill"),
        ({"discovery": {"exportable": []}, "archive_root": "relative/dir"}, "has no scheme"),
    ],
)
def test_plan_refuses_bad_input(kwargs, message):
    with pytest.raises(AtlasFlexConfigError, match=message):
        AtlasFlexExportPlanOperator(task_id="plan", **kwargs).execute(make_context())


# ---- holdings: what covers a cluster ---------------------------------------------------------------


def write_export(root: Path, name: str, *, size: int = 10, recorded: int = 10, sha_sidecar: bool = True,
                 finish: str | None = None, exported: str | None = None) -> Path:
    folder = root / "alpha" / "2026-12-05"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    manifest = {
        "format": "atlasflex-export/1", "file": name, "cluster_name": "alpha", "group_id": G,
        "snapshot_id": name[:24], "bytes": recorded, "sha256": "0" * 64,
        "snapshot": {"finishTime": finish or at(1)}, "exported_at": exported or at(0.9),
    }
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    if sha_sidecar:
        (folder / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")
    return path


def test_holdings_count_only_exports_the_listing_agrees_with(tmp_path):
    from airflow.sdk import ObjectStoragePath

    write_export(tmp_path, "a" * 24 + ".tgz")
    write_export(tmp_path, "b" * 24 + ".tgz", size=11)  # bytes replaced behind our back
    write_export(tmp_path, "c" * 24 + ".tgz", sha_sidecar=False)
    write_export(tmp_path, "d" * 24 + ".tgz", finish="2099-01-01T00:00:00Z", exported="2099-01-01T00:00:00Z")
    found = archive_holdings(ObjectStoragePath(tmp_path.as_uri()), NOW)
    assert list(found.of("alpha", G)) == ["a" * 24]
    reasons = dict(found.untrusted)
    assert len(reasons) == 3
    assert any("listing shows 11 bytes" in why for why in reasons.values())
    assert any(".sha256 sidecar is missing" in why for why in reasons.values())
    assert any("in the future" in why for why in reasons.values())
    assert found.newest("alpha", G).snapshot_id == "a" * 24  # the 2099 export never ranks newest


# ---- protection verdict ---------------------------------------------------------------------------


def test_protection_verdict_names_each_cluster_at_risk():
    found = {
        "exportable": [{"cluster_name": n, "group_id": G} for n in ("fresh", "old", "never")],
        "stale": [{"cluster_name": "gone", "group_id": G, "snapshot_id": None, "reason": "no COMPLETED snapshot"}],
        "skipped": [{"cluster_name": "newbie", "group_id": G, "reason": "too new"}],
        "failed": [{"cluster_name": "liar", "group_id": G, "reason": "bad answer"}],
        "missing": [],
    }
    holdings = Holdings(
        {
            ("fresh", G): {"s1": HeldExport("fresh", G, "s1", "file:///a/f.tgz", 1, "0" * 64, NOW - timedelta(hours=20))},
            ("old", G): {"s2": HeldExport("old", G, "s2", "file:///a/o.tgz", 1, "0" * 64, NOW - timedelta(hours=50))},
        },
        [],
    )
    verdict = judge_protection(found, holdings, now=NOW, max_export_age=timedelta(hours=36))
    assert [e["cluster_name"] for e in verdict["protected"]] == ["fresh"]
    risk = {e["cluster_name"]: e["reason"] for e in verdict["at_risk"]}
    assert sorted(risk) == ["gone", "liar", "never", "old"]
    assert "taken 2.1 days ago" in risk["old"] and "no export of ours" in risk["never"]
    assert "Atlas has no fresh snapshot either" in risk["gone"] and "cannot be judged" in risk["liar"]
    assert [e["cluster_name"] for e in verdict["skipped"]] == ["newbie"]
