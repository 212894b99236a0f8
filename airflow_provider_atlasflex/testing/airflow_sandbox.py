"""Run real Airflow CLI commands (``db migrate``, ``dags test``) in a throw-away AIRFLOW_HOME.

Used by ``make demo`` and the end-to-end tests, and usable for your own DAGs: point a
connection at the emulator and run the DAG exactly as Airflow would, offline.

Two ways to run a DAG:

* ``dags_test(...)``: plain ``airflow dags test``. Every task runs inside the CLI process and
  deferred triggers run inline; task logs go to the command's output only (no log files).
* ``dags_test(..., use_executor=True)``: ``airflow dags test --use-executor`` with the
  LocalExecutor, as a deployment runs tasks: each task in its own supervised process that talks
  to the Execution API (an ``airflow api-server --apps execution`` started for the run) and writes
  its log file under ``[logging] base_log_folder``. With ``triggerer=True`` an ``airflow triggerer``
  is started too, so deferred tasks resume through a real triggerer (whose trigger logs land next
  to the task's). Both services are stopped (their whole process group) before the call returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# ``airflow dags test`` runs triggers inline, and that runner ignores SIGTERM: stop it with SIGINT.
_TIMEOUT = shutil.which("timeout")


@dataclass(frozen=True)
class DagTestResult:
    returncode: int
    output: str
    seconds: float
    # use_executor runs only: name ("api-server", "triggerer") -> file holding that service's output
    service_logs: Mapping[str, Path] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "state=success" in self.output

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class AirflowSandbox:
    """An AIRFLOW_HOME with its own SQLite metadata database, DAG folder and log folder."""

    def __init__(self, home: Path, dags_folder: Path) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def log_folder(self) -> Path:
        return self.home / "logs"

    @property
    def service_log_folder(self) -> Path:
        """Where the output of the api-server and triggerer started for ``use_executor`` runs goes."""
        return self.home / "service-logs"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_folder),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra or {})
        return env

    def airflow(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> DagTestResult:
        """Run ``airflow ARGS`` under ``timeout -s INT`` and capture its combined output."""
        command = [sys.executable, "-m", "airflow", *args]
        if _TIMEOUT:
            command = [_TIMEOUT, "-s", "INT", "-k", "15", str(int(timeout)), *command]
        started = time.monotonic()
        completed = subprocess.run(
            command,
            env=self.env(env),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        return DagTestResult(completed.returncode, completed.stdout, time.monotonic() - started)

    def migrate(self) -> None:
        """Create the metadata database (once per sandbox)."""
        if (self.home / "airflow.db").exists():
            return
        result = self.airflow("db", "migrate", timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.tail()}")

    def dags_test(
        self,
        dag_id: str,
        *,
        conf: Mapping[str, Any] | None = None,
        connections: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        logical_date: str | None = None,
        timeout: float = 300,
        use_executor: bool = False,
        triggerer: bool = False,
    ) -> DagTestResult:
        """``airflow dags test DAG_ID [DATE] -c CONF`` with connections given as environment JSON.

        ``use_executor=True`` runs the tasks through the LocalExecutor (each task in its own
        supervised process writing its log file), ``triggerer=True`` adds a real triggerer for
        deferred tasks; see the module docstring.
        """
        self.migrate()
        extra = dict(env or {})
        for conn_id, fields in (connections or {}).items():
            extra[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(dict(fields))
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf is not None:
            args += ["-c", json.dumps(dict(conf))]
        if not use_executor:
            if triggerer:
                raise ValueError("triggerer=True needs use_executor=True (plain dags test runs triggers inline)")
            return self.airflow(*args, env=extra, timeout=timeout)
        args.append("--use-executor")
        with self._execution_services(extra, triggerer=triggerer) as (service_env, logs):
            result = self._run_in_own_group(args, {**extra, **service_env}, timeout)
        return DagTestResult(result.returncode, result.output, result.seconds, logs)

    @contextlib.contextmanager
    def api_server(self, env: Mapping[str, str] | None = None, *, timeout: float = 120) -> Iterator[str]:
        """``airflow api-server`` (the UI and the REST API) on a free loopback port; yields its base URL.

        Every visitor is an admin without logging in (the simple auth manager's all-admins mode), so
        it is for a throw-away sandbox only: a browser test, or a look at the connection form. Its
        output goes to ``service_log_folder``; its whole process group is stopped on exit.
        """
        self.migrate()
        self.service_log_folder.mkdir(parents=True, exist_ok=True)
        started: tuple[subprocess.Popen[bytes], IO[bytes]] | None = None
        try:
            for attempt in range(3):  # a free port can be taken between the probe and the bind
                if started is not None:
                    _stop_group(started[0], signal.SIGTERM, grace=10)
                    started[1].close()
                port = _free_port()
                url = f"http://127.0.0.1:{port}"
                service_env = {
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                    "AIRFLOW__API__BASE_URL": url,
                    **(env or {}),
                }
                log_file = self.service_log_folder / f"api-server-{port}.log"
                started = self._start_service(
                    ["api-server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port)], service_env, log_file
                )
                if _wait_until_healthy(f"{url}/api/v2/monitor/health", started[0], timeout=timeout):
                    break
                if attempt == 2:
                    raise RuntimeError(f"airflow api-server did not become healthy:\n{_tail(log_file)}")
            yield url
        finally:
            if started is not None:
                _stop_group(started[0], signal.SIGTERM, grace=20)
                started[1].close()

    # ---- use_executor: LocalExecutor + Execution API server (+ triggerer) ---------------------

    @contextlib.contextmanager
    def _execution_services(
        self, extra: Mapping[str, str], *, triggerer: bool
    ) -> Iterator[tuple[dict[str, str], dict[str, Path]]]:
        """Start ``api-server --apps execution`` (and a triggerer); always stop their process groups."""
        self.service_log_folder.mkdir(parents=True, exist_ok=True)
        started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        logs: dict[str, Path] = {}
        try:
            for attempt in range(3):  # a free port can be taken between the probe and the bind
                port = _free_port()
                service_env = {
                    **extra,
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    # LocalExecutor forks this many workers up front (default 32): a DAG test needs few.
                    "AIRFLOW__CORE__PARALLELISM": "8",
                    # A task supervisor notices its task exited only at its next heartbeat check (5 s
                    # by default); 1 s keeps runs short and narrows a race in `dags test --use-executor`:
                    # a deferred task whose trigger fires before its first workload is reported done is
                    # treated as finished externally and then waits for a retry.
                    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                    # The CLI signs each task's token; the api-server must check it with the same key.
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                    # A deployment's defaults (8793/8794) would clash between concurrent sandboxes.
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
                }
                logs["api-server"] = self.service_log_folder / f"api-server-{port}.log"
                api = self._start_service(
                    ["api-server", "--apps", "execution", "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
                    service_env,
                    logs["api-server"],
                )
                started.append(api)
                if _wait_until_healthy(f"http://127.0.0.1:{port}/execution/health", api[0], timeout=90):
                    break
                if attempt == 2:
                    raise RuntimeError(
                        f"airflow api-server did not become healthy:\n{_tail(logs['api-server'])}"
                    )
            if triggerer:
                logs["triggerer"] = self.service_log_folder / f"triggerer-{port}.log"
                started.append(self._start_service(["triggerer", "--skip-serve-logs"], service_env, logs["triggerer"]))
            yield {k: v for k, v in service_env.items() if k not in extra}, logs
        finally:
            for process, handle in reversed(started):
                _stop_group(process, signal.SIGTERM, grace=20)
                handle.close()

    def _start_service(
        self, args: list[str], env: Mapping[str, str], log_file: Path
    ) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        handle = log_file.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(env),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with every child it forked
        )
        return process, handle

    def _run_in_own_group(self, args: list[str], env: Mapping[str, str], timeout: float) -> DagTestResult:
        """Like :meth:`airflow`, but the CLI and the executor's workers are one process group that
        is interrupted on timeout and killed if anything of it outlives the command."""
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(env),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                # SIGINT: the LocalExecutor's shutdown path; SIGKILL after a grace period.
                _signal_group(process.pid, signal.SIGINT)
                try:
                    output, _ = process.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    output, _ = process.communicate()
        finally:
            _stop_group(process, signal.SIGKILL, grace=0)
        text = output.decode("utf-8", "replace") if output else ""
        return DagTestResult(process.returncode, text, time.monotonic() - started)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a recycled id that is not ours
        return False
    return True


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)  # type: ignore[arg-type]


def _stop_group(process: subprocess.Popen[Any], sig: signal.Signals, *, grace: float) -> None:
    """Stop a process started with ``start_new_session=True`` and every process of its group."""
    pgid = process.pid
    if process.poll() is None or _group_alive(pgid):
        _signal_group(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (process.poll() is None or _group_alive(pgid)):
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no output at {path})"


def emulator_connection(emulator: Any, auth: str = "service_account", **extra: Any) -> dict[str, Any]:
    """Connection fields (Airflow's JSON form) that point at a running :class:`AtlasEmulator`."""
    if auth == "service_account":
        login, password = emulator.service_account.client_id, emulator.service_account.client_secret
    elif auth == "digest":
        login, password = emulator.api_key.public_key, emulator.api_key.private_key
    else:
        raise ValueError(f"auth must be 'service_account' or 'digest', got {auth!r}")
    return {
        "conn_type": "mongodb_atlas",
        "host": emulator.base_url,
        "login": login,
        "password": password,
        "extra": {"group_id": emulator.group_id, "auth_type": auth, "allow_insecure_http": True, **extra},
    }
