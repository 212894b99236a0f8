"""Trigger that waits in the triggerer until a DOWNLOAD restore job's snapshotUrl is ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_atlasflex.exceptions import (
    AirflowFailException,
    AtlasApiError,
    AtlasAuthenticationError,
    AtlasBadRequestError,
    AtlasFlexConfigError,
    AtlasFlexError,
    AtlasMissingRoleError,
    AtlasNoCompletedSnapshotError,
    AtlasNotFoundError,
    AtlasPermissionError,
    AtlasRateLimitError,
    AtlasRedirectError,
    AtlasUnexpectedAnswerError,
    RestoreJobFailedError,
    SnapshotLinkExpiredError,
    SnapshotTransferError,
)
from airflow_provider_atlasflex.restore_jobs import public_job_view, ready_snapshot_url
from airflow_provider_atlasflex.restore_targets import restore_finished
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_cluster_name,
    require_connection_id,
    require_object_id,
    require_positive_number,
)

__all__ = ["AtlasFlexRestoreJobTrigger", "error_event_fields", "event_error"]

# While a job's status does not change, the trigger logs it this often (and whenever it changes).
PROGRESS_LOG_SECONDS = 300.0

# The error classes an "error" event may name. An event is data read back from the database, so the
# deferred task maps the name through this fixed table and never imports a class named in it.
EVENT_ERRORS: dict[str, type[AtlasFlexError]] = {
    cls.__name__: cls
    for cls in (
        AtlasFlexError,
        AtlasFlexConfigError,
        AtlasApiError,
        AtlasAuthenticationError,
        AtlasPermissionError,
        AtlasMissingRoleError,
        AtlasNotFoundError,
        AtlasBadRequestError,
        AtlasRedirectError,
        AtlasUnexpectedAnswerError,
        AtlasNoCompletedSnapshotError,
        AtlasRateLimitError,
        RestoreJobFailedError,
        SnapshotTransferError,
        SnapshotLinkExpiredError,
    )
}


def error_event_fields(exc: AtlasFlexError) -> dict[str, Any]:
    """What an "error" event says about ``exc``: its message, kind and whether a task retry can help.

    Only JSON-serialisable values, and nothing the exception's message does not already show
    (the message is built from ids, names and Atlas' error fields, never a secret).
    """
    kind = next(c for c in type(exc).__mro__ if EVENT_ERRORS.get(c.__name__) is c)
    fields: dict[str, Any] = {
        "message": str(exc),
        "error": kind.__name__,
        "retryable": not isinstance(exc, AirflowFailException),
    }
    if isinstance(exc, AtlasApiError):
        fields["http_status"] = exc.status
        fields["error_code"] = exc.error_code
    return fields


def event_error(event: Mapping[str, Any]) -> AtlasFlexError:
    """The exception a deferred task raises for a trigger event that is not "success".

    An "error" event is rebuilt as the class the triggerer caught, so an error no retry can fix
    (404, wrong credentials, missing role, FAILED job, expired link) fails the task without
    Airflow's retries, and a transient one keeps them. Events of older triggers name no class and
    stay retryable.
    """
    status = event.get("status")
    message = str(event.get("message") or f"Restore job trigger ended with status {status!r}.")
    if status == "failed":
        return RestoreJobFailedError(message)
    if status != "error":
        return AtlasFlexError(message)
    cls = EVENT_ERRORS.get(str(event.get("error")), AtlasFlexError)
    if issubclass(cls, AtlasApiError):
        http_status = event.get("http_status")
        error_code = event.get("error_code")
        return cls(
            message,
            status=http_status if isinstance(http_status, int) else None,
            error_code=error_code if isinstance(error_code, str) else None,
        )
    return cls(message)


class AtlasFlexRestoreJobTrigger(BaseTrigger):
    """Poll GET .../backup/restoreJobs/{id} until ``snapshotUrl`` appears, the job fails, or ``end_time``.

    The deadline is enforced here because not every trigger runner enforces the task's timeout
    (``airflow dags test`` runs triggers inline without one). Events never carry the link's
    credential query string.

    :param end_time: Unix time after which the trigger reports ``timeout``.
    :param wait_for: ``"snapshot_url"`` (a DOWNLOAD job's link is ready, the default) or
        ``"completed"`` (a RESTORE job into a cluster is COMPLETED).
    :param first_poll_at: Unix time of the first GET. The deferring sensor has just looked at the job,
        so it passes its next poke time instead of having the trigger repeat that request at once.
    """

    WAIT_FOR = ("snapshot_url", "completed")

    def __init__(
        self,
        *,
        cluster_name: str,
        restore_job_id: str,
        group_id: str | None,
        atlas_conn_id: str,
        poll_interval: float,
        end_time: float,
        wait_for: str = "snapshot_url",
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        # Checked here, before run() sends anything: 0 s would poll Atlas in a tight loop, and a bad
        # end_time would only surface after the first request.
        self.cluster_name = require_cluster_name(cluster_name)
        self.restore_job_id = require_object_id(restore_job_id, "restore_job_id")
        self.group_id = optional_object_id(group_id, "group_id", "the connection's group_id extra")
        self.atlas_conn_id = require_connection_id(atlas_conn_id)
        self.poll_interval = require_positive_number(poll_interval, "poll_interval")
        self.end_time = require_positive_number(end_time, "end_time (Unix time)")
        if wait_for not in self.WAIT_FOR:
            raise AtlasFlexConfigError(f"wait_for must be one of {self.WAIT_FOR}, got {wait_for!r}.")
        self.wait_for = wait_for
        self.first_poll_at = None if first_poll_at is None else require_positive_number(first_poll_at, "first_poll_at")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster_name": self.cluster_name,
                "restore_job_id": self.restore_job_id,
                "group_id": self.group_id,
                "atlas_conn_id": self.atlas_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "wait_for": self.wait_for,
                "first_poll_at": self.first_poll_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook

        hook = AtlasFlexAsyncHook(self.atlas_conn_id)
        base = {"cluster_name": self.cluster_name, "restore_job_id": self.restore_job_id}
        polls, logged_status, next_progress_log = 0, None, 0.0
        try:
            if self.first_poll_at is not None:
                await asyncio.sleep(max(0.0, min(self.first_poll_at, self.end_time) - time.time()))
            while True:
                job = await hook.get_restore_job(self.cluster_name, self.restore_job_id, self.group_id)
                try:
                    if self.wait_for == "completed":
                        url = "completed" if restore_finished(job) else None
                    else:
                        url = ready_snapshot_url(job, self.cluster_name)
                except RestoreJobFailedError as exc:
                    yield TriggerEvent({**base, "status": "failed", "message": str(exc), "job": public_job_view(job)})
                    return
                if url:
                    yield TriggerEvent({**base, "status": "success", "job": public_job_view(job)})
                    return
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    yield TriggerEvent(
                        {
                            **base,
                            "status": "timeout",
                            "message": f"Restore job {self.restore_job_id} of cluster {self.cluster_name!r} was "
                            f"still {job.get('status')} when the sensor's timeout ran out. Atlas may be slow or stuck: check "
                            "the job in the Atlas UI, then clear the sensor to wait again or raise timeout.",
                            "job": public_job_view(job),
                        }
                    )
                    return
                polls += 1
                status = job.get("status")
                now = time.monotonic()
                if status != logged_status or now >= next_progress_log:
                    # A line when the status changes and one every PROGRESS_LOG_SECONDS while it does not: 500
                    # waits polled every few seconds would otherwise write a line per poll (the CPU the
                    # triggerer needs for polling, and a log nobody can read).
                    self.log.info(
                        "Restore job %s is %s after %d poll(s); checking every %g s until it is ready",
                        self.restore_job_id, status, polls, self.poll_interval,
                    )
                    logged_status, next_progress_log = status, now + PROGRESS_LOG_SECONDS
                await asyncio.sleep(min(self.poll_interval, remaining))
        except AtlasFlexError as exc:
            yield TriggerEvent({**base, "status": "error", **error_event_fields(exc)})
        finally:
            await hook.aclose()
