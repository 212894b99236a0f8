"""Operator that copies a flex snapshot's .tgz from its pre-signed link to storage you control."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

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
    AirflowFailException,
    AtlasFlexConfigError,
    AtlasNotFoundError,
    RestoreJobFailedError,
    SnapshotLinkExpiredError,
    SnapshotTransferError,
)
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
if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_atlasflex.archive.commit import ExportCommit
    from airflow_provider_atlasflex.archive.signature import SigningKey
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.transfers.download_terms import DownloadResult, SnapshotLink

__all__ = ["AtlasFlexSnapshotToStorageOperator", "UnprovenDestinationError"]


class UnprovenDestinationError(SnapshotTransferError, AirflowFailException):
    """``dst`` holds a file not proven ours and other bytes than Atlas serves, and overwrite=False: a retry cannot help."""


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
        from airflow_provider_atlasflex.archive.commit import check_lock_timeout, check_modes
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
        from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url
        from airflow_provider_atlasflex.transfers.destination import (
            destination_root,
            private_root_warning,
            resolve_destination,
        )

        hook = AtlasFlexHook(self.atlas_conn_id)
        try:
            group_id = hook.resolve_group_id(hook.config, self.group_id)
            job = hook.get_restore_job(cluster, job_id, group_id)
            self._remember_link(job)
            snapshot_id = require_object_id(job.get("snapshotId"), "snapshotId of the restore job")
            dst = resolve_destination(
                self.dst,
                self.dst_conn_id,
                {"cluster_name": cluster, "snapshot_id": snapshot_id, "restore_job_id": job_id, "date": _run_date(context)},
            )
            warning = private_root_warning(destination_root(self.dst))
            if warning:
                self.log.warning("%s", warning)
            present, unproven = self._already_exported(dst, cluster, snapshot_id, group_id, job_id)
            if present is not None:
                from airflow_provider_atlasflex.transfers.asset_events import record_export

                record_export(self, context, present)  # a retry after a crash still tells downstream DAGs
                return present
            from airflow_provider_atlasflex.archive.keys import KeyRing

            key = KeyRing().signing_key()  # before the copy: a missing key fails now, not after the download
            snapshot = self._snapshot_metadata(hook, job, cluster, snapshot_id, group_id)
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
            result, raced, sidecars = self._copy(
                url,
                dst,
                hook,
                cluster,
                snapshot_id,
                group_id,
                may_refresh=may_refresh,
                unproven=unproven,
                write_sidecars=lambda res, etag: self._write_sidecars(
                    dst, cluster, group_id, snapshot_id, snapshot, job_id, res, key, etag
                ),
            )
        finally:
            hook.close()
        summary = _export_result(
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

    def _already_exported(
        self, dst: ObjectStoragePath, cluster: str, snapshot_id: str, group_id: str, job_id: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The result for a ``dst`` whose sidecars prove it holds this snapshot (else None: copy), and why an
        existing ``dst`` is unproven (None if there was nothing to prove); raise if refused.

        A directory or symlink at ``dst`` is refused whatever ``overwrite`` says. An existing file is
        trusted only if :func:`airflow_provider_atlasflex.archive.proof.prove_export` holds (a signed manifest for this snapshot,
        its ``.sha256``, and a full re-read: sha256, gzip, tar); matching sidecars alone are not
        enough, since whoever can write ``dst`` can write them too. An unproven file with
        ``overwrite=False`` (a planted file, or a task that died between its commit and its
        sidecars) is never accepted as it is: the copy goes to this attempt's own temporary file, and
        the no-clobber commit decides (see :meth:`_copy`): ``dst`` is kept only if it holds exactly
        the bytes Atlas serves now (then re-signed), otherwise the task fails; ``dst`` is never touched.
        """
        from airflow_provider_atlasflex.archive.commit import refuse_unsafe_destination
        from airflow_provider_atlasflex.archive.keys import KeyRing
        from airflow_provider_atlasflex.archive.manifest import sidecar_paths
        from airflow_provider_atlasflex.archive.proof import prove_export

        try:
            if not refuse_unsafe_destination(dst):
                return None, None
        except SnapshotTransferError as exc:
            raise SnapshotTransferError(f"Export of snapshot {snapshot_id} of {cluster!r} refused: {exc}") from None
        proof = prove_export(dst, snapshot_id=snapshot_id, cluster_name=cluster, group_id=group_id, keys=KeyRing())
        if not proof.proven:
            if self.overwrite:
                self.log.info("%s exists and will be replaced (overwrite=True): %s", dst, proof.reason)
                return None, None
            self.log.info(
                "%s exists but is unproven (%s): copying to a temporary file to compare; dst is not touched "
                "(overwrite=False)",
                dst, proof.reason,
            )
            return None, proof.reason
        manifest = proof.manifest or {}
        paths = sidecar_paths(dst)
        self.log.info(
            "%s already holds snapshot %s of %s (%d bytes, sha256 %s, re-read as a whole .tgz matching its signed "
            "sidecar %s): not copied again",
            dst, snapshot_id, cluster, manifest["bytes"], manifest["sha256"], paths.manifest.name,
        )
        return _export_result(
            dst,
            cluster=cluster,
            group_id=group_id,
            snapshot_id=snapshot_id,
            job_id=job_id,
            size=manifest["bytes"],
            sha256=manifest["sha256"],
            exported_at=manifest.get("exported_at"),
            already_present=True,
        ), None

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
        unproven: str | None,
        write_sidecars: Callable[[DownloadResult, str | None], Any],
    ) -> tuple[DownloadResult, bool, Any]:
        """Copy, commit, write the sidecars and re-check, holding the per-``dst`` lock from the publish on.

        Returns the download, whether ``dst`` already held identical bytes, and the sidecar paths.
        After the sidecars, ``dst`` must still be this attempt's bytes and its sidecars must record
        them; otherwise the task fails (it never reports success for bytes that are not at ``dst``).
        """
        from airflow_provider_atlasflex.archive.commit import export_commit

        commit = export_commit(
            dst,
            overwrite=self.overwrite,
            file_mode=self.file_mode,
            dir_mode=self.dir_mode,
            hold_dst_lock=True,
            lock_timeout=self.lock_timeout,
        )
        try:
            result, raced = self._download_and_commit(
                commit, url, dst, hook, cluster, snapshot_id, group_id, may_refresh, unproven
            )
            sidecars = write_sidecars(result, _committed_etag(commit, dst, raced))
            if not _still_ours(commit, dst, result, raced):
                _withdraw_sidecars(dst, result, self.log)
                raise SnapshotTransferError(
                    f"Export of snapshot {snapshot_id} of {cluster!r} to {dst} failed: another writer replaced the "
                    f"export while this attempt wrote its sidecars; {dst} no longer holds the {result.bytes} bytes "
                    f"(sha256 {result.sha256}) this attempt verified, or its sidecars do not record them. Not "
                    "reporting success for bytes that are not at dst: let one task own each destination."
                )
            return result, raced, sidecars
        finally:
            commit.release()

    def _download_and_commit(
        self,
        commit: ExportCommit,
        url: str,
        dst: ObjectStoragePath,
        hook: AtlasFlexHook,
        cluster: str,
        snapshot_id: str,
        group_id: str,
        may_refresh: bool,
        unproven: str | None,
    ) -> tuple[DownloadResult, bool]:
        """Copy into this attempt's temporary file and commit it; True if ``dst`` already held identical bytes.

        ``unproven`` is why an existing ``dst`` could not be trusted (None when there was none to prove).
        """
        from airflow_provider_atlasflex.archive.commit import DestinationExistsError
        from airflow_provider_atlasflex.transfers.download_terms import SnapshotLink, StallRule
        from airflow_provider_atlasflex.transfers.progress_log import ProgressLog
        from airflow_provider_atlasflex.transfers.resumable_download import ResumableDownload

        try:
            commit.open()
            download = ResumableDownload(
                SnapshotLink(url, self._link_expiries.get(url)),
                commit.output,
                refresh_link=(
                    (lambda why: self._replacement_link(hook, cluster, snapshot_id, group_id, why))
                    if may_refresh
                    else None
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
            )
            result = download.run()
            try:
                commit.commit(result.bytes)
            except DestinationExistsError as exc:
                if not _holds(dst, result):
                    if unproven:
                        raise UnprovenDestinationError(
                            f"{dst} already exists and overwrite=False, and {unproven}; it does not hold the "
                            f"{result.bytes} bytes (sha256 {result.sha256}) Atlas served now ({_describe(dst)}): "
                            "it was left untouched. Delete the file (or set overwrite=True to replace it)."
                        ) from None
                    raise exc from None
                commit.abort()
                self.log.info(
                    "%s already holds the same %d bytes and sha256 %s as this copy (%s): kept it, writing its sidecars",
                    dst, result.bytes, result.sha256, unproven or "another writer committed it meanwhile",
                )
                return result, True
            if not commit.still_published() and not _holds(dst, result):
                raise SnapshotTransferError(
                    "another writer replaced the export right after this attempt committed it (overwrite=True); "
                    "this attempt's bytes are not at dst, so it reports failure and writes no sidecars"
                )
            return result, False
        except SnapshotTransferError as exc:
            commit.abort()
            raise type(exc)(f"Export of snapshot {snapshot_id} of {cluster!r} to {_named(dst)} failed: {exc}") from None
        except OSError as exc:
            commit.abort()
            raise SnapshotTransferError(
                f"Export of snapshot {snapshot_id} of {cluster!r} failed writing to {_named(dst)}: "
                f"{exc.strerror or exc}. Check the destination is writable and has space; nothing was committed."
            ) from None
        except BaseException:
            commit.abort()
            raise

    @property
    def _link_expiries(self) -> dict[str, float]:
        """When each link this task saw expires (epoch seconds), from its restore job's expirationDate."""
        return self.__dict__.setdefault("_atlasflex_link_expiries", {})

    @property
    def _used_job_ids(self) -> set[str]:
        """Restore jobs whose links this task already used: never handed out again as a "fresh" link."""
        return self.__dict__.setdefault("_atlasflex_used_job_ids", {self.restore_job_id})

    def _remember_link(self, job: dict[str, Any]) -> None:
        from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

        if isinstance(job.get("id"), str):
            self._used_job_ids.add(job["id"])
        expires = parse_atlas_time(job.get("expirationDate"))
        if isinstance(job.get("snapshotUrl"), str) and expires is not None:
            self._link_expiries[job["snapshotUrl"]] = expires.timestamp()

    def _replacement_link(
        self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str, why: str
    ) -> SnapshotLink:
        """A link from a NEW restore job, for a link the storage host refused or that is about to expire."""
        from airflow_provider_atlasflex.transfers.download_terms import SnapshotLink

        url = self._fresh_link(hook, cluster, snapshot_id, group_id, reason=f"the link {why}", reuse=False)
        return SnapshotLink(url, self._link_expiries.get(url))

    def _fresh_link(
        self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str, *, reason: str, reuse: bool = True
    ) -> str:
        """Wait (bounded) for the link of another DOWNLOAD job for the same snapshot.

        With ``reuse`` a live job this task has not used yet may serve; otherwise (after a refusal,
        or before expiry) a new job is requested. Jobs this task already used are never returned,
        also when a lost POST answer is reconciled with the job list.
        """
        from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url

        self.log.warning("Requesting a fresh link for snapshot %s of %s: %s", snapshot_id, cluster, reason)
        job = self._unused_live_job(hook, cluster, snapshot_id, group_id) if reuse else None
        if job is None:
            from airflow_provider_atlasflex.hooks import operations as ops

            job = hook.run(
                ops.download_snapshot(group_id, cluster, snapshot_id),
                reconcile=lambda: self._unused_live_job(hook, cluster, snapshot_id, group_id),
            )
        if not isinstance(job, dict) or not isinstance(job.get("id"), str) or job["id"] in self._used_job_ids:
            got = f"restore job {job.get('id')}, which this task already used" if isinstance(job, dict) else "no job"
            raise SnapshotLinkExpiredError(
                f"asked Atlas for a new DOWNLOAD restore job for snapshot {snapshot_id} of {cluster!r} ({reason}) "
                f"but got {got}. Clear the copy task to try again."
            )
        deadline = time.monotonic() + float(self.link_refresh_timeout)
        while True:
            url = ready_snapshot_url(job, cluster)
            if url:
                self._remember_link(job)
                mask_secret(url)
                return url
            if time.monotonic() >= deadline:
                raise SnapshotLinkExpiredError(
                    f"a fresh link for snapshot {snapshot_id} of {cluster!r} (restore job {job.get('id')}) was not "
                    f"ready within link_refresh_timeout={self.link_refresh_timeout:g} s"
                )
            time.sleep(float(self.link_refresh_poll_interval))
            job = hook.get_restore_job(cluster, job["id"], group_id)

    def _unused_live_job(self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str) -> dict[str, Any] | None:
        from airflow_provider_atlasflex.restore_jobs import is_reusable_download, utcnow

        now = utcnow()
        for job in hook.list_restore_jobs(cluster, group_id):
            if job.get("id") not in self._used_job_ids and is_reusable_download(job, snapshot_id, now):
                return job
        return None


def _run_date(context: Context) -> str:
    """The run's date for ``{date}``: the logical date, or when the run was due for runs without one."""
    when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
    if when is None:
        when = datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d")


def _export_result(
    dst: ObjectStoragePath,
    *,
    cluster: str,
    group_id: str,
    snapshot_id: str,
    job_id: str,
    size: int,
    sha256: str,
    exported_at: str | None,
    already_present: bool,
    seconds: float = 0.0,
    attempts: int = 0,
    resumes: int = 0,
    restarts: int = 0,
    link_refreshes: int = 0,
) -> dict[str, Any]:
    """The XCom result: where the export is, what it holds, its sidecars, and how the copy went."""
    from airflow_provider_atlasflex.archive.at_rest import plain_url
    from airflow_provider_atlasflex.archive.manifest import sidecar_paths

    paths = sidecar_paths(dst)
    return {
        "path": plain_url(dst),  # no connection id inside: it travels as dst_conn_id
        "dst_conn_id": getattr(dst, "conn_id", None),
        "bytes": size,
        "sha256": sha256,
        "snapshot_id": snapshot_id,
        "restore_job_id": job_id,
        "cluster_name": cluster,
        "group_id": group_id,
        "seconds": seconds,
        "attempts": attempts,
        "resumes": resumes,
        "restarts": restarts,
        "link_refreshes": link_refreshes,
        "exported_at": exported_at,
        "sha256_file": plain_url(paths.sha256),
        "manifest_file": plain_url(paths.manifest),
        "already_present": already_present,
    }


def _describe(dst: ObjectStoragePath) -> str:
    """What ``dst`` holds, for an error message: its size and sha256, or why they cannot be read."""
    from airflow_provider_atlasflex.archive.manifest import file_sha256

    try:
        size, sha256 = file_sha256(dst)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    return f"it holds {size} bytes with sha256 {sha256}"


def _still_ours(commit: ExportCommit, dst: ObjectStoragePath, result: DownloadResult, raced: bool) -> bool:
    """After the sidecars: ``dst`` still holds this attempt's bytes and both sidecars record their sha256."""
    from airflow_provider_atlasflex.archive.manifest import read_manifest, read_sha256_sidecar

    try:
        if not (_holds(dst, result) if raced else commit.still_published()):
            return False
        manifest = read_manifest(dst)
        return (
            manifest is not None
            and (manifest["sha256"], manifest["bytes"]) == (result.sha256, result.bytes)
            and read_sha256_sidecar(dst) == result.sha256
        )
    except (OSError, SnapshotTransferError):
        return False


def _named(dst: ObjectStoragePath) -> str:
    """``dst`` for a message: its plain URL, and the connection separately (never ``s3://conn@bucket``)."""
    from airflow_provider_atlasflex.archive.at_rest import plain_url

    conn_id = getattr(dst, "conn_id", None)
    return plain_url(dst) + (f" (connection {conn_id!r})" if conn_id else "")


def _withdraw_sidecars(dst: ObjectStoragePath, result: DownloadResult, log: Any) -> None:
    """A writer that lost a race removes the sidecars it wrote, if they are still its own.

    Left behind, they would describe this attempt's bytes beside another writer's object for good.
    Only sidecars recording this attempt's sha256 are removed (never the winner's); a copy of the
    winner's snapshot with ``overwrite=False`` then finds identical bytes and writes signed ones.
    """
    from airflow_provider_atlasflex.archive.manifest import read_manifest, read_sha256_sidecar, sidecar_paths

    paths = sidecar_paths(dst)
    try:
        manifest = read_manifest(dst)
        if manifest is not None and manifest["sha256"] == result.sha256:
            paths.manifest.unlink()
            log.warning("Removed %s: it described this attempt's bytes, not the object at %s", paths.manifest, dst)
        if read_sha256_sidecar(dst) == result.sha256:
            paths.sha256.unlink()
    except (OSError, SnapshotTransferError) as exc:
        log.warning("Could not remove this attempt's sidecars beside %s (%s): the scrub will name them", dst, exc)


def _committed_etag(commit: ExportCommit, dst: ObjectStoragePath, raced: bool) -> str | None:
    """On S3, the ETag of the object this attempt completed (or, if it found identical bytes, of that object)."""
    from airflow_provider_atlasflex.archive.object_store_commit import is_s3
    from airflow_provider_atlasflex.archive.proof import object_etag

    if not is_s3(dst):
        return None
    etag = None if raced else getattr(commit, "etag", None)
    return etag.strip('"') if isinstance(etag, str) and etag else object_etag(dst)


def _holds(dst: ObjectStoragePath, result: DownloadResult) -> bool:
    """Whether ``dst`` (committed by another writer) holds exactly the bytes this attempt verified."""
    from airflow_provider_atlasflex.archive.commit import refuse_unsafe_destination
    from airflow_provider_atlasflex.archive.manifest import file_sha256

    try:
        refuse_unsafe_destination(dst)
        return file_sha256(dst) == (result.bytes, result.sha256)
    except (OSError, SnapshotTransferError):
        return False
