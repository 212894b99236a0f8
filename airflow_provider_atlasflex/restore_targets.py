"""Reading RESTORE jobs (a snapshot restored into a cluster): which job is ours, and is it done?

The restore operator and the trigger ask these questions; DOWNLOAD jobs are read in
:mod:`airflow_provider_atlasflex.restore_jobs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_atlasflex.exceptions import RestoreJobFailedError
from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

__all__ = ["is_restore_into", "newest_restore_into", "restore_finished"]

# Atlas' own label for a restore into a cluster; create requests cannot send it (read-only field).
RESTORE = "RESTORE"


def is_restore_into(job: Mapping[str, Any], snapshot_id: str, target_cluster: str, target_group_id: str) -> bool:
    """True when ``job`` restores ``snapshot_id`` into ``target_cluster`` of ``target_group_id``, and has not FAILED.

    A job without ``targetProjectId`` is read as targeting its own project (``projectId``).
    """
    if job.get("deliveryType") != RESTORE or job.get("snapshotId") != snapshot_id:
        return False
    if job.get("targetDeploymentItemName") != target_cluster:
        return False
    project = job.get("targetProjectId") or job.get("projectId")
    return project == target_group_id and job.get("status") != "FAILED"


def newest_restore_into(
    jobs: Iterable[Mapping[str, Any]], snapshot_id: str, target_cluster: str, target_group_id: str
) -> Mapping[str, Any] | None:
    """The most recently scheduled live RESTORE job of ``snapshot_id`` into the target, if any."""
    matching = [j for j in jobs if is_restore_into(j, snapshot_id, target_cluster, target_group_id)]

    def scheduled(job: Mapping[str, Any]) -> float:
        when = parse_atlas_time(job.get("restoreScheduledDate"))
        return when.timestamp() if when is not None else 0.0

    return max(matching, key=scheduled, default=None)


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
