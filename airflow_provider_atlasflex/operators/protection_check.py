"""Operator that checks the outcome, not the steps: is every cluster covered by a recent export of ours?

The nightly DAG reports on the nights it runs. A paused, broken or deleted nightly DAG reports
nothing at all, and nobody is told. This check runs on its own schedule (hourly in the example
DAG) and asks Atlas and the archive directly: every cluster discovery would export must have an
export in the archive whose snapshot was taken less than ``max_export_age`` ago; otherwise the
task fails naming each cluster at risk, since when, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.defaults import DEFAULT_MAX_SNAPSHOT_AGE
from airflow_provider_atlasflex.exceptions import AtlasFlexError
from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from airflow_provider_atlasflex.validation import require_positive_timedelta

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_atlasflex.archive.holdings import Holdings

__all__ = ["AtlasFlexProtectionCheckOperator", "judge_protection"]


def judge_protection(
    discovery: dict[str, list[Any]], holdings: Holdings, *, now: datetime, max_export_age: timedelta
) -> dict[str, list[dict[str, Any]]]:
    """``protected`` and ``at_risk`` clusters (each with its newest export, if any, and a reason), and ``skipped``."""
    from airflow_provider_atlasflex.freshness import describe_age

    protected: list[dict[str, Any]] = []
    at_risk: list[dict[str, Any]] = []
    stale = {(e["cluster_name"], e["group_id"]): e for e in discovery["stale"]}
    clusters = [*discovery["exportable"], *(e for e in discovery["stale"] if e.get("snapshot_id") is None)]
    for target in clusters:
        where = {"cluster_name": target["cluster_name"], "group_id": target["group_id"]}
        newest = holdings.newest(target["cluster_name"], target["group_id"])
        entry: dict[str, Any] = {**where, **_newest_fields(newest, now)}
        problems = []
        if newest is None:
            problems.append("the archive holds no export of ours for it")
        elif now - newest.taken_at > max_export_age:
            problems.append(
                f"its newest export ({newest.path}) holds snapshot {newest.snapshot_id}, taken "
                f"{describe_age(now - newest.taken_at)} ago: older than max_export_age {describe_age(max_export_age)}"
            )
        if (target["cluster_name"], target["group_id"]) in stale:
            problems.append(f"Atlas has no fresh snapshot either: {stale[target['cluster_name'], target['group_id']]['reason']}")
        if problems:
            at_risk.append({**entry, "reason": "; ".join(problems)})
        else:
            protected.append(entry)
    for entry in [*discovery["failed"], *discovery["missing"]]:
        at_risk.append({**entry, "export_path": None, "reason": f"cannot be judged: {entry.get('reason')}"})
    return {"protected": protected, "at_risk": at_risk, "skipped": list(discovery["skipped"])}


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
    A cluster is protected when the archive holds an export of it (manifest ours, size and
    ``.sha256`` as recorded, no date in the future) whose snapshot was taken within
    ``max_export_age``. Clusters discovery would skip (backup disabled, CREATING/DELETING, too new
    for a first snapshot) are listed, not judged. Returns ``{"protected", "at_risk", "skipped"}``.

    :param archive_root: the directory the exports go under, e.g. ``s3://backups/atlas`` (templated).
    :param archive_conn_id: connection for that filesystem (templated; None: its default credentials).
    :param max_export_age: the newest export's snapshot may be at most this old (timedelta or seconds;
        default 36 hours).
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
        max_export_age: timedelta | float = DEFAULT_MAX_SNAPSHOT_AGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.archive_root = archive_root
        self.archive_conn_id = archive_conn_id
        self.max_export_age = max_export_age

    def execute(self, context: Context) -> dict[str, list[dict[str, Any]]]:
        max_age = require_positive_timedelta(self.max_export_age, "max_export_age")
        from airflow_provider_atlasflex.archive.holdings import archive_holdings
        from airflow_provider_atlasflex.restore_jobs import utcnow
        from airflow_provider_atlasflex.transfers.export_check import require_storage_path

        root = require_storage_path(self.archive_root, "archive_root", self.archive_conn_id, directory=True)
        found = self.discover()
        now = utcnow()
        verdict = judge_protection(found, archive_holdings(root, now), now=now, max_export_age=max_age)
        for entry in verdict["protected"]:
            self.log.info(
                "%s (project %s) is protected: %s holds snapshot %s, taken %.1f h ago",
                entry["cluster_name"], entry["group_id"], entry["export_path"], entry["snapshot_id"],
                entry["age_hours"],
            )
        for entry in verdict["at_risk"]:
            self.log.error("%s (project %s) is AT RISK: %s", entry["cluster_name"], entry["group_id"], entry["reason"])
        summary = (
            f"{len(verdict['protected'])} protected, {len(verdict['at_risk'])} at risk, "
            f"{len(verdict['skipped'])} not judged (skipped by discovery)"
        )
        self.log.info("%s", summary)
        if verdict["at_risk"]:
            shown = verdict["at_risk"][:20]
            more = f" and {len(verdict['at_risk']) - 20} more" if len(verdict["at_risk"]) > 20 else ""
            names = "; ".join(f"{e['cluster_name']} ({e['reason']})" for e in shown)
            raise AtlasFlexError(f"{len(verdict['at_risk'])} cluster(s) at risk: {names}{more}. {summary}.")
        return verdict
