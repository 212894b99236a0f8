"""Simulate a night of exports on a distributed deployment: many worker hosts, one service account.

Each worker "host" is a separate process with its own host token store (``ATLASFLEX_TOKEN_DIR``),
as Celery workers or Kubernetes pods are. A host runs its share of the clusters, three tasks per
cluster (request the link, wait for it, copy the file); between tasks it forgets every token it
holds in memory, as a new task process would. With ``sharing_scope: deployment`` the hosts share
Airflow Variables, stood in for here by a directory of files with the same contract (read, write,
last writer wins, no compare-and-swap), since the simulation runs without an API server.

Used by ``tests/reliability/test_token_sharing_deployment.py`` and ``benchmarks/token_night.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class FileVariables:
    """Airflow Variables as files in one directory: ``get``/``set``, last writer wins (like the metadata DB)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def get(self, key: str) -> str | None:
        try:
            return (self.directory / key).read_text()
        except FileNotFoundError:
            return None

    def set(self, key: str, value: str) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".var-")
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        os.replace(temporary, self.directory / key)


@dataclass(frozen=True)
class NightResult:
    mode: str
    hosts: int
    clusters: int
    exports_complete: int
    failed_hosts: int
    token_requests: int
    token_429s: int
    peak_active_tokens: int
    active_tokens_after: int
    wall_seconds: float

    def as_row(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _Context(dict):  # type: ignore[type-arg]
    """Enough of a task context for the operators' execute()."""


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _forget_in_memory_tokens() -> None:
    """What a new task process starts with: nothing in memory (the host store and Variables remain)."""
    from airflow_provider_atlasflex.hooks import deployment_tokens
    from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE

    TOKEN_CACHE.clear()
    with deployment_tokens._stores_lock:
        deployment_tokens._stores.clear()


def _host(index: int, clusters: list[str], token_dir: str, variables_dir: str | None, out_dir: str) -> None:
    from airflow_provider_atlasflex.hooks import deployment_tokens
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

    os.environ["ATLASFLEX_TOKEN_DIR"] = token_dir
    if variables_dir is not None:
        deployment_tokens.use_variables(FileVariables(variables_dir))
    context = _Context(ti=_TI(), logical_date=None, dag_run=None)
    failures = 0
    for cluster in clusters:
        try:
            _forget_in_memory_tokens()  # task 1: request the link
            hook = AtlasFlexHook()
            snapshot = hook.get_newest_completed_snapshot(cluster)["id"]
            job_id = hook.request_snapshot_download(cluster, snapshot)["id"]
            hook.close()
            _forget_in_memory_tokens()  # task 2: wait (poke mode)
            hook = AtlasFlexHook()
            while not hook.get_restore_job(cluster, job_id).get("snapshotUrl"):
                time.sleep(0.2)
            hook.close()
            _forget_in_memory_tokens()  # task 3: copy
            AtlasFlexSnapshotToStorageOperator(
                task_id=f"copy_{cluster}",
                cluster_name=cluster,
                restore_job_id=job_id,
                dst=f"file://{out_dir}/{cluster}.tgz",
                progress_interval=3600,
            ).execute(context)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - counted; the figures show it
            failures += 1
    os._exit(1 if failures else 0)


def run_night(emulator: Any, *, mode: str, hosts: int = 20, workdir: str | Path) -> NightResult:
    """Run the night against a running emulator (token limits on); ``mode`` is the sharing_scope extra."""
    # Imported before the hosts fork: a worker has them loaded before its first task.
    import airflow_provider_atlasflex.hooks.atlas_flex
    import airflow_provider_atlasflex.transfers.snapshot_to_storage  # noqa: F401
    from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection

    workdir = Path(workdir)
    clusters = list(emulator.clusters)
    variables = workdir / "variables"
    out = workdir / "exports"
    variables.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"] = json.dumps(
        emulator_connection(emulator, "service_account", sharing_scope=mode)
    )
    context = multiprocessing.get_context("fork")
    processes = []
    started = time.monotonic()
    for i in range(hosts):
        token_dir = workdir / f"host-{i:02d}-tokens"
        token_dir.mkdir(mode=0o700, exist_ok=True)
        args = (i, clusters[i::hosts], str(token_dir), str(variables) if mode == "deployment" else None, str(out))
        processes.append(context.Process(target=_host, args=args))
    for process in processes:
        process.start()
    for process in processes:
        process.join(900)
    wall = time.monotonic() - started
    client = emulator.service_account.client_id
    complete = sum(
        1
        for cluster in clusters
        if (out / f"{cluster}.tgz").exists()
        and (out / f"{cluster}.tgz").stat().st_size == emulator.snapshot_size_of(emulator.newest_completed_snapshot_id(cluster))
    )
    return NightResult(
        mode=mode,
        hosts=hosts,
        clusters=len(clusters),
        exports_complete=complete,
        failed_hosts=sum(1 for p in processes if p.exitcode != 0),
        token_requests=emulator.token_requests(client),
        token_429s=sum(1 for x in emulator.requests.by_operation("oauthToken") if x.status == 429),
        peak_active_tokens=emulator.peak_active_tokens(client),
        active_tokens_after=emulator.active_token_count(client),
        wall_seconds=wall,
    )
