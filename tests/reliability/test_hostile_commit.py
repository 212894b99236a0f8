"""Hostile conditions at the destination (issue 7, items 1-5): racing writers, planted links, crashes, other users.

Each test drives the transfer operator against the emulator, like ``test_faults_transfer.py``.
Two attempts racing inside one process run in threads here, so that the emulator's delays decide
exactly who is where; ``test_two_writers_race.py`` races real processes, in loops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.archive import commit as commit_module
from airflow_provider_atlasflex.archive.commit import LocalExportCommit
from airflow_provider_atlasflex.archive.manifest import MANIFEST_FORMAT, read_manifest, sidecar_paths
from airflow_provider_atlasflex.archive.partials import PARTIAL_SUFFIX
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotTransferError
from airflow_provider_atlasflex.version import __version__
from tests.reliability.conftest import files_under
from tests.reliability.registry import case, reliability
from tests.reliability.test_faults_transfer import RUN_DATE, copy, request_link, sha256_of
from tests.unit.test_export_commit import otherfs  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


def target_of(tmp_path: Path, snapshot_id: str, cluster: str = "alpha") -> Path:
    return tmp_path / "exports" / cluster / RUN_DATE / f"{snapshot_id}.tgz"


def partials(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{PARTIAL_SUFFIX}") if p.is_file() or p.is_symlink())


class Attempt(threading.Thread):
    """One copy task in a thread; when it succeeds, it hashes ``dst`` at once (what a reader sees then)."""

    def __init__(self, tmp_path: Path, job_id: str, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.tmp_path, self.job_id, self.kwargs = tmp_path, job_id, kwargs
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.dst_sha256_at_success: str | None = None

    def run(self) -> None:
        try:
            self.result = copy(self.tmp_path, self.job_id, **self.kwargs)
            self.dst_sha256_at_success = sha256_of(Path(self.result["path"].removeprefix("file://")))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Log lines of the run: stdlib logging (caplog) and the operator's own logger (Airflow's structlog, stdout)."""
    return [r.getMessage() for r in caplog.records] + capsys.readouterr().out.splitlines()


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# ---- 1. two writers, one dst ---------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["overwrite-false", "overwrite-true"])
@reliability(
    "hostile",
    "Two copies of one snapshot to one dst overlap: the second starts while the first holds its temporary file "
    "and is still slower when the first commits (both overwrite values)",
    "Each attempt wrote its own .<name>.<random>.atlasflex-partial; the first published only its own verified "
    "file; the second found the identical export (no-clobber link failed, then a re-hash matched) or replaced it "
    "with identical bytes",
    "Nothing: both tasks succeed and each reported sha256 is what dst holds at that moment; no temporary file left",
)
def test_overlapping_writers_each_publish_only_their_own_verified_file(emu, atlas_conn, tmp_path, overwrite):
    atlas_conn(emu, "digest")
    job = request_link()
    emu.faults.add(operation="snapshotFile", delay=1.5, nth=1)  # A holds its temporary file and waits
    emu.faults.add(operation="snapshotFile", delay=3.0, nth=2)  # B starts meanwhile and is slower still
    first = Attempt(tmp_path, job["id"], overwrite=overwrite)
    first.start()
    wait_for(lambda: partials(tmp_path), "the first attempt's temporary file")
    second = Attempt(tmp_path, job["id"], overwrite=overwrite)
    second.start()
    first.join(60)
    second.join(60)

    expected = emu.expected_sha256(job["snapshotId"])
    for attempt in (first, second):
        assert attempt.error is None, f"an attempt failed: {attempt.error}"
        assert attempt.result is not None and attempt.result["sha256"] == expected
        assert attempt.dst_sha256_at_success == expected, "a success was reported for bytes that are not at dst"
    assert sha256_of(target_of(tmp_path, job["snapshotId"])) == expected
    assert partials(tmp_path) == []
    if not overwrite:
        assert (first.result["already_present"], second.result["already_present"]) == (False, True)


