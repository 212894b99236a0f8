"""Deleting one listed export and its sidecars, never what was committed at its path since the listing.

Why apart from the retention policy (:mod:`~airflow_provider_atlasflex.operators.export_retention`):
the policy decides *which* exports go; this decides *how* one goes, safely against a copy
re-committing the same name meanwhile. It holds the export's per-``dst`` lock (the one a copy
holds from its publish until its sidecars are written, :class:`~.lock.DestinationLock`), re-checks
the export against the listing before each unlink, and deletes the file first, then ``.sha256``,
then the ``.json`` manifest last: a crash in between leaves a manifest that points at nothing,
which the next run recognises and cleans up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.check import read_ours
from airflow_provider_atlasflex.archive.local_disk import is_local
from airflow_provider_atlasflex.archive.lock import DestinationLock, DestinationLockedError
from airflow_provider_atlasflex.archive.manifest import ManifestError, sidecar_paths
from airflow_provider_atlasflex.exceptions import SnapshotTransferError

if TYPE_CHECKING:
    from airflow_provider_atlasflex.archive.scan import FoundExport


def delete_export(found: FoundExport, errors: list[str], *, export_too: bool, lock_wait: float, log: Any) -> bool:
    """File, then ``.sha256``, then the manifest, holding the export's per-``dst`` lock (local disks).

    Before each unlink the export is checked against the listing (:func:`changed_since_listing`),
    so a re-commit at the same path since then loses nothing. Returns False when the export was
    left alone for that reason or because a writer holds its lock (waited for at most ``lock_wait``
    seconds); a failed unlink is added to ``errors``. ``log`` is the caller's logger.
    """
    lock = DestinationLock(str(found.path.path)) if is_local(found.path) else None
    if lock is not None:
        try:
            lock.acquire(lock_wait, waiting_for="delete it and its sidecars")
        except DestinationLockedError:
            log.warning(
                "Not deleting %s now: a copy task holds its lock %s (it is committing this export); "
                "the next run judges it",
                found.path,
                lock.path,
            )
            return False
        except FileNotFoundError:  # its directory is gone, and the export with it: nothing to delete unlocked
            log.warning("Not deleting %s now: its directory is gone; the next run judges it", found.path)
            return False
        except (OSError, SnapshotTransferError) as exc:
            log.error("Not deleting %s: its lock %s cannot be taken: %s", found.path, lock.path, exc)
            errors.append(f"  {found.path}: its lock {lock.path} cannot be taken: {exc}")
            return False
    try:
        return _delete_unlocked(found, errors, export_too=export_too, log=log)
    finally:
        if lock is not None:
            lock.release()


def _delete_unlocked(found: FoundExport, errors: list[str], *, export_too: bool, log: Any) -> bool:
    export = found.path
    sidecars = sidecar_paths(export)
    for path in ((export,) if export_too else ()) + (sidecars.sha256, sidecars.manifest):
        changed = changed_since_listing(found, file_gone=path is not export)
        if changed is not None:
            log.warning(
                "Not deleting %s: %s changed since the listing (%s; re-committed?); the next run judges it",
                path,
                export,
                changed,
            )
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.error("Could not delete %s: %s; its manifest is kept so the next run retries", path, exc)
            errors.append(f"  {path}: {exc.strerror or exc}")
            return True
        log.info("Deleted %s", path)
    return True


def changed_since_listing(found: FoundExport, *, file_gone: bool) -> str | None:
    """Why the export at ``found.path`` is not the one listed any more (None: it still is)."""
    try:
        manifest = read_ours(found.path)
    except (ManifestError, OSError) as exc:
        return f"its manifest cannot be read now: {exc}"
    if manifest is None:  # deleted by a racing retention run, unless a new commit's file is there
        return "its manifest is gone and a file is in place" if found.path.exists() else None
    for key in ("snapshot_id", "sha256"):
        if manifest[key] != found.manifest[key]:
            return f"its manifest now records {key} {manifest[key]}, not {found.manifest[key]}"
    if manifest != found.manifest:
        return "its manifest was rewritten"
    if not file_gone and found.size is not None:
        try:
            size = found.path.fs.size(found.path.path)
        except OSError as exc:
            return f"its size cannot be read now: {exc}"
        if size != found.size:
            return f"it now has {size} bytes, not the {found.size} listed"
    if file_gone and found.path.exists():
        return "the export file is back in place"
    return None
