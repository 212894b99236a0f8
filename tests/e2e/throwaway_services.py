"""Throw-away PostgreSQL and Redis servers, and the process groups the Celery deployment test starts.

Each server is Debian's own binary started on a free loopback port with its data in a temp
directory, as a child in its own process group, and stopped (the whole group) and deleted at the
end. PostgreSQL refuses to run as root: when the tests run as root, it runs as the ``postgres``
user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from airflow_provider_atlasflex.testing.airflow_sandbox import _free_port, _stop_group

# Where Debian puts the server binaries (not on PATH): /usr/lib/postgresql/<major>/bin.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass
class ServiceProcess:
    """One started command: its own process group and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    handle: IO[bytes]

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 20) -> None:
        """Signal the whole group, SIGKILL what is left after ``grace`` seconds."""
        _stop_group(self.process, sig, grace=grace)
        self.handle.close()

    def live_members(self) -> list[int]:
        """Processes of its group still alive (zombies awaiting their reaper do not count)."""
        return live_group_members(self.process.pid)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_file, lines)


def start_process(
    name: str,
    argv: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ServiceProcess:
    """Start ``argv`` in a new session (its own process group), output appended to ``log_file``."""
    handle = log_file.open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
        )
    except BaseException:
        handle.close()
        raise
    return ServiceProcess(name, process, log_file, handle)


def live_group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(text.split(" ", 1)[0]))
    return members


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no output at {path})"


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's bin directory, else the one holding ``initdb`` on PATH."""
    debian = [Path(d) for d in glob.glob(POSTGRES_BIN_GLOB) if Path(d).parent.name.isdigit()]
    for directory in sorted(debian, key=lambda d: int(d.parent.name), reverse=True):
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and (Path(on_path).parent / "postgres").exists() else None


def postgres_run_as() -> str | None:
    """The user PostgreSQL runs as: ``postgres`` when we are root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no 'postgres' user to run PostgreSQL as") from None
    return "postgres"


def _wait_for_port(service: ServiceProcess, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.running:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.1)
    return False


class ThrowawayPostgres:
    """``initdb`` + ``postgres`` on a free port, trust auth for user ``airflow``, database ``airflow``."""

    USER = "airflow"
    DATABASE = "airflow"

    def __init__(self, bin_dir: Path, log_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.port = 0
        self.service: ServiceProcess | None = None
        self._base: Path | None = None

    def sqlalchemy_url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.USER}@127.0.0.1:{self.port}/{self.DATABASE}"

    def connect(self, database: str | None = None) -> Any:
        """A psycopg2 connection (imported here: the module loads without it, and the test skips)."""
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.USER, dbname=database or self.DATABASE, connect_timeout=5
        )

    def __enter__(self) -> ThrowawayPostgres:  # noqa: PYI034 - typing.Self needs 3.11
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        user = postgres_run_as()
        # Not under pytest's 0700 tmp dir: the postgres user must reach its data directory.
        self._base = Path(tempfile.mkdtemp(prefix="atlasflex-pg-"))
        if user:
            shutil.chown(self._base, user)
        data = self._base / "data"
        initdb = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.USER, "-E", "UTF8", "--no-sync"],
            user=user,
            cwd=self._base,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        for _attempt in range(3):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            self.service = start_process(
                "postgres",
                [
                    str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                    # A throw-away database: durability buys nothing and costs seconds.
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=300",
                ],
                self.log_dir / f"postgres-{self.port}.log",
                cwd=self._base,
                user=user,
            )
            if _wait_for_port(self.service, self.port, timeout=60):
                break
            self.service.stop(signal.SIGINT, grace=5)
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{self.service.tail() if self.service else ''}")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before connections are accepted
            try:
                connection = self.connect("postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.DATABASE}")
        finally:
            connection.close()

    def __exit__(self, *exc_info: object) -> None:
        if self.service is not None:
            self.service.stop(signal.SIGINT, grace=15)  # SIGINT: PostgreSQL's fast shutdown
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


class ThrowawayRedis:
    """``redis-server`` on a free loopback port, no persistence, data directory in ``work_dir``."""

    def __init__(self, executable: str, work_dir: Path) -> None:
        self.executable = executable
        self.work_dir = work_dir
        self.port = 0
        self.service: ServiceProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> ThrowawayRedis:  # noqa: PYI034 - typing.Self needs 3.11
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = _free_port()
            self.service = start_process(
                "redis",
                [
                    self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--dir", str(self.work_dir),
                ],
                self.work_dir / f"redis-{self.port}.log",
            )
            if _wait_for_port(self.service, self.port, timeout=30):
                return self
            self.service.stop(grace=5)
        raise RuntimeError(f"redis-server did not start:\n{self.service.tail() if self.service else ''}")

    def __exit__(self, *exc_info: object) -> None:
        if self.service is not None:
            self.service.stop(grace=10)


def stop_all(services: Sequence[ServiceProcess], sig: signal.Signals = signal.SIGTERM, grace: float = 20) -> None:
    """Stop several services at once: signal every group, wait up to ``grace`` seconds in all, SIGKILL
    what is left. In parallel, as a deployment's machines shut down; one by one took ~45 s more."""
    for service in services:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.process.pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(s.running or s.live_members() for s in services):
        time.sleep(0.2)
    for service in services:
        service.stop(signal.SIGKILL, grace=0)
