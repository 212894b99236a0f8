"""Retention deleting an export while a copy re-commits the same name: real processes, round after round.

A copy task re-exporting snapshot X with ``overwrite=True`` replaces the file and then its two
sidecars, holding the per-``dst`` lock from its publish until its sidecars are written. Retention
deletes X (outside ``keep_last=1``: a newer export Y of the cluster is protected) file first, then
``.sha256``, then the manifest. Without the lock the two interleave: retention can delete the
fresh file and one sidecar, or a fresh sidecar, leaving a file without its manifest (or a manifest
with nothing behind it, or a checksum for other bytes).

Three actors per round, started together at a barrier: a writer process (the transfer's own
commit and sidecar code, after a random delay), a retention process (the real operator), and this
test, which keeps taking the same lock the way a writer does and checks X whenever it holds it:
whoever holds the lock must see X consistent (all three files present and agreeing, or all absent).
After every round X is checked again, with ``sha256sum -c``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import multiprocessing
import os
import queue
import random
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.manifest import build_manifest
from tests.reliability.registry import reliability
from tests.unit.export_fixtures import GROUP, commit_export, make_tgz, nights, snapshot_id

ROUNDS = 20
LOCK_SUFFIX = ".atlasflex-lock"  # the commit's per-dst lock file (kept literal: the test must not trust the code)


def _writer(dst_url: str, data: bytes, manifest: dict[str, Any], commands: Any, done: Any, barrier: Any) -> None:
    """Runs in its own process: re-commits X as the transfer does (lock from publish until the sidecars)."""
    from airflow_provider_atlasflex.archive.commit import export_commit
    from airflow_provider_atlasflex.archive.manifest import write_sidecars

    dst = ObjectStoragePath(dst_url)
    while (delay := commands.get()) is not None:
        barrier.wait(timeout=60)
        time.sleep(delay)
        try:
            with export_commit(dst, overwrite=True, hold_dst_lock=True) as commit:
                with commit.output() as out:
                    out.write(data)
                commit.commit(len(data))
                write_sidecars(dst, manifest)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            done.put(("writer", f"{type(exc).__name__}: {exc}"))
            continue
        done.put(("writer", "committed"))


def _retention(root_url: str, commands: Any, done: Any, barrier: Any) -> None:
    """Runs in its own process: the real retention operator, keep_last=1."""
    from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
    from tests.unit.fake_context import make_context

    while commands.get() is not None:
        barrier.wait(timeout=60)
        try:
            report = AtlasFlexExportRetentionOperator(task_id="retention", root=root_url, keep_last=1).execute(
                make_context()  # type: ignore[arg-type]
            )
        except Exception as exc:  # noqa: BLE001 - reported to the test
            done.put(("retention", f"{type(exc).__name__}: {exc}"))
            continue
        done.put(("retention", f"deleted {len(report['deleted'])}"))


def _state(export: Path) -> str | None:
    """Why X and its sidecars disagree (None: all three present and agreeing, or all absent)."""
    sha_file, manifest_file = Path(f"{export}.sha256"), Path(f"{export}.json")
    try:
        present = [p.exists() for p in (export, sha_file, manifest_file)]
        if not any(present):
            return None
        if not all(present):
            return f"partial set: file, .sha256, .json present = {present}"
        actual = hashlib.sha256(export.read_bytes()).hexdigest()
        recorded = sha_file.read_text().split()[0]
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError, IndexError) as exc:
        return f"changed while read under the lock: {exc}"
    if not actual == recorded == manifest["sha256"] or manifest["file"] != export.name:
        return f"sidecars record other bytes: file {actual}, .sha256 {recorded}, manifest {manifest['sha256']}"
    return None


def _check_under_lock(export: Path) -> str | None | bool:
    """Take X's lock like a writer (never waiting), check X, release; False if someone else holds it."""
    lock = f"{export.parent}/.{export.name}{LOCK_SUFFIX}"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            raise
        now, mine = os.lstat(lock) if os.path.exists(lock) else None, os.fstat(fd)
        if now is None or not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            return False  # its holder removed it meanwhile
        try:
            return _state(export)
        finally:
            os.unlink(lock)  # while holding it, as the commit does
    finally:
        os.close(fd)


