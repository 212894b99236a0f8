"""Is a cluster protected right now? Its recovery point, judged from Atlas' snapshot listing.

A backup product's promise is a recent copy of every cluster. A night that copies a week-old
snapshot, or finds none and shrugs, has not kept it. Discovery, the night's report and the
assurance operator all ask the same question, so the answer lives here (pure functions, no I/O).

Verdicts:
- ``fresh``: the newest COMPLETED snapshot finished within ``max_age`` and no newer one FAILED;
- ``stale``: it is older than ``max_age``, newer snapshots FAILED, or there is no COMPLETED
  snapshot although the cluster is old enough to have one (backups stopped);
- ``new``: no COMPLETED snapshot yet and the cluster was created less than ``new_cluster_grace``
  ago (Atlas takes the first flex snapshot about 24 hours after creation);
- ``untrusted``: Atlas dates the snapshot in the future: the answer cannot be judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_atlasflex.defaults import FUTURE_MARGIN
from airflow_provider_atlasflex.restore_jobs import newest_completed_snapshot, parse_atlas_time, snapshot_time

__all__ = [
    "FRESH",
    "NEW",
    "STALE",
    "UNTRUSTED",
    "Freshness",
    "completed_snapshots",
    "describe_age",
    "judge_cluster",
    "snapshot_time",
]

FRESH, STALE, NEW, UNTRUSTED = "fresh", "stale", "new", "untrusted"


@dataclass(frozen=True)
class Freshness:
    """One cluster's recovery point: the verdict, why, and the snapshot it rests on (if any)."""

    verdict: str
    reason: str | None
    snapshot_id: str | None = None
    finished_at: str | None = None
    age_hours: float | None = None
    # Every COMPLETED snapshot Atlas still lists, (id, finished_at), newest first: what a backfill may copy.
    completed: tuple[tuple[str, str], ...] = ()

    @property
    def stale(self) -> bool:
        return self.verdict == STALE

    @property
    def new(self) -> bool:
        return self.verdict == NEW

    @property
    def untrusted(self) -> bool:
        return self.verdict == UNTRUSTED

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "snapshot_id": self.snapshot_id,
            "finished_at": self.finished_at,
            "age_hours": self.age_hours,
            "completed": [{"snapshot_id": sid, "finished_at": at} for sid, at in self.completed],
        }


def describe_age(age: timedelta) -> str:
    """'20.5 h' under two days, '6.9 days' beyond: what an on-call engineer reads at a glance."""
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def judge_cluster(
    cluster: Mapping[str, Any],
    snapshots: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    max_age: timedelta,
    new_cluster_grace: timedelta,
) -> Freshness:
    """The verdict for one cluster from its description and its complete snapshot listing."""
    snapshots = [s for s in snapshots if isinstance(s, Mapping)]
    newest = newest_completed_snapshot(snapshots)
    if newest is None:
        return _without_snapshot(cluster, snapshots, now, new_cluster_grace)
    snapshot_id = str(newest["id"])
    taken = snapshot_time(newest)
    if taken is None:
        return Freshness(STALE, f"snapshot {snapshot_id} has no finish time: its age cannot be known", snapshot_id)
    finished_at = _iso(taken)
    age = now - taken
    hours = round(age.total_seconds() / 3600, 1)
    if taken > now + FUTURE_MARGIN:  # beyond any clock difference: a lie about the future
        return Freshness(
            UNTRUSTED,
            f"Atlas dates snapshot {snapshot_id} at {finished_at}, in the future: its age cannot be judged",
            snapshot_id,
            finished_at,
            hours,
        )
    failed = sorted(
        (t for s in snapshots if s.get("status") == "FAILED" and (t := snapshot_time(s)) is not None and t > taken),
        reverse=True,
    )
    if failed:
        return Freshness(
            STALE,
            f"{len(failed)} newer snapshot(s) FAILED (the newest at {_iso(failed[0])}); the newest COMPLETED one, "
            f"{snapshot_id}, is {describe_age(age)} old",
            snapshot_id,
            finished_at,
            hours,
            completed_snapshots(snapshots),
        )
    if age > max_age:
        return Freshness(
            STALE,
            f"the newest COMPLETED snapshot, {snapshot_id}, is {describe_age(age)} old (finished {finished_at}), "
            f"older than max_snapshot_age {describe_age(max_age)}: Atlas has not taken a newer one",
            snapshot_id,
            finished_at,
            hours,
            completed_snapshots(snapshots),
        )
    return Freshness(FRESH, None, snapshot_id, finished_at, hours, completed_snapshots(snapshots))


def completed_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(id, finished_at) of every dated COMPLETED snapshot, newest first."""
    dated = [
        (taken, str(s["id"]))
        for s in snapshots
        if s.get("status") == "COMPLETED" and s.get("id") and (taken := snapshot_time(s)) is not None
    ]
    return tuple((sid, _iso(taken)) for taken, sid in sorted(dated, reverse=True))


def _without_snapshot(
    cluster: Mapping[str, Any], snapshots: list[Mapping[str, Any]], now: datetime, grace: timedelta
) -> Freshness:
    """No COMPLETED snapshot: a new cluster waiting for its first one, or backups that stopped."""
    created = parse_atlas_time(cluster.get("createDate"))
    failed = sum(1 for s in snapshots if s.get("status") == "FAILED")
    tried = f"; {failed} snapshot(s) FAILED" if failed else ""
    if created is not None and now - created < grace:
        return Freshness(
            NEW,
            f"no COMPLETED backup snapshot yet: the cluster was created {describe_age(now - created)} ago and Atlas "
            f"takes the first one about 24 h after creation{tried}",
        )
    since = f"was created {describe_age(now - created)} ago" if created is not None else "has no createDate"
    return Freshness(
        STALE,
        f"no COMPLETED backup snapshot although the cluster {since}: every snapshot has aged out or failed{tried}",
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
