"""Operator that copies a flex snapshot's .tgz from its pre-signed link to storage you control."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import (
    AtlasFlexConfigError,
    RestoreJobFailedError,
    SnapshotLinkExpiredError,
    SnapshotTransferError,
)
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.connection_config import DEFAULT_CONN_ID
from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url
from airflow_provider_atlasflex.transfers.destination import (
    check_destination_template,
    partial_path,
    resolve_destination,
)
from airflow_provider_atlasflex.transfers.resumable_download import MIB, ProgressLog, ResumableDownload
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_object_id,
    require_positive_number,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

__all__ = ["AtlasFlexSnapshotToStorageOperator"]


class AtlasFlexSnapshotToStorageOperator(BaseOperator):
    """Stream the snapshot file of a ready DOWNLOAD restore job to ``dst``.

    Memory stays flat whatever the size. The copy goes to a hidden temporary file beside ``dst``
    and is renamed into place only after the HTTP status, Content-Length and gzip integrity are
    checked; on any failure the temporary file is removed and an existing export is untouched.
    A cut connection resumes with an HTTP Range request; an expired link is replaced once by a
    fresh one for the same snapshot.

    :param cluster_name: flex cluster name (templated).
    :param restore_job_id: the ready DOWNLOAD restore job (templated).
    :param dst: destination URL (templated) or ObjectStoragePath. Placeholders ``{cluster_name}``,
        ``{snapshot_id}``, ``{restore_job_id}`` and ``{date}`` (the run's date, YYYY-MM-DD) are filled in.
    :param dst_conn_id: connection for the destination filesystem (templated), e.g. an AWS connection for s3://.
    :param overwrite: replace an existing file at ``dst`` (default False: refuse).
    :param group_id: project id (templated); omitted: the connection's ``group_id`` extra.
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    :param chunk_size: bytes read and written at a time (default 8 MiB).
    :param max_download_attempts: attempts for one copy, resuming after each cut (default 5).
    :param progress_interval: seconds between progress log lines (default 30).
    :param link_refresh_timeout: seconds to wait for a fresh link when the first one expired (default 1800).
    """

    template_fields: Sequence[str] = (
        "cluster_name",
        "restore_job_id",
        "dst",
        "dst_conn_id",
        "group_id",
        "atlas_conn_id",
    )
    ui_color = "#3d4f58"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        cluster_name: str,
        restore_job_id: str,
        dst: str | ObjectStoragePath,
        dst_conn_id: str | None = None,
        overwrite: bool = False,
        group_id: str | None = None,
        atlas_conn_id: str = DEFAULT_CONN_ID,
        chunk_size: int = 8 * MIB,
        max_download_attempts: int = 5,
        progress_interval: float = 30.0,
        link_refresh_timeout: float = 1800.0,
        link_refresh_poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.restore_job_id = restore_job_id
        self.dst = dst
        self.dst_conn_id = dst_conn_id
        self.overwrite = overwrite
        self.group_id = group_id
        self.atlas_conn_id = atlas_conn_id
        self.chunk_size = chunk_size
        self.max_download_attempts = max_download_attempts
        self.progress_interval = progress_interval
        self.link_refresh_timeout = link_refresh_timeout
        self.link_refresh_poll_interval = link_refresh_poll_interval

    def _check_arguments(self) -> None:
        require_cluster_name(self.cluster_name)
        require_object_id(self.restore_job_id, "restore_job_id")
        optional_object_id(self.group_id, "group_id", "the connection's group_id extra")
        require_connection_id(self.atlas_conn_id)
        check_destination_template(self.dst, self.dst_conn_id)
        require_bool(self.overwrite, "overwrite")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or not 1024 <= self.chunk_size <= 256 * MIB:
            raise AtlasFlexConfigError(f"chunk_size must be a whole number of bytes from 1 KiB to 256 MiB, got {self.chunk_size!r}.")
        attempts = self.max_download_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
            raise AtlasFlexConfigError(f"max_download_attempts must be a whole number from 1 to 100, got {attempts!r}.")
        require_positive_number(self.progress_interval, "progress_interval")
        require_positive_number(self.link_refresh_timeout, "link_refresh_timeout", allow_zero=True)
        require_positive_number(self.link_refresh_poll_interval, "link_refresh_poll_interval")

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        cluster, job_id = self.cluster_name, self.restore_job_id
        hook = AtlasFlexHook(self.atlas_conn_id)
        try:
            group_id = hook.resolve_group_id(hook.config, self.group_id)
            job = hook.get_restore_job(cluster, job_id, group_id)
            snapshot_id = require_object_id(job.get("snapshotId"), "snapshotId of the restore job")
            dst = resolve_destination(
                self.dst,
                self.dst_conn_id,
                {"cluster_name": cluster, "snapshot_id": snapshot_id, "restore_job_id": job_id, "date": _run_date(context)},
            )
            if not self.overwrite and dst.exists():
                raise SnapshotTransferError(
                    f"{dst} already exists and overwrite=False: snapshot {snapshot_id} of {cluster!r} was not "
                    "copied again. Delete the file or set overwrite=True to replace it."
                )
            try:
                url = ready_snapshot_url(job, cluster)
            except RestoreJobFailedError as exc:
                if "expired" not in str(exc):
                    raise
                url = None
            if url is None:  # expired (or never ready): one fresh link, and no second refresh later
                url = self._fresh_link(hook, cluster, snapshot_id, group_id, reason="the link had expired")
                may_refresh = False
            else:
                may_refresh = True
            mask_secret(url)
            result = self._copy(url, dst, hook, cluster, snapshot_id, group_id, may_refresh=may_refresh)
        finally:
            hook.close()
        summary = {
            "path": str(dst),
            "bytes": result.bytes,
            "sha256": result.sha256,
            "snapshot_id": snapshot_id,
            "restore_job_id": job_id,
            "cluster_name": cluster,
            "group_id": group_id,
            "seconds": round(result.seconds, 3),
            "attempts": result.attempts,
            "resumes": result.resumes,
            "restarts": result.restarts,
            "link_refreshes": result.link_refreshes + (0 if may_refresh else 1),
            "exported_at": datetime.now(timezone.utc).isoformat(),
        }
        self.log.info(
            "Exported snapshot %s of %s to %s: %d bytes, sha256 %s", snapshot_id, cluster, dst, result.bytes, result.sha256
        )
        return summary

    def _copy(
        self,
        url: str,
        dst: ObjectStoragePath,
        hook: AtlasFlexHook,
        cluster: str,
        snapshot_id: str,
        group_id: str,
        *,
        may_refresh: bool,
    ) -> Any:
        temporary = partial_path(dst)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if temporary.exists():
                self.log.warning("Removing %s left by an earlier, interrupted attempt", temporary)
                temporary.unlink()
            download = ResumableDownload(
                url,
                lambda: temporary.open("wb"),
                refresh_link=(
                    (lambda: self._fresh_link(hook, cluster, snapshot_id, group_id, reason="the link was refused"))
                    if may_refresh
                    else None
                ),
                chunk_size=self.chunk_size,
                max_attempts=self.max_download_attempts,
                timeout=hook.config.timeout,
                progress=ProgressLog(self.log, f"{cluster}/{snapshot_id}", self.progress_interval),
            )
            result = download.run()
            if not self.overwrite and dst.exists():
                raise SnapshotTransferError(f"{dst} appeared while copying and overwrite=False; kept the existing file.")
            temporary.rename(dst)
            return result
        except SnapshotTransferError as exc:
            _discard(temporary)
            raise type(exc)(f"Export of snapshot {snapshot_id} of {cluster!r} to {dst} failed: {exc}") from None
        except OSError as exc:
            _discard(temporary)
            raise SnapshotTransferError(
                f"Export of snapshot {snapshot_id} of {cluster!r} failed writing to {dst}: {exc.strerror or exc}. "
                "Check the destination is writable and has space; nothing was committed."
            ) from None
        except BaseException:
            _discard(temporary)
            raise

    def _fresh_link(self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str, *, reason: str) -> str:
        """Request a new DOWNLOAD job for the same snapshot and wait (bounded) for its link."""
        self.log.warning("Requesting a fresh link for snapshot %s of %s: %s", snapshot_id, cluster, reason)
        job = hook.find_reusable_download_job(cluster, snapshot_id, group_id) or hook.request_snapshot_download(
            cluster, snapshot_id, group_id
        )
        deadline = time.monotonic() + float(self.link_refresh_timeout)
        while True:
            url = ready_snapshot_url(job, cluster)
            if url:
                mask_secret(url)
                return url
            if time.monotonic() >= deadline:
                raise SnapshotLinkExpiredError(
                    f"a fresh link for snapshot {snapshot_id} of {cluster!r} (restore job {job.get('id')}) was not "
                    f"ready within link_refresh_timeout={self.link_refresh_timeout:g} s"
                )
            time.sleep(float(self.link_refresh_poll_interval))
            job = hook.get_restore_job(cluster, job["id"], group_id)


def _run_date(context: Context) -> str:
    """The run's date for ``{date}``: the logical date, or when the run was due for runs without one."""
    when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
    if when is None:
        when = datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d")


def _discard(path: ObjectStoragePath) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:
        pass
