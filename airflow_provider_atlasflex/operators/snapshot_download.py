"""Operator that asks Atlas for a flex snapshot's download link (a DOWNLOAD restore job)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.defaults import DEFAULT_CONN_ID, DEFAULT_MIN_LINK_VALIDITY
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_timedelta,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["AtlasFlexSnapshotDownloadOperator"]


class AtlasFlexSnapshotDownloadOperator(BaseOperator):
    """Request the download link of a flex cluster's backup snapshot.

    Returns the restore job (``snapshotUrl`` with its credential query removed) and pushes
    ``restore_job_id`` and ``snapshot_id`` to XCom. Safe on task retry: a live DOWNLOAD job for
    the same snapshot whose link has ``min_link_validity`` left is reused, not duplicated.

    :param cluster_name: flex cluster name (templated).
    :param snapshot_id: 24-hex snapshot id (templated); omitted: the newest COMPLETED snapshot.
    :param group_id: project id (templated); omitted: the connection's ``group_id`` extra.
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    :param reuse_existing_job: reuse a live DOWNLOAD job for the same snapshot (default True).
    :param min_link_validity: how long a reused link must still be valid (default 30 minutes).
    """

    template_fields: Sequence[str] = ("cluster_name", "snapshot_id", "group_id", "atlas_conn_id")
    ui_color = "#13aa52"

    def __init__(
        self,
        *,
        cluster_name: str,
        snapshot_id: str | None = None,
        group_id: str | None = None,
        atlas_conn_id: str = DEFAULT_CONN_ID,
        reuse_existing_job: bool = True,
        min_link_validity: timedelta = DEFAULT_MIN_LINK_VALIDITY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.snapshot_id = snapshot_id
        self.group_id = group_id
        self.atlas_conn_id = atlas_conn_id
        self.reuse_existing_job = reuse_existing_job
        self.min_link_validity = min_link_validity

    def execute(self, context: Context) -> dict[str, Any]:
        # Every argument is checked before the first request: a bad DAG fails in seconds.
        cluster = require_cluster_name(self.cluster_name)
        snapshot_id = optional_object_id(self.snapshot_id, "snapshot_id", "the newest COMPLETED snapshot")
        group_id = optional_object_id(self.group_id, "group_id", "the connection's group_id extra")
        min_validity = require_timedelta(self.min_link_validity, "min_link_validity")
        require_bool(self.reuse_existing_job, "reuse_existing_job")
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

        hook = AtlasFlexHook(require_connection_id(self.atlas_conn_id))
        try:
            group_id = hook.resolve_group_id(hook.config, group_id)
            if snapshot_id is None:
                snapshot_id = hook.get_newest_completed_snapshot(cluster, group_id)["id"]
                self.log.info("Newest COMPLETED snapshot of %s is %s", cluster, snapshot_id)
            job = None
            if self.reuse_existing_job:
                job = hook.find_reusable_download_job(cluster, snapshot_id, group_id, min_validity)
                if job is not None:
                    self.log.info(
                        "Reusing DOWNLOAD restore job %s (status %s) for snapshot %s of %s",
                        job.get("id"), job.get("status"), snapshot_id, cluster,
                    )
            if job is None:
                job = hook.request_snapshot_download(cluster, snapshot_id, group_id)
                self.log.info(
                    "Requested download of snapshot %s of %s: restore job %s (status %s)",
                    snapshot_id, cluster, job.get("id"), job.get("status"),
                )
        finally:
            hook.close()
        from airflow_provider_atlasflex.restore_jobs import public_job_view

        view = public_job_view(job)
        context["ti"].xcom_push(key="restore_job_id", value=view.get("id"))
        context["ti"].xcom_push(key="snapshot_id", value=snapshot_id)
        return view
