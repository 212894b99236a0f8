"""Sensor that waits until a DOWNLOAD restore job's snapshotUrl is ready (poke, reschedule or deferred)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_atlasflex.compat import AirflowSensorTimeout, default_deferrable, mask_secret
from airflow_provider_atlasflex.defaults import DEFAULT_CONN_ID
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_object_id,
    require_positive_number,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

__all__ = ["AtlasFlexSnapshotUrlSensor"]


class AtlasFlexSnapshotUrlSensor(BaseSensorOperator):
    """Wait until Atlas has prepared the snapshot file of a DOWNLOAD restore job.

    Returns the restore job (its ``snapshotUrl`` with the credential query removed). Fails at
    once, without retries, when the job is FAILED, is not a DOWNLOAD job, or its link expired.

    :param cluster_name: flex cluster name (templated).
    :param restore_job_id: 24-hex restore job id (templated), e.g. the download operator's
        ``restore_job_id`` XCom.
    :param group_id: project id (templated); omitted: the connection's ``group_id`` extra.
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    :param deferrable: wait in the triggerer, holding no worker slot (default:
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("cluster_name", "restore_job_id", "group_id", "atlas_conn_id")
    ui_color = "#b8e5c9"

    def __init__(
        self,
        *,
        cluster_name: str,
        restore_job_id: str,
        group_id: str | None = None,
        atlas_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", timedelta(hours=3))
        # Not templated, so checked here: Airflow's own check lets True, 0 and inf through or fails obscurely.
        for name in ("poke_interval", "timeout"):
            if kwargs[name] is not None and not isinstance(kwargs[name], timedelta):
                require_positive_number(kwargs[name], name)
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.restore_job_id = restore_job_id
        self.group_id = group_id
        self.atlas_conn_id = atlas_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        # The hook of the running execute(), shared by its pokes (see _hook_session).
        self._hook: AtlasFlexHook | None = None

    def _checked_arguments(self) -> tuple[str, str, str | None, str]:
        return (
            require_cluster_name(self.cluster_name),
            require_object_id(self.restore_job_id, "restore_job_id"),
            optional_object_id(self.group_id, "group_id", "the connection's group_id extra"),
            require_connection_id(self.atlas_conn_id),
        )

    @contextmanager
    def _hook_session(self, conn_id: str) -> Iterator[None]:
        """One hook (one HTTP session, one Digest nonce) for every poke of this execute(), closed when it ends.

        In poke mode the sensor waits in one process, so its pokes share the session: with Digest
        only the first poke answers a challenge. Whatever ends execute() (ready, failed, timed out,
        rescheduled, deferred) closes it; a rescheduled or resumed try is a new process and a new hook.
        """
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

        self._hook = AtlasFlexHook(conn_id)
        try:
            yield
        finally:
            hook, self._hook = self._hook, None
            hook.close()

    def execute(self, context: Context) -> Any:
        # Checked before the first request, in every mode.
        cluster, job_id, group_id, conn_id = self._checked_arguments()
        require_bool(self.deferrable, "deferrable")
        # "False" would count as true: a failed export would be reported as skipped.
        require_bool(self.soft_fail, "soft_fail")
        # Each poke is a request to Atlas: 0 would poll it in a tight loop and be rate-limited.
        require_positive_number(self.poke_interval, "poke_interval")
        # 0 would give up right after the first request.
        require_positive_number(self.timeout, "timeout")
        with self._hook_session(conn_id):
            return self._wait(context, cluster, job_id, group_id, conn_id)

    def _wait(self, context: Context, cluster: str, job_id: str, group_id: str | None, conn_id: str) -> Any:
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as exc:
                # Airflow's own message names neither the job nor the cluster: say which, and what to do.
                raise AirflowSensorTimeout(
                    f"Restore job {self.restore_job_id} of cluster {self.cluster_name!r} was not ready within the "
                    f"sensor's timeout of {float(self.timeout):g} s ({exc}). Atlas may be slow or stuck: check the job "
                    "in the Atlas UI, then clear the sensor to wait again or raise timeout."
                ) from None
        # One synchronous look first: a job that is already done or failed needs no trigger.
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        poked_at = time.time()
        from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

        self.defer(
            trigger=AtlasFlexRestoreJobTrigger(
                cluster_name=cluster,
                restore_job_id=job_id,
                group_id=group_id,
                atlas_conn_id=conn_id,
                poll_interval=float(self.poke_interval),
                end_time=poked_at + float(self.timeout),
                # The poke above was this wait's first look: the trigger's first GET comes one interval later.
                first_poll_at=poked_at + float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        cluster, job_id, group_id, conn_id = self._checked_arguments()
        if self._hook is not None:
            job = self._hook.get_restore_job(cluster, job_id, group_id)
        else:  # poke() called on its own, outside execute()
            from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

            hook = AtlasFlexHook(conn_id)
            try:
                job = hook.get_restore_job(cluster, job_id, group_id)
            finally:
                hook.close()
        from airflow_provider_atlasflex.restore_jobs import public_job_view, ready_snapshot_url

        url = ready_snapshot_url(job, cluster)
        if not url:
            self.log.info("Restore job %s of %s is %s; waiting", job_id, cluster, job.get("status"))
            return PokeReturnValue(is_done=False)
        mask_secret(url)
        self.log.info("Snapshot link of restore job %s is ready (valid until %s)", job_id, job.get("expirationDate"))
        return PokeReturnValue(is_done=True, xcom_value=public_job_view(job))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the job, or raise the error the trigger found (same class, so
        an error no retry can fix skips Airflow's retries)."""
        status = event.get("status")
        if status == "success":
            self.log.info("Snapshot link of restore job %s is ready", event.get("restore_job_id"))
            return event["job"]
        if status == "timeout":
            raise AirflowSensorTimeout(event.get("message") or "Restore job trigger timed out.")
        from airflow_provider_atlasflex.triggers.restore_job import event_error

        raise event_error(event)
