"""Edges of the per-destination lock: file systems without locks, and a lock file that cannot be removed.

Neither may leave litter that stops directories from emptying, nor turn a committed export into a
failed task.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_atlasflex.archive import lock as lock_module
from airflow_provider_atlasflex.archive.lock import DestinationLock


def test_without_file_locks_no_lock_file_is_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_module, "try_flock", lambda fd: None)  # what a file system without flock answers
    lock = DestinationLock(str(tmp_path / "export.tgz"))
    assert lock.acquire(1.0, waiting_for="test") is False
    assert not lock.held
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_lock_file_that_cannot_be_removed_does_not_fail_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lock = DestinationLock(str(tmp_path / "export.tgz"))
    assert lock.acquire(1.0, waiting_for="test") is True
    unlink = os.unlink

    def refuse(path: str, *args: object, **kwargs: object) -> None:
        if str(path) == lock.path:
            raise PermissionError(13, "Permission denied", path)
        unlink(path)

    monkeypatch.setattr(lock_module.os, "unlink", refuse)
    lock.release()  # must not raise
    assert not lock.held and "Could not remove the lock file" in caplog.text
    monkeypatch.setattr(lock_module.os, "unlink", unlink)
    second = DestinationLock(str(tmp_path / "export.tgz"))
    assert second.acquire(0, waiting_for="test") is True  # the flock was released all the same
    second.release()
