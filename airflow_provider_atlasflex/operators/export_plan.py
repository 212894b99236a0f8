"""Operator that plans the night's copies from discovery and the archive: a gap-free daily series.

After an outage (a paused DAG, an expired credential, a week of failed nights) Atlas still lists
every snapshot of its 8-day retention, but a nightly copy of only the newest would leave holes in
the archive for ever. The plan copies each cluster's newest snapshot unless the archive already
holds it (then it is ``unchanged``), and backfills every older COMPLETED snapshot the archive lacks,
oldest first (they age out of Atlas first), up to ``max_backfill`` per night; the rest waits for
the next night as ``backlog``. A cluster the archive holds nothing of yet starts its series
tonight: the first night is not a copy of the whole retention window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_atlasflex.archive.holdings import Holdings

__all__ = ["DEFAULT_MAX_BACKFILL", "AtlasFlexExportPlanOperator", "plan_exports"]

# Backfilled copies per night, across the fleet: enough for a week's outage of a few clusters, and
# a bound on the extra bandwidth and time one night may spend.
DEFAULT_MAX_BACKFILL = 16


def plan_exports(
    discovery: Mapping[str, Any], holdings: Holdings, *, max_backfill: int
) -> dict[str, list[dict[str, Any]]]:
    """``exports`` (to copy tonight, oldest first), ``held`` (newest already archived) and ``backlog``.

    Each entry names ``cluster_name``, ``group_id``, ``snapshot_id``, ``finished_at``; exports also
    say ``backfill`` (an older snapshot the archive lacks) and held entries carry the export's path.
    """
    exports: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    points = {(p.get("cluster_name"), p.get("group_id")): p for p in discovery.get("recovery_points") or []}
    for target in discovery.get("exportable") or []:
        cluster, group = target["cluster_name"], target["group_id"]
        point = points.get((cluster, group)) or {}
        newest = point.get("snapshot_id")
        have = holdings.of(cluster, group)
        where = {"cluster_name": cluster, "group_id": group}
        if newest is None:  # discovery did not list snapshots: the export picks the newest itself
            exports.append({**where, "snapshot_id": None, "finished_at": None, "backfill": False})
            continue
        if newest in have:
            held.append({**where, **have[newest].as_dict(), "finished_at": point.get("finished_at")})
        else:
            exports.append({**where, "snapshot_id": newest, "finished_at": point.get("finished_at"), "backfill": False})
        missing += _holes(where, point, have)
    missing.sort(key=lambda entry: entry["finished_at"])
    for entry in missing[:max_backfill]:
        exports.append({**entry, "backfill": True})
    exports.sort(key=lambda entry: entry["finished_at"] or "~")  # oldest first; undated (newest) last
    return {"exports": exports, "held": held, "backlog": missing[max_backfill:]}


def _holes(where: Mapping[str, str], point: Mapping[str, Any], have: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Older COMPLETED snapshots Atlas lists that the archive lacks, after the archive's first export of the cluster.

    Before the oldest held snapshot that Atlas still lists is history we never had: not a hole.
    If the archive holds snapshots Atlas no longer lists, the series started before the window and
    every listed snapshot it lacks is a hole.
    """
    if not have:
        return []
    listed = [(c["snapshot_id"], c["finished_at"]) for c in point.get("completed") or []]
    listed_ids = {sid for sid, _ in listed}
    held_listed = [at for sid, at in listed if sid in have]
    floor = "" if set(have) - listed_ids or not held_listed else min(held_listed)
    return [
        {**where, "snapshot_id": sid, "finished_at": at}
        for sid, at in listed
        if sid not in have and sid != point.get("snapshot_id") and at > floor
    ]


