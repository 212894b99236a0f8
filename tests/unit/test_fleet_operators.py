"""Discovery, the night's report and restore drills against the emulator (real HTTP, no Airflow DB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError, RestoreJobFailedError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.operators.cluster_discovery import (
    AtlasFlexClusterDiscoveryOperator,
    not_exportable_reason,
)
from airflow_provider_atlasflex.operators.night_report import (
    AtlasFlexNightReportOperator,
    build_night_report,
    render_table,
)
from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.airflow_compat import TaskDeferred
from tests.unit.fake_context import PullingTI, make_context


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    TOKEN_CACHE.clear()
    with AtlasEmulator(clusters=("alpha", "beta"), snapshot_size=20_000, restore_duration=0.0, seed="fleet") as e:
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(e, "digest")))
        yield e
    TOKEN_CACHE.clear()


def discover(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    context = make_context()
    result = AtlasFlexClusterDiscoveryOperator(task_id="discover", **kwargs).execute(context)
    return result, context["ti"].pushed


# ---- hook -------------------------------------------------------------------------------------


def test_hook_lists_clusters_and_projects_across_pages(emu):
    for i in range(4):
        emu.add_cluster(f"extra-{i}", snapshots=1)
    other = emu.add_project("second-project")
    hook = AtlasFlexHook()
    names = [c["name"] for c in hook.list_flex_clusters(items_per_page=2)]
    assert names == ["alpha", "beta", "extra-0", "extra-1", "extra-2", "extra-3"]
    assert [g["id"] for g in hook.list_groups(items_per_page=1)] == [emu.group_id, other]
    assert hook.list_flex_clusters(other) == []
    # each call sent the version the spec names for its operation, and went through every page
    sent = {x.operation: x.headers["Accept"] for x in emu.requests if x.status == 200}
    assert sent["listGroups"] == "application/vnd.atlas.2023-01-01+json"
    assert sent["listGroupFlexClusters"] == "application/vnd.atlas.2024-11-13+json"
    assert len(emu.requests.by_operation("listGroupFlexClusters")) >= 3


# ---- discovery --------------------------------------------------------------------------------


def test_discovery_keeps_exportable_clusters_and_says_why_others_are_skipped(emu, capsys):
    emu.add_cluster("no-backup", snapshots=3, backup_enabled=False)
    emu.add_cluster("fresh", snapshots=0)
    emu.add_cluster("new", snapshots=0, state="CREATING")
    emu.add_cluster("going", snapshots=2, state="DELETING")
    emu.add_cluster("busy", snapshots=1, state="UPDATING")
    result, pushed = discover()
    group = emu.group_id
    assert result["exportable"] == [{"cluster_name": n, "group_id": group} for n in ("alpha", "beta", "busy")]
    reasons = {s["cluster_name"]: s["reason"] for s in result["skipped"]}
    assert sorted(reasons) == ["fresh", "going", "new", "no-backup"]
    assert "backup is disabled" in reasons["no-backup"] and "CREATING" in reasons["new"]
    assert "DELETING" in reasons["going"] and "no COMPLETED backup snapshot" in reasons["fresh"]
    assert pushed == {"exportable": result["exportable"], "skipped": result["skipped"], "stale": []}
    # each exportable cluster's recovery point: its newest COMPLETED snapshot, when it finished, its age
    points = result["recovery_points"]
    assert [(p["cluster_name"], p["snapshot_id"]) for p in points] == [
        (n, emu.newest_completed_snapshot_id(n)) for n in ("alpha", "beta", "busy")
    ]
    assert all(p["verdict"] == "fresh" and 1 <= p["age_hours"] < 36 and p["finished_at"].endswith("Z") for p in points)
    skip_lines = [line for line in capsys.readouterr().out.splitlines() if "Skipping " in line]
    assert len(skip_lines) == 4  # one clear line per skipped cluster
    assert any("Skipping no-backup" in line and "backup is disabled" in line for line in skip_lines)


def test_discovery_include_exclude_and_missing_names(emu):
    emu.add_cluster("prod-a", snapshots=1)
    emu.add_cluster("prod-b", snapshots=1)
    result, _ = discover(include=["prod-*", "alpha", "alhpa"], exclude=["prod-b"])
    assert [c["cluster_name"] for c in result["exportable"]] == ["alpha", "prod-a"]
    assert {e["cluster_name"] for e in result["excluded"]} == {"beta", "prod-b"}
    # a literal name that matches nothing is a typo to report, not a silent no-op
    assert [m["cluster_name"] for m in result["missing"]] == ["alhpa"]


def test_discovery_of_every_project(emu):
    other = emu.add_project("second-project")
    result, _ = discover(group_ids="*")
    assert {c["group_id"] for c in result["exportable"]} == {emu.group_id}
    answered = [x.operation for x in emu.requests if x.status == 200]
    assert answered[:2] == ["listGroups", "listGroupFlexClusters"]
    assert any(x.path.endswith(f"/groups/{other}/flexClusters") for x in emu.requests)


@pytest.mark.parametrize(
    ("cluster", "reason"),
    [
        ({"backupSettings": {"enabled": False}, "stateName": "IDLE"}, "backup is disabled"),
        ({"backupSettings": {"enabled": True}, "stateName": "DELETING"}, "DELETING"),
        ({"stateName": "REPAIRING"}, None),
        ({}, None),
    ],
)
def test_not_exportable_reason(cluster, reason):
    found = not_exportable_reason(cluster)
    assert (found is None) if reason is None else (reason in found)


# ---- the night's report -----------------------------------------------------------------------

GROUP = "5f1b2c3d4e5f60718293a4b5"
DISCOVERY = {
    "exportable": [{"cluster_name": "alpha", "group_id": GROUP}, {"cluster_name": "beta", "group_id": GROUP}],
    "skipped": [{"cluster_name": "nobackup", "group_id": GROUP, "reason": "backup is disabled"}],
    "missing": [],
}
EXPORT = {"bytes": 1234567, "sha256": "ab" * 32, "seconds": 2.5, "path": "file:///x/alpha.tgz", "snapshot_id": "1" * 24}


def test_report_rows_and_table():
    rows = build_night_report(DISCOVERY, [EXPORT, None])
    assert [(r["cluster_name"], r["outcome"]) for r in rows] == [
        ("alpha", "exported"),
        ("beta", "failed"),
        ("nobackup", "skipped"),
    ]
    assert rows[0]["bytes"] == 1234567 and rows[0]["sha256_prefix"] == "abababababab" and rows[0]["seconds"] == 2.5
    assert "export_cluster.copy_to_storage [1]" in rows[1]["reason"]
    table = render_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == [
        "cluster", "project", "outcome", "snapshot", "finished", "age", "bytes", "sha256", "seconds", "reason"
    ]
    assert "1,234,567" in lines[2] and "abababababab" in lines[2] and "2.5" in lines[2]
    assert "backup is disabled" in lines[4]
    assert lines[-1] == "1 exported (1,234,567 bytes), 0 unchanged, 0 stale, 1 skipped, 1 failed"


def test_report_when_discovery_failed():
    rows = build_night_report(None, [])
    assert [r["outcome"] for r in rows] == ["failed"] and "discovery" in rows[0]["reason"]



def test_report_operator_returns_table_or_fails_the_run():
    op = AtlasFlexNightReportOperator(task_id="night_report")
    assert op.trigger_rule == "all_done"
    good = PullingTI(
        {
            ("discover_clusters", -1): DISCOVERY,
            ("export_cluster.copy_to_storage", 0): EXPORT,
            ("export_cluster.copy_to_storage", 1): {**EXPORT, "sha256": "cd" * 32},
        }
    )
    rows = op.execute({"ti": good})
    assert [r["outcome"] for r in rows] == ["exported", "exported", "skipped"] and good.pushed["report"] == rows
    bad = PullingTI({("discover_clusters", -1): DISCOVERY, ("export_cluster.copy_to_storage", 0): EXPORT})
    with pytest.raises(AtlasFlexError, match=r"1 cluster\(s\) failed tonight: beta"):
        op.execute({"ti": bad})
    assert [r["outcome"] for r in bad.pushed["report"]] == ["exported", "failed", "skipped"]


# ---- restore ----------------------------------------------------------------------------------


def created(emu: AtlasEmulator) -> list[Any]:
    """Restore-job POSTs Atlas accepted (Digest's unauthenticated first legs left out)."""
    return [x for x in emu.requests.by_operation("createGroupFlexClusterBackupRestoreJob") if x.status == 200]


def restore(run: Any = None, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One try of the restore task; tries given the same ``run`` (a DAG run's start) belong to one DAG run."""
    context = make_context()
    context["dag_run"] = run
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("poll_interval", 0.05)
    op = AtlasFlexRestoreSnapshotOperator(task_id="restore", cluster_name="alpha", **kwargs)
    return op.execute(context), context["ti"].pushed


def test_restore_waits_for_completed_and_is_safe_on_retry(emu):
    emu.add_cluster("restore-drill-scratch", snapshots=0)
    emu.restore_duration = 0.6
    run = SimpleNamespace(start_date=datetime.now(timezone.utc), run_after=None)
    job, pushed = restore(run, target_cluster_name="restore-drill-scratch")
    newest = emu.newest_completed_snapshot_id("alpha")
    assert job["status"] == "COMPLETED" and job["deliveryType"] == "RESTORE" and job["snapshotId"] == newest
    assert pushed == {"restore_job_id": job["id"], "snapshot_id": newest}
    assert emu.restored_snapshot("restore-drill-scratch") == newest
    # a retry in the same DAG run finds the job and does not start a second restore
    again, _ = restore(run, target_cluster_name="restore-drill-scratch")
    assert again["id"] == job["id"]
    restores = [j for j in emu.restore_jobs("alpha") if j["deliveryType"] == "RESTORE"]
    assert len(restores) == 1
    assert len(created(emu)) == 1


def test_restore_over_the_source_is_refused_before_any_request(emu):
    with pytest.raises(AtlasFlexConfigError, match="Refusing to restore cluster 'alpha' over itself"):
        restore(target_cluster_name="alpha")
    assert len(emu.requests) == 0
    job, _ = restore(target_cluster_name="alpha", allow_restore_over_source=True, allow_any_target=True)
    assert job["targetDeploymentItemName"] == "alpha" and job["status"] == "COMPLETED"


def test_restore_target_must_be_an_existing_flex_cluster(emu):
    with pytest.raises(AtlasFlexError, match="No cluster named .restore-drill-ghost."):
        restore(target_cluster_name="restore-drill-ghost")
    with pytest.raises(AtlasFlexError, match="not a flex cluster"):
        restore(target_cluster_name="legacy-m10", allow_any_target=True)
    emu.add_cluster("restore-drill-new", snapshots=0, state="CREATING")
    with pytest.raises(RestoreJobFailedError, match="still being created"):
        restore(target_cluster_name="restore-drill-new")
    assert created(emu) == []


def test_failed_restore_fails_without_retry_and_the_retry_starts_a_new_one(emu):
    emu.fail_next_restore("alpha")
    emu.restore_duration = 0.3
    with pytest.raises(RestoreJobFailedError, match="FAILED"):
        restore(target_cluster_name="beta", allow_any_target=True)
    job, _ = restore(target_cluster_name="beta", allow_any_target=True)  # the FAILED job is not reused
    assert job["status"] == "COMPLETED"
    assert len(created(emu)) == 2


def test_restore_defers_with_the_shared_trigger(emu):
    emu.restore_duration = 30.0
    op = AtlasFlexRestoreSnapshotOperator(
        task_id="restore", cluster_name="alpha", target_cluster_name="beta", allow_any_target=True, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    trigger = deferred.value.trigger
    kind, kwargs = trigger.serialize()
    assert kind.endswith("AtlasFlexRestoreJobTrigger") and kwargs["wait_for"] == "completed"
    assert op.execute_complete(make_context(), {"status": "success", "job": {"id": "x"}}) == {"id": "x"}
    with pytest.raises(RestoreJobFailedError):
        op.execute_complete(make_context(), {"status": "failed", "message": "FAILED"})


def _trigger_events(emu: AtlasEmulator, job_id: str, wait_for: str) -> list[dict[str, Any]]:
    import asyncio
    import time

    from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

    trigger = AtlasFlexRestoreJobTrigger(
        cluster_name="alpha",
        restore_job_id=job_id,
        group_id=None,
        atlas_conn_id="mongodb_atlas_default",
        poll_interval=0.05,
        end_time=time.time() + 20,
        wait_for=wait_for,
    )

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_trigger_waits_for_a_restore_job_to_complete(emu):
    emu.restore_duration = 0.5
    job = AtlasFlexHook().request_restore("alpha", emu.newest_completed_snapshot_id("alpha"), "beta")
    [event] = _trigger_events(emu, job["id"], "completed")
    assert event["status"] == "success" and event["job"]["status"] == "COMPLETED"
    polls = [x for x in emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob") if x.status == 200]
    assert len(polls) >= 2  # it waited through PENDING/RUNNING
    # the default still waits for a download link, and a RESTORE job never gets one
    [refused] = _trigger_events(emu, job["id"], "snapshot_url")
    assert refused["status"] == "failed" and "not DOWNLOAD" in refused["message"]


def test_trigger_reports_a_failed_restore_job(emu):
    emu.fail_next_restore("alpha")
    emu.restore_duration = 0.2
    job = AtlasFlexHook().request_restore("alpha", emu.newest_completed_snapshot_id("alpha"), "beta")
    [event] = _trigger_events(emu, job["id"], "completed")
    assert event["status"] == "failed" and "FAILED" in event["message"]


def test_report_names_the_task_that_failed_when_airflow_can_tell():
    states = {
        "export_cluster.request_link_1": "success",
        "export_cluster.wait_for_link_1": "failed",
        "export_cluster.copy_to_storage_1": "upstream_failed",
        "export_cluster.wait_for_link_0": "success",
        "export_cluster.wait_for_link_10": "failed",  # another map index: not beta's
    }
    rows = build_night_report(DISCOVERY, [EXPORT, None], task_states=states)
    assert rows[1]["reason"] == (
        "export did not finish: export_cluster.copy_to_storage upstream_failed, export_cluster.wait_for_link failed "
        "(map index 1; see that task's log)"
    )
