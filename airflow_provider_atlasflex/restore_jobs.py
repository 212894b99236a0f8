"""Reading DOWNLOAD restore jobs and snapshots: is a job ready, failed, expired or reusable?

The sensor, the trigger, the operator and the transfer all ask these questions; the answers live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_atlasflex.defaults import DEFAULT_MIN_LINK_VALIDITY
from airflow_provider_atlasflex.exceptions import AtlasUnexpectedAnswerError, RestoreJobFailedError
from airflow_provider_atlasflex.validation import redact_url


def parse_atlas_time(value: Any) -> datetime | None:
    """Parse Atlas' ISO 8601 UTC timestamps ('2026-11-28T13:00:00Z'); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    import pendulum  # handles every ISO 8601 form Atlas uses (Z, millisecond fractions) on Python 3.10

    try:
        parsed = pendulum.parse(value, tz="UTC")
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    if not isinstance(parsed, datetime):
        return None
    return datetime.fromtimestamp(parsed.timestamp(), tz=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def public_job_view(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job as it may be stored in XCom or a trigger event: the link's query string removed.

    The query of a pre-signed snapshotUrl is a credential for 4 hours; the transfer reads the
    live link from Atlas instead.
    """
    view = dict(job)
    if isinstance(view.get("snapshotUrl"), str):
        view["snapshotUrl"] = redact_url(view["snapshotUrl"])
    return view


def describe_job(job: Mapping[str, Any], cluster_name: str | None = None) -> str:
    cluster = cluster_name or job.get("instanceName") or "?"
    return f"restore job {job.get('id')} (snapshot {job.get('snapshotId')}, cluster {cluster!r})"


def ready_snapshot_url(job: Mapping[str, Any], cluster_name: str | None = None, now: datetime | None = None) -> str | None:
    """The job's snapshotUrl once it is usable, None while Atlas is still preparing it.

    Raises :class:`RestoreJobFailedError` when waiting cannot help: FAILED, not a DOWNLOAD job,
    or a link whose expirationDate has passed.
    """
    what = describe_job(job, cluster_name)
    delivery = job.get("deliveryType")
    if delivery not in (None, "DOWNLOAD"):
        raise RestoreJobFailedError(
            f"{what} has deliveryType {delivery!r}, not DOWNLOAD: it restores into a cluster and never gets a "
            "snapshotUrl. Pass the id of a job created by AtlasFlexSnapshotDownloadOperator."
        )
    if job.get("status") == "FAILED":
        raise RestoreJobFailedError(
            f"Atlas reports {what} as FAILED. Request the download again (clear the download task); if it "
            "keeps failing, check the snapshot in the Atlas UI or contact MongoDB support."
        )
    expires = parse_atlas_time(job.get("expirationDate"))
    if expires is not None and expires <= (now or utcnow()):
        raise RestoreJobFailedError(
            f"The download link of {what} expired at {job.get('expirationDate')}. Clear the download task to "
            "request a fresh link (links live 4 hours)."
        )
    url = job.get("snapshotUrl")
    if url is not None and not isinstance(url, str):
        # Waiting cannot turn it into a link: fail now, not after the sensor's whole timeout.
        raise AtlasUnexpectedAnswerError(
            f"Atlas sent {what} with a snapshotUrl that is a {type(url).__name__}, not a string; the spec "
            "promises a link. Check the connection's Host points at Atlas (no proxy rewriting answers).",
            operation="getGroupFlexClusterBackupRestoreJob",
        )
    return url if url else None


def is_reusable_download(
    job: Mapping[str, Any], snapshot_id: str, now: datetime, min_validity: timedelta = DEFAULT_MIN_LINK_VALIDITY
) -> bool:
    """True when ``job`` is a live DOWNLOAD job for ``snapshot_id`` whose link (if any) has time left."""
    if job.get("snapshotId") != snapshot_id or job.get("deliveryType") != "DOWNLOAD":
        return False
    if job.get("status") == "FAILED":
        return False
    expires = parse_atlas_time(job.get("expirationDate"))
    return expires is None or expires - now >= min_validity


def snapshot_time(snapshot: Mapping[str, Any]) -> datetime | None:
    """When a snapshot was taken: its finishTime, else startTime, else scheduledTime (None: none parses)."""
    for key in ("finishTime", "startTime", "scheduledTime"):
        parsed = parse_atlas_time(snapshot.get(key))
        if parsed is not None:
            return parsed
    return None


def newest_completed_snapshot(snapshots: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The COMPLETED snapshot with the latest finish (or start/scheduled) time."""
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    completed = [s for s in snapshots if s.get("status") == "COMPLETED" and s.get("id")]
    return max(completed, key=lambda s: snapshot_time(s) or epoch, default=None)
