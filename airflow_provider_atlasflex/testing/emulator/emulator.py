"""``AtlasEmulator``: the public entry point tying state, auth, faults and HTTP together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from ._util import derive_hex, derive_text
from .api import AdminApi
from .auth import PROJECT_OWNER, PROJECT_READ_ONLY, ApiKey, DigestAuthenticator, ServiceAccount, TokenStore
from .faults import FaultSet
from .files import SnapshotFileServer
from .recording import RequestLog
from .server import Backend, EmulatorHTTPServer
from .state import ProjectState

__all__ = ["AtlasEmulator"]

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _uuid_like(seed: str, *parts: object) -> str:
    h = derive_hex(seed, *parts, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class AtlasEmulator:
    """A faithful local Atlas Admin API (flex cluster backups) on a loopback port.

    Everything derived from ``seed`` (project id, credentials, snapshot ids, restore
    job ids) is deterministic, so two runs with the same seed look the same.  Pass
    ``clock`` to drive time-dependent behaviour (job phases, link and token
    expiry, nonce age) from a fake clock instead of ``time.time``.
    """

    def __init__(
        self,
        clusters: Iterable[str] = ("alpha", "beta"),
        non_flex_clusters: Iterable[str] = ("legacy-m10",),
        snapshot_size: int = 1_000_000,
        snapshots_per_cluster: int = 8,
        restore_duration: float = 2.0,
        link_ttl: float = 4 * 3600,
        token_ttl: float = 3600,
        enforce_token_limits: bool = True,
        seed: str = "demo",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        nonce_ttl: float = 300.0,
        string_error_parameters: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if snapshots_per_cluster < 0:
            raise ValueError("snapshots_per_cluster must be >= 0")
        if restore_duration < 0 or link_ttl < 0 or token_ttl <= 0 or nonce_ttl <= 0:
            raise ValueError("durations must be positive")
        self._clock = clock or time.time
        self.host = host
        self.port = port
        self.seed = seed
        self.state = ProjectState(
            seed=seed,
            clusters=tuple(clusters),
            non_flex_clusters=tuple(non_flex_clusters),
            snapshot_size=snapshot_size,
            snapshots_per_cluster=snapshots_per_cluster,
            restore_duration=restore_duration,
            link_ttl=link_ttl,
            clock=self._clock,
        )
        self.api_key = ApiKey(
            derive_text(seed, "apikey-public", alphabet=_LOWER, length=8),
            _uuid_like(seed, "apikey-private"),
        )
        self.read_only_api_key = ApiKey(
            derive_text(seed, "ro-apikey-public", alphabet=_LOWER, length=8),
            _uuid_like(seed, "ro-apikey-private"),
        )
        self.service_account = ServiceAccount(
            "mdb_sa_id_" + derive_hex(seed, "sa-id"),
            "mdb_sa_sk_" + derive_text(seed, "sa-secret", alphabet=_ALNUM, length=40),
        )
        self.read_only_service_account = ServiceAccount(
            "mdb_sa_id_" + derive_hex(seed, "ro-sa-id"),
            "mdb_sa_sk_" + derive_text(seed, "ro-sa-secret", alphabet=_ALNUM, length=40),
        )
        self.faults = FaultSet()
        self.requests = RequestLog()
        self._digest = DigestAuthenticator(
            {self.api_key: (PROJECT_OWNER,), self.read_only_api_key: (PROJECT_READ_ONLY,)}, self._clock, nonce_ttl
        )
        self._tokens = TokenStore(
            {self.service_account: (PROJECT_OWNER,), self.read_only_service_account: (PROJECT_READ_ONLY,)},
            self._clock,
            token_ttl,
            enforce_token_limits,
        )
        self._api = AdminApi(
            self.state, self._digest, self._tokens, self.faults, string_error_parameters=string_error_parameters
        )
        self._files = SnapshotFileServer(self.state, self.faults)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> AtlasEmulator:
        """Bind and serve in a daemon thread; idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            backend = Backend(self._api, self._files, self._tokens, self.faults, self.requests, lambda: self.base_url)
            server = EmulatorHTTPServer((self.host, self.port), backend)
            self._server = server
            self.port = server.server_address[1]
            self.state.base_url = self.base_url
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="atlas-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections and release the port."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> AtlasEmulator:  # noqa: PYI034 - typing.Self needs 3.11
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def group_id(self) -> str:
        return self.state.group_id

    @property
    def clusters(self) -> list[str]:
        return self.state.cluster_names

    def add_cluster(
        self,
        name: str,
        *,
        snapshots: int = 8,
        state: str = "IDLE",
        backup_enabled: bool = True,
        created_ago: float | None = None,
        newest_age: float | None = None,
    ) -> None:
        """Another flex cluster in the project, e.g. one with backup off and no snapshot, or one CREATING.

        Without snapshots it is brand new (created 2 h ago) unless ``created_ago`` (seconds) says
        otherwise; ``newest_age`` (seconds) backdates its newest snapshot (backups that stopped).
        """
        self.state.add_cluster(
            name,
            snapshots,
            state=state,
            backup_enabled=backup_enabled,
            created_ago=created_ago,
            newest_age=newest_age,
        )

    def set_cluster(self, name: str, *, state: str | None = None, backup_enabled: bool | None = None) -> None:
        """Change a flex cluster's ``stateName`` (IDLE, CREATING, UPDATING, DELETING, REPAIRING) or backup setting."""
        self.state.set_cluster(name, state=state, backup_enabled=backup_enabled)

    def add_project(self, name: str) -> str:
        """Another project listed by listGroups (it holds no cluster); returns its id."""
        return self.state.add_project(name)

    def cluster_url(self, cluster: str) -> str:
        """Absolute URL of a flex cluster resource (handy in tests)."""
        return f"{self.base_url}/api/atlas/v2/groups/{self.group_id}/flexClusters/{cluster}"

    # ------------------------------------------------------------ snapshots
    def snapshot_ids(self, cluster: str) -> list[str]:
        """Snapshot ids of a cluster, newest first."""
        return [s.id for s in self.state.snapshots(cluster)]

    def newest_completed_snapshot_id(self, cluster: str) -> str:
        for s in self.state.snapshots(cluster):
            if s.status == "COMPLETED":
                return s.id
        raise LookupError(f"cluster {cluster!r} has no COMPLETED snapshot")

    def _snapshot(self, snapshot_id: str) -> Any:
        snap = self.state.find_snapshot(snapshot_id)
        if snap is None:
            raise KeyError(snapshot_id)
        return snap

    def expected_sha256(self, snapshot_id: str) -> str:
        """SHA-256 (hex) of the .tgz served for a snapshot (computed once, cached)."""
        return str(self._snapshot(snapshot_id).archive.sha256())

    def snapshot_size_of(self, snapshot_id: str) -> int:
        return int(self._snapshot(snapshot_id).archive.size)

    def snapshot_bytes(self, snapshot_id: str, start: int = 0, end: int | None = None) -> bytes:
        """The served file bytes [start, end) in memory (small sizes only)."""
        return b"".join(self._snapshot(snapshot_id).archive.iter_range(start, end))

    def add_snapshot(
        self, cluster: str, status: str = "RUNNING", size: int | None = None, *, taken_ago: float = 0.0
    ) -> str:
        """Insert a snapshot in any status (e.g. RUNNING to test 409), scheduled ``taken_ago`` seconds ago
        (default now: the newest); returns its id."""
        if cluster not in self.clusters:
            raise KeyError(cluster)
        return self.state.add_snapshot(cluster, status, size, taken_ago).id

    def retire_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot as Atlas's 8-day retention does: listing and getting it, and requesting
        a new download of it, then answer as for an unknown snapshot."""
        self.state.retire_snapshot(snapshot_id)

    # --------------------------------------------------------- restore jobs
    def restore_jobs(self, cluster: str) -> list[dict[str, Any]]:
        """The cluster's restore jobs as the API would serve them now, newest first."""
        return [self.state.job_json(j) for j in self.state.jobs(cluster)]

    def restore_job(self, restore_job_id: str) -> dict[str, Any]:
        job = self.state.job_by_id(restore_job_id)
        if job is None:
            raise KeyError(restore_job_id)
        return self.state.job_json(job)

    def expire_link(self, restore_job_id: str) -> None:
        """Make a job's download link expired from now on (also moves expirationDate)."""
        self.state.expire_link(restore_job_id)

    def complete_restore_job(self, restore_job_id: str) -> None:
        """Finish a job immediately (COMPLETED, or FAILED if it was marked to fail)."""
        self.state.complete_job(restore_job_id)

    def fail_next_restore_job(self, cluster: str, count: int = 1) -> None:
        """The next ``count`` DOWNLOAD jobs created for ``cluster`` end FAILED."""
        self.state.fail_next(cluster, count)

    def fail_next_restore(self, cluster: str, count: int = 1) -> None:
        """The next ``count`` RESTORE jobs created from ``cluster``'s snapshots end FAILED."""
        self.state.fail_next(cluster, count, delivery="RESTORE")

    def restored_snapshot(self, target: str) -> str | None:
        """Which snapshot the newest COMPLETED RESTORE job wrote into cluster ``target`` (None: never restored)."""
        return self.state.restored_snapshot(target)

    @property
    def restore_duration(self) -> float:
        return self.state.restore_duration

    @restore_duration.setter
    def restore_duration(self, seconds: float) -> None:
        """Applies to jobs created from now on."""
        self.state.restore_duration = seconds

    @property
    def link_ttl(self) -> float:
        return self.state.link_ttl

    @link_ttl.setter
    def link_ttl(self, seconds: float) -> None:
        self.state.link_ttl = seconds

    # ----------------------------------------------------------------- auth
    def revoke_all_tokens(self) -> None:
        self._tokens.revoke_all()

    def expire_all_tokens(self) -> None:
        self._tokens.expire_all()

    def active_token_count(self, client_id: str) -> int:
        return self._tokens.active_count(client_id)

    def peak_active_tokens(self, client_id: str) -> int:
        """The most active (unrevoked, unexpired) tokens that client held at any moment."""
        return self._tokens.peak_active(client_id)

    def issued_tokens(self, client_id: str | None = None) -> list[str]:
        """Every bearer token the token endpoint handed out (also revoked/expired), oldest first.

        Tests use it to prove a token never reached a log, an exception or an XCom.
        """
        return self._tokens.issued(client_id)

    def token_requests(self, client_id: str) -> int:
        """How many POST /api/oauth/token calls that client made (all outcomes after auth)."""
        return self._tokens.requests_total(client_id)

    @property
    def enforce_token_limits(self) -> bool:
        return self._tokens.enforce_limits

    @enforce_token_limits.setter
    def enforce_token_limits(self, value: bool) -> None:
        self._tokens.enforce_limits = value

    # ------------------------------------------------------------ recording
    def clear_requests(self) -> None:
        self.requests.clear()

    def describe(self) -> dict[str, Any]:
        """Connection facts (including the demo credentials) as a JSON-able dict."""
        return {
            "base_url": self.base_url,
            "group_id": self.group_id,
            "api_key": {"public_key": self.api_key.public_key, "private_key": self.api_key.private_key},
            "read_only_api_key": {
                "public_key": self.read_only_api_key.public_key,
                "private_key": self.read_only_api_key.private_key,
            },
            "service_account": {
                "client_id": self.service_account.client_id,
                "client_secret": self.service_account.client_secret,
            },
            "clusters": {c: {"newest_snapshot_id": self._newest_or_none(c)} for c in self.clusters},
        }

    def _newest_or_none(self, cluster: str) -> str | None:
        try:
            return self.newest_completed_snapshot_id(cluster)
        except LookupError:
            return None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"AtlasEmulator({self.base_url if self.running else 'unbound'}, group={self.group_id}, {state})"
