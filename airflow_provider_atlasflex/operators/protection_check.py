"""Operator that checks the outcome, not the steps: is every cluster covered by a recent export of ours?

The nightly DAG reports on the nights it runs. A paused, broken or deleted nightly DAG reports
nothing at all, and nobody is told. This check runs on its own schedule (hourly in the example
DAG) and asks Atlas and the archive directly: for every cluster discovery would export, the
archive must hold an export of ours of every snapshot Atlas finished more than ``max_export_lag``
ago, or of a newer one. With Atlas' daily snapshot and discovery's freshness rule, that bounds
the newest export's age at ``max_export_lag`` plus a day. Otherwise the task fails naming each
cluster at risk, which snapshot is missing since when, and what the archive holds instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.defaults import DEFAULT_MAX_EXPORT_LAG
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError
from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from airflow_provider_atlasflex.validation import require_positive_timedelta

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_atlasflex.archive.holdings import Holdings

__all__ = ["AtlasFlexProtectionCheckOperator", "judge_protection"]


def judge_protection(
    discovery: dict[str, list[Any]], holdings: Holdings, *, now: datetime, max_export_lag: timedelta
) -> dict[str, list[dict[str, Any]]]:
    """``protected``, ``at_risk`` and ``pending`` clusters (each with its newest export, if any), and ``skipped``.

    At risk: Atlas finished a snapshot more than ``max_export_lag`` ago and the archive holds
    neither it nor anything newer (the nightly copy did not happen), or Atlas itself has no fresh
    snapshot (discovery's ``stale``). Pending: every snapshot finished within the lag and none is
    archived yet (a new cluster before its first nightly copy).
    """
    from airflow_provider_atlasflex.freshness import describe_age
    from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

    verdict: dict[str, list[dict[str, Any]]] = {"protected": [], "at_risk": [], "pending": []}
    stale = {(e["cluster_name"], e["group_id"]): e for e in discovery["stale"]}
    points = {(p["cluster_name"], p["group_id"]): p for p in discovery.get("recovery_points") or []}
    clusters = [*discovery["exportable"], *(e for e in discovery["stale"] if e.get("snapshot_id") is None)]
    for target in clusters:
        key = (target["cluster_name"], target["group_id"])
        newest = holdings.newest(*key)
        held = holdings.of(*key)
        entry: dict[str, Any] = {"cluster_name": key[0], "group_id": key[1], **_newest_fields(newest, now)}
        completed = (points.get(key) or {}).get("completed") or []
        due = next(
            (c for c in completed if (t := parse_atlas_time(c["finished_at"])) is not None and now - t > max_export_lag),
            None,
        )
        problems = []
        if due is not None and due["snapshot_id"] not in held:
            finished = parse_atlas_time(due["finished_at"])
            if newest is None or finished is None or newest.taken_at < finished:
                since = describe_age(now - finished) if finished else "long"
                have = (
                    f"its newest export ({newest.path}) holds snapshot {newest.snapshot_id}, taken "
                    f"{describe_age(now - newest.taken_at)} ago"
                    if newest is not None
                    else "the archive holds no export of ours for it"
                )
                problems.append(
                    f"snapshot {due['snapshot_id']} finished {since} ago and is not in the archive, nor anything "
                    f"newer (max_export_lag {describe_age(max_export_lag)}): {have}"
                )
        if key in stale:
            problems.append(f"Atlas has no fresh snapshot either: {stale[key]['reason']}")
        if problems:
            verdict["at_risk"].append({**entry, "reason": "; ".join(problems)})
        elif newest is None:
            verdict["pending"].append({**entry, "reason": "no export yet; its snapshots finished within max_export_lag"})
        else:
            verdict["protected"].append(entry)
    for entry in [*discovery["failed"], *discovery["missing"]]:
        verdict["at_risk"].append(
            {"group_id": None, **entry, "export_path": None, "reason": f"cannot be judged: {entry.get('reason')}"}
        )
    verdict["skipped"] = list(discovery["skipped"])
    return verdict


def _newest_fields(newest: Any, now: datetime) -> dict[str, Any]:
    if newest is None:
        return {"export_path": None, "snapshot_id": None, "taken_at": None, "age_hours": None}
    return {
        "export_path": newest.path,
        "snapshot_id": newest.snapshot_id,
        "taken_at": newest.as_dict()["taken_at"],
        "age_hours": round((now - newest.taken_at).total_seconds() / 3600, 1),
    }


class AtlasFlexProtectionCheckOperator(AtlasFlexClusterDiscoveryOperator):
    """Fail when any cluster lacks a recent export of ours in the archive (see the module docstring).

    Discovers clusters exactly as :class:`AtlasFlexClusterDiscoveryOperator` does (same parameters:
    ``group_ids``, ``include``, ``exclude``, ``max_snapshot_age``...), then scans the archive once.
    A cluster is protected when the archive holds an export of ours (signed manifest, ``.sha256``
    and listed size as recorded, no date in the future) of each snapshot Atlas finished more than
    ``max_export_lag`` ago, or of a newer one. Clusters discovery would skip (backup disabled,
    CREATING/DELETING, too new for a first snapshot) are listed, not judged; a cluster whose
    snapshots all finished within the lag and that has no export yet is ``pending``. Returns
    ``{"protected", "at_risk", "pending", "skipped"}``.

    :param archive_root: the directory the exports go under, e.g. ``s3://backups/atlas`` (templated).
    :param archive_conn_id: connection for that filesystem (templated; None: its default credentials).
    :param max_export_lag: how long a finished snapshot may wait for its nightly copy (timedelta or
        seconds; default 26 hours: a daily schedule misses a snapshot by up to a day, plus the copies).
    """

    template_fields: Sequence[str] = (
        *AtlasFlexClusterDiscoveryOperator.template_fields,
        "archive_root",
        "archive_conn_id",
    )
    ui_color = "#f5b7b1"

    def __init__(
        self,
        *,
        archive_root: Any,
        archive_conn_id: str | None = None,
        max_export_lag: timedelta | float = DEFAULT_MAX_EXPORT_LAG,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.archive_root = archive_root
        self.archive_conn_id = archive_conn_id
        self.max_export_lag = max_export_lag

    def execute(self, context: Context) -> dict[str, list[dict[str, Any]]]:
        lag = require_positive_timedelta(self.max_export_lag, "max_export_lag")
        if self.require_completed_snapshot is not True:
            raise AtlasFlexConfigError(
                "require_completed_snapshot must stay True for the protection check: it judges each cluster from "
                "its snapshot listing."
            )
        from airflow_provider_atlasflex.archive.holdings import archive_holdings
        from airflow_provider_atlasflex.archive.storage_url import require_storage_path
        from airflow_provider_atlasflex.restore_jobs import utcnow

        root = require_storage_path(self.archive_root, "archive_root", self.archive_conn_id, directory=True)
        found = self.discover()
        now = utcnow()
        verdict = judge_protection(found, archive_holdings(root, now), now=now, max_export_lag=lag)
        for entry in verdict["protected"]:
            self.log.info(
                "%s (project %s) is protected: %s holds snapshot %s, taken %.1f h ago",
                entry["cluster_name"], entry["group_id"], entry["export_path"], entry["snapshot_id"],
                entry["age_hours"],
            )
        for entry in verdict["at_risk"]:
            self.log.error("%s (project %s) is AT RISK: %s", entry["cluster_name"], entry["group_id"], entry["reason"])
        for entry in verdict["pending"]:
            self.log.info("%s (project %s): %s", entry["cluster_name"], entry["group_id"], entry["reason"])
        summary = (
            f"{len(verdict['protected'])} protected, {len(verdict['at_risk'])} at risk, "
            f"{len(verdict['pending'])} pending their first copy, {len(verdict['skipped'])} not judged "
            "(skipped by discovery)"
        )
        self.log.info("%s", summary)
        if verdict["at_risk"]:
            shown = verdict["at_risk"][:20]
            more = f" and {len(verdict['at_risk']) - 20} more" if len(verdict["at_risk"]) > 20 else ""
            names = "; ".join(f"{e['cluster_name']} ({e['reason']})" for e in shown)
            raise AtlasFlexError(f"{len(verdict['at_risk'])} cluster(s) at risk: {names}{more}. {summary}.")
        return verdict
