"""A hung holder of the per-``dst`` lock must not block later writers for ever (a bounded, explained wait).

A writer takes ``.<name>.atlasflex-lock`` beside ``dst`` from just before its publish until its
sidecars are written. A holder that hangs there (a stuck network-filesystem write, a SIGSTOPped
task) used to block every later writer of that ``dst`` in ``flock(LOCK_EX)`` for ever, silently,
each holding a worker slot. The holder here is a real process that takes the flock and sleeps.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_atlasflex.archive.lock import LOCK_SUFFIX, DestinationLockedError
from airflow_provider_atlasflex.defaults import DEFAULT_LOCK_TIMEOUT
from airflow_provider_atlasflex.exceptions import AirflowFailException, AtlasFlexConfigError
from tests.reliability.conftest import files_under
from tests.reliability.registry import reliability
from tests.reliability.test_faults_transfer import copy, request_link, sha256_of
from tests.reliability.test_hostile_commit import target_of

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


class LockHolder:
    """A separate process that holds ``path``'s flock until it is killed (as a hung writer would)."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked", "the holder did not take the lock"

    def die(self) -> None:
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def holders() -> Iterator[list[LockHolder]]:
    started: list[LockHolder] = []
    yield started
    for holder in started:
        if holder.process.poll() is None:
            holder.die()


@reliability(
    "hostile",
    "Another process holds the per-dst lock and never lets go (a hung writer: stuck NFS write, SIGSTOPped task); "
    "a copy to the same dst reaches its commit (lock_timeout=2; default 300 s)",
    "Logged once that it waits for the lock and why; gave up after lock_timeout with a retryable error; removed its "
    "own temporary file, dst untouched; the retry after the holder died took the lock and committed",
    "'gave up after 2 s waiting for the lock .../.<name>.atlasflex-lock: another task or process is still writing "
    "... look for a stuck one ... the lock frees itself when its holder dies. Raise lock_timeout to wait longer.'",
)
def test_hung_lock_holder_makes_the_writer_give_up_then_the_retry_succeeds(emu, atlas_conn, tmp_path, holders, caplog):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True, mode=0o700)
    lock_file = target.parent / f".{target.name}{LOCK_SUFFIX}"
    holders.append(LockHolder(lock_file))

    caplog.set_level(logging.INFO, logger="airflow_provider_atlasflex.archive.lock")
    started = time.monotonic()
    with pytest.raises(DestinationLockedError) as failed:
        copy(tmp_path, job["id"], lock_timeout=2)
    waited = time.monotonic() - started

    message = str(failed.value)
    assert str(lock_file) in message and "gave up after 2 s" in message
    assert "still writing" in message and "stuck" in message and "frees itself when its holder dies" in message
    assert not isinstance(failed.value, AirflowFailException), "a held lock must leave Airflow's retries to act"
    assert 2 <= waited < 60, f"waited {waited:.1f} s"
    waiting = [r.getMessage() for r in caplog.records if "Waiting up to" in r.getMessage()]
    assert len(waiting) == 1 and str(lock_file) in waiting[0] and str(target) in waiting[0], waiting
    # Nothing of this attempt is left: no export, no sidecars, no temporary file (only the holder's lock file).
    assert files_under(tmp_path / "exports") == [str(lock_file.relative_to(tmp_path / "exports"))]

    holders[0].die()  # the kernel frees the flock of a dead holder; its lock file stays behind
    result = copy(tmp_path, job["id"], lock_timeout=2)
    assert sha256_of(target) == result["sha256"] == emu.expected_sha256(job["snapshotId"])
    assert not lock_file.exists(), "the retry left the lock file behind"


@reliability(
    "hostile",
    "A writer that is merely slow holds the per-dst lock for 1 s while a second copy reaches its commit",
    "The second copy waited for the lock (well inside lock_timeout), then committed",
    "Nothing: the export succeeds",
)
def test_writer_waits_for_a_briefly_held_lock(emu, atlas_conn, tmp_path, holders):
    atlas_conn(emu, "digest")
    job = request_link()
    target = target_of(tmp_path, job["snapshotId"])
    target.parent.mkdir(parents=True, mode=0o700)
    holder = LockHolder(target.parent / f".{target.name}{LOCK_SUFFIX}")
    holders.append(holder)
    threading.Timer(1.0, holder.die).start()
    result = copy(tmp_path, job["id"], lock_timeout=60)
    assert sha256_of(target) == result["sha256"] == emu.expected_sha256(job["snapshotId"])


def test_the_default_lock_wait_is_bounded():
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

    operator = AtlasFlexSnapshotToStorageOperator(
        task_id="copy", cluster_name="alpha", restore_job_id="8a1b2c3d4e5f60718293a4b5", dst="file:///b/x.tgz"
    )
    assert operator.lock_timeout == DEFAULT_LOCK_TIMEOUT and 60 <= DEFAULT_LOCK_TIMEOUT <= 900


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), True, "300", None, 10 * 24 * 3600])
def test_bad_lock_timeout_is_refused_before_any_request(value, tmp_path):
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
    from tests.unit.fake_context import make_context

    operator = AtlasFlexSnapshotToStorageOperator(
        task_id="copy",
        cluster_name="alpha",
        restore_job_id="8a1b2c3d4e5f60718293a4b5",
        dst=f"file://{tmp_path}/x.tgz",
        lock_timeout=value,
        atlas_conn_id="no_such_connection",
    )
    with pytest.raises(AtlasFlexConfigError, match="lock_timeout must be a number of seconds from 0 to"):
        operator.execute(make_context())  # type: ignore[arg-type]
