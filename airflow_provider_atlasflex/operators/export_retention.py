"""Operator that deletes old exports by a retention policy, and only exports that are provably ours."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.defaults import DEFAULT_VERIFY_CHUNK_SIZE
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.operators.export_verify import check_chunk_size
from airflow_provider_atlasflex.validation import require_bool, require_positive_number

# archive.scan, .check, .manifest and .deletion are imported when the task runs, not here: DAG files
# import this module on every parse. Tests replace their functions there (archive.scan.scan_exports).
if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_atlasflex.archive.scan import FoundExport, Scan

VERIFY_MODES = ("size", "full")
# How long a deletion waits for a writer holding the export's per-dst lock before leaving it to the next run:
# a publish and its sidecars take milliseconds, and retention has no reason to wait long for anything.
RETENTION_LOCK_WAIT = 5.0


class AtlasFlexExportRetentionOperator(BaseOperator):
    """Delete exports under ``root`` that the policy no longer keeps, with their sidecars.

    Policy, per cluster (project id + cluster name from each manifest): keep the exports of the
    newest ``keep_last`` snapshots (copies of one snapshot count once), and keep every export whose snapshot was taken less than ``keep_days``
    days ago; an export either rule keeps is kept. Age and order come from the snapshot's Atlas
    ``finishTime`` in the manifest (when the data was taken: re-exporting an old snapshot does not
    make it new), falling back to ``exported_at``; an export with neither date is never deleted.
    A ``finishTime`` later than the export's ``exported_at`` is impossible and never trusted (the
    export time is used): one lying answer (say 2099) would otherwise make that export the
    protected "newest" for ever and let the policy delete every real one.

    Safety rules, whatever the policy says:

    * only exports proven ours are candidates: an ``atlasflex-export/1`` manifest beside them with
      a valid signature (see ``airflow_provider_atlasflex.archive.proof``: whoever can write the storage can plant a file
      with matching sidecars, but cannot sign), a ``.sha256`` that agrees with it and a listed size
      equal to the signed one. Everything else (no manifest, someone else's ``.json``, an unsigned
      or badly signed manifest, bytes replaced since) is never touched and is reported ``unproven``;
    * a date later than now (plus an hour of clock skew) is never trusted: such an export is
      never protected nor counted among the newest, is kept, and is named in a warning;
    * the newest *verified* export of each cluster is always kept, and the export that would be
      protected is always fully re-read as the verify operator does (sha256, gzip, tar listing),
      whatever ``verify`` says: a damaged newest export is passed over and the walk goes back to
      the newest one that fully verifies (one full read per cluster when all is well). A cluster
      with no verified export loses nothing until one verifies;
    * an export is deleted file first, then ``.sha256``, then the ``.json`` manifest last. A crash
      in between leaves a manifest that points at nothing, which the next run recognises and
      cleans up; deleting the manifest first could strand a file that no run would ever prove ours;
    * just before each unlink the manifest is re-read (and, for sidecars, the file's absence
      re-checked): if the export was re-committed since the listing (another snapshot id or
      sha256, or a file back in place), nothing more of it is deleted and the next run judges it.
    * on local disks each export is deleted holding its per-``dst`` lock, the one a copy holds
      from its publish until its sidecars are written (:class:`~.lock.DestinationLock`): a copy
      re-committing the same name never interleaves with the deletion (no file left without its
      manifest, no fresh export deleted half-way). An export whose lock a writer holds for more
      than a few seconds is skipped (logged) and judged by the next run.

    Temporary files of dead copy attempts (``.*.atlasflex-partial``) under ``root`` are swept too,
    with the transfer's own rules: on local disks only those whose attempt's lock is free, elsewhere
    only those older than a day; each is logged, and ``dry_run`` only reports them.

    Each deletion is logged; ``dry_run=True`` logs and returns the same plan but deletes nothing.
    Returns ``{"dry_run", "deleted", "kept", "protected", "unproven", "future_dated", "cleaned_sidecars",
    "skipped_clusters", "swept_partials"}`` (unproven and future-dated exports are also in ``kept``).

    :param root: directory or prefix holding the exports, e.g. ``s3://bucket/atlas`` (templated).
    :param dst_conn_id: connection for the storage (templated).
    :param keep_last: newest snapshots to keep per cluster (1 or more; every copy of a kept snapshot
        is kept), or None (templated, see below).
    :param keep_days: keep exports of snapshots younger than this many days, or None (templated).
        At least one of ``keep_last`` and ``keep_days`` is required.
    :param verify: what proves an export before it is deleted: ``"size"`` (default: its signature,
        ``.sha256`` and listed size, no read) or ``"full"`` (also a full re-read, so bytes replaced
        by others of the same size are kept too). Either way the one protected is fully re-read and
        verified before anything of its cluster is deleted.
    :param dry_run: only log and return what would be deleted (templated).

    ``keep_last``, ``keep_days`` and ``dry_run`` are templated so DAG params can set them; render
    them as native values with ``render_template_as_native_obj=True`` on the DAG.
    """

    # keep_last, keep_days and dry_run are templated for DAG params; render them as numbers and
    # booleans with ``render_template_as_native_obj=True`` on the DAG (text is refused, not guessed).
    template_fields: Sequence[str] = ("root", "dst_conn_id", "keep_last", "keep_days", "is_dry_run")
    ui_color = "#3d4f58"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        root: str | ObjectStoragePath,
        dst_conn_id: str | None = None,
        keep_last: int | str | None = None,
        keep_days: float | str | None = None,
        verify: str = "size",
        dry_run: bool | str = False,
        chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.dst_conn_id = dst_conn_id
        self.keep_last = keep_last
        self.keep_days = keep_days
        self.verify = verify
        self.is_dry_run = dry_run
        self.chunk_size = chunk_size

    def _check_arguments(self) -> ObjectStoragePath:
        if self.keep_last is None and self.keep_days is None:
            raise AtlasFlexConfigError(
                "Give keep_last (newest exports kept per cluster) and/or keep_days (age in days below which "
                "exports are kept); with neither, retention would have no policy."
            )
        last = self.keep_last
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise AtlasFlexConfigError(
                f"keep_last must be a whole number of 1 or more, or None, got {last!r}{_text_hint(last)}."
            )
        self._keep_last = last if isinstance(last, int) else None  # an int of 1 or more, or None
        self._keep_days = None if self.keep_days is None else require_positive_number(self.keep_days, "keep_days", unit="days")
        if self.verify not in VERIFY_MODES:
            raise AtlasFlexConfigError(f"verify must be one of {list(VERIFY_MODES)}, got {self.verify!r}.")
        require_bool(self.is_dry_run, "dry_run")
        check_chunk_size(self.chunk_size)
        from airflow_provider_atlasflex.archive.storage_url import require_storage_path

        return require_storage_path(self.root, "root", self.dst_conn_id, directory=True)

    def execute(self, context: Context) -> dict[str, Any]:
        root = self._check_arguments()
        from airflow_provider_atlasflex.archive.check import ExportReadError
        from airflow_provider_atlasflex.archive.deletion import changed_since_listing
        from airflow_provider_atlasflex.archive.keys import KeyRing
        from airflow_provider_atlasflex.archive.manifest import dated_in_future
        from airflow_provider_atlasflex.archive.proof import at_rest_problem, signature_problem
        from airflow_provider_atlasflex.archive.scan import scan_exports

        now = datetime.now(timezone.utc)
        self._keys = KeyRing()
        scan = scan_exports(root)
        verb = "Would delete" if self.is_dry_run else "Deleted"
        report: dict[str, Any] = {
            "dry_run": self.is_dry_run,
            "deleted": [],
            "kept": [],
            "protected": [],
            "unproven": [],
            "future_dated": [],
            "cleaned_sidecars": [],
            "skipped_clusters": [],
            "swept_partials": self._sweep_partials(root, scan),
        }
        errors: list[str] = []
        by_cluster: dict[tuple[str, str], list[tuple[datetime | None, FoundExport]]] = defaultdict(list)
        for found in scan.exports:
            unsigned = signature_problem(found.manifest, self._keys)
            if unsigned is not None:  # a planted manifest (with or without a file) is never acted on
                self._unproven(report, found, f"{unsigned[0]}: {unsigned[1]}")
                continue
            if found.size is None and not found.path.exists():
                # A manifest left by an interrupted deletion (or a file removed by hand): sidecars are
                # committed after their export, so a manifest never legitimately precedes its file.
                self.log.info("%s the sidecars of %s: the export itself is already gone", verb, found.path)
                if self._delete(found, errors, export_too=False):
                    report["cleaned_sidecars"].append(str(found.path))
                continue
            if found.size is None:  # appeared since the listing: judged by the next run
                continue
            problem = at_rest_problem(found.path, found.manifest, found.size, self._keys, found.etag)
            if problem is not None:
                changed = changed_since_listing(found, file_gone=False)
                if changed is not None:  # a commit landing now: not a stranger's file
                    self.log.info("Not judging %s now: %s; the next run judges it", found.path, changed)
                    report["kept"].append(_entry(found, None, f"changed since the listing ({changed})"))
                else:
                    self._unproven(report, found, f"{problem[0]}: {problem[1]}")
                continue
            manifest = found.manifest
            by_cluster[(manifest["group_id"], manifest["cluster_name"])].append((self._taken_at(found), found))
        for (group_id, cluster), exports in sorted(by_cluster.items()):
            undated = [found for taken, found in exports if taken is None]
            for found in undated:
                self.log.warning("Keeping %s: its manifest has no usable finishTime or exported_at", found.path)
                report["kept"].append(_entry(found, None, "no date in its manifest"))
            future = {id(found): why for _, found in exports if (why := dated_in_future(found.manifest, now))}
            for taken, found in exports:
                if id(found) in future:
                    self.log.warning(
                        "Not trusting %s: %s; it is kept, never protected and never counted among the newest (a "
                        "wrong clock, or a planted date)",
                        found.path,
                        future[id(found)],
                    )
                    entry = _entry(found, taken, "dated in the future: not trusted")
                    report["kept"].append(entry)
                    report["future_dated"].append(entry)
            dated = sorted(
                ((taken, found) for taken, found in exports if taken is not None and id(found) not in future),
                key=lambda item: (item[0], item[1].manifest.get("exported_at", ""), str(item[1].path)),
                reverse=True,
            )
            newest_verified = self._newest_verified(dated)
            if newest_verified is None:
                self.log.warning(
                    "No export of cluster %s (project %s) verifies: nothing of it is deleted until one does",
                    cluster,
                    group_id,
                )
                report["skipped_clusters"].append(
                    {"group_id": group_id, "cluster_name": cluster, "exports": len(dated)}
                )
                report["kept"] += [_entry(found, taken, "cluster has no verified export") for taken, found in dated]
                continue
            report["protected"].append(_entry(newest_verified[1], newest_verified[0], "newest verified export"))
            # keep_last counts snapshots, not files: copies of one snapshot (another night's date, a planted
            # replay of a signed set) share its rank, so they never push a real recovery point out.
            ranks: dict[str, int] = {}
            for taken, found in dated:
                rank = ranks.setdefault(found.manifest["snapshot_id"], len(ranks))
                reason = self._keep_reason(rank, taken, now, found is newest_verified[1])
                if reason:
                    report["kept"].append(_entry(found, taken, reason))
                    continue
                unverified = self._unverified_because(found) if self.verify == "full" else None
                if unverified is not None:
                    self._unproven(report, found, unverified)
                    continue
                self.log.info(
                    "%s %s (cluster %s, snapshot %s taken %s) and its sidecars",
                    verb,
                    found.path,
                    cluster,
                    found.manifest["snapshot_id"],
                    taken.isoformat(),
                )
                if self._delete(found, errors, export_too=True):
                    report["deleted"].append(_entry(found, taken, "outside the retention policy"))
                else:
                    report["kept"].append(
                        _entry(found, taken, "changed since the listing, or being written: judged by the next run")
                    )
        self.log.info(
            "%s %d export(s), kept %d, cleaned %d orphaned sidecar set(s) under %s",
            verb,
            len(report["deleted"]),
            len(report["kept"]),
            len(report["cleaned_sidecars"]),
            root,
        )
        if errors:
            raise ExportReadError(
                f"{len(errors)} deletion(s) under {root} failed (the rest went ahead):\n" + "\n".join(errors)
                + "\nA retry deletes what is left (Airflow's task retries apply). If it keeps failing, give the "
                "storage credentials (dst_conn_id, or the worker's user for file://) the right to delete under the root."
            )
        return report

    def _unproven(self, report: dict[str, Any], found: FoundExport, why: str) -> None:
        self.log.warning("Keeping %s: it is not proven ours (%s); retention never deletes it", found.path, why)
        entry = _entry(found, None, f"unproven: {why}")
        report["kept"].append(entry)
        report["unproven"].append(entry)

    def _keep_reason(self, rank: int, taken: datetime, now: datetime, newest_verified: bool) -> str | None:
        if newest_verified:
            return "newest verified export"
        if self._keep_last is not None and rank < self._keep_last:
            return f"among the newest {self._keep_last}"
        if self._keep_days is not None and taken > now - timedelta(days=self._keep_days):
            return f"younger than {self._keep_days:g} days"
        return None

    def _newest_verified(self, dated: list[tuple[datetime, FoundExport]]) -> tuple[datetime, FoundExport] | None:
        for taken, found in dated:
            problem = self._unverified_because(found)
            if problem is None:
                return taken, found
            self.log.warning(
                "%s is not verified (%s): an older export of its cluster stays protected", found.path, problem
            )
        return None

    def _unverified_because(self, found: FoundExport) -> str | None:
        """Why ``found`` cannot be the protected export: a full re-read decides (its sidecars were checked already)."""
        from airflow_provider_atlasflex.archive.check import VERIFIED, verify_export

        result = verify_export(found.path, self.chunk_size, self._keys)
        return None if result["status"] == VERIFIED else f"{result['status']}: {'; '.join(result['problems'])}"

    def _taken_at(self, found: FoundExport) -> datetime | None:
        from airflow_provider_atlasflex.archive.manifest import finish_time_trusted, taken_at

        snapshot = found.manifest.get("snapshot")
        finish_time = snapshot.get("finishTime") if isinstance(snapshot, dict) else None
        if not finish_time_trusted(finish_time, found.manifest.get("exported_at")):
            self.log.warning(
                "Not trusting finishTime %s of %s: it is later than its export time %s; ordering it by the export time",
                finish_time,
                found.path,
                found.manifest.get("exported_at"),
            )
        return taken_at(found.manifest)

    def _delete(self, found: FoundExport, errors: list[str], *, export_too: bool) -> bool:
        """Delete ``found`` and its sidecars safely (see :func:`~airflow_provider_atlasflex.archive.deletion.delete_export`)."""
        if self.is_dry_run:
            return True
        from airflow_provider_atlasflex.archive.deletion import delete_export

        return delete_export(found, errors, export_too=export_too, lock_wait=RETENTION_LOCK_WAIT, log=self.log)

    def _sweep_partials(self, root: ObjectStoragePath, scan: Scan) -> list[str]:
        """Sweep (or, dry run, report) dead ``.*.atlasflex-partial`` files in the directories that hold any."""
        from airflow_provider_atlasflex.archive.partials import sweep_dead_partials
        from airflow_provider_atlasflex.archive.scan import child_path

        directories = sorted({relative.rpartition("/")[0] for relative in scan.partials})
        swept: list[str] = []
        for relative in directories:
            directory = child_path(root, relative) if relative else root
            for name in sorted(sweep_dead_partials(directory, remove=not self.is_dry_run)):
                path = directory / name
                self.log.warning(
                    "%s %s: the temporary file of a copy attempt that died",
                    "Would sweep" if self.is_dry_run else "Swept",
                    path,
                )
                swept.append(str(path))
        return swept

def _text_hint(value: Any) -> str:
    if isinstance(value, str):
        return " (a template renders text unless the DAG sets render_template_as_native_obj=True)"
    return ""


def _entry(found: FoundExport, taken: datetime | None, reason: str) -> dict[str, Any]:
    manifest = found.manifest
    return {
        "path": str(found.path),
        "group_id": manifest["group_id"],
        "cluster_name": manifest["cluster_name"],
        "snapshot_id": manifest["snapshot_id"],
        "taken_at": taken.isoformat() if taken else None,
        "bytes": found.size,
        "reason": reason,
    }
