"""Temporary files of copy attempts (``.<name>.<random>.atlasflex-partial``), and sweeping those of dead ones.

Why: every attempt writes its own temporary object beside ``dst`` (see :mod:`.commit`); one that
is killed leaves it behind, and night after night they would pile up. Leftovers (any name
matching ``.*.atlasflex-partial`` in the directory) are swept when an attempt opens, and by
retention: on local disks as soon as no live process holds their lock; elsewhere once they are
older than :data:`STALE_PARTIAL_AGE`. (On a network filesystem whose locks are not shared
between hosts, a live attempt of another host can lose its temporary file this way: it then fails
at its commit, which checks the file is still its own; it never publishes other bytes.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.local_disk import is_local, lstat_or_none, same_file, try_flock

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

PARTIAL_SUFFIX = ".atlasflex-partial"
# Any temporary object of ours, current (.<name>.<random>.atlasflex-partial) or from older versions.
PARTIAL_NAME = re.compile(r"^\..+" + re.escape(PARTIAL_SUFFIX) + "$")
# Where locks cannot tell a dead attempt from a live one, a temporary this old is abandoned: a live
# copy keeps writing (its mtime moves) and cannot outlive its links (4 h each, one refresh).
STALE_PARTIAL_AGE = 24 * 3600.0

log = logging.getLogger(__name__)


def sweep_dead_partials(directory: ObjectStoragePath, *, remove: bool = True) -> list[str]:
    """Our dead attempts' temporary files in ``directory``, by the rules of its filesystem (see the module)."""
    if is_local(directory):
        return sweep_dead_partials_local(str(directory.path), remove=remove)
    return sweep_stale_partials(directory, remove=remove)


def sweep_dead_partials_local(
    directory: str, max_age: float = STALE_PARTIAL_AGE, *, remove: bool = True
) -> list[str]:
    """Remove our temporary files in ``directory`` whose attempt is dead (its lock is free).

    Where the filesystem has no locks, only age can tell: files older than ``max_age`` are removed.
    Only regular files owned by this user are touched; a live attempt holds its lock, so it is
    never removed, however old its file. Returns the names removed (with ``remove=False``: those it would remove, for a dry run).
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if PARTIAL_NAME.fullmatch(name) and _remove_if_dead(os.path.join(directory, name), max_age, remove):
            removed.append(name)
    return removed


def _remove_if_dead(path: str, max_age: float, remove: bool = True) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone, a symlink, or not ours to open
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return False
        # Lock free: its attempt is dead. Held: alive, whatever its age. No locks here: only age can tell.
        lock = try_flock(fd)
        dead = lock is True or (lock is None and time.time() - st.st_mtime > max_age)
        if not dead or not same_file(st, lstat_or_none(path)):
            return False
        if remove:
            os.unlink(path)
            log.warning("Removed %s, the temporary file of an earlier attempt that did not finish", path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_stale_partials(
    directory: ObjectStoragePath, max_age: float = STALE_PARTIAL_AGE, *, remove: bool = True
) -> list[str]:
    """Remove our temporary objects under ``directory`` older than ``max_age`` (filesystems without locks).

    Returns the names removed (with ``remove=False``: those it would remove, for a dry run).
    """
    removed: list[str] = []
    try:
        entries = directory.fs.ls(directory.path, detail=True)
    except (OSError, ValueError):
        return removed
    now = time.time()
    for entry in entries:
        name = str(entry.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        modified = _entry_time(entry)
        if entry.get("type") != "file" or not PARTIAL_NAME.fullmatch(name) or modified is None:
            continue
        if now - modified > max_age and not remove:
            removed.append(name)
        elif now - modified > max_age:
            with contextlib.suppress(OSError, FileNotFoundError):
                directory.fs.rm(entry["name"])
                log.warning("Removed %s/%s, a temporary object older than %d h", directory, name, max_age // 3600)
                removed.append(name)
    return removed


def _entry_time(entry: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
    return None