class AtlasFlexExportPlanOperator(BaseOperator):
    """Decide tonight's copies from the discovery result and one scan of the archive (see the module doc).

    Returns ``{"exports": [...], "held": [...], "backlog": [...]}``; a mapped export runs over
    ``exports`` (``cluster_name``, ``group_id``, ``snapshot_id``), and the night's report, given this
    task's id, shows held snapshots as ``unchanged``, backfilled ones as ``backfilled`` and the backlog.

    :param discovery: the result of :class:`AtlasFlexClusterDiscoveryOperator` (e.g. ``discover.output``).
    :param archive_root: the directory the exports go under, e.g. ``s3://backups/atlas`` (templated).
    :param archive_conn_id: connection for that filesystem (templated; None: its default credentials).
    :param max_backfill: older snapshots copied per night across the fleet (0 turns backfill off).
    """

    template_fields: Sequence[str] = ("discovery", "archive_root", "archive_conn_id")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        discovery: Any,
        archive_root: Any,
        archive_conn_id: str | None = None,
        max_backfill: int = DEFAULT_MAX_BACKFILL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.discovery = discovery
        self.archive_root = archive_root
        self.archive_conn_id = archive_conn_id
        self.max_backfill = max_backfill

    def execute(self, context: Context) -> dict[str, list[dict[str, Any]]]:
        discovery = self.discovery
        if not isinstance(discovery, Mapping) or not isinstance(discovery.get("exportable"), list):
            raise AtlasFlexConfigError(
                "discovery must be the result of AtlasFlexClusterDiscoveryOperator (e.g. discover.output), got "
                f"{type(discovery).__name__}."
            )
        bound = self.max_backfill
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            raise AtlasFlexConfigError(f"max_backfill must be a whole number of 0 or more, got {bound!r}.")
        from airflow_provider_atlasflex.archive.holdings import archive_holdings
        from airflow_provider_atlasflex.archive.keys import KeyRing
        from airflow_provider_atlasflex.archive.storage_url import require_storage_path
        from airflow_provider_atlasflex.restore_jobs import utcnow

        root = require_storage_path(self.archive_root, "archive_root", self.archive_conn_id, directory=True)
        now: datetime = utcnow()
        keys = KeyRing()
        plan = plan_exports(discovery, archive_holdings(root, now, keys), max_backfill=bound)
        self._prove_held(plan, keys)
        for entry in plan["held"]:
            self.log.info(
                "%s: snapshot %s is already in the archive (%s, re-read and proven): not copied again",
                entry["cluster_name"], entry["snapshot_id"], entry["path"],
            )
        for entry in (e for e in plan["exports"] if e["backfill"]):
            self.log.info(
                "%s: backfilling snapshot %s (finished %s), missing from the archive",
                entry["cluster_name"], entry["snapshot_id"], entry["finished_at"],
            )
        if plan["backlog"]:
            self.log.warning(
                "%d older snapshot(s) missing from the archive wait for the next nights (max_backfill=%d): %s",
                len(plan["backlog"]), bound,
                ", ".join(f"{e['cluster_name']}/{e['snapshot_id']}" for e in plan["backlog"][:20]),
            )
        self.log.info(
            "Tonight: %d cop(ies), %d of them backfill; %d already archived; %d in the backlog",
            len(plan["exports"]), sum(1 for e in plan["exports"] if e["backfill"]), len(plan["held"]),
            len(plan["backlog"]),
        )
        return plan

    def _prove_held(self, plan: dict[str, list[dict[str, Any]]], keys: Any) -> None:
        """Re-read each newest export the plan would skip, with the copy's own proof; copy again what fails.

        The scan trusts signatures and listed sizes; a newest copy replaced by same-size bytes would
        then make the night green over a damaged backup. One full read per cluster a night is the
        price of ``unchanged`` meaning what it says.
        """
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_atlasflex.archive.proof import prove_export

        kept = []
        for entry in plan["held"]:
            path = ObjectStoragePath(entry["path"], conn_id=self.archive_conn_id)
            proof = prove_export(
                path, snapshot_id=entry["snapshot_id"], cluster_name=entry["cluster_name"],
                group_id=entry["group_id"], keys=keys,
            )
            if proof.proven:
                kept.append(entry)
                continue
            self.log.warning(
                "%s: the archived copy of snapshot %s (%s) does not prove itself (%s): copying it again",
                entry["cluster_name"], entry["snapshot_id"], entry["path"], proof.reason,
            )
            plan["exports"].append(
                {key: entry[key] for key in ("cluster_name", "group_id", "snapshot_id", "finished_at")}
                | {"backfill": False}
            )
        plan["held"] = kept
        plan["exports"].sort(key=lambda entry: entry["finished_at"] or "~")
