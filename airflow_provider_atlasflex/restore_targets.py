"""Reading RESTORE jobs (a snapshot restored into a cluster): which job is ours, and is it done?

The restore operator and the trigger ask these questions; DOWNLOAD jobs are read in
:mod:`airflow_provider_atlasflex.restore_jobs`.

A restore job carries nothing that says who asked for it (the create body is only the snapshot and
the target), so "ours" is decided by when Atlas scheduled it: a job of the same snapshot into the
same target scheduled since our DAG run started. An older job, even COMPLETED, proves nothing
about this run: a drill that reused last week's job would pass without restoring.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_atlasflex.exceptions import RestoreJobFailedError, StaleSnapshotError
from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

__all__ = [
    "check_snapshot_fresh",
    "is_restore_into",
    "newest_restore_into",
    "restore_finished",
    "restores_in_progress_into",
    "scheduled_since",
]

# Atlas' own label for a restore into a cluster; create requests cannot send it (read-only field).
RESTORE = "RESTORE"
IN_PROGRESS = ("PENDING", "QUEUED", "RUNNING")


def scheduled_since(job: Mapping[str, Any], since: datetime) -> bool:
    """True when Atlas scheduled ``job`` at or after ``since`` (compared in whole seconds, as Atlas
    renders dates); a job without a readable ``restoreScheduledDate`` is not counted as recent."""
    when = parse_atlas_time(job.get("restoreScheduledDate"))
    return when is not None and when >= since.replace(microsecond=0)


def _targets(job: Mapping[str, Any], target_cluster: str, target_group_id: str) -> bool:
    project = job.get("targetProjectId") or job.get("projectId")
    return job.get("deliveryType") == RESTORE and job.get("targetDeploymentItemName") == target_cluster and (
        project == target_group_id
    )


def is_restore_into(job: Mapping[str, Any], snapshot_id: str, target_cluster: str, target_group_id: str) -> bool:
    """True when ``job`` restores ``snapshot_id`` into ``target_cluster`` of ``target_group_id``, and has not FAILED.

    A job without ``targetProjectId`` is read as targeting its own project (``projectId``).
    """
    if job.get("snapshotId") != snapshot_id or not _targets(job, target_cluster, target_group_id):
        return False
    return job.get("status") != "FAILED"


def newest_restore_into(
    jobs: Iterable[Mapping[str, Any]],
    snapshot_id: str,
    target_cluster: str,
    target_group_id: str,
    *,
    since: datetime | None = None,
    excluding: Collection[str] = (),
) -> Mapping[str, Any] | None:
    """The most recently scheduled live RESTORE job of ``snapshot_id`` into the target, if any.

    ``since``: only jobs Atlas scheduled at or after it; ``excluding``: job ids to leave out (the
    jobs that existed before a POST, so that reconciling a lost answer finds only the new job).
    """
    matching = [
        j
        for j in jobs
        if is_restore_into(j, snapshot_id, target_cluster, target_group_id)
        and j.get("id") not in excluding
        and (since is None or scheduled_since(j, since))
    ]

    def scheduled(job: Mapping[str, Any]) -> float:
        when = parse_atlas_time(job.get("restoreScheduledDate"))
        return when.timestamp() if when is not None else 0.0

    return max(matching, key=scheduled, default=None)


def restores_in_progress_into(
    jobs: Iterable[Mapping[str, Any]], target_cluster: str, target_group_id: str
) -> list[Mapping[str, Any]]:
    """RESTORE jobs (of any snapshot) still writing into the target: a second restore would race them."""
    return [j for j in jobs if _targets(j, target_cluster, target_group_id) and j.get("status") in IN_PROGRESS]


def check_snapshot_fresh(
    snapshot: Mapping[str, Any], cluster_name: str, max_age: timedelta, now: datetime
) -> timedelta:
    """The snapshot's age from its ``finishTime``; :class:`StaleSnapshotError` when older than ``max_age``
    or when Atlas gave no readable finish time (its age cannot be shown to be within the limit)."""
    finished = parse_atlas_time(snapshot.get("finishTime"))
    what = f"Snapshot {snapshot.get('id')} of {cluster_name!r}"
    if finished is None:
        raise StaleSnapshotError(
            f"{what} has no readable finishTime (status {snapshot.get('status')!r}, finishTime "
            f"{snapshot.get('finishTime')!r}), so the drill cannot tell its age. Wait until Atlas reports it "
            "COMPLETED, or set max_snapshot_age=None to restore it without an age check."
        )
    age = now - finished
    if age > max_age:
        raise StaleSnapshotError(
            f"{what} finished at {snapshot.get('finishTime')}, {age.total_seconds() / 3600:.1f} hours ago: older "
            f"than max_snapshot_age ({max_age.total_seconds() / 3600:g} hours). Restoring it would prove only "
            "that an old backup restores. Check the cluster's backups in the Atlas UI (Atlas takes one flex "
            "snapshot a day); to restore this snapshot anyway, raise max_snapshot_age or set it to None."
        )
    return age


def restore_finished(job: Mapping[str, Any]) -> bool:
    """True once a RESTORE job is COMPLETED; False while it runs.

    Raises :class:`RestoreJobFailedError` when waiting cannot help: FAILED, or not a RESTORE job.
    """
    what = (
        f"restore job {job.get('id')} (snapshot {job.get('snapshotId')} into {job.get('targetDeploymentItemName')!r})"
    )
    if job.get("deliveryType") not in (None, RESTORE):
        raise RestoreJobFailedError(
            f"{what} has deliveryType {job.get('deliveryType')!r}, not RESTORE: it is a download, not a restore "
            "into a cluster. Pass the id of a job created by AtlasFlexRestoreSnapshotOperator."
        )
    status = job.get("status")
    if status == "FAILED":
        raise RestoreJobFailedError(
            f"Atlas reports {what} as FAILED. Check the target cluster in the Atlas UI (it must be an idle flex "
            "cluster), then clear the restore task to start a new restore job."
        )
    return status == "COMPLETED"
