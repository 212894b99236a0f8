"""What the archive holds: per cluster, which snapshots have an export we can vouch for, and how recent.

The night's plan (what to copy, what to backfill) and the protection check (is every cluster
covered by a recent export) both ask this of one scan of the archive root. An export counts as
held only when it passes the at-rest proof retention uses (:func:`.proof.at_rest_problem`:
a manifest signed with one of our keys, its ``.sha256`` agreeing, the listed size and, on object
stores, the ETag it was signed for); a file planted or replaced behind our back does not cover a
cluster. Dates later than now are never trusted: such an export covers nothing and is named in a
warning. (A full re-read of the bytes is the scrub's job, not a nightly plan's.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.manifest import dated_in_future, taken_at

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.keys import KeyRing
    from airflow_provider_atlasflex.archive.scan import FoundExport

__all__ = ["HeldExport", "Holdings", "archive_holdings"]

log = logging.getLogger(__name__)
# Untrusted files named one by one in the log; the rest are counted (the result lists them all).
_NAMED = 20


@dataclass(frozen=True)
class HeldExport:
    """One export of ours: which cluster and snapshot it holds, where, and when its data was taken."""

    cluster_name: str
    group_id: str
    snapshot_id: str
    path: str
    bytes: int
    sha256: str
    taken_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster_name": self.cluster_name,
            "group_id": self.group_id,
            "snapshot_id": self.snapshot_id,
            "path": self.path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "taken_at": self.taken_at.isoformat().replace("+00:00", "Z"),
        }


@dataclass
class Holdings:
    """The scan's verdict: held exports by (cluster, project) and snapshot id, and what was not trusted."""

    by_cluster: dict[tuple[str, str], dict[str, HeldExport]]
    untrusted: list[tuple[str, str]]  # (path, why)

    def of(self, cluster_name: str, group_id: str) -> dict[str, HeldExport]:
        return self.by_cluster.get((cluster_name, group_id), {})

    def newest(self, cluster_name: str, group_id: str) -> HeldExport | None:
        return max(self.of(cluster_name, group_id).values(), key=lambda h: h.taken_at, default=None)


def archive_holdings(root: ObjectStoragePath, now: datetime, keys: KeyRing | None = None) -> Holdings:
    """One listing of ``root`` (and two small reads per manifest): the exports that cover their cluster."""
    from airflow_provider_atlasflex.archive.at_rest import plain_url
    from airflow_provider_atlasflex.archive.keys import KeyRing
    from airflow_provider_atlasflex.archive.scan import scan_exports

    keys = keys or KeyRing()
    holdings = Holdings({}, [])
    for found in scan_exports(root).exports:
        where = plain_url(found.path)
        why = untrusted_because(found, now, keys)
        if why is not None:
            holdings.untrusted.append((where, why))
            continue
        manifest = found.manifest
        taken = taken_at(manifest)
        assert taken is not None  # untrusted_because refuses an undated manifest
        held = HeldExport(
            manifest["cluster_name"], manifest["group_id"], manifest["snapshot_id"], where,
            manifest["bytes"], manifest["sha256"], taken,
        )
        cluster = holdings.by_cluster.setdefault((held.cluster_name, held.group_id), {})
        if held.snapshot_id not in cluster or cluster[held.snapshot_id].path > held.path:
            cluster[held.snapshot_id] = held  # the same snapshot under two dates: either covers it
    for where, why in holdings.untrusted[:_NAMED]:
        log.warning("Not counting %s as a backup: %s", where, why)
    if len(holdings.untrusted) > _NAMED:  # e.g. a whole archive written before manifests were signed
        log.warning("... and %d more file(s) not counted as backups", len(holdings.untrusted) - _NAMED)
    return holdings


def untrusted_because(found: FoundExport, now: datetime, keys: KeyRing) -> str | None:
    """Why a listed export does not cover its cluster (None: it does), from the listing and its sidecars."""
    from airflow_provider_atlasflex.archive.proof import at_rest_problem

    manifest: Mapping[str, Any] = found.manifest
    if found.size is None:
        return "its manifest is there but the file is missing"
    problem = at_rest_problem(found.path, manifest, found.size, keys, found.etag)
    if problem is not None:
        return f"{problem[0]}: {problem[1]}"
    if taken_at(manifest) is None:
        return "its manifest records no snapshot finishTime or exported_at"
    return dated_in_future(manifest, now)
