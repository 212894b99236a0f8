"""Operator that copies a flex snapshot's .tgz from its pre-signed link to storage you control."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow.sdk import AssetAlias, BaseOperator

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.defaults import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONN_ID,
    DEFAULT_DIR_MODE,
    DEFAULT_FILE_MODE,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_STALL_MIN_BYTES,
    DEFAULT_STALL_WINDOW,
    EXPORT_ALIAS_NAME,
    MIB,
)
from airflow_provider_atlasflex.exceptions import (
    AtlasFlexConfigError,
    AtlasNotFoundError,
    SnapshotTransferError,
)
from airflow_provider_atlasflex.transfers.export_attempt import UnprovenDestinationError
from airflow_provider_atlasflex.validation import (
    optional_object_id,
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_object_id,
    require_positive_number,
)

# The copy, commit, manifest and destination modules are imported where a running task needs them,
# not here: DAG files import this module on every parse (see docs/performance.md, "DAG parse cost").
# (export_attempt is imported for UnprovenDestinationError only: it imports nothing heavy at module level.)
if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_atlasflex.archive.signature import SigningKey
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.transfers.download_terms import DownloadResult
    from airflow_provider_atlasflex.transfers.snapshot_links import SnapshotLinks

__all__ = ["AtlasFlexSnapshotToStorageOperator", "UnprovenDestinationError"]


class AtlasFlexSnapshotToStorageOperator(BaseOperator):
    """Stream the snapshot file of a ready DOWNLOAD restore job to ``dst``.

    Memory stays flat whatever the size. Each attempt copies to its own hidden temporary file beside
    ``dst`` (``.<name>.<random>.atlasflex-partial``) and publishes it only after the HTTP status,
    Content-Length and gzip integrity are checked, atomically (see :mod:`.commit`); then the
    ``<file>.sha256`` and ``<file>.json`` sidecars are committed beside it. On any failure this
    attempt's temporary file is removed and an existing export is untouched. A ``dst`` whose
    sidecars prove it already holds this snapshot (re-hashed now) is not copied again. A cut
    connection resumes with an HTTP Range request; an expired link is replaced once by a fresh one
    for the same snapshot.

    :param cluster_name: flex cluster name (templated).
    :param restore_job_id: the ready DOWNLOAD restore job (templated).
    :param dst: destination URL (templated) or ObjectStoragePath. Placeholders ``{cluster_name}``,
        ``{snapshot_id}``, ``{restore_job_id}`` and ``{date}`` (the run's date, YYYY-MM-DD) are filled in.
    :param dst_conn_id: connection for the destination filesystem (templated), e.g. an AWS connection for s3://.
    :param overwrite: replace an existing file at ``dst`` (default False: never replace it; it is
        accepted when its sidecars prove it holds this snapshot, or, without proof, when it holds exactly
        the bytes copied again to a temporary file for comparison, e.g. after a crash before the sidecars).
    :param group_id: project id (templated); omitted: the connection's ``group_id`` extra.
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    :param chunk_size: bytes read and written at a time (default 1 MiB; the copy keeps 4 such buffers).
    :param max_download_attempts: attempts for one copy, resuming after each cut or stall (default 5).
    :param stall_window: seconds over which the storage host must send at least ``stall_min_bytes``
        (default 60); less is a stall: the connection is dropped and the copy resumed.
    :param stall_min_bytes: bytes that must arrive in every ``stall_window`` (default 1 MiB).
    :param progress_interval: seconds between progress log lines (default 30).
    :param link_refresh_timeout: seconds to wait for a fresh link when the first one expired (default 1800).
    :param file_mode: permission bits of the export and its sidecars on local disks (default 0o600).
    :param dir_mode: permission bits of directories it creates on local disks (default 0o700).
    :param lock_timeout: seconds to wait, on local disks, for another task that holds the lock of the same
        ``dst`` (publishing or deleting it) before failing with a retryable error naming the lock file
        (default 300; 0: do not wait).
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
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_download_attempts: int = 5,
        stall_window: float = DEFAULT_STALL_WINDOW,
        stall_min_bytes: int = DEFAULT_STALL_MIN_BYTES,
        progress_interval: float = 30.0,
        link_refresh_timeout: float = 1800.0,
        link_refresh_poll_interval: float = 10.0,
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        # One Asset event per export, through this alias (transfers.asset_events.EXPORT_ALIAS; see record_export).
        kwargs.setdefault("outlets", [AssetAlias(name=EXPORT_ALIAS_NAME)])
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
        self.stall_window = stall_window
        self.stall_min_bytes = stall_min_bytes
        self.progress_interval = progress_interval
        self.link_refresh_timeout = link_refresh_timeout
        self.link_refresh_poll_interval = link_refresh_poll_interval
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.lock_timeout = lock_timeout

    def _check_arguments(self) -> None:
        from airflow_provider_atlasflex.archive.commit import check_modes
        from airflow_provider_atlasflex.archive.lock import check_lock_timeout
        from airflow_provider_atlasflex.transfers.destination import check_destination_template
        from airflow_provider_atlasflex.transfers.download_terms import check_stall_rule

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
        check_stall_rule(self.stall_window, self.stall_min_bytes)
        require_positive_number(self.progress_interval, "progress_interval")
        require_positive_number(self.link_refresh_timeout, "link_refresh_timeout", allow_zero=True)
        require_positive_number(self.link_refresh_poll_interval, "link_refresh_poll_interval")
        check_modes(self.file_mode, self.dir_mode)
        check_lock_timeout(self.lock_timeout)

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        cluster, job_id = self.cluster_name, self.restore_job_id
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
        from airflow_provider_atlasflex.transfers.destination import (
            destination_root,
            private_root_warning,
            resolve_destination,
            run_date,
        )

        hook = AtlasFlexHook(self.atlas_conn_id)
        try:
            group_id = hook.resolve_group_id(hook.config, self.group_id)
            job = hook.get_restore_job(cluster, job_id, group_id)
            self._links.remember(job)
            snapshot_id = require_object_id(job.get("snapshotId"), "snapshotId of the restore job")
            dst = resolve_destination(
                self.dst,
                self.dst_conn_id,
                {"cluster_name": cluster, "snapshot_id": snapshot_id, "restore_job_id": job_id, "date": run_date(context)},
            )
            warning = private_root_warning(destination_root(self.dst))
            if warning:
                self.log.warning("%s", warning)
            from airflow_provider_atlasflex.transfers.export_attempt import ExportAttempt, export_result

            attempt = ExportAttempt(
                dst,
                overwrite=self.overwrite,
                file_mode=self.file_mode,
                dir_mode=self.dir_mode,
                lock_timeout=self.lock_timeout,
                cluster=cluster,
                group_id=group_id,
                snapshot_id=snapshot_id,
                job_id=job_id,
                log=self.log,
            )
            present = attempt.already_exported()
            if present is not None:
                from airflow_provider_atlasflex.transfers.asset_events import record_export

                record_export(self, context, present)  # a retry after a crash still tells downstream DAGs
                return present
            from airflow_provider_atlasflex.archive.keys import KeyRing

            key = KeyRing().signing_key()  # before the copy: a missing key fails now, not after the download
            snapshot = self._snapshot_metadata(hook, job, cluster, snapshot_id, group_id)
            url, may_refresh = self._links.first(hook, job, cluster, snapshot_id, group_id)
            mask_secret(url)
            result, raced, sidecars = attempt.run(
                lambda output: self._download(url, output, dst, hook, cluster, snapshot_id, group_id, may_refresh),
                lambda res, etag: self._write_sidecars(dst, cluster, group_id, snapshot_id, snapshot, job_id, res, key, etag),
            )
        finally:
            hook.close()
        summary = export_result(
            dst,
            cluster=cluster,
            group_id=group_id,
            snapshot_id=snapshot_id,
            job_id=job_id,
            size=result.bytes,
            sha256=result.sha256,
            exported_at=datetime.now(timezone.utc).isoformat(),
            already_present=raced,
            seconds=round(result.seconds, 3),
            attempts=result.attempts,
            resumes=result.resumes,
            restarts=result.restarts,
            link_refreshes=result.link_refreshes + (0 if may_refresh else 1),
        )
        self.log.info(
            "Exported snapshot %s of %s to %s: %d bytes, sha256 %s, gzip+tar checked with %s; sidecars %s and %s",
            snapshot_id, cluster, dst, result.bytes, result.sha256, result.inflater or "no inflater (verify_gzip=False)",
            sidecars.sha256.name, sidecars.manifest.name,
        )
        from airflow_provider_atlasflex.transfers.asset_events import record_export

        record_export(self, context, summary)
        return summary

    def _snapshot_metadata(
        self, hook: AtlasFlexHook, job: dict[str, Any], cluster: str, snapshot_id: str, group_id: str
    ) -> dict[str, Any]:
        """Atlas' snapshot resource for the manifest, fetched before copying.

        A snapshot removed by retention while its link still works is no reason to lose the export:
        the manifest then records what the restore job says about it.
        """
        try:
            return hook.get_snapshot(cluster, snapshot_id, group_id)
        except AtlasNotFoundError:
            self.log.warning(
                "Snapshot %s of %s is no longer listed by Atlas; its manifest records the restore job's details",
                snapshot_id, cluster,
            )
            return {"id": snapshot_id, "finishTime": job.get("snapshotFinishedDate")}

    def _write_sidecars(
        self,
        dst: ObjectStoragePath,
        cluster: str,
        group_id: str,
        snapshot_id: str,
        snapshot: dict[str, Any],
        job_id: str,
        result: DownloadResult,
        key: SigningKey,
        etag: str | None,
    ) -> Any:
        """Commit ``<file>.sha256`` and ``<file>.json`` (signed with ``key``) after the export (never before).

        On object stores the manifest records ``etag``, the ETag of the object this attempt committed
        (or found identical): sidecars left by a writer whose object was replaced are then stale on sight.
        """
        from airflow_provider_atlasflex.archive.manifest import build_manifest, write_sidecars

        manifest = build_manifest(
            file_name=dst.name,
            cluster_name=cluster,
            group_id=group_id,
            snapshot_id=snapshot_id,
            snapshot=snapshot,
            restore_job_id=job_id,
            size=result.bytes,
            sha256=result.sha256,
            object_etag=etag,
        )
        try:
            paths = write_sidecars(dst, manifest, file_mode=self.file_mode, dir_mode=self.dir_mode, key=key)
            self.log.info("Signed the manifest %s with signing key %s", paths.manifest.name, key.key_id)
            return paths
        except (OSError, SnapshotTransferError) as exc:
            raise SnapshotTransferError(
                f"Snapshot {snapshot_id} of {cluster!r} was committed to {dst} ({result.bytes} bytes, sha256 "
                f"{result.sha256}) but its sidecars could not be written: {getattr(exc, 'strerror', None) or exc}. "
                "The file is unproven until they exist: fix the destination and retry with overwrite=True."
            ) from None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): the cluster's snapshot in, the committed file out."""
        from airflow_provider_atlasflex.transfers.asset_events import openlineage_facets

        return openlineage_facets(self)

    @property
    def _links(self) -> SnapshotLinks:
        """The links this task saw and used (kept on the operator, not in ``__init__``: run state, not an argument)."""
        links = self.__dict__.get("_atlasflex_links")
        if links is None:
            from airflow_provider_atlasflex.transfers.snapshot_links import SnapshotLinks

            links = self.__dict__["_atlasflex_links"] = SnapshotLinks(
                self.restore_job_id,
                refresh_timeout=self.link_refresh_timeout,
                poll_interval=self.link_refresh_poll_interval,
                log=self.log,
            )
        return links

    def _download(
        self,
        url: str,
        output: Callable[[], BinaryIO],
        dst: ObjectStoragePath,
        hook: AtlasFlexHook,
        cluster: str,
        snapshot_id: str,
        group_id: str,
        may_refresh: bool,
    ) -> DownloadResult:
        """Stream the snapshot from ``url`` into ``output``, resuming after cuts and stalls (and refreshing the link)."""
        from airflow_provider_atlasflex.transfers.download_terms import StallRule
        from airflow_provider_atlasflex.transfers.progress_log import ProgressLog
        from airflow_provider_atlasflex.transfers.resumable_download import ResumableDownload

        links = self._links
        return ResumableDownload(
            links.link(url),
            output,
            refresh_link=(
                (lambda why: links.replacement(hook, cluster, snapshot_id, group_id, why)) if may_refresh else None
            ),
            chunk_size=self.chunk_size,
            max_attempts=self.max_download_attempts,
            timeout=hook.config.timeout,
            proxies=hook.config.proxies,
            verify=hook.config.verify,
            allow_insecure_http=hook.config.allow_insecure_http,
            stall=StallRule(self.stall_window, self.stall_min_bytes),
            progress=ProgressLog(
                self.log, f"snapshot {snapshot_id} of {cluster!r}", self.progress_interval, destination=str(dst)
            ),
        ).run()
