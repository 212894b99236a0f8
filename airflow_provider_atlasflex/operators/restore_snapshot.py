"""Operator that restores a flex snapshot into a (scratch) flex cluster and waits until it is done."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.compat import default_deferrable
from airflow_provider_atlasflex.defaults import DEFAULT_CONN_ID
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError, RestoreJobFailedError
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_positive_number,
    require_timedelta,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

__all__ = ["AtlasFlexRestoreSnapshotOperator"]


class AtlasFlexRestoreSnapshotOperator(BaseOperator):
    """Restore a snapshot of ``cluster_name`` into ``target_cluster_name`` and wait for COMPLETED.

    The restore replaces the target's data, so the target must be an existing flex cluster, and
    restoring over the source cluster itself is refused unless ``allow_restore_over_source=True``.
    Safe on retry: a RESTORE job of the same snapshot into the same target (running or COMPLETED)
    is waited for, never started twice. Waits in the worker (poke) or in the triggerer (deferrable).

    Returns the restore job and pushes ``restore_job_id`` and ``snapshot_id`` to XCom.

    :param cluster_name: source flex cluster (templated).
    :param target_cluster_name: flex cluster to restore into, e.g. a scratch cluster (templated).
    :param snapshot_id: 24-hex snapshot id (templated); omitted: the source's newest COMPLETED snapshot.
    :param group_id: source project (templated); omitted: the connection's ``group_id`` extra.
    :param target_group_id: target project (templated); omitted: the source project.
    :param allow_restore_over_source: permit target == source (default False: refuse).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between status checks (default 30).
    :param timeout: how long to wait for COMPLETED (default 2 hours).
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    """

    template_fields: Sequence[str] = (
        "cluster_name",
        "target_cluster_name",
        "snapshot_id",
        "group_id",
        "target_group_id",
        "atlas_conn_id",
    )
    ui_color = "#f5c6cb"

    def __init__(
        self,
        *,
        cluster_name: str,
        target_cluster_name: str,
        snapshot_id: str | None = None,
        group_id: str | None = None,
        target_group_id: str | None = None,
        allow_restore_over_source: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = 30.0,
        timeout: timedelta | float = timedelta(hours=2),
        atlas_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.target_cluster_name = target_cluster_name
        self.snapshot_id = snapshot_id
        self.group_id = group_id
        self.target_group_id = target_group_id
        self.allow_restore_over_source = allow_restore_over_source
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.atlas_conn_id = atlas_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        # Every argument is checked before the first request.
        source = require_cluster_name(self.cluster_name)
        target = require_cluster_name(self.target_cluster_name, "target_cluster_name")
        snapshot_id = optional_object_id(self.snapshot_id, "snapshot_id", "the newest COMPLETED snapshot")
        group_id = optional_object_id(self.group_id, "group_id", "the connection's group_id extra")
        target_group = optional_object_id(self.target_group_id, "target_group_id", "the source project")
        allow_over_source = require_bool(self.allow_restore_over_source, "allow_restore_over_source")
        require_bool(self.deferrable, "deferrable")
        poll = require_positive_number(self.poll_interval, "poll_interval")
        timeout = require_timedelta(self.timeout, "timeout").total_seconds()
        if timeout <= 0:
            raise AtlasFlexConfigError(f"timeout must be greater than zero, got {self.timeout!r}.")
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
        from airflow_provider_atlasflex.restore_targets import restore_finished

        hook = AtlasFlexHook(require_connection_id(self.atlas_conn_id))
        try:
            group_id = hook.resolve_group_id(hook.config, group_id)  # reads the connection, sends nothing
            target_group = target_group or group_id
            if target == source and target_group == group_id and not allow_over_source:
                raise AtlasFlexConfigError(
                    f"Refusing to restore cluster {source!r} over itself: the restore would replace its live data "
                    "with the snapshot. Name a scratch cluster in target_cluster_name, or set "
                    "allow_restore_over_source=True if that is really what you want."
                )
            self._check_target(hook, target, target_group)
            if snapshot_id is None:
                snapshot_id = str(hook.get_newest_completed_snapshot(source, group_id)["id"])
                self.log.info("Newest COMPLETED snapshot of %s is %s", source, snapshot_id)
            job = hook.find_restore_job(source, snapshot_id, target, target_group, group_id)
            if job is not None:
                self.log.info(
                    "Restore job %s (status %s) already restores snapshot %s into %s: waiting for it, not starting "
                    "another",
                    job.get("id"),
                    job.get("status"),
                    snapshot_id,
                    target,
                )
            else:
                job = hook.request_restore(source, snapshot_id, target, target_group, group_id)
                self.log.info(
                    "Started restore job %s: snapshot %s of %s into %s (project %s)",
                    job.get("id"),
                    snapshot_id,
                    source,
                    target,
                    target_group,
                )
            job_id = str(job.get("id"))
            context["ti"].xcom_push(key="restore_job_id", value=job_id)
            context["ti"].xcom_push(key="snapshot_id", value=snapshot_id)
            started = time.monotonic()
            if restore_finished(job):
                return self._done(job, started)
            if self.deferrable:
                from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

                self.defer(
                    trigger=AtlasFlexRestoreJobTrigger(
                        cluster_name=source,
                        restore_job_id=job_id,
                        group_id=group_id,
                        atlas_conn_id=self.atlas_conn_id,
                        poll_interval=poll,
                        end_time=time.time() + timeout,
                        wait_for="completed",
                    ),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=timeout),
                )
            deadline = started + timeout
            while True:
                time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
                job = hook.get_restore_job(source, job_id, group_id)
                if restore_finished(job):
                    return self._done(job, started)
                if time.monotonic() >= deadline:
                    raise AtlasFlexError(
                        f"Restore job {job_id} of snapshot {snapshot_id} into {target!r} was still {job.get('status')} "
                        f"after {timeout:g} s. Check it in the Atlas UI, then clear this task to wait again (it will "
                        "not start a second restore) or raise timeout."
                    )
                self.log.info("Restore job %s is %s; next check in %.0f s", job_id, job.get("status"), poll)
        finally:
            hook.close()

    def _check_target(self, hook: AtlasFlexHook, target: str, target_group: str) -> None:
        """The target must exist and be a flex cluster that can take a restore (404/400 otherwise)."""
        from airflow_provider_atlasflex.operators.cluster_discovery import UNEXPORTABLE_STATES

        description = hook.get_flex_cluster(target, target_group)
        state = str(description.get("stateName"))
        if state in UNEXPORTABLE_STATES:
            raise RestoreJobFailedError(
                f"Cannot restore into {target!r}: {UNEXPORTABLE_STATES[state]}. Wait until it is IDLE, or pick "
                "another scratch cluster."
            )

    def _done(self, job: dict[str, Any], started: float) -> dict[str, Any]:
        self.log.info(
            "Restore job %s COMPLETED: snapshot %s restored into %s (waited %.1f s)",
            job.get("id"),
            job.get("snapshotId"),
            job.get("targetDeploymentItemName"),
            time.monotonic() - started,
        )
        return job

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the job, or raise the error the trigger found (same class, so
        an error no retry can fix skips Airflow's retries)."""
        status = event.get("status")
        if status == "success":
            self.log.info("Restore job %s COMPLETED", event.get("restore_job_id"))
            return dict(event["job"])
        from airflow_provider_atlasflex.triggers.restore_job import event_error

        raise event_error(event)
