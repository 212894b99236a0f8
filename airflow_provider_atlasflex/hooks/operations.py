"""The flex backup operations as :class:`ApiCall` values, built from checked arguments.

Shared by the sync and async hooks so that a path, a parameter or a validation rule is written once.
"""

from __future__ import annotations

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.hooks.api_protocol import API_PREFIX, ApiCall
from airflow_provider_atlasflex.validation import require_cluster_name, require_object_id

MAX_ITEMS_PER_PAGE = 500
# listGroups is versioned on its own (the spec's x-xgen-version): a 2024-11-13 Accept header is refused.
LIST_GROUPS_VERSION = "2023-01-01"
UNKNOWN_JOB_HINT = (
    "Check restore_job_id: it must name a restore job of this cluster and project (usually the XCom "
    "'restore_job_id' of the task that requested it, in the same DAG run). To start over, clear that task: it "
    "requests a new restore job."
)


def _cluster_path(group_id: str, cluster_name: str) -> str:
    require_object_id(group_id, "group_id")
    require_cluster_name(cluster_name)
    return f"{API_PREFIX}/groups/{group_id}/flexClusters/{cluster_name}"


def get_flex_cluster(group_id: str, cluster_name: str) -> ApiCall:
    return ApiCall(
        "getGroupFlexCluster", "GET", _cluster_path(group_id, cluster_name), group_id=group_id, cluster=cluster_name
    )


def download_snapshot(group_id: str, cluster_name: str, snapshot_id: str) -> ApiCall:
    require_object_id(snapshot_id, "snapshot_id")
    return ApiCall(
        "downloadGroupFlexClusterBackup",
        "POST",
        _cluster_path(group_id, cluster_name) + "/backup/download",
        json_body={"snapshotId": snapshot_id},
        group_id=group_id,
        cluster=cluster_name,
        subject=f"Snapshot {snapshot_id}",
    )


def get_restore_job(group_id: str, cluster_name: str, restore_job_id: str) -> ApiCall:
    require_object_id(restore_job_id, "restore_job_id")
    return ApiCall(
        "getGroupFlexClusterBackupRestoreJob",
        "GET",
        _cluster_path(group_id, cluster_name) + f"/backup/restoreJobs/{restore_job_id}",
        group_id=group_id,
        cluster=cluster_name,
        subject=f"Restore job {restore_job_id}",
        not_found_hint=UNKNOWN_JOB_HINT,
    )


def list_restore_jobs(group_id: str, cluster_name: str, page: int, items_per_page: int) -> ApiCall:
    return ApiCall(
        "listGroupFlexClusterBackupRestoreJobs",
        "GET",
        _cluster_path(group_id, cluster_name) + "/backup/restoreJobs",
        params=_page_params(page, items_per_page),
        group_id=group_id,
        cluster=cluster_name,
    )


def list_snapshots(group_id: str, cluster_name: str, page: int, items_per_page: int) -> ApiCall:
    return ApiCall(
        "listGroupFlexClusterBackupSnapshots",
        "GET",
        _cluster_path(group_id, cluster_name) + "/backup/snapshots",
        params=_page_params(page, items_per_page),
        group_id=group_id,
        cluster=cluster_name,
    )


def get_snapshot(group_id: str, cluster_name: str, snapshot_id: str) -> ApiCall:
    require_object_id(snapshot_id, "snapshot_id")
    return ApiCall(
        "getGroupFlexClusterBackupSnapshot",
        "GET",
        _cluster_path(group_id, cluster_name) + f"/backup/snapshots/{snapshot_id}",
        group_id=group_id,
        cluster=cluster_name,
        subject=f"Snapshot {snapshot_id}",
    )


def list_flex_clusters(group_id: str, page: int, items_per_page: int) -> ApiCall:
    require_object_id(group_id, "group_id")
    return ApiCall(
        "listGroupFlexClusters",
        "GET",
        f"{API_PREFIX}/groups/{group_id}/flexClusters",
        params=_page_params(page, items_per_page),
        group_id=group_id,
    )


def list_groups(page: int, items_per_page: int) -> ApiCall:
    return ApiCall(
        "listGroups",
        "GET",
        f"{API_PREFIX}/groups",
        params=_page_params(page, items_per_page),
        version=LIST_GROUPS_VERSION,
    )


def create_restore_job(
    group_id: str, cluster_name: str, snapshot_id: str, target_cluster: str, target_group_id: str
) -> ApiCall:
    """POST .../backup/restoreJobs: restore ``snapshot_id`` into ``target_cluster`` (a RESTORE job).

    Only the writable fields are sent: ``deliveryType`` is read-only and Atlas refuses it.
    """
    require_object_id(snapshot_id, "snapshot_id")
    require_cluster_name(target_cluster, "target_cluster_name")
    require_object_id(target_group_id, "target_group_id")
    return ApiCall(
        "createGroupFlexClusterBackupRestoreJob",
        "POST",
        _cluster_path(group_id, cluster_name) + "/backup/restoreJobs",
        json_body={
            "snapshotId": snapshot_id,
            "targetDeploymentItemName": target_cluster,
            "targetProjectId": target_group_id,
        },
        group_id=group_id,
        cluster=cluster_name,
        subject=f"Snapshot {snapshot_id}",
    )


def _page_params(page: int, items_per_page: int) -> dict[str, str]:
    whole = isinstance(items_per_page, int) and not isinstance(items_per_page, bool)
    if not whole or not 1 <= items_per_page <= MAX_ITEMS_PER_PAGE:
        raise AtlasFlexConfigError(
            f"items_per_page must be a whole number from 1 to {MAX_ITEMS_PER_PAGE}, got {items_per_page!r}."
        )
    return {"pageNum": str(page), "itemsPerPage": str(items_per_page), "includeCount": "true"}
