"""One attempt to export a snapshot to ``dst``: from what is already there to what the task reports.

Why apart from the transfer operator: the operator decides what to copy and from which link; this
decides when the bytes at ``dst`` are this attempt's to report. Other writers (a zombie and its
retry, duplicate mapped items, two DAGs) and other people (whoever can write the destination) may
have put a file at ``dst`` or race this attempt on it, so an attempt

* trusts an existing ``dst`` only when its signed sidecars and a full re-read prove it holds this
  snapshot (then nothing is copied); an unproven one is never accepted as it is;
* downloads into its own temporary object and holds the per-``dst`` lock from its publish on;
* accepts a ``dst`` another writer committed only when it holds exactly the bytes it verified;
* re-checks ``dst`` and both sidecars after writing them, and withdraws its sidecars when it lost.

It never reports success for bytes that are not at ``dst``, and its temporary object is removed on
every failure. :func:`export_result` is what it reports (the task's XCom result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_atlasflex.exceptions import AirflowFailException, SnapshotTransferError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.commit import ExportCommit
    from airflow_provider_atlasflex.transfers.download_terms import DownloadResult

    # Runs the download into the writer it is given (the commit's output()) and returns its result.
    Download = Callable[[Callable[[], BinaryIO]], DownloadResult]


class UnprovenDestinationError(SnapshotTransferError, AirflowFailException):
    """``dst`` holds a file not proven ours and other bytes than Atlas serves, and overwrite=False: a retry cannot help."""


class ExportAttempt:
    """Export snapshot ``snapshot_id`` of ``cluster`` (restore job ``job_id``) to ``dst``; see the module docstring.

    ``log`` is the task's logger.
    """

    def __init__(
        self,
        dst: ObjectStoragePath,
        *,
        overwrite: bool,
        file_mode: int,
        dir_mode: int,
        lock_timeout: float,
        cluster: str,
        group_id: str,
        snapshot_id: str,
        job_id: str,
        log: Any,
    ) -> None:
        self.dst = dst
        self.overwrite = overwrite
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.lock_timeout = lock_timeout
        self.cluster = cluster
        self.group_id = group_id
        self.snapshot_id = snapshot_id
        self.job_id = job_id
        self.log = log
        # Why an existing dst could not be trusted (None when there was none to prove): see already_exported().
        self.unproven: str | None = None

    def already_exported(self) -> dict[str, Any] | None:
        """The result for a ``dst`` whose sidecars prove it holds this snapshot (else None: copy); raise if refused.

        Why an existing ``dst`` is unproven is kept in :attr:`unproven` (None if there was nothing to prove).

        A directory or symlink at ``dst`` is refused whatever ``overwrite`` says. An existing file is
        trusted only if :func:`airflow_provider_atlasflex.archive.proof.prove_export` holds (a signed manifest for this snapshot,
        its ``.sha256``, and a full re-read: sha256, gzip, tar); matching sidecars alone are not
        enough, since whoever can write ``dst`` can write them too. An unproven file with
        ``overwrite=False`` (a planted file, or a task that died between its commit and its
        sidecars) is never accepted as it is: the copy goes to this attempt's own temporary file, and
        the no-clobber commit decides (see :meth:`run`): ``dst`` is kept only if it holds exactly
        the bytes Atlas serves now (then re-signed), otherwise the task fails; ``dst`` is never touched.
        """
        from airflow_provider_atlasflex.archive.commit import refuse_unsafe_destination
        from airflow_provider_atlasflex.archive.keys import KeyRing
        from airflow_provider_atlasflex.archive.manifest import sidecar_paths
        from airflow_provider_atlasflex.archive.proof import prove_export

        dst, cluster, snapshot_id, group_id = self.dst, self.cluster, self.snapshot_id, self.group_id
        try:
            if not refuse_unsafe_destination(dst):
                return None
        except SnapshotTransferError as exc:
            raise SnapshotTransferError(f"Export of snapshot {snapshot_id} of {cluster!r} refused: {exc}") from None
        proof = prove_export(dst, snapshot_id=snapshot_id, cluster_name=cluster, group_id=group_id, keys=KeyRing())
        if not proof.proven:
            if self.overwrite:
                self.log.info("%s exists and will be replaced (overwrite=True): %s", dst, proof.reason)
                return None
            self.log.info(
                "%s exists but is unproven (%s): copying to a temporary file to compare; dst is not touched "
                "(overwrite=False)",
                dst, proof.reason,
            )
            self.unproven = proof.reason
            return None
        manifest = proof.manifest or {}
        paths = sidecar_paths(dst)
        self.log.info(
            "%s already holds snapshot %s of %s (%d bytes, sha256 %s, re-read as a whole .tgz matching its signed "
            "sidecar %s): not copied again",
            dst, snapshot_id, cluster, manifest["bytes"], manifest["sha256"], paths.manifest.name,
        )
        return export_result(
            dst,
            cluster=cluster,
            group_id=group_id,
            snapshot_id=snapshot_id,
            job_id=self.job_id,
            size=manifest["bytes"],
            sha256=manifest["sha256"],
            exported_at=manifest.get("exported_at"),
            already_present=True,
        )

    def run(
        self, download: Download, write_sidecars: Callable[[DownloadResult, str | None], Any]
    ) -> tuple[DownloadResult, bool, Any]:
        """Copy, commit, write the sidecars and re-check, holding the per-``dst`` lock from the publish on.

        Returns the download, whether ``dst`` already held identical bytes, and the sidecar paths.
        After the sidecars, ``dst`` must still be this attempt's bytes and its sidecars must record
        them; otherwise the task fails (it never reports success for bytes that are not at ``dst``).
        """
        from airflow_provider_atlasflex.archive.commit import export_commit

        dst, cluster, snapshot_id = self.dst, self.cluster, self.snapshot_id
        commit = export_commit(
            dst,
            overwrite=self.overwrite,
            file_mode=self.file_mode,
            dir_mode=self.dir_mode,
            hold_dst_lock=True,
            lock_timeout=self.lock_timeout,
        )
        try:
            result, raced = self._download_and_commit(commit, download)
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

    def _download_and_commit(self, commit: ExportCommit, download: Download) -> tuple[DownloadResult, bool]:
        """Copy into this attempt's temporary file and commit it; True if ``dst`` already held identical bytes."""
        from airflow_provider_atlasflex.archive.commit import DestinationExistsError

        dst, cluster, snapshot_id, unproven = self.dst, self.cluster, self.snapshot_id, self.unproven
        try:
            commit.open()
            result = download(commit.output)
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
            from airflow_provider_atlasflex.archive.tar_walker import ArchiveDamage

            hint = (
                ". Nothing was committed (an export already at dst is untouched); a retry downloads it again. If the "
                "same damage comes back, the snapshot itself may be damaged: export a newer one (leave snapshot_id "
                "out) and tell MongoDB support"
                if isinstance(exc, ArchiveDamage)
                else ""
            )
            raise type(exc)(
                f"Export of snapshot {snapshot_id} of {cluster!r} to {_named(dst)} failed: {exc}{hint}"
            ) from None
        except OSError as exc:
            commit.abort()
            raise SnapshotTransferError(
                f"Export of snapshot {snapshot_id} of {cluster!r} failed writing to {_named(dst)}: "
                f"{exc.strerror or exc}. Check the destination is writable and has space; nothing was committed."
            ) from None
        except BaseException:
            commit.abort()
            raise


def export_result(
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
