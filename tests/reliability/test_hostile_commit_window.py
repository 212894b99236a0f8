"""Hostile conditions around the commit window (issue 7 review, items 4, 5, 9, 11).

The window between an export's publish and its sidecars: another writer overtaking it (4), a crash
inside it (5); and the housekeeping around it: a live attempt's old temporary file (9), durable
nested directories (11).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.archive import local_disk
from airflow_provider_atlasflex.archive import partials as partials_module
from airflow_provider_atlasflex.archive.commit import LocalExportCommit
from airflow_provider_atlasflex.archive.partials import PARTIAL_SUFFIX
from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.reliability.registry import reliability
from tests.reliability.test_faults_transfer import copy, request_link, sha256_of
from tests.reliability.test_hostile_commit import Attempt, partials, target_of

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


def sidecar_sha256s(target: Path) -> tuple[str, str]:
    import json

    manifest = json.loads(target.with_name(target.name + ".json").read_text())
    line = target.with_name(target.name + ".sha256").read_text()
    return manifest["sha256"], line.split()[0]


def overtake_in_sidecar_window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Attempt, Attempt, Path]:
    """A (alpha) commits, then waits before its sidecars while B (beta, other bytes) copies to the same dst."""
    real = AtlasFlexSnapshotToStorageOperator._write_sidecars
    in_window, overtaken = threading.Event(), threading.Event()

    def write_sidecars(self: Any, dst: Any, cluster: str, *args: Any) -> Any:
        if cluster == "alpha":
            in_window.set()
            overtaken.wait(30)  # without the lock B commits and writes its sidecars now; with it, B waits
        return real(self, dst, cluster, *args)

    monkeypatch.setattr(AtlasFlexSnapshotToStorageOperator, "_write_sidecars", write_sidecars)
    dst = f"file://{tmp_path}/exports/latest.tgz"
    job_a, job_b = request_link("alpha"), request_link("beta")
    first = Attempt(tmp_path, job_a["id"], cluster="alpha", dst=dst, overwrite=True)
    second = Attempt(tmp_path, job_b["id"], cluster="beta", dst=dst, overwrite=True)
    first.start()
    assert in_window.wait(60), "A never reached its sidecars"
    second.start()
    second.join(4)  # B runs to its end, or blocks on A's lock
    overtaken.set()
    first.join(60)
    second.join(60)
    return first, second, tmp_path / "exports" / "latest.tgz"


# ---- 4. a writer overtaken between its publish and its sidecars ----------------------------------


@reliability(
    "hostile",
    "overwrite=True: A publishes X, B publishes Y and writes its sidecars, then A writes its sidecars",
    "Each attempt holds .<name>.atlasflex-lock beside dst from just before its publish until its sidecars are "
    "written and re-checked, so B waits for A; then B replaces the export with its own sidecars",
    "Both tasks succeed in turn; dst, its .json and its .sha256 always agree (never Y with A's manifest)",
)
def test_overtaken_writer_never_leaves_its_sidecars_on_the_other_writers_bytes(emu, atlas_conn, tmp_path, monkeypatch):
    atlas_conn(emu, "digest")
    first, second, target = overtake_in_sidecar_window(monkeypatch, tmp_path)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.result["sha256"] != second.result["sha256"]
    on_disk = sha256_of(target)
    assert sidecar_sha256s(target) == (on_disk, on_disk), "dst's sidecars record bytes that are not at dst"
    assert on_disk == second.result["sha256"], "the last writer to report success is not the one at dst"
    assert partials(tmp_path) == []


@reliability(
    "hostile",
    "Same overtaking, where the per-dst lock is not available (a filesystem without locks, or fsspec/S3)",
    "Re-checked after its sidecars that dst is still its own file (inode; size or ETag elsewhere) and that the "
    "sidecars record its sha256; A's check failed",
    "A fails: 'another writer replaced the export while this attempt wrote its sidecars ... Not reporting success "
    "for bytes that are not at dst'; B succeeds",
)
def test_overtaken_writer_without_locks_reports_failure_not_success(emu, atlas_conn, tmp_path, monkeypatch):
    atlas_conn(emu, "digest")
    monkeypatch.setattr(LocalExportCommit, "_lock_dst", lambda self: None, raising=False)  # no flock here
    first, second, target = overtake_in_sidecar_window(monkeypatch, tmp_path)

    assert second.error is None and second.result["sha256"] == sha256_of(target)
    assert isinstance(first.error, SnapshotTransferError), "A reported success for bytes that are not at dst"
    assert "no longer holds" in str(first.error) and "Not reporting success" in str(first.error)


def test_dst_lock_is_private_and_never_followed_through_a_symlink(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (target.parent / f".{target.name}.atlasflex-lock").symlink_to(victim)

    with pytest.raises(SnapshotTransferError):
        copy(tmp_path, job["id"])

    assert victim.read_text() == "keep" and not target.exists() and partials(tmp_path) == []
    (target.parent / f".{target.name}.atlasflex-lock").unlink()
    copy(tmp_path, job["id"])
    assert not (target.parent / f".{target.name}.atlasflex-lock").exists(), "the lock file was left"


# ---- 5. a crash between the commit and the sidecars -----------------------------------------------


@reliability(
    "hostile",
    "The worker dies after the commit but before the sidecars; the task is retried with overwrite=False",
    "Copied again into its own temporary file (dst untouched); the no-clobber commit found dst, which holds "
    "exactly the freshly verified bytes, so it wrote the sidecars",
    "The retry succeeds with already_present=True; dst is now proven by its sidecars",
)
def test_retry_after_a_crash_before_the_sidecars_succeeds(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    copy(tmp_path, job["id"])
    target = target_of(tmp_path, job["snapshotId"])
    for suffix in (".json", ".sha256"):
        target.with_name(target.name + suffix).unlink()
    before = target.stat()

    retry = copy(tmp_path, request_link()["id"])

    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "dst was touched"
    assert retry["already_present"] is True and retry["sha256"] == emu.expected_sha256(job["snapshotId"])
    assert sidecar_sha256s(target) == (retry["sha256"], retry["sha256"])
    assert partials(tmp_path) == []


@reliability(
    "hostile",
    "overwrite=False and dst holds other bytes without sidecars (not this snapshot's export)",
    "Copied into its own temporary file to compare; the no-clobber commit refused; dst never touched",
    "'<dst> already exists and overwrite=False, and it has no .json sidecar ...; it does not hold the <n> bytes "
    "(sha256 ...) Atlas served now (it holds <m> bytes with sha256 ...): it was left untouched. Delete the file "
    "(or set overwrite=True ...)'",
)
def test_unproven_different_file_is_compared_and_refused_untouched(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True, mode=0o700)
    target.write_bytes(b"someone else's file")

    with pytest.raises(SnapshotTransferError, match="already exists and overwrite=False") as refused:
        copy(tmp_path, job["id"])

    message = str(refused.value)
    assert "has no .json sidecar" in message and "it holds 19 bytes with sha256" in message
    assert hashlib.sha256(b"someone else's file").hexdigest() in message and "left untouched" in message
    assert target.read_bytes() == b"someone else's file" and partials(tmp_path) == []
    assert not target.with_name(target.name + ".json").exists()


# ---- 9. the sweeper and a live attempt's old temporary file ---------------------------------------


@reliability(
    "hostile",
    "A live attempt (holding its lock) whose temporary file is more than 24 h old, e.g. after a long stall",
    "The sweeper left it: age decides only where the filesystem has no locks",
    "Nothing: the live attempt commits its own file",
)
@pytest.mark.parametrize("remove", [True, False], ids=["sweep", "dry-run"])
def test_sweeper_keeps_a_live_attempts_old_temporary_file(tmp_path, remove):
    live = tmp_path / f".latest.tgz.0123456789abcdef{PARTIAL_SUFFIX}"
    live.write_bytes(b"being written")
    os.utime(live, (time.time() - 3 * 86400,) * 2)
    holder = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert partials_module.sweep_dead_partials_local(str(tmp_path), remove=remove) == []
        assert live.exists()
    finally:
        os.close(holder)
    assert partials_module.sweep_dead_partials_local(str(tmp_path), remove=remove) == [live.name]


# ---- 11. nested new directories are durable --------------------------------------------------------


@reliability(
    "hostile",
    "A power cut after the first export of a new cluster: alpha/ and alpha/<date>/ were both created",
    "fsync of the parent of every directory it created (root for alpha/, alpha/ for <date>/)",
    "Nothing: the new directories, and the export in them, survive the crash",
)
def test_every_new_directory_is_made_durable_in_its_parent(tmp_path, monkeypatch):
    synced: list[str] = []
    real = local_disk.fsync_directory
    monkeypatch.setattr(local_disk, "fsync_directory", lambda d: (synced.append(d), real(d))[1])
    root = tmp_path / "exports"
    root.mkdir()

    created = local_disk.make_private_dirs(str(root / "alpha" / "2026-11-28"), 0o700)

    assert created == [str(root / "alpha"), str(root / "alpha" / "2026-11-28")]
    assert str(root) in synced and str(root / "alpha") in synced, synced
