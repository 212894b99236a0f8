"""Operator that proves exports at their destination are intact, one file or a whole tree (a "scrub")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.defaults import DEFAULT_VERIFY_CHUNK_SIZE, MIB
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.validation import require_bool

# archive.check (the re-read) and archive.scan are imported when the task runs, not here: DAG files import
# this module on every parse. Tests replace their functions there (archive.check.verify_export).
if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

RESULTS_XCOM_KEY = "results"


class AtlasFlexExportVerifyOperator(BaseOperator):
    """Re-read exports where they are stored and prove each against its sidecars.

    For every file: one sequential read with flat memory recomputes the sha256 and size, checks
    every gzip member (CRC32 and length) and walks the tar archive to its end-of-archive marker
    (member count and data size are reported). The result is compared with ``<file>.json``
    (sha256, bytes) and ``<file>.sha256``. A file without both sidecars is *unproven* and fails;
    a manifest without a signature is *unsigned*, one whose signature does not verify with a key
    of ours (Airflow Variables, see ``airflow_provider_atlasflex.archive.keys``) *bad_signature*.

    Give ``path`` (one export) or ``root`` (every export below it, for a weekly scrub: files with
    an ``atlasflex-export/1`` manifest, plus files ending with ``unproven_suffixes`` that have none,
    reported as unproven). Returns the per-file results (path, status, problems, bytes, sha256,
    gzip and tar figures); on any failure the task fails with one line per file naming what
    differs, and the results are still pushed to XCom under the key ``results``.

    :param path: one export, e.g. ``s3://bucket/atlas/alpha/2026-11-28/<snapshot>.tgz`` (templated).
    :param root: a directory or prefix to scrub (templated). Exactly one of ``path`` and ``root``.
    :param dst_conn_id: connection for the storage, e.g. an AWS connection for s3:// (templated).
    :param unproven_suffixes: in a scrub, files with these endings and no manifest are unproven.
    :param allow_empty: a scrub that finds no file at all succeeds (default False: it fails, since
        a wrong ``root`` would otherwise pass silently every week).
    :param chunk_size: bytes read at a time (default 8 MiB).
    """

    template_fields: Sequence[str] = ("path", "root", "dst_conn_id")
    ui_color = "#3d4f58"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        path: str | ObjectStoragePath | None = None,
        root: str | ObjectStoragePath | None = None,
        dst_conn_id: str | None = None,
        unproven_suffixes: Sequence[str] = (".tgz",),
        allow_empty: bool = False,
        chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.root = root
        self.dst_conn_id = dst_conn_id
        self.unproven_suffixes = unproven_suffixes
        self.allow_empty = allow_empty
        self.chunk_size = chunk_size

    def _check_arguments(self) -> tuple[ObjectStoragePath, bool]:
        """The path to read and whether it is a scrub root; refuses bad input before any I/O."""
        from airflow_provider_atlasflex.archive.storage_url import require_storage_path

        if (self.path is None) == (self.root is None):
            raise AtlasFlexConfigError(
                "Pass exactly one of path (one export file) and root (a directory to scrub), got "
                f"path={self.path!r} and root={self.root!r}."
            )
        check_chunk_size(self.chunk_size)
        require_bool(self.allow_empty, "allow_empty")
        suffixes = self.unproven_suffixes
        if isinstance(suffixes, str) or not all(isinstance(s, str) and s.startswith(".") for s in suffixes):
            raise AtlasFlexConfigError(
                f"unproven_suffixes must be a list of file endings such as ['.tgz'], got {suffixes!r}."
            )
        if self.path is not None:
            return require_storage_path(self.path, "path", self.dst_conn_id, directory=False), False
        return require_storage_path(self.root, "root", self.dst_conn_id, directory=True), True

    def execute(self, context: Context) -> list[dict[str, Any]]:
        target, is_root = self._check_arguments()
        from airflow_provider_atlasflex.archive.check import (
            VERIFIED,
            ExportReadError,
            ExportVerificationError,
            describe_failures,
            verify_export,
        )
        from airflow_provider_atlasflex.archive.scan import scan_exports

        if is_root:
            scan = scan_exports(target, tuple(self.unproven_suffixes))
            paths = [found.path for found in scan.exports] + [path for path, _ in scan.unproven]
            listed = {str(found.path) for found in scan.exports if found.size is not None}
            listed |= {str(path) for path, _ in scan.unproven}
            file_gone = {str(found.path) for found in scan.exports if found.size is None}
            self.log.info(
                "Scrubbing %s: %d export(s) with a manifest, %d file(s) without one, %d file(s) listed",
                target,
                len(scan.exports),
                len(scan.unproven),
                scan.files_seen,
            )
            if not paths and not self.allow_empty:
                raise ExportVerificationError(
                    f"No export was found under {target} ({scan.files_seen} file(s) listed, none with an "
                    "atlasflex-export/1 manifest). Check root, or set allow_empty=True if that is expected."
                )
        else:
            paths, listed, file_gone = [target], set(), set()
        from airflow_provider_atlasflex.archive.keys import KeyRing

        keys = KeyRing()  # one per task: each signing key is read once
        results = []
        for path in paths:
            result = verify_export(path, self.chunk_size, keys)
            deleting = str(path) in listed or (str(path) in file_gone and _vanished(manifest_of(path)))
            if result["status"] != VERIFIED and _vanished(path) and deleting:
                # Listed a moment ago, gone now: deleted while the scrub ran (a retention run), or listed in
                # the middle of that deletion (file gone, manifest not yet) and the manifest is gone now too.
                # A manifest left without its file by a crash stays, and is reported.
                self.log.info("Skipping %s: it was deleted while the scrub ran (retention?)", path)
                continue
            results.append(result)
            if result["status"] == VERIFIED:
                self.log.info(
                    "Verified %s: %d bytes, sha256 %s, %d tar member(s) holding %d bytes",
                    path,
                    result["bytes"],
                    result["sha256"],
                    result["tar_members"],
                    result["tar_member_bytes"],
                )
            else:
                self.log.error("%s %s: %s", result["status"].upper(), path, "; ".join(result["problems"]))
        failed = [r for r in results if r["status"] != VERIFIED]
        self.log.info("%d of %d export(s) verified, %d failed", len(results) - len(failed), len(results), len(failed))
        if failed:
            context["ti"].xcom_push(key=RESULTS_XCOM_KEY, value=results)
            error = ExportReadError if all(_transient(r) for r in failed) else ExportVerificationError
            raise error(
                f"{len(failed)} of {len(results)} export(s) under {target} failed verification:\n"
                f"{describe_failures(results)}\n{what_to_do(failed)}"
            )
        return results


# What the reader can do about each failed status; statuses sharing a remedy share a line.
NEXT_STEPS = {
    ("mismatch", "damaged"): (
        "the file is not the whole .tgz that was written: copy the snapshot again (overwrite=True) while Atlas "
        "still keeps it (flex snapshots: 8 days) and find what altered the storage; a file that is not one of our "
        "exports, move out of the root"
    ),
    ("stale_sidecars",): "the object was replaced after its sidecars were signed: copy the snapshot again",
    ("missing",): (
        "the export is gone but its sidecars are left: the next export-retention run over this root deletes them "
        "(or delete <file>.json and <file>.sha256 by hand)"
    ),
    ("unproven",): (
        "no sidecars of this provider prove the file: move it out of the root if it is not one of our exports "
        "(or narrow unproven_suffixes); if it is, copy its snapshot again to write them"
    ),
    ("unsigned", "bad_signature"): (
        "the manifest is not signed by one of our keys (Airflow Variables atlasflex_signing_secret_<key id>): "
        "someone else may have written it; copy the snapshot again, and restore the key Variable if one was deleted"
    ),
    ("unreadable",): (
        "storage refused the read: the task is retried; if it persists, check the storage and dst_conn_id"
    ),
    ("not_a_file",): "a symbolic link, FIFO or device stands where an export should be: remove it",
}


def what_to_do(failed: list[dict[str, Any]]) -> str:
    """One "what to do" line per kind of failure present, after the per-file lines."""
    found = {"not_a_file" if r.get("not_a_file") else r["status"] for r in failed}
    label = {"not_a_file": "unreadable (not a file)"}
    lines = [
        f"  {', '.join(label.get(s, s) for s in statuses if s in found)}: {step}"
        for statuses, step in NEXT_STEPS.items()
        if found.intersection(statuses)
    ]
    return "What to do:\n" + "\n".join(lines)


def manifest_of(path: ObjectStoragePath) -> ObjectStoragePath:
    from airflow_provider_atlasflex.archive.manifest import sidecar_paths

    return sidecar_paths(path).manifest


def _vanished(path: ObjectStoragePath) -> bool:
    try:
        return not path.exists()
    except OSError:
        return False


def check_chunk_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 256 * MIB:
        raise AtlasFlexConfigError(f"chunk_size must be a whole number of bytes from 1 KiB to 256 MiB, got {value!r}.")
    return value


def _transient(result: dict[str, Any]) -> bool:
    """An unreadable file may read next time (a retry helps); a symlink, FIFO or device in its place will not."""
    return bool(result["status"] == "unreadable" and not result.get("not_a_file"))
