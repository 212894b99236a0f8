"""The project's data: flex clusters, daily snapshots and restore jobs.

Why time-derived status: a restore job's phase (PENDING -> QUEUED -> RUNNING ->
COMPLETED/FAILED) is computed from the clock at read time, so there is no
background thread and tests may inject a fake clock to jump through it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._util import derive_hex, iso
from .errors import ApiErrorResponse
from .presign import UrlSigner
from .tgz import SnapshotArchive

__all__ = ["ProjectState", "RestoreJob", "Snapshot"]

MONGODB_VERSION = "8.0.4"
DAY = 86400.0
SNAPSHOT_RETENTION = 8 * DAY
# Fractions of restore_duration at which a job enters QUEUED / RUNNING.
_QUEUED_AT = 0.15
_RUNNING_AT = 0.35
SNAPSHOT_STATUSES = ("PENDING", "QUEUED", "RUNNING", "FAILED", "COMPLETED")
CLUSTER_STATES = ("IDLE", "CREATING", "UPDATING", "DELETING", "REPAIRING")


@dataclass
class Snapshot:
    id: str
    cluster: str
    status: str
    scheduled: float
    started: float | None
    finished: float | None
    archive: SnapshotArchive

    def to_json(self, base_url: str, group_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "links": [
                {
                    "href": f"{base_url}/api/atlas/v2/groups/{group_id}/flexClusters/{self.cluster}"
                    f"/backup/snapshots/{self.id}",
                    "rel": "self",
                }
            ],
            "mongoDBVersion": MONGODB_VERSION,
            "scheduledTime": iso(self.scheduled),
            "status": self.status,
        }
        if self.started is not None:
            out["startTime"] = iso(self.started)
        if self.finished is not None:
            out["finishTime"] = iso(self.finished)
            out["expiration"] = iso(self.finished + SNAPSHOT_RETENTION)
        return out


@dataclass
class RestoreJob:
    id: str
    cluster: str
    snapshot: Snapshot
    delivery_type: str  # DOWNLOAD | RESTORE
    created: float
    duration: float
    link_ttl: float
    fail: bool = False
    target_name: str | None = None
    target_project: str | None = None
    link_expires_override: float | None = None

    @property
    def finished_at(self) -> float:
        return self.created + self.duration

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed >= self.duration:
            return "FAILED" if self.fail else "COMPLETED"
        if elapsed >= _RUNNING_AT * self.duration:
            return "RUNNING"
        if elapsed >= _QUEUED_AT * self.duration:
            return "QUEUED"
        return "PENDING"

    @property
    def link_expires_at(self) -> float:
        natural = self.finished_at + self.link_ttl
        return natural if self.link_expires_override is None else min(natural, self.link_expires_override)

    def link_usable(self, now: float) -> bool:
        return self.delivery_type == "DOWNLOAD" and self.status(now) == "COMPLETED" and now < self.link_expires_at

    def to_json(self, now: float, base_url: str, group_id: str, signer: UrlSigner) -> dict[str, Any]:
        status = self.status(now)
        out: dict[str, Any] = {
            "deliveryType": self.delivery_type,
            "id": self.id,
            "instanceName": self.cluster,
            "links": [
                {
                    "href": f"{base_url}/api/atlas/v2/groups/{group_id}/flexClusters/{self.cluster}"
                    f"/backup/restoreJobs/{self.id}",
                    "rel": "self",
                }
            ],
            "projectId": group_id,
            "restoreScheduledDate": iso(self.created),
            "snapshotId": self.snapshot.id,
            "status": status,
        }
        if self.snapshot.finished is not None:
            out["snapshotFinishedDate"] = iso(self.snapshot.finished)
        if status in ("COMPLETED", "FAILED"):
            out["restoreFinishedDate"] = iso(self.finished_at)
        if self.delivery_type == "RESTORE":
            out["targetDeploymentItemName"] = self.target_name
            out["targetProjectId"] = self.target_project
        elif status == "COMPLETED":
            expires = int(self.link_expires_at)
            out["expirationDate"] = iso(expires)
            out["snapshotUrl"] = signer.url(base_url, self.id, self.cluster, self.snapshot.id, expires)
        return out


class ProjectState:
    """All mutable emulator data for the single seeded project (thread-safe)."""

    def __init__(
        self,
        *,
        seed: str,
        clusters: Iterable[str],
        non_flex_clusters: Iterable[str],
        snapshot_size: int,
        snapshots_per_cluster: int,
        restore_duration: float,
        link_ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.seed = seed
        self.group_id = derive_hex(seed, "group")
        self.clock = clock
        self.snapshot_size = snapshot_size
        self.restore_duration = restore_duration
        self.link_ttl = link_ttl
        self.signer = UrlSigner()
        self.base_url = ""
        self._lock = threading.RLock()
        self._clusters: dict[str, dict[str, Any]] = {}
        self._non_flex = list(non_flex_clusters)
        self._snapshots: dict[str, list[Snapshot]] = {}
        self._jobs: dict[str, list[RestoreJob]] = {}
        self._jobs_by_id: dict[str, RestoreJob] = {}
        self._fail_next: dict[str, int] = {}
        self._job_counter = 0
        self._extra_snapshots = 0
        self._retired: dict[str, Snapshot] = {}
        self._fail_next_restore: dict[str, int] = {}
        # Other projects the credentials can see (empty: no clusters), by id -> name.
        self._other_projects: dict[str, str] = {}
        self._project_created = clock() - 90 * DAY

        for name in clusters:
            self.add_cluster(name, snapshots_per_cluster)

    def add_cluster(
        self,
        name: str,
        snapshots: int,
        *,
        state: str = "IDLE",
        backup_enabled: bool = True,
        created_ago: float | None = None,
        newest_age: float | None = None,
    ) -> None:
        """A flex cluster with ``snapshots`` daily COMPLETED snapshots.

        By default the newest was scheduled at 03:00 UTC and is an hour old at least, and the cluster
        was created the day before its oldest snapshot; a cluster without snapshots is brand new
        (created 2 hours ago), as Atlas takes the first flex snapshot about a day after creation.
        ``newest_age`` (seconds) backdates the newest snapshot (backups that stopped), ``created_ago``
        (seconds) the cluster's ``createDate``.
        """
        if name in self._non_flex:
            raise ValueError(f"cluster {name!r} is both flex and non-flex")
        if state not in CLUSTER_STATES:
            raise ValueError(f"state must be one of {CLUSTER_STATES}")
        now = self.clock()
        if newest_age is None:
            newest = (now - 3600 - 3 * 3600) // DAY * DAY + 3 * 3600
        else:
            newest = now - newest_age - 94  # it finishes 94 s after it was scheduled
        with self._lock:
            if name in self._clusters:
                raise ValueError(f"cluster {name!r} already exists")
            if created_ago is not None:
                created = now - created_ago
            elif snapshots:
                created = newest - snapshots * DAY - 7 * 3600
            else:
                created = now - 2 * 3600
            self._clusters[name] = {
                "id": derive_hex(self.seed, "cluster", name),
                "created": created,
                "state": state,
                "backup": backup_enabled,
            }
            snaps = []
            for i in range(snapshots):
                scheduled = newest - i * DAY
                sid = derive_hex(self.seed, "snapshot", name, i)
                snaps.append(self._make_snapshot(sid, name, "COMPLETED", scheduled, self.snapshot_size))
            self._snapshots[name] = snaps
            self._jobs[name] = []

    def set_cluster(self, name: str, *, state: str | None = None, backup_enabled: bool | None = None) -> None:
        """Change a flex cluster's stateName and/or backupSettings.enabled."""
        if name not in self._clusters:
            raise KeyError(name)
        if state is not None and state not in CLUSTER_STATES:
            raise ValueError(f"state must be one of {CLUSTER_STATES}")
        with self._lock:
            if state is not None:
                self._clusters[name]["state"] = state
            if backup_enabled is not None:
                self._clusters[name]["backup"] = backup_enabled

    def add_project(self, name: str) -> str:
        """Another project the credentials can see, holding no cluster; returns its id."""
        if not re.fullmatch(r"[\w\-.(),:&@+']{1,64}", name):
            raise ValueError(f"project name {name!r} does not match the spec's Group.name pattern")
        with self._lock:
            group_id = derive_hex(self.seed, "group", name)
            if group_id == self.group_id or group_id in self._other_projects:
                raise ValueError(f"project {name!r} already exists")
            self._other_projects[group_id] = name
            return group_id

    def _make_snapshot(self, sid: str, cluster: str, status: str, scheduled: float, size: int) -> Snapshot:
        started = scheduled + 2 if status != "PENDING" and status != "QUEUED" else None
        finished = scheduled + 94 if status == "COMPLETED" else None
        archive = SnapshotArchive(
            snapshot_id=sid,
            cluster_name=cluster,
            group_id=self.group_id,
            size=size,
            mtime=int(finished or scheduled),
            mongodb_version=MONGODB_VERSION,
        )
        return Snapshot(sid, cluster, status, scheduled, started, finished, archive)

    # ------------------------------------------------------------- lookups
    @property
    def cluster_names(self) -> list[str]:
        return list(self._clusters)

    def require_group(self, group_id: str) -> None:
        """Raise the 404 Atlas gives for a project that does not exist (or the caller cannot see)."""
        if group_id != self.group_id and group_id not in self._other_projects:
            raise ApiErrorResponse(404, "GROUP_NOT_FOUND", f"No group with ID {group_id} exists.", [group_id])

    def require_cluster(self, group_id: str, name: str) -> None:
        """Raise the 404/400 Atlas gives for a wrong project or a missing/non-flex cluster."""
        self.require_group(group_id)
        if group_id != self.group_id:
            raise ApiErrorResponse(
                404, "CLUSTER_NOT_FOUND", f"No cluster named {name} exists in group {group_id}.", [name, group_id]
            )
        if name in self._non_flex:
            raise ApiErrorResponse(
                400,
                "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API",
                f"Cluster {name} is not a flex cluster; use the Clusters API for it.",
                [name],
            )
        if name not in self._clusters:
            raise ApiErrorResponse(
                404, "CLUSTER_NOT_FOUND", f"No cluster named {name} exists in group {group_id}.", [name, group_id]
            )

    def cluster_json(self, name: str) -> dict[str, Any]:
        c = self._clusters[name]
        host_tag = derive_hex(self.seed, "host", length=5)
        return {
            "backupSettings": {"enabled": c["backup"]},
            "clusterType": "REPLICASET",
            "connectionStrings": {
                "standard": f"mongodb://ac-{host_tag}-shard-00-00.{host_tag}.mongodb.net:27017/?ssl=true",
                "standardSrv": f"mongodb+srv://{name.lower()}.{host_tag}.mongodb.net",
            },
            "createDate": iso(c["created"]),
            "groupId": self.group_id,
            "id": c["id"],
            "links": [
                {"href": f"{self.base_url}/api/atlas/v2/groups/{self.group_id}/flexClusters/{name}", "rel": "self"}
            ],
            "mongoDBVersion": MONGODB_VERSION,
            "name": name,
            "providerSettings": {
                "backingProviderName": "AWS",
                "diskSizeGB": 5.0,
                "providerName": "FLEX",
                "regionName": "US_EAST_1",
            },
            "stateName": c["state"],
            "tags": [],
            "terminationProtectionEnabled": False,
            "versionReleaseSystem": "LTS",
        }

    def flex_clusters_json(self, group_id: str) -> list[dict[str, Any]]:
        """listGroupFlexClusters: the flex clusters of a project (dedicated clusters are not listed)."""
        with self._lock:
            names = list(self._clusters) if group_id == self.group_id else []
        return [self.cluster_json(name) for name in names]

    def groups_json(self) -> list[dict[str, Any]]:
        """listGroups: every project the credentials can see, the seeded one first."""
        org_id = derive_hex(self.seed, "org")
        with self._lock:
            projects = [(self.group_id, "flex-backups", len(self._clusters) + len(self._non_flex))]
            projects += [(gid, name, 0) for gid, name in self._other_projects.items()]
        return [
            {
                "clusterCount": count,
                "created": iso(self._project_created),
                "id": gid,
                "links": [{"href": f"{self.base_url}/api/atlas/v2/groups/{gid}", "rel": "self"}],
                "name": name,
                "orgId": org_id,
                "tags": [],
                "withDefaultAlertsSettings": True,
            }
            for gid, name, count in projects
        ]

    def restored_snapshot(self, target: str) -> str | None:
        """The snapshot id the newest COMPLETED RESTORE job wrote into ``target``, if any."""
        now = self.clock()
        with self._lock:
            done = [
                j
                for jobs in self._jobs.values()
                for j in jobs
                if j.delivery_type == "RESTORE" and j.target_name == target and j.status(now) == "COMPLETED"
            ]
        return max(done, key=lambda j: j.finished_at).snapshot.id if done else None

    def snapshots(self, cluster: str) -> list[Snapshot]:
        with self._lock:
            return list(self._snapshots[cluster])

    def snapshot(self, cluster: str, snapshot_id: str) -> Snapshot:
        with self._lock:
            for s in self._snapshots.get(cluster, []):
                if s.id == snapshot_id:
                    return s
        raise ApiErrorResponse(
            404,
            "RESOURCE_NOT_FOUND",
            f"No snapshot with ID {snapshot_id} exists for flex cluster {cluster}.",
            [snapshot_id],
        )

    def find_snapshot(self, snapshot_id: str) -> Snapshot | None:
        """A snapshot by id, retired ones included (tests still ask for their bytes)."""
        with self._lock:
            for snaps in self._snapshots.values():
                for s in snaps:
                    if s.id == snapshot_id:
                        return s
            return self._retired.get(snapshot_id)

    def jobs(self, cluster: str) -> list[RestoreJob]:
        """Restore jobs of a cluster, newest first."""
        with self._lock:
            return list(reversed(self._jobs[cluster]))

    def job(self, cluster: str, job_id: str) -> RestoreJob:
        with self._lock:
            job = self._jobs_by_id.get(job_id)
        if job is None or job.cluster != cluster:
            raise ApiErrorResponse(
                404,
                "RESOURCE_NOT_FOUND",
                f"No restore job with ID {job_id} exists for flex cluster {cluster}.",
                [job_id],
            )
        return job

    def job_by_id(self, job_id: str) -> RestoreJob | None:
        with self._lock:
            return self._jobs_by_id.get(job_id)

    def job_json(self, job: RestoreJob) -> dict[str, Any]:
        return job.to_json(self.clock(), self.base_url, self.group_id, self.signer)

    # ------------------------------------------------------------- actions
    def _require_completed(self, snap: Snapshot) -> None:
        # What real Atlas answers here is not recorded anywhere we can cite. The spec declares 400 (and
        # 409) for both operations, and VALIDATION_ERROR (400) is the only code seen on these endpoints
        # that fits "this snapshotId cannot be used": we use it rather than invent a 409 code.
        if snap.status != "COMPLETED":
            raise ApiErrorResponse.validation(
                "snapshotId",
                "must identify a COMPLETED snapshot",
                f"Snapshot {snap.id} is {snap.status}; only a COMPLETED snapshot can be restored or downloaded.",
            )

    def _new_job(self, cluster: str, snap: Snapshot, delivery: str, **extra: Any) -> RestoreJob:
        with self._lock:
            self._job_counter += 1
            job_id = derive_hex(self.seed, "restoreJob", self._job_counter)
            fail = False
            pending = self._fail_next if delivery == "DOWNLOAD" else self._fail_next_restore
            if pending.get(cluster, 0) > 0:
                pending[cluster] -= 1
                fail = True
            job = RestoreJob(
                id=job_id,
                cluster=cluster,
                snapshot=snap,
                delivery_type=delivery,
                created=self.clock(),
                duration=self.restore_duration,
                link_ttl=self.link_ttl,
                fail=fail,
                **extra,
            )
            self._jobs[cluster].append(job)
            self._jobs_by_id[job_id] = job
            return job

    def create_download(self, cluster: str, snapshot_id: str) -> RestoreJob:
        snap = self.snapshot(cluster, snapshot_id)
        self._require_completed(snap)
        return self._new_job(cluster, snap, "DOWNLOAD")

    def create_restore(
        self, cluster: str, snapshot_id: str, target_name: str, target_project: str | None
    ) -> RestoreJob:
        snap = self.snapshot(cluster, snapshot_id)
        project = target_project or self.group_id
        if project != self.group_id:
            raise ApiErrorResponse(404, "GROUP_NOT_FOUND", f"No group with ID {project} exists.", [project])
        # The spec allows a dedicated target too ("another flex cluster or dedicated cluster tier"), so
        # only a missing one is refused here; the provider's restore operator insists on a flex target.
        if target_name not in self._clusters and target_name not in self._non_flex:
            raise ApiErrorResponse(
                404,
                "CLUSTER_NOT_FOUND",
                f"No cluster named {target_name} exists in group {project}.",
                [target_name, project],
            )
        self._require_completed(snap)
        return self._new_job(cluster, snap, "RESTORE", target_name=target_name, target_project=project)

    # ----------------------------------------------------------- test knobs
    def fail_next(self, cluster: str, count: int = 1, delivery: str = "DOWNLOAD") -> None:
        if cluster not in self._clusters:
            raise KeyError(cluster)
        pending = self._fail_next if delivery == "DOWNLOAD" else self._fail_next_restore
        with self._lock:
            pending[cluster] = pending.get(cluster, 0) + count

    def add_snapshot(self, cluster: str, status: str, size: int | None, taken_ago: float = 0.0) -> Snapshot:
        """A snapshot scheduled ``taken_ago`` seconds ago, kept in the listing's newest-first order."""
        if status not in SNAPSHOT_STATUSES:
            raise ValueError(f"status must be one of {SNAPSHOT_STATUSES}")
        with self._lock:
            self._extra_snapshots += 1
            sid = derive_hex(self.seed, "extra-snapshot", cluster, self._extra_snapshots)
            snap = self._make_snapshot(sid, cluster, status, self.clock() - taken_ago, size or self.snapshot_size)
            snaps = self._snapshots[cluster]
            at = next((i for i, s in enumerate(snaps) if s.scheduled <= snap.scheduled), len(snaps))
            snaps.insert(at, snap)
            return snap

    def retire_snapshot(self, snapshot_id: str) -> Snapshot:
        """Drop a snapshot as the 8-day retention does; its existing jobs keep pointing at it."""
        with self._lock:
            for snaps in self._snapshots.values():
                for i, snap in enumerate(snaps):
                    if snap.id == snapshot_id:
                        self._retired[snapshot_id] = snaps.pop(i)
                        return snap
        raise KeyError(snapshot_id)

    def expire_link(self, job_id: str) -> None:
        job = self.job_by_id(job_id)
        if job is None:
            raise KeyError(job_id)
        job.link_expires_override = self.clock() - 1

    def complete_job(self, job_id: str) -> None:
        job = self.job_by_id(job_id)
        if job is None:
            raise KeyError(job_id)
        with self._lock:
            now = self.clock()
            if job.finished_at > now:
                job.duration = max(0.0, now - job.created)
