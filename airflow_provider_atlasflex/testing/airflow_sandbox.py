"""Run real Airflow CLI commands (``db migrate``, ``dags test``) in a throw-away AIRFLOW_HOME.

Used by ``make demo`` and the end-to-end tests, and usable for your own DAGs: point a
connection at the emulator and run the DAG exactly as Airflow would, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ``airflow dags test`` runs triggers inline, and that runner ignores SIGTERM: stop it with SIGINT.
_TIMEOUT = shutil.which("timeout")


@dataclass(frozen=True)
class DagTestResult:
    returncode: int
    output: str
    seconds: float

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
    ) -> DagTestResult:
        """``airflow dags test DAG_ID [DATE] -c CONF`` with connections given as environment JSON."""
        self.migrate()
        extra = dict(env or {})
        for conn_id, fields in (connections or {}).items():
            extra[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(dict(fields))
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf is not None:
            args += ["-c", json.dumps(dict(conf))]
        return self.airflow(*args, env=extra, timeout=timeout)


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
        "extra": {"group_id": emulator.group_id, "auth_type": auth, **extra},
    }
