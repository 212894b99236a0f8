"""The night's plan (backfill, unchanged, backlog), the archive's holdings and the protection verdict, as units."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
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


def test_holdings_count_only_signed_exports_the_listing_agrees_with(tmp_path):
    from airflow.sdk import ObjectStoragePath

    from tests.unit.export_fixtures import commit_export, resign_manifest, snapshot_id

    root = ObjectStoragePath(tmp_path.as_uri())
    when = NOW - timedelta(days=1)
    good = commit_export(root, "alpha", when, night=0)
    replaced = commit_export(root, "alpha", when, night=1)
    replaced.write_bytes(replaced.read_bytes() + b"x")  # bytes replaced behind our back
    planted = commit_export(root, "alpha", when, night=2)
    manifest = json.loads((planted.parent / f"{planted.name}.json").read_text())
    manifest.pop("signature")  # a manifest of our format written by someone without our key
    (planted.parent / f"{planted.name}.json").write_text(json.dumps(manifest))
    forged = commit_export(root, "alpha", when, night=3)
    manifest = json.loads((forged.parent / f"{forged.name}.json").read_text())
    manifest["snapshot"]["finishTime"] = "2026-12-06T03:00:00Z"  # edited after signing
    (forged.parent / f"{forged.name}.json").write_text(json.dumps(manifest))
    future = commit_export(root, "alpha", when, night=4)
    resign_manifest(future, lambda m: m.update(exported_at="2099-01-01T00:00:00+00:00",
                                               snapshot={"finishTime": "2099-01-01T00:00:00Z"}))
    found = archive_holdings(root, NOW)
    assert list(found.of("alpha", G)) == [snapshot_id(0)]
    reasons = dict(found.untrusted)
    assert len(reasons) == 4
    assert any(why.startswith("mismatch:") for why in reasons.values())
    assert any(why.startswith("unsigned:") for why in reasons.values())
    assert any(why.startswith("bad_signature:") for why in reasons.values())
    assert any("in the future" in why for why in reasons.values())
    assert found.newest("alpha", G).path.endswith(good.name)  # the 2099 export never ranks newest


# ---- protection verdict ---------------------------------------------------------------------------


def test_protection_verdict_names_each_cluster_at_risk():
    def point(name: str, *hours: float) -> dict[str, Any]:
        done = [{"snapshot_id": f"{name}-{h}", "finished_at": at(h / 24)} for h in hours]
        return {"cluster_name": name, "group_id": G, "snapshot_id": done[0]["snapshot_id"], "completed": done}

    names = ("fresh", "late", "missed", "never", "newbie")
    found = {
        "exportable": [{"cluster_name": n, "group_id": G} for n in names],
        "recovery_points": [
            point("fresh", 20, 44), point("late", 25, 49), point("missed", 30, 54), point("never", 30, 54),
            point("newbie", 2),
        ],
        "stale": [{"cluster_name": "gone", "group_id": G, "snapshot_id": None, "reason": "no COMPLETED snapshot"}],
        "skipped": [{"cluster_name": "tiny", "group_id": G, "reason": "too new"}],
        "failed": [{"cluster_name": "liar", "group_id": G, "reason": "bad answer"}],
        "missing": [{"cluster_name": "typo", "reason": "no flex cluster named 'typo'"}],
    }

    def held(name: str, hours: float) -> dict[str, HeldExport]:
        sid = f"{name}-{hours}"
        return {sid: HeldExport(name, G, sid, f"file:///a/{sid}.tgz", 1, "0" * 64, NOW - timedelta(hours=hours))}

    holdings = Holdings(
        {(n, G): held(n, h) for n, h in (("fresh", 20), ("late", 49), ("missed", 54))},
        [],
    )
    verdict = judge_protection(found, holdings, now=NOW, max_export_lag=timedelta(hours=26))
    # late: its newest snapshot (25 h) may still wait for tonight's copy; the one before it is archived
    assert [e["cluster_name"] for e in verdict["protected"]] == ["fresh", "late"]
    assert [e["cluster_name"] for e in verdict["pending"]] == ["newbie"]
    risk = {e["cluster_name"]: e["reason"] for e in verdict["at_risk"]}
    assert sorted(risk) == ["gone", "liar", "missed", "never", "typo"]
    assert "snapshot missed-30 finished 30.0 h ago and is not in the archive" in risk["missed"]
    assert "holds snapshot missed-54, taken 2.2 days ago" in risk["missed"]
    assert "no export of ours" in risk["never"] and "Atlas has no fresh snapshot either" in risk["gone"]
    assert "cannot be judged" in risk["liar"] and "cannot be judged" in risk["typo"]
    assert [e["cluster_name"] for e in verdict["skipped"]] == ["tiny"]


def test_plan_rereads_the_newest_held_export_and_copies_it_again_when_it_does_not_prove(tmp_path):
    """Same-size bytes replaced behind our back pass the scan's cheap proof; the plan's re-read catches them."""
    from airflow.sdk import ObjectStoragePath

    from tests.unit.export_fixtures import commit_export, snapshot_id

    root = ObjectStoragePath(tmp_path.as_uri())
    when = datetime.now(timezone.utc) - timedelta(hours=3)
    path = commit_export(root, "alpha", when, night=0)
    newest = snapshot_id(0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    found = {
        "exportable": [{"cluster_name": "alpha", "group_id": G}],
        "recovery_points": [{"cluster_name": "alpha", "group_id": G, "snapshot_id": newest, "finished_at": stamp,
                             "completed": [{"snapshot_id": newest, "finished_at": stamp}]}],
    }

    def plan() -> dict[str, Any]:
        return AtlasFlexExportPlanOperator(task_id="plan", discovery=found, archive_root=tmp_path.as_uri()).execute(
            make_context()
        )

    first = plan()
    assert [h["snapshot_id"] for h in first["held"]] == [newest] and first["exports"] == []
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    second = plan()
    assert second["held"] == []
    assert [(e["snapshot_id"], e["backfill"]) for e in second["exports"]] == [(newest, False)]
