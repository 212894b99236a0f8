"""A real Airflow CeleryExecutor deployment on one machine, for the Celery end-to-end test.

What it starts (each its own process group, output in ``<root>/service-logs``): ``airflow db migrate``
on PostgreSQL, then ``airflow api-server`` (the UI, the REST API and the Execution API tasks talk
to), ``airflow scheduler``, ``airflow dag-processor``, ``airflow triggerer`` and ``WORKERS``
``airflow celery worker`` processes. Every process gets the same configuration (metadata database
and Celery result backend on PostgreSQL, broker on Redis, one JWT secret and Fernet key) and its own
``ATLASFLEX_TOKEN_DIR`` and cache directory, as separate machines would have: they share only what
the deployment shares. Everything is stopped, all at once, when the context exits, whatever happened.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from airflow_provider_atlasflex.testing.airflow_sandbox import _free_port, _wait_until_healthy
from tests.e2e.throwaway_services import ServiceProcess, ThrowawayPostgres, start_process, stop_all, tail

WORKERS = 3
# Task slots per Celery worker (prefork pool processes); 3 x 4 slots run a 24-cluster night in waves.
WORKER_CONCURRENCY = 4
FINISHED = ("success", "failed")


@dataclass(frozen=True)
class DagRunRecord:
    run_id: str
    state: str
    logical_date: datetime | None
    start_date: datetime | None
    end_date: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.start_date and self.end_date:
            return (self.end_date - self.start_date).total_seconds()
        return None


class CeleryDeployment:
    """The Airflow processes of a CeleryExecutor deployment; use as a context manager."""

    def __init__(
        self,
        root: Path,
        dags_folder: Path,
        postgres: ThrowawayPostgres,
        broker_url: str,
        env: Mapping[str, str],
        *,
        workers: int = WORKERS,
        worker_concurrency: int = WORKER_CONCURRENCY,
    ) -> None:
        self.root = root
        self.home = root / "airflow-home"
        self.log_folder = self.home / "logs"
        self.service_logs = root / "service-logs"
        self.dags_folder = dags_folder
        self.postgres = postgres
        self.broker_url = broker_url
        self.extra_env = dict(env)
        self.workers = workers
        self.worker_concurrency = worker_concurrency
        self.services: list[ServiceProcess] = []
        # How long the start-up steps took (seconds), for the test's report.
        self.timings: dict[str, float] = {}
        self._scheduler_started = 0.0
        self.api_port = 0
        self._jwt_secret = secrets.token_urlsafe(32)
        self._fernet_key = Fernet.generate_key().decode()

    # ---- configuration -------------------------------------------------------------------------

    def token_dir(self, process_name: str) -> Path:
        """The ATLASFLEX_TOKEN_DIR of one process (``worker-1``, ``triggerer``...): its own "machine"."""
        return self.root / "hosts" / process_name / "tokens"

    def env(self, process_name: str) -> dict[str, str]:
        """The environment of one Airflow process: the deployment's configuration plus its own host dirs."""
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
        }
        host = self.root / "hosts" / process_name
        self.token_dir(process_name).mkdir(parents=True, exist_ok=True, mode=0o700)
        (host / "cache").mkdir(parents=True, exist_ok=True, mode=0o700)
        database = self.postgres.sqlalchemy_url()
        return {
            **inherited,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The DAG is scheduled as it would be in production: unpaused, the scheduler creates its run.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            # The scheduler signs each task's token; the api-server checks it with the same key.
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_folder),
            # Deployment defaults (8793/8794) would clash with anything else on the machine.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            # A task supervisor checks its task every 5 s by default; 1 s shortens each task by seconds.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            "ATLASFLEX_TOKEN_DIR": str(self.token_dir(process_name)),
            "XDG_CACHE_HOME": str(host / "cache"),
        }

    # ---- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> CeleryDeployment:  # noqa: PYI034 - typing.Self needs 3.11
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.service_logs.mkdir(parents=True, exist_ok=True)
        self.api_port = _free_port()
        began = time.monotonic()
        migrate = self._airflow(["db", "migrate"], "migrate", timeout=300)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{tail(self.service_logs / 'migrate.log')}")
        self.timings["db migrate"] = time.monotonic() - began
        began = time.monotonic()
        api = self._start_airflow(
            "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        )
        # Nothing reaches the api-server before the scheduler queues a task: start these meanwhile.
        self._start_airflow("dag-processor", ["dag-processor"])
        self._start_airflow("triggerer", ["triggerer", "--skip-serve-logs"])
        for n in range(1, self.workers + 1):
            self._start_airflow(
                f"worker-{n}",
                [
                    "celery", "worker", "--celery-hostname", f"worker-{n}@%h",
                    "--concurrency", str(self.worker_concurrency), "--skip-serve-logs",
                    "--without-mingle", "--without-gossip",
                ],
            )
        if not _wait_until_healthy(f"http://127.0.0.1:{self.api_port}/execution/health", api.process, timeout=180):
            raise RuntimeError(f"airflow api-server did not become healthy:\n{api.tail()}")
        self.timings["api-server healthy"] = time.monotonic() - began
        # A task queued before the Execution API answers times out and waits for its retry (5 min).
        self._start_airflow("scheduler", ["scheduler", "--skip-serve-logs"])
        self._scheduler_started = time.monotonic()

    def _airflow(self, args: list[str], name: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        with (self.service_logs / f"{name}.log").open("ab") as log:
            return subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=self.env(name),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )

    def _start_airflow(self, name: str, args: list[str]) -> ServiceProcess:
        service = start_process(
            name, [sys.executable, "-m", "airflow", *args], self.service_logs / f"{name}.log",
            env=self.env(name), cwd=self.home,
        )
        self.services.append(service)
        return service

    def stop(self) -> None:
        """Stop every process group (SIGTERM, SIGKILL after 20 s), all at once."""
        began = time.monotonic()
        stop_all(self.services, signal.SIGTERM, grace=20)
        self.timings["stop"] = time.monotonic() - began

    def leftovers(self) -> dict[str, list[int]]:
        """Live processes left in any of the deployment's process groups, by service (empty: none)."""
        return {s.name: pids for s in self.services if (pids := s.live_members())}

    # ---- observing the run ---------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = self.postgres.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def first_run(self, dag_id: str) -> DagRunRecord | None:
        rows = self.query(
            "SELECT run_id, state, logical_date, start_date, end_date FROM dag_run WHERE dag_id = %s ORDER BY id LIMIT 1",
            (dag_id,),
        )
        return DagRunRecord(*rows[0]) if rows else None

    def wait_for_first_run(self, dag_id: str, timeout: float) -> DagRunRecord:
        """Wait until the scheduler's first run of ``dag_id`` finishes, or one of its tasks failed or
        waits for a retry (the DAG's retry delay is 5 minutes: no point waiting); fail early if a process dies."""
        deadline = time.monotonic() + timeout
        while True:
            dead = [s for s in self.services if not s.running]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited with {dead[0].process.returncode}:\n{dead[0].tail()}")
            run = self.first_run(dag_id)
            if run is not None and (run.state in FINISHED or self.broken_tasks(dag_id, run.run_id)):
                self.timings["scheduler start to run end"] = time.monotonic() - self._scheduler_started
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: no finished run after {timeout:.0f} s (first run: {run})")
            time.sleep(1)

    def broken_tasks(self, dag_id: str, run_id: str) -> list[str]:
        """Tasks of the run that failed or wait for a retry, as ``task_id[map_index]: state``."""
        return [
            f"{task_id}[{map_index}]: {state}"
            for task_id, map_index, state, _try, _host in self.task_instances(dag_id, run_id)
            if state in ("failed", "up_for_retry", "upstream_failed")
        ]

    def task_instances(self, dag_id: str, run_id: str) -> list[tuple[str, int, str | None, int, str | None]]:
        """(task_id, map_index, state, try_number, hostname) of each task instance of one run."""
        return [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.query(
                "SELECT task_id, map_index, state, try_number, hostname FROM task_instance"
                " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
                (dag_id, run_id),
            )
        ]

    def diagnostics(self, dag_id: str, lines: int = 30) -> str:
        """What CI prints when the test fails: the run's task states, the tail of every process's
        output and of the log of every task that did not succeed."""
        parts = []
        try:
            run = self.first_run(dag_id)
            parts.append(f"== first run of {dag_id}: {run}")
            if run is not None:
                tis = self.task_instances(dag_id, run.run_id)
                parts += [f"   {t} [{m}] {s} try {n}" for t, m, s, n, _h in tis]
                for task_id, map_index, state, _n, _h in tis:
                    if state != "success":
                        parts += self._task_log_tails(run.run_id, task_id, map_index, lines)
        except Exception as exc:  # noqa: BLE001 - the database may be what broke
            parts.append(f"== metadata database unreadable: {exc!r}")
        for log in sorted(self.service_logs.glob("*.log")):
            parts.append(f"== {log.name} (last {lines} lines)\n{tail(log, lines)}")
        return "\n".join(parts)

    def _task_log_tails(self, run_id: str, task_id: str, map_index: int, lines: int) -> list[str]:
        folder = self.log_folder.glob(f"dag_id=*/run_id={run_id}/task_id={task_id}")
        found = []
        for task_folder in folder:
            if map_index >= 0:
                task_folder = task_folder / f"map_index={map_index}"
            for log in sorted(task_folder.glob("attempt=*.log*")):
                found.append(f"== task log {log.relative_to(self.log_folder)} (last {lines} lines)\n{tail(log, lines)}")
        return found