@reliability(
    "hostile",
    "A second copy to the same dst fails (corrupt download) while the first is still copying",
    "The failing attempt removed only its own temporary file; the live attempt's file was untouched",
    "The failing task's error; the other task succeeds with identical bytes; no temporary file left",
)
def test_failing_attempt_never_removes_another_attempts_file(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    size = emu.snapshot_size_of(job["snapshotId"])
    emu.faults.add(operation="snapshotFile", delay=1.5, nth=1)  # the healthy attempt waits
    emu.faults.add(operation="snapshotFile", corrupt_at=size // 2, nth=2)  # the other one gets a bad file
    healthy = Attempt(tmp_path, job["id"])
    healthy.start()
    wait_for(lambda: partials(tmp_path), "the healthy attempt's temporary file")
    live = partials(tmp_path)

    with pytest.raises(SnapshotTransferError, match="not valid gzip data"):
        copy(tmp_path, job["id"])

    assert partials(tmp_path) == live, "the failing attempt touched another attempt's temporary file"
    healthy.join(60)
    assert healthy.error is None, f"the healthy attempt failed: {healthy.error}"
    assert sha256_of(target_of(tmp_path, job["snapshotId"])) == emu.expected_sha256(job["snapshotId"])
    assert partials(tmp_path) == []


@reliability(
    "hostile",
    "Temporary files in the destination directory: one of a killed attempt (lock free), one of a live attempt "
    "(locked), one more than 24 h old, and an unrelated hidden file",
    "Swept the dead and the old temporary files when it opened its own; left the live one and the unrelated file",
    "One warning line per removed file; temporaries no longer pile up night after night",
)
def test_dead_attempts_temporaries_are_swept_live_ones_kept(emu, atlas_conn, tmp_path, caplog):
    atlas_conn(emu, "digest")
    job = request_link()
    directory = target_of(tmp_path, job["snapshotId"]).parent
    directory.mkdir(parents=True)
    dead = directory / f".{job['snapshotId']}.tgz.0123456789abcdef{PARTIAL_SUFFIX}"
    dead.write_bytes(b"half an export")
    legacy = directory / f".other.tgz{PARTIAL_SUFFIX}"  # fixed name of earlier versions, 2 days old
    legacy.write_bytes(b"x")
    os.utime(legacy, (time.time() - 2 * 86400,) * 2)
    live = directory / f".{job['snapshotId']}.tgz.fedcba9876543210{PARTIAL_SUFFIX}"
    live.write_bytes(b"being written")
    unrelated = directory / ".notes"
    unrelated.write_text("mine")
    holder = os.open(live, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        caplog.set_level(logging.WARNING)
        copy(tmp_path, job["id"])
        assert live.exists(), "a live attempt's temporary file was removed"
    finally:
        os.close(holder)
    assert not dead.exists() and not legacy.exists() and unrelated.read_text() == "mine"
    removed = [r.getMessage() for r in caplog.records if "temporary file of an earlier attempt" in r.getMessage()]
    assert len(removed) == 2 and any(str(dead) in m for m in removed)


@reliability(
    "hostile",
    "A local user plants a symlink at the old fixed temporary name (.<name>.atlasflex-partial -> a path of "
    "their choosing)",
    "Never opened it: the temporary name is random and created O_EXCL|O_NOFOLLOW; the planted link is left alone",
    "Nothing: the export is a regular file; the link's target is not created or written",
)
def test_symlink_planted_at_the_temporary_name_is_never_followed(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    planted = target.parent / f".{target.name}{PARTIAL_SUFFIX}"
    planted.symlink_to(victim)

    copy(tmp_path, job["id"])

    assert not victim.exists(), "the export wrote through a planted symlink"
    assert stat.S_ISREG(os.lstat(target).st_mode)
    assert sha256_of(target) == emu.expected_sha256(job["snapshotId"])


def test_exclusive_create_refuses_a_planted_symlink_at_the_exact_name(tmp_path, monkeypatch):
    from airflow.sdk import ObjectStoragePath

    monkeypatch.setattr(commit_module.secrets, "token_hex", lambda n: "ab" * n)
    dst = ObjectStoragePath(f"file://{tmp_path}/x.tgz")
    attempt = LocalExportCommit(dst, overwrite=False, file_mode=0o600, dir_mode=0o700)
    (tmp_path / attempt.temporary_name).symlink_to(tmp_path / "victim")
    with pytest.raises(FileExistsError):
        attempt.open()
    assert not (tmp_path / "victim").exists()


# ---- 2. idempotent retry -------------------------------------------------------------------------


@reliability(
    "hostile",
    "The worker dies after the commit but before Airflow records success; the task is retried (overwrite=False)",
    "Found dst with sidecars recording this snapshot, size and sha256, re-hashed dst, and did not copy again",
    "The retry succeeds with already_present=True and a log line saying so; no second download",
)
def test_retry_after_a_successful_commit_succeeds_without_copying(emu, atlas_conn, tmp_path, caplog, capsys):
    atlas_conn(emu, "digest")
    job = request_link()
    first = copy(tmp_path, job["id"])
    gets = len(emu.requests.by_operation("snapshotFile"))
    caplog.set_level(logging.INFO)

    retry = copy(tmp_path, request_link()["id"])

    assert len(emu.requests.by_operation("snapshotFile")) == gets, "the retry downloaded again"
    assert retry["already_present"] is True and first["already_present"] is False
    assert (retry["sha256"], retry["bytes"], retry["path"]) == (first["sha256"], first["bytes"], first["path"])
    assert retry["manifest_file"] == first["manifest_file"] and retry["sha256_file"] == first["sha256_file"]
    assert any("already holds snapshot" in line and "not copied again" in line for line in logged(caplog, capsys))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("flip-byte", "mismatch: "),
        ("no-sidecar", None),
        ("other-snapshot", None),
        ("sha256-sidecar-edited", None),
    ],
)
def test_unproven_existing_export_is_compared_not_trusted(emu, atlas_conn, tmp_path, tamper, reason):
    """Unproven: copied again to a temporary file; identical bytes get fresh sidecars, others are refused."""
    atlas_conn(emu, "digest")
    job = request_link()
    copy(tmp_path, job["id"])
    target = target_of(tmp_path, job["snapshotId"])
    paths = sidecar_paths(_osp(target))
    if tamper == "flip-byte":
        data = bytearray(target.read_bytes())
        data[1000] ^= 0xFF
        target.write_bytes(bytes(data))
    elif tamper == "no-sidecar":
        Path(paths.manifest.path).unlink()
    elif tamper == "other-snapshot":
        manifest = json.loads(Path(paths.manifest.path).read_text())
        manifest["snapshot_id"] = "0" * 24
        Path(paths.manifest.path).write_text(json.dumps(manifest))
    else:
        Path(paths.sha256.path).write_text(f"{'0' * 64}  {target.name}\n")
    before = target.read_bytes()

    if reason is None:  # dst holds exactly this snapshot's bytes: proven again, not replaced
        result = copy(tmp_path, job["id"])
        assert result["already_present"] is True and target.read_bytes() == before
        assert read_manifest(_osp(target))["sha256"] == result["sha256"] == sha256_of(target)
        return
    with pytest.raises(SnapshotTransferError, match="already exists and overwrite=False") as refused:
        copy(tmp_path, job["id"])

    assert reason in str(refused.value) and target.read_bytes() == before
    result = copy(tmp_path, job["id"], overwrite=True)  # the documented remedy re-copies and proves it
    assert result["already_present"] is False and sha256_of(target) == emu.expected_sha256(job["snapshotId"])
    assert read_manifest(_osp(target))["sha256"] == result["sha256"]


# ---- 3. dst that is a directory or a symlink -------------------------------------------------------


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite-true", "overwrite-false"])
@pytest.mark.parametrize("kind", ["directory", "symlink-to-directory", "symlink-to-file"])
@reliability(
    "hostile",
    "dst is a directory, a symlink to a directory, or a symlink to a file elsewhere (both overwrite values)",
    "Refused before downloading: nothing moved into the directory, nothing written through the link",
    "'Export of snapshot <id> of 'alpha' refused: <dst> is a directory, not a file ...' (or 'is a symbolic link')",
)
def test_dst_that_is_a_directory_or_a_symlink_is_refused(emu, atlas_conn, tmp_path, kind, overwrite):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    if kind == "directory":
        target.mkdir()
    elif kind == "symlink-to-directory":
        elsewhere.mkdir()
        target.symlink_to(elsewhere)
    else:
        elsewhere.write_bytes(b"someone else's file")
        target.symlink_to(elsewhere)

    with pytest.raises(SnapshotTransferError) as refused:
        copy(tmp_path, job["id"], overwrite=overwrite)

    assert ("is a directory" if kind == "directory" else "is a symbolic link") in str(refused.value)
    assert job["snapshotId"] in str(refused.value)
    assert emu.requests.by_operation("snapshotFile") == []
    if kind == "directory":
        assert list(target.iterdir()) == []
    elif kind == "symlink-to-directory":
        assert target.is_symlink() and list(elsewhere.iterdir()) == []
    else:
        assert target.is_symlink() and elsewhere.read_bytes() == b"someone else's file"
    assert partials(tmp_path) == []


# ---- 4. durability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["overwrite-false", "overwrite-true"])
@reliability(
    "hostile",
    "A power cut right after the task reports success (fsync calls recorded in order)",
    "fsync of the temporary file before the link/rename, of the directory after it, and the same for each "
    "sidecar, all before returning",
    "Nothing: a reported export survives a crash (no empty file after 'success')",
)
def test_export_and_sidecars_are_flushed_before_success(emu, atlas_conn, tmp_path, monkeypatch, overwrite):
    atlas_conn(emu, "digest")
    job = request_link()
    events: list[tuple[str, ...]] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("fsync-dir" if stat.S_ISDIR(st.st_mode) else "fsync-file", f"{st.st_dev}:{st.st_ino}"))
        real_fsync(fd)

    def publish(real: Any, name: str) -> Any:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            st = os.lstat(src)
            real(src, dst, *args, **kwargs)
            events.append((name, f"{st.st_dev}:{st.st_ino}", Path(dst).name))

        return call

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", publish(real_link, "link"))
    monkeypatch.setattr(os, "replace", publish(real_replace, "replace"))

    copy(tmp_path, job["id"], overwrite=overwrite)

    directory = os.stat(target_of(tmp_path, job["snapshotId"]).parent)
    dir_id = f"{directory.st_dev}:{directory.st_ino}"
    published = [(i, e) for i, e in enumerate(events) if e[0] in ("link", "replace")]
    names = [e[2] for _, e in published]
    snapshot_file = f"{job['snapshotId']}.tgz"
    assert names == [snapshot_file, f"{snapshot_file}.sha256", f"{snapshot_file}.json"], "export first, sidecars after"
    for index, (_, inode, name) in published:
        assert ("fsync-file", inode) in events[:index], f"{name} was published before it was flushed"
        assert ("fsync-dir", dir_id) in events[index + 1 :], f"the directory was not flushed after {name}"
    last = published[-1][0]
    assert ("fsync-dir", dir_id) in events[last + 1 :]


# ---- 5. permissions --------------------------------------------------------------------------------


@reliability(
    "hostile",
    "Another local user tries to read the backup (umask 022, the usual default)",
    "Created the export and its sidecars 0600 and every directory it made 0700, whatever the umask",
    "Nothing: only the Airflow user can read exports; file_mode/dir_mode widen it on purpose",
)
def test_exports_are_private_by_default(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    old = os.umask(0o022)
    try:
        copy(tmp_path, job["id"])
    finally:
        os.umask(old)
    target = target_of(tmp_path, job["snapshotId"])
    for path in (target, *[Path(p.path) for p in vars(sidecar_paths(_osp(target))).values()]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (tmp_path / "exports", tmp_path / "exports" / "alpha", target.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_file_and_dir_mode_widen_on_purpose(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    old = os.umask(0o077)
    try:
        copy(tmp_path, job["id"], file_mode=0o640, dir_mode=0o750)
    finally:
        os.umask(old)
    target = target_of(tmp_path, job["snapshotId"])
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o750


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        case(
            "test_bad_permission_parameters_are_refused_before_network", "file-mode-world-writable", "bad-input",
            "file_mode=0o666", "Refused before any request", "'file_mode=0o666 lets every local user modify backups ...'",
            {"file_mode": 0o666}, "lets every local user modify",
        ),
        case(
            "test_bad_permission_parameters_are_refused_before_network", "file-mode-owner-cannot-write", "bad-input",
            "file_mode=0o400", "Refused before any request", "'file_mode=0o400 takes the owner's own access away ...'",
            {"file_mode": 0o400}, "takes the owner's own access away",
        ),
        case(
            "test_bad_permission_parameters_are_refused_before_network", "dir-mode-setuid-bits", "bad-input",
            "dir_mode=0o4700 (not plain permission bits)", "Refused before any request",
            "'dir_mode must be permission bits from 0o000 to 0o777 (e.g. 0o700), got 0o4700 (setuid, setgid and "
            "sticky bits are refused).'",
            {"dir_mode": 0o4700}, r"got 0o4700 \(setuid, setgid and sticky bits are refused\)",
        ),
        case(
            "test_bad_permission_parameters_are_refused_before_network", "file-mode-as-string", "bad-input",
            "file_mode='0600' (a string)", "Refused before any request",
            "'file_mode must be permission bits from 0o000 to 0o777 (e.g. 0o600), got the string '0600' (write the "
            "number 0o600, without quotes).'",
            {"file_mode": "0600"}, r"got the string '0600' \(write the number 0o600, without quotes\)",
        ),
    ],
)
def test_bad_permission_parameters_are_refused_before_network(emu, atlas_conn, tmp_path, kwargs, message):
    atlas_conn(emu, "digest")
    with pytest.raises(AtlasFlexConfigError, match=message):
        copy(tmp_path, "7a1b2c3d4e5f60718293a4b7", **kwargs)
    assert list(emu.requests) == [] and files_under(tmp_path) == []


@pytest.mark.parametrize("problem", ["world-writable", "group-writable", "other-owner"])
@reliability(
    "hostile",
    "The destination root is group- or world-writable, or owned by another local user",
    "Exported as usual and logged one warning naming the root and the fix",
    "'Destination root <dir> is world-writable (mode 0o777): other local users could read or tamper with "
    "backups. Fix: `chown <uid> <dir> && chmod 700 <dir>`, or choose a private directory.'",
)
def test_shared_destination_root_is_warned_about(emu, atlas_conn, tmp_path, caplog, capsys, problem):
    if problem == "other-owner" and os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    atlas_conn(emu, "digest")
    job = request_link()
    root = tmp_path / "exports"
    root.mkdir(mode=0o700)
    if problem == "world-writable":
        root.chmod(0o1777)
    elif problem == "group-writable":
        root.chmod(0o770)
    else:
        os.chown(root, 54321, -1)
    caplog.set_level(logging.WARNING)

    copy(tmp_path, job["id"])

    warnings = [line for line in logged(caplog, capsys) if "Destination root" in line]
    assert len(warnings) == 1
    assert str(root) in warnings[0] and "chmod 700" in warnings[0]
    assert {"world-writable": "world-writable", "group-writable": "group-writable", "other-owner": "uid 54321"}[
        problem
    ] in warnings[0]


def test_private_destination_root_is_not_warned_about(emu, atlas_conn, tmp_path, caplog, capsys):
    atlas_conn(emu, "digest")
    caplog.set_level(logging.WARNING)
    copy(tmp_path, request_link()["id"])
    assert not [line for line in logged(caplog, capsys) if "Destination root" in line]


# ---- sidecars (issue 10, section 2) ----------------------------------------------------------------


@reliability(
    "hostile",
    "Months later, someone asks whether an export is intact and which snapshot it is",
    "Committed <file>.sha256 (sha256sum -c format) and <file>.json (cluster, project, snapshot and its Atlas "
    "metadata, restore job, bytes, sha256, export time, provider version) after the export, atomically, 0600",
    "'sha256sum -c <file>.sha256' says OK; the XCom result names both sidecars",
)
def test_sidecars_prove_the_export(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    result = copy(tmp_path, job["id"])
    target = target_of(tmp_path, job["snapshotId"])
    paths = sidecar_paths(_osp(target))

    assert (result["sha256_file"], result["manifest_file"]) == (str(paths.sha256), str(paths.manifest))
    assert result["already_present"] is False
    assert Path(paths.sha256.path).read_text() == f"{result['sha256']}  {target.name}\n"
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", Path(paths.sha256.path).name],
            cwd=target.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0 and check.stdout.strip() == f"{target.name}: OK", check.stdout + check.stderr
    manifest = read_manifest(_osp(target))
    assert manifest == {
        "format": MANIFEST_FORMAT,
        "file": target.name,
        "cluster_name": "alpha",
        "group_id": emu.group_id,
        "snapshot_id": job["snapshotId"],
        "snapshot": manifest["snapshot"],
        "restore_job_id": job["id"],
        "bytes": emu.snapshot_size_of(job["snapshotId"]),
        "sha256": emu.expected_sha256(job["snapshotId"]),
        "exported_at": manifest["exported_at"],
        "provider_version": __version__,
        "signature": {"algorithm": "HMAC-SHA256", "key_id": "unittests", "hmac": manifest["signature"]["hmac"]},
    }
    assert manifest["snapshot"]["id"] == job["snapshotId"] and manifest["snapshot"]["status"] == "COMPLETED"
    assert {"finishTime", "mongoDBVersion"} <= set(manifest["snapshot"]) and "links" not in manifest["snapshot"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == manifest["sha256"]


def _osp(path: Path) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(path.as_uri())


@reliability(
    "hostile",
    "dst on a filesystem the provider treats as generic fsspec (no hard links, modes or fsync: e.g. object stores)",
    "Copied to its own unique temporary object, moved it into place after verification, then the sidecars; a "
    "retry found them, re-hashed dst and did not copy again",
    "Nothing: identical bytes with sidecars; no-clobber there is check-then-move (documented limit)",
)
@pytest.mark.usefixtures("otherfs")
def test_generic_filesystem_commit_and_retry(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    job = request_link()
    dst = f"otherfs://{tmp_path}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz"
    first = copy(tmp_path, job["id"], dst=dst)
    retry = copy(tmp_path, job["id"], dst=dst)

    target = target_of(tmp_path, job["snapshotId"])
    assert sha256_of(target) == first["sha256"] == emu.expected_sha256(job["snapshotId"])
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, f"{target.name}.json", f"{target.name}.sha256"]
    assert (first["already_present"], retry["already_present"]) == (False, True)
    assert len(emu.requests.by_operation("snapshotFile")) == 1
