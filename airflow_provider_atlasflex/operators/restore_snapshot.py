"""Operator that restores a flex snapshot into a (scratch) flex cluster and waits until it is done."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.compat import default_deferrable
from airflow_provider_atlasflex.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_MAX_SNAPSHOT_AGE,
    DEFAULT_RESTORE_TARGET_PATTERN,
)
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

    Built for restore drills, where passing must mean "this run restored a fresh backup":

    * The restore replaces the target's data, so the target must be an existing flex cluster whose
      name matches ``target_pattern`` (default ``restore-drill*``) unless ``allow_any_target=True``,
      and restoring over the source itself is refused unless ``allow_restore_over_source=True``;
      both checks run before any request.
    * The snapshot must have finished within ``max_snapshot_age`` (Atlas' ``finishTime``).
    * Each DAG run restores anew. A RESTORE job of the same snapshot into the same target is reused
      only when Atlas scheduled it since this DAG run started: an earlier try of this task (even one
      that died right after Atlas accepted the request) is waited for, never started twice, while
      last week's COMPLETED job is not taken for this week's. A clear of a finished run restarts
      its clock (Airflow resets the run's start), so it restores anew too. This needs the workers'
      and Atlas' clocks in step (NTP); a worker clock running ahead only risks a second restore.
    * A restore still running into the target from before this run fails the try (retryable)
      rather than racing it with a second restore.

    Waits in the worker (poke) or in the triggerer (deferrable). Returns the restore job and pushes
    ``restore_job_id`` and ``snapshot_id`` to XCom.

    :param cluster_name: source flex cluster (templated).
    :param target_cluster_name: flex cluster to restore into, e.g. a scratch cluster (templated).
    :param snapshot_id: 24-hex snapshot id (templated); omitted: the source's newest COMPLETED snapshot.
    :param group_id: source project (templated); omitted: the connection's ``group_id`` extra.
    :param target_group_id: target project (templated); omitted: the source project.
    :param allow_restore_over_source: permit target == source (default False: refuse).
    :param target_pattern: glob the target's name must match (default ``restore-drill*``); not
        templated, so run conf cannot widen it.
    :param allow_any_target: skip the ``target_pattern`` check (default False).
    :param max_snapshot_age: newest finish time allowed for the snapshot, as its age (default 36
        hours); None restores any snapshot (e.g. an old one chosen on purpose for a recovery).
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
        target_pattern: str = DEFAULT_RESTORE_TARGET_PATTERN,
        allow_any_target: bool = False,
        max_snapshot_age: timedelta | float | None = DEFAULT_MAX_SNAPSHOT_AGE,
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
        self.target_pattern = target_pattern
        self.allow_any_target = allow_any_target
        self.max_snapshot_age = max_snapshot_age
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
        allow_any_target = require_bool(self.allow_any_target, "allow_any_target")
        pattern = self._target_pattern()
        max_age = None if self.max_snapshot_age is None else require_timedelta(self.max_snapshot_age, "max_snapshot_age")
        require_bool(self.deferrable, "deferrable")
        poll = require_positive_number(self.poll_interval, "poll_interval")
        timeout = require_timedelta(self.timeout, "timeout").total_seconds()
        if timeout <= 0:
            raise AtlasFlexConfigError(f"timeout must be greater than zero, got {self.timeout!r}.")
        run_started = self._run_started(context)
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
        from airflow_provider_atlasflex.restore_jobs import utcnow
        from airflow_provider_atlasflex.restore_targets import (
            check_snapshot_fresh,
            newest_restore_into,
            restore_finished,
            restores_in_progress_into,
        )

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
            if not allow_any_target and not fnmatchcase(target, pattern):
                raise AtlasFlexConfigError(
                    f"Refusing to restore into {target!r}: its name does not match target_pattern {pattern!r}, and a "
                    "restore replaces the target's data. Restore into a scratch cluster whose name matches (e.g. "
                    "'restore-drill-scratch'), set target_pattern to the glob of your scratch clusters, or pass "
                    "allow_any_target=True if this cluster may really be overwritten."
                )
            self._check_target(hook, target, target_group)
            if snapshot_id is None:
                snapshot = hook.get_newest_completed_snapshot(source, group_id)
                snapshot_id = str(snapshot["id"])
                self.log.info("Newest COMPLETED snapshot of %s is %s", source, snapshot_id)
            else:
                snapshot = hook.get_snapshot(source, snapshot_id, group_id)
            jobs = hook.list_restore_jobs(source, group_id)
            found = newest_restore_into(jobs, snapshot_id, target, target_group, since=run_started)
            if found is not None:
                job = dict(found)
                self.log.info(
                    "Restore job %s (status %s, scheduled %s) restores snapshot %s into %s and was started by this "
                    "DAG run (which started %s): waiting for it, not starting another",
                    job.get("id"),
                    job.get("status"),
                    job.get("restoreScheduledDate"),
                    snapshot_id,
                    target,
                    run_started.isoformat(),
                )
            else:
                # Judged when this run starts its restore, not on a retry of it: a retry after the snapshot
                # crossed max_snapshot_age waits for the restore already begun instead of failing.
                if max_age is not None:
                    age = check_snapshot_fresh(snapshot, source, max_age, utcnow())
                    self.log.info(
                        "Snapshot %s finished at %s (%.1f hours ago, within max_snapshot_age)",
                        snapshot_id,
                        snapshot.get("finishTime"),
                        age.total_seconds() / 3600,
                    )
                self._refuse_busy_target(restores_in_progress_into(jobs, target, target_group), target)
                job = hook.request_restore(
                    source, snapshot_id, target, target_group, group_id, existing_job_ids={str(j.get("id")) for j in jobs}
                )
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
                        f"after {timeout:g} s. Check it in the Atlas UI, or raise timeout. A retry in this DAG run waits "
                        f"for this job again; no run starts a second restore into {target!r} while it is running, "
                        "and a new run (or a clear of a finished one) restores anew once it has finished."
                    )
                self.log.info("Restore job %s is %s; next check in %.0f s", job_id, job.get("status"), poll)
        finally:
            hook.close()

    def _target_pattern(self) -> str:
        pattern = self.target_pattern
        if not isinstance(pattern, str) or not pattern.strip():
            raise AtlasFlexConfigError(
                f"target_pattern must be a non-empty glob such as 'restore-drill*', got {pattern!r}. To restore into "
                "any cluster, pass allow_any_target=True instead."
            )
        return pattern

    def _run_started(self, context: Context) -> datetime:
        """When this DAG run started, as the earliest moment a job of this run can have been scheduled.

        The run's ``start_date`` (``run_after`` when later: ``airflow dags test`` with a past date sets
        start_date to that date), never later than this try's start; without a run (a bare
        ``execute()``), this try's start or now.
        """
        ti = context.get("ti")
        now = getattr(ti, "start_date", None) or datetime.now(timezone.utc)
        dag_run = context.get("dag_run")
        known = [t for t in (getattr(dag_run, "start_date", None), getattr(dag_run, "run_after", None)) if t]
        return min(max(known), now) if known else now

    def _refuse_busy_target(self, running: Sequence[Mapping[str, Any]], target: str) -> None:
        if running:
            job = running[0]
            raise AtlasFlexError(
                f"Restore job {job.get('id')} (snapshot {job.get('snapshotId')}, status {job.get('status')}, "
                f"scheduled {job.get('restoreScheduledDate')}) is still restoring into {target!r}; it was not "
                "started by this DAG run, and a second restore into the same cluster would race it. This try "
                "fails without starting one; a retry once it has finished restores anew."
            )

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