@reliability(
    "hostile",
    f"{ROUNDS} rounds: a writer process re-commits export X with overwrite=True (file, then .sha256, then .json) "
    "while a retention process (keep_last=1, a newer export protected) deletes X; a third process keeps taking "
    "X's per-dst lock and checking X whenever it holds it",
    "Retention deleted X holding the same per-dst lock the commit holds from its publish until its sidecars, "
    "re-reading the manifest under it (an export whose lock a writer holds is skipped and logged)",
    "X and its sidecars always consistent: all three present with `sha256sum -c` OK, or all absent; never a file "
    "without its manifest or a checksum for other bytes",
)
def test_retention_and_a_recommitting_writer_never_leave_x_half_deleted(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    newest, older = nights(2)
    protected = commit_export(root, "alpha", newest, night=0)
    template = commit_export(root, "alpha", older, night=1)
    export = Path(template.path)
    data = make_tgz(payload=200_000, seed=1)
    manifest = build_manifest(
        file_name=export.name,
        cluster_name="alpha",
        group_id=GROUP,
        snapshot_id=snapshot_id(1),
        snapshot={"finishTime": older.strftime("%Y-%m-%dT%H:%M:%SZ")},
        restore_job_id="7a1b2c3d4e5f60718293a4b7",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        exported_at=older.isoformat(),
    )
    protected_bytes = Path(protected.path).read_bytes()

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    done = context.Queue()
    to_writer, to_retention = context.Queue(), context.Queue()
    processes = [
        context.Process(target=_writer, args=(str(template), data, manifest, to_writer, done, barrier), daemon=True),
        context.Process(target=_retention, args=(str(root), to_retention, done, barrier), daemon=True),
    ]
    for process in processes:
        process.start()
    rng = random.Random(7)
    outcomes: list[tuple[str, str]] = []
    violations: list[str] = []
    observed = 0
    try:
        for round_no in range(ROUNDS):
            to_writer.put(rng.uniform(0.0, 0.15))
            to_retention.put(True)
            barrier.wait(timeout=60)
            reported: list[tuple[str, str]] = []
            deadline = time.monotonic() + 120
            while len(reported) < 2:
                checked = _check_under_lock(export)
                if checked is not False:
                    observed += 1
                    if checked is not None:
                        violations.append(f"round {round_no}, under the lock: {checked}")
                try:
                    reported.append(done.get(timeout=0.0005))
                except queue.Empty:
                    if time.monotonic() > deadline:
                        pytest.fail(f"round {round_no}: no report from {[p.exitcode for p in processes]}")
            outcomes += reported
            after = _state(export)
            if after is not None:
                violations.append(f"round {round_no}, after the round: {after}")
            elif export.exists():
                check = subprocess.run(
                    ["sha256sum", "-c", f"{export.name}.sha256"],
                    check=False,
                    cwd=export.parent,
                    capture_output=True,
                    text=True,
                )
                if check.returncode:
                    violations.append(f"round {round_no}: sha256sum -c failed: {check.stdout}{check.stderr}")
            assert Path(protected.path).read_bytes() == protected_bytes, "the protected export changed"
            leftovers = sorted(p.name for p in export.parent.iterdir() if p.name.startswith("."))
            assert leftovers == [], f"round {round_no}: left behind: {leftovers}"
    finally:
        to_writer.put(None)
        to_retention.put(None)
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    print(f"{ROUNDS} rounds, {observed} checks under the lock; outcomes: {sorted(set(outcomes))}")
    assert violations == [], "\n".join(violations[:20])
    writers = [what for who, what in outcomes if who == "writer"]
    assert writers == ["committed"] * ROUNDS, writers
    retentions = [what for who, what in outcomes if who == "retention"]
    assert all(r.startswith("deleted") for r in retentions), retentions
    assert retentions.count("deleted 1") >= 1, "retention never deleted X: the race was not exercised"
    shutil.rmtree(tmp_path / "exports")


@reliability(
    "hostile",
    "A copy task holds export X's per-dst lock (it is committing X) and does not let go while retention "
    "(keep_last=1) wants to delete X",
    "Waited a few seconds for the lock, then skipped X (file and sidecars untouched) and deleted the rest; the "
    "next run, with the lock free, deleted X",
    "'Not deleting <X> now: a copy task holds its lock <.X.atlasflex-lock> (it is committing this export); the "
    "next run judges it'; X is reported under kept",
)
def test_retention_skips_an_export_whose_lock_a_writer_holds(tmp_path, monkeypatch, caplog, capsys):
    from airflow_provider_atlasflex.operators import export_retention
    from tests.reliability.test_lock_wait import LockHolder
    from tests.unit.export_fixtures import retention

    monkeypatch.setattr(export_retention, "RETENTION_LOCK_WAIT", 0.5)
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = [commit_export(root, "alpha", when, night=n) for n, when in enumerate(nights(3))]
    held = Path(exports[1].path)
    holder = LockHolder(held.parent / f".{held.name}{LOCK_SUFFIX}")
    try:
        report = retention(root, keep_last=1)
    finally:
        holder.die()
    assert [e["path"] for e in report["deleted"]] == [str(exports[2])]
    assert str(exports[1]) in [e["path"] for e in report["kept"]]
    assert held.exists() and Path(f"{held}.sha256").exists() and Path(f"{held}.json").exists()
    logged = capsys.readouterr().out + caplog.text  # the operator's log (structlog) and the lock's (logging)
    assert (
        f"Not deleting {exports[1]} now: a copy task holds its lock {held.parent}/.{held.name}{LOCK_SUFFIX}" in logged
    )

    report = retention(root, keep_last=1)
    assert [e["path"] for e in report["deleted"]] == [str(exports[1])]
    assert sorted(p.name for p in held.parent.iterdir()) == []  # its lock file went with it
