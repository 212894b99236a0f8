"""The defaults the operators' signatures show, in a module that imports nothing of ours.

Airflow imports a DAG file's operators on every parse, so an operator module must not load the
hook, the copy pipeline or the checks just to learn a default. These values live here; the
modules that implement them (``hooks.connection_config``, ``restore_jobs``,
``transfers.resumable_download``, ``archive.commit``, ``archive.check``) import them
from here, so each has one source of truth.
"""

from __future__ import annotations

from datetime import timedelta

MIB = 1024 * 1024

# The Airflow connection the operators, the sensor and the hooks use when none is named.
DEFAULT_CONN_ID = "mongodb_atlas_default"
# A reused or freshly polled link must stay valid this long, so the copy can finish.
DEFAULT_MIN_LINK_VALIDITY = timedelta(minutes=30)

# Freshness (the recovery point): a cluster whose newest COMPLETED snapshot is older is `stale` and fails the
# night (and a restore drill of an older snapshot fails); a cluster younger than the grace with no snapshot
# yet is skipped (Atlas' first is ~24 h after creation).
DEFAULT_MAX_SNAPSHOT_AGE = timedelta(hours=36)
DEFAULT_NEW_CLUSTER_GRACE = timedelta(hours=26)
# The protection check: how long a finished snapshot may wait for its nightly copy before the cluster is at risk
# (a daily schedule misses a snapshot by up to a day, plus the copies themselves).
DEFAULT_MAX_EXPORT_LAG = timedelta(hours=26)
# An export whose manifest is dated later than now plus this margin (clock skew between writers) is never
# trusted: never protected or ranked newest by retention, never counted as covering its cluster.
FUTURE_MARGIN = timedelta(hours=1)
# Restore drills: the target cluster's name must match this glob unless the task opts in to any target.
DEFAULT_RESTORE_TARGET_PATTERN = "restore-drill*"

# The copy: bytes read and written at a time, and the stall rule (at least MIN_BYTES every WINDOW s).
DEFAULT_CHUNK_SIZE = MIB
DEFAULT_STALL_WINDOW = 60.0
DEFAULT_STALL_MIN_BYTES = MIB
# Permission bits of exports, their sidecars and the directories created for them on local disks.
DEFAULT_FILE_MODE = 0o600
DEFAULT_DIR_MODE = 0o700
# Seconds a copy waits for another writer's per-destination lock before failing (retryable).
DEFAULT_LOCK_TIMEOUT = 300.0

# The AssetAlias every export's Asset event goes to (the transfer's default outlet, see transfers.asset_events).
EXPORT_ALIAS_NAME = "atlasflex-exports"

# Re-reading an export to verify it (verify and retention operators): bytes read at a time.
DEFAULT_VERIFY_CHUNK_SIZE = 8 * MIB
