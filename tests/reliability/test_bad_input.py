"""Bad input, refused before any network call: every public class's parameters and every connection field.

Each row feeds one wrong value (wrong type, empty, malformed id, hostile name, unknown scheme, a
template that rendered badly, a connection of the wrong kind) to the provider's public surface and
checks three things:

* the exact exception type, and a message that names the parameter or field and says how to fix it;
* no network call: the connection points at a running emulator that must have received nothing,
  and every socket ``connect``/DNS lookup in the test process is refused and recorded;
* nothing written: the operators' ``dst`` lies under ``tmp_path``, which must stay empty.

Operators are run through ``execute(context)``: templated fields are assigned verbatim in
``__init__`` and checked in ``execute()``, after rendering, which is where a bad template shows.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.transfers.destination import PLACEHOLDERS, resolve_destination
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger
from tests.airflow_compat import airflow_drops_connection_with_extra
from tests.reliability.conftest import files_under
from tests.reliability.registry import case, reliability
from tests.unit.fake_context import make_context

# fast_retries: a regression that does reach the network fails in seconds, not after real back-off.
pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

KIND = "bad-input"
HEX = "5f1b2c3d4e5f60718293a4b5"  # a well-formed id: nothing is ever looked up with it
JOB = "7a1b2c3d4e5f60718293a4b7"
MIB = 1024 * 1024
ROOT = "ROOT"  # replaced by the test's destination root (under tmp_path)
DST = f"file://{ROOT}/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz"

AT_EXECUTE = "Refused at the start of execute(), before the connection is read: no request, nothing written"
AT_INIT = "Refused when the task is built (the DAG fails to import): no request"
AT_CONNECTION = "Refused while reading the connection, before the first request: nothing written under dst"
AT_CALL = "Refused before the hook builds a request: no request"
AT_HOOK = "Refused when the hook is built: no request"
AT_TRIGGER = "Refused when the trigger is built, before run() sends anything"


def says(fragment: str) -> str:
    return f"AtlasFlexConfigError: \u201c\u2026{fragment}\u2026\u201d"


def row(test: str, case_id: str, injected: str, fragment: str, did: str, *values: Any) -> Any:
    """One doc row; the test matches ``fragment`` literally in the message."""
    return case(test, case_id, KIND, injected, did, says(fragment), *values, fragment)


# ---- the no-network, nothing-written harness -----------------------------------------------------


class NetworkGuard:
    """Refuses (and records) every outgoing connection and DNS lookup made by the code under test."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_getaddrinfo = socket.getaddrinfo

        def connect(sock: socket.socket, address: Any, *args: Any) -> Any:
            self.attempts.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"test blocked a network call to {address!r}")

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.attempts.append(f"getaddrinfo {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def guard(emu: AtlasEmulator, monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """Installed after the emulator is up (the emulator only listens; it never connects)."""
    network = NetworkGuard()
    network.install(monkeypatch)
    return network


def connect_default(
    monkeypatch: pytest.MonkeyPatch, emu: AtlasEmulator, auth: str = "digest", **overrides: Any
) -> dict[str, Any]:
    """Point mongodb_atlas_default at the emulator, with some fields replaced; returns the fields."""
    fields = emulator_connection(emu, auth)
    extra_override = overrides.pop("extra", None)
    if isinstance(extra_override, dict):
        fields["extra"] = {**fields["extra"], **extra_override}
    elif extra_override is not None:
        fields["extra"] = extra_override  # a raw (possibly broken) Extra text
    fields.update(overrides)
    monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))
    return fields


def materialize(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return value.replace(ROOT, str(root))
    if callable(value):
        return value(root)
    return value


def assert_refused(
    exc: pytest.ExceptionInfo[BaseException],
    fragment: str,
    emu: AtlasEmulator,
    guard: NetworkGuard,
    tmp_path: Path,
    *secrets: str,
) -> None:
    assert exc.type is AtlasFlexConfigError, f"{exc.type.__name__}: {exc.value}"
    message = str(exc.value)
    assert fragment in message, f"expected {fragment!r} in {message!r}"
    for secret in (emu.api_key.private_key, emu.service_account.client_secret, *secrets):
        assert secret not in message, "a secret leaked into the error message"
    assert len(emu.requests) == 0, f"the emulator got {[x.operation for x in emu.requests]}"
    assert guard.attempts == [], f"network calls were attempted: {guard.attempts}"
    assert files_under(tmp_path) == [], f"files were written: {files_under(tmp_path)}"


# ---- AtlasFlexSnapshotDownloadOperator -----------------------------------------------------------

T = "test_download_operator_refuses_bad_input"
DOWNLOAD_ROWS = [
    row(T, "cluster-slash", "cluster_name='team/alpha'",
        "cluster_name 'team/alpha' is not a valid Atlas cluster name: use letters, digits and hyphens",
        AT_EXECUTE, {"cluster_name": "team/alpha"}),
    row(T, "cluster-too-long", "cluster_name of 65 characters",
        "at most 64 characters", AT_EXECUTE, {"cluster_name": "a" * 65}),
    row(T, "cluster-rendered-empty", "cluster_name='' (a template that rendered empty)",
        "cluster_name must be a non-empty string naming an Atlas flex cluster, got str ''",
        AT_EXECUTE, {"cluster_name": ""}),
    row(T, "snapshot-id-23-chars", "snapshot_id of 23 hex characters",
        "snapshot_id must be 24 lower-case hexadecimal characters", AT_EXECUTE, {"snapshot_id": HEX[:-1]}),
    row(T, "snapshot-id-rendered-empty",
        "snapshot_id='' (a template that rendered empty; None means 'newest snapshot')",
        "snapshot_id is an empty string (if it is templated, the template rendered empty or None",
        AT_EXECUTE + " (it does not fall back to the newest snapshot)", {"snapshot_id": ""}),
    row(T, "group-id-rendered-empty", "group_id=''",
        "leave group_id out (None) to use the connection's group_id extra",
        AT_EXECUTE + " (it does not fall back to the connection's project)", {"group_id": ""}),
    row(T, "conn-id-rendered-none", "atlas_conn_id='None' (a template that rendered None)",
        "atlas_conn_id must name an Airflow connection of type 'mongodb_atlas'", AT_EXECUTE,
        {"atlas_conn_id": "None"}),
    row(T, "conn-id-missing", "atlas_conn_id='no_such_conn' (no such connection)",
        "Connection 'no_such_conn' is not defined: create a connection of type 'mongodb_atlas'",
        "Refused when the connection was looked up: no request", {"atlas_conn_id": "no_such_conn"}),
    row(T, "reuse-existing-job-string", "reuse_existing_job='False' (a string, which Python reads as true)",
        "reuse_existing_job must be True or False, got str 'False'", AT_EXECUTE, {"reuse_existing_job": "False"}),
    row(T, "min-link-validity-negative-timedelta", "min_link_validity=timedelta(minutes=-5)",
        "min_link_validity must not be negative, got -300 s", AT_EXECUTE, {"min_link_validity": timedelta(minutes=-5)}),
    row(T, "min-link-validity-nan", "min_link_validity=nan",
        "min_link_validity must be a finite number of seconds", AT_EXECUTE, {"min_link_validity": math.nan}),
    row(T, "min-link-validity-string", "min_link_validity='30m'",
        "min_link_validity must be a timedelta or a number of seconds (e.g. timedelta(minutes=30) or 1800), got str "
        "'30m'", AT_EXECUTE, {"min_link_validity": "30m"}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), DOWNLOAD_ROWS)
def test_download_operator_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    context = make_context()
    with pytest.raises(Exception) as exc:
        operator = AtlasFlexSnapshotDownloadOperator(task_id="download", **{"cluster_name": "alpha", **kwargs})
        operator.execute(context)
    assert_refused(exc, fragment, emu, guard, tmp_path)
    assert context["ti"].pushed == {}


# ---- AtlasFlexSnapshotUrlSensor ------------------------------------------------------------------

T = "test_sensor_refuses_bad_input"
SENSOR_ROWS = [
    row(T, "cluster-dotdot", "cluster_name='../alpha'",
        "cluster_name '../alpha' is not a valid Atlas cluster name", AT_EXECUTE, {"cluster_name": "../alpha"}),
    row(T, "restore-job-id-25-chars", "restore_job_id of 25 hex characters",
        "restore_job_id must be 24 lower-case hexadecimal characters", AT_EXECUTE,
        {"restore_job_id": JOB + "0"}),
    row(T, "restore-job-id-none", "restore_job_id=None (required)",
        "restore_job_id must be a 24-character hexadecimal string (e.g. '32b6e34b3d91647abb20e7b8'), got NoneType "
        "None (if it is templated, the template rendered empty or None: check the XCom", AT_EXECUTE,
        {"restore_job_id": None}),
    row(T, "group-id-rendered-none", "group_id='None' (a template that rendered None)",
        "group_id must be 24 lower-case hexadecimal characters (e.g. 32b6e34b3d91647abb20e7b8), got 'None' "
        "(if it is templated, the template rendered empty or None", AT_EXECUTE, {"group_id": "None"}),
    row(T, "deferrable-rendered-empty-job-id",
        "deferrable=True and restore_job_id='' (a template that rendered empty)",
        "restore_job_id must be 24 lower-case hexadecimal characters", AT_EXECUTE + " (no first poke, no deferral)",
        {"deferrable": True, "restore_job_id": ""}),
    row(T, "deferrable-string", "deferrable='False'",
        "deferrable must be True or False, got str 'False'", AT_EXECUTE, {"deferrable": "False"}),
    row(T, "soft-fail-string", "soft_fail='False' (would turn a failed export into a skip)",
        "soft_fail must be True or False, got str 'False'", AT_EXECUTE, {"soft_fail": "False"}),
    row(T, "poke-interval-zero", "poke_interval=0 (would poll Atlas in a tight loop)",
        "poke_interval must be greater than zero, got 0", AT_INIT, {"poke_interval": 0}),
    row(T, "poke-interval-inf", "poke_interval=inf",
        "poke_interval must be a finite number of seconds, got inf", AT_INIT, {"poke_interval": math.inf}),
    row(T, "poke-interval-bool", "poke_interval=True",
        "poke_interval must be a number of seconds, got bool True", AT_INIT, {"poke_interval": True}),
    row(T, "timeout-zero", "timeout=timedelta(0) (would give up after the first request)",
        "timeout must be greater than zero, got 0.0", AT_EXECUTE, {"timeout": timedelta(0)}),
    row(T, "timeout-nan", "timeout=nan",
        "timeout must be a finite number of seconds, got nan", AT_INIT, {"timeout": math.nan}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), SENSOR_ROWS)
def test_sensor_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    with pytest.raises(Exception) as exc:
        sensor = AtlasFlexSnapshotUrlSensor(
            task_id="wait", **{"cluster_name": "alpha", "restore_job_id": JOB, "deferrable": False, **kwargs}
        )
        sensor.execute(make_context())
    assert_refused(exc, fragment, emu, guard, tmp_path)


# ---- AtlasFlexRestoreJobTrigger ------------------------------------------------------------------

T = "test_trigger_refuses_bad_input"
TRIGGER_ROWS = [
    row(T, "cluster-space", "cluster_name='my cluster'",
        "cluster_name 'my cluster' is not a valid Atlas cluster name", AT_TRIGGER, {"cluster_name": "my cluster"}),
    row(T, "restore-job-id-rendered-empty", "restore_job_id=''",
        "restore_job_id must be 24 lower-case hexadecimal characters", AT_TRIGGER, {"restore_job_id": ""}),
    row(T, "group-id-rendered-empty", "group_id=''",
        "group_id is an empty string", AT_TRIGGER, {"group_id": ""}),
    row(T, "conn-id-empty", "atlas_conn_id=''",
        "atlas_conn_id must name an Airflow connection of type 'mongodb_atlas'", AT_TRIGGER, {"atlas_conn_id": ""}),
    row(T, "poll-interval-zero", "poll_interval=0",
        "poll_interval must be greater than zero", AT_TRIGGER, {"poll_interval": 0}),
    row(T, "end-time-zero", "end_time=0",
        "end_time (Unix time) must be greater than zero", AT_TRIGGER, {"end_time": 0}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), TRIGGER_ROWS)
def test_trigger_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    arguments = {
        "cluster_name": "alpha",
        "restore_job_id": JOB,
        "group_id": None,
        "atlas_conn_id": "mongodb_atlas_default",
        "poll_interval": 10.0,
        "end_time": 4102444800.0,
        **kwargs,
    }
    with pytest.raises(Exception) as exc:
        AtlasFlexRestoreJobTrigger(**arguments)
    assert_refused(exc, fragment, emu, guard, tmp_path)


# ---- AtlasFlexSnapshotToStorageOperator ----------------------------------------------------------

T = "test_transfer_operator_refuses_bad_input"
TRANSFER_ROWS = [
    row(T, "cluster-backslash", "cluster_name='a\\\\b'",
        "is not a valid Atlas cluster name: use letters, digits and hyphens", AT_EXECUTE, {"cluster_name": "a\\b"}),
    row(T, "restore-job-id-non-hex", "restore_job_id of 24 non-hex characters",
        "restore_job_id must be 24 lower-case hexadecimal characters", AT_EXECUTE, {"restore_job_id": "g" * 24}),
    row(T, "restore-job-id-rendered-none", "restore_job_id='None' (an XCom template that rendered None)",
        "got 'None' (if it is templated, the template rendered empty or None: check the XCom",
        AT_EXECUTE, {"restore_job_id": "None"}),
    row(T, "group-id-rendered-empty", "group_id=''",
        "group_id is an empty string", AT_EXECUTE + " (it does not fall back to the connection's project)",
        {"group_id": ""}),
    row(T, "dst-empty", "dst=''", "dst must be a URL such as 'file:///backups/", AT_EXECUTE, {"dst": ""}),
    row(T, "dst-no-scheme", "dst='/backups/{snapshot_id}.tgz' (no scheme)",
        "has no scheme; write file:///absolute/path", AT_EXECUTE, {"dst": f"{ROOT}/{{snapshot_id}}.tgz"}),
    row(T, "dst-unknown-scheme", "dst='foo://bucket/{snapshot_id}.tgz'",
        "No filesystem handles dst scheme 'foo://'", AT_EXECUTE, {"dst": "foo://bucket/{snapshot_id}.tgz"}),
    row(T, "dst-relative-file-url", "dst='file://backups/{snapshot_id}.tgz' (two slashes: relative)",
        "is not an absolute file URL; write three slashes", AT_EXECUTE, {"dst": "file://backups/{snapshot_id}.tgz"}),
    row(T, "dst-dotdot-segment", "dst with a '..' segment",
        "must not contain '.' or '..' path segments; write the directory it means in full", AT_EXECUTE,
        {"dst": f"file://{ROOT}/../{{snapshot_id}}.tgz"}),
    row(T, "dst-unknown-placeholder", "dst with {cluster} (unknown placeholder)",
        "uses unknown placeholder(s) ['cluster']; available: {cluster_name}, {snapshot_id}, {restore_job_id}, {date}",
        AT_EXECUTE, {"dst": f"file://{ROOT}/{{cluster}}/{{snapshot_id}}.tgz"}),
    row(T, "dst-format-spec", "dst with {date:%Y}",
        "applies a format spec or conversion to ['date']; write placeholders as plain",
        AT_EXECUTE, {"dst": f"file://{ROOT}/{{date:%Y}}/{{snapshot_id}}.tgz"}),
    row(T, "dst-unrendered-jinja", "dst with an unrendered '{{ ds }}'",
        "still holds a Jinja expression: it was not rendered", AT_EXECUTE,
        {"dst": f"file://{ROOT}/{{{{ ds }}}}/{{snapshot_id}}.tgz"}),
    row(T, "dst-unbalanced-brace", "dst with an unclosed '{cluster_name'",
        "has unbalanced braces", AT_EXECUTE, {"dst": f"file://{ROOT}/{{cluster_name/x.tgz"}),
    row(T, "dst-no-file-name", "dst ending with '/' (a directory, no file name)",
        "must end with a file name (not '/' or a hidden name)", AT_EXECUTE,
        {"dst": f"file://{ROOT}/{{cluster_name}}/"}),
    row(T, "dst-surrounding-whitespace", "dst starting with a newline (a multi-line template)",
        "starts or ends with whitespace", AT_EXECUTE, {"dst": f"\nfile://{ROOT}/{{snapshot_id}}.tgz"}),
    row(T, "dst-objectstoragepath-dotdot", "dst=ObjectStoragePath('file:///backups/../x.tgz')",
        "must not contain '.' or '..' path segments; write the directory it means in full", AT_EXECUTE,
        {"dst": lambda root: ObjectStoragePath(f"file://{root}/../x.tgz")}),
    row(T, "dst-conn-id-rendered-none", "dst_conn_id='None' (a template that rendered None)",
        "dst_conn_id must name an Airflow connection for the destination", AT_EXECUTE, {"dst_conn_id": "None"}),
    row(T, "dst-conn-id-missing", "dst_conn_id='no_such_conn' (no such connection)",
        "dst_conn_id 'no_such_conn' is not a defined connection; create it", AT_EXECUTE,
        {"dst_conn_id": "no_such_conn"}),
    row(T, "overwrite-string", "overwrite='False' (a string, which Python reads as true)",
        "overwrite must be True or False, got str 'False'", AT_EXECUTE, {"overwrite": "False"}),
    row(T, "chunk-size-zero", "chunk_size=0",
        "chunk_size must be a whole number of bytes from 1 KiB to 256 MiB, got 0", AT_EXECUTE, {"chunk_size": 0}),
    row(T, "chunk-size-bool", "chunk_size=True",
        "chunk_size must be a whole number of bytes from 1 KiB to 256 MiB, got True", AT_EXECUTE, {"chunk_size": True}),
    row(T, "max-download-attempts-zero", "max_download_attempts=0",
        "max_download_attempts must be a whole number from 1 to 100, got 0", AT_EXECUTE,
        {"max_download_attempts": 0}),
    row(T, "progress-interval-nan", "progress_interval=nan",
        "progress_interval must be a finite number of seconds", AT_EXECUTE, {"progress_interval": math.nan}),
    row(T, "link-refresh-timeout-negative", "link_refresh_timeout=-1",
        "link_refresh_timeout must be zero or more, got -1", AT_EXECUTE, {"link_refresh_timeout": -1}),
    row(T, "link-refresh-poll-interval-zero", "link_refresh_poll_interval=0",
        "link_refresh_poll_interval must be greater than zero, got 0", AT_EXECUTE,
        {"link_refresh_poll_interval": 0}),
]


def run_transfer(tmp_path: Path, **kwargs: Any) -> None:
    root = tmp_path / "exports"
    arguments = {"cluster_name": "alpha", "restore_job_id": JOB, "dst": DST, **kwargs}
    operator = AtlasFlexSnapshotToStorageOperator(
        task_id="copy", **{key: materialize(value, root) for key, value in arguments.items()}
    )
    operator.execute(make_context())


@pytest.mark.parametrize(("kwargs", "fragment"), TRANSFER_ROWS)
def test_transfer_operator_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    with pytest.raises(Exception) as exc:
        run_transfer(tmp_path, **kwargs)
    assert_refused(exc, fragment, emu, guard, tmp_path)


# ---- AtlasFlexHook and AtlasFlexAsyncHook --------------------------------------------------------

T = "test_hook_refuses_bad_input"
HOOK_ROWS = [
    row(T, "conn-id-empty", "AtlasFlexHook(atlas_conn_id='')",
        "atlas_conn_id must name an Airflow connection of type 'mongodb_atlas'", AT_HOOK,
        lambda: AtlasFlexHook("")),
    row(T, "conn-id-missing", "AtlasFlexHook('no_such_conn').get_flex_cluster('alpha')",
        "Connection 'no_such_conn' is not defined: create a connection of type 'mongodb_atlas' with that id",
        "Refused when the connection was looked up: no request",
        lambda: AtlasFlexHook("no_such_conn").get_flex_cluster("alpha")),
    row(T, "cluster-leading-hyphen", "get_flex_cluster('-alpha')",
        "cluster_name '-alpha' is not a valid Atlas cluster name: use letters, digits and hyphens, starting with a "
        "letter or digit", AT_CALL, lambda: AtlasFlexHook().get_flex_cluster("-alpha")),
    row(T, "snapshot-id-upper-case", "get_snapshot('alpha', <id in upper case>)",
        "(Atlas ids are lower-case)", AT_CALL, lambda: AtlasFlexHook().get_snapshot("alpha", HEX.upper())),
    row(T, "restore-job-id-int", "get_restore_job('alpha', 12345)",
        "restore_job_id must be a 24-character hexadecimal string (e.g. '32b6e34b3d91647abb20e7b8'), got int 12345 "
        "(an id is text: pass it as a string", AT_CALL,
        lambda: AtlasFlexHook().get_restore_job("alpha", 12345)),
    row(T, "group-id-empty", "get_flex_cluster('alpha', group_id='')",
        "group_id must be 24 lower-case hexadecimal characters", AT_CALL + " (it does not fall back to the "
        "connection's project)", lambda: AtlasFlexHook().get_flex_cluster("alpha", group_id="")),
    row(T, "items-per-page-bool", "list_restore_jobs('alpha', items_per_page=True)",
        "items_per_page must be a whole number from 1 to 500, got True", AT_CALL,
        lambda: AtlasFlexHook().list_restore_jobs("alpha", items_per_page=True)),
    row(T, "min-validity-string", "find_reusable_download_job('alpha', <id>, min_validity='30m')",
        "min_validity must be a timedelta or a number of seconds (e.g. timedelta(minutes=30) or 1800), got str '30m'",
        AT_CALL,
        lambda: AtlasFlexHook().find_reusable_download_job("alpha", HEX, min_validity="30m")),
]


@pytest.mark.parametrize(("call", "fragment"), HOOK_ROWS)
def test_hook_refuses_bad_input(emu, guard, monkeypatch, tmp_path, call, fragment):
    connect_default(monkeypatch, emu)
    with pytest.raises(Exception) as exc:
        call()
    assert_refused(exc, fragment, emu, guard, tmp_path)


T = "test_async_hook_refuses_bad_input"
ASYNC_HOOK_ROWS = [
    row(T, "conn-id-none", "AtlasFlexAsyncHook(atlas_conn_id=None)",
        "atlas_conn_id must name an Airflow connection of type 'mongodb_atlas'", AT_HOOK,
        lambda hook: hook(None).get_flex_cluster("alpha")),
    row(T, "conn-id-missing", "AtlasFlexAsyncHook('no_such_conn').get_restore_job(...)",
        "Connection 'no_such_conn' is not defined", "Refused when the connection was looked up: no request",
        lambda hook: hook("no_such_conn").get_restore_job("alpha", JOB)),
    row(T, "cluster-unicode", "get_restore_job('cl\u00fcster', ...)",
        "is not a valid Atlas cluster name: use letters, digits and hyphens", AT_CALL,
        lambda hook: hook().get_restore_job("cl\u00fcster", JOB)),
]


@pytest.mark.parametrize(("call", "fragment"), ASYNC_HOOK_ROWS)
def test_async_hook_refuses_bad_input(emu, guard, monkeypatch, tmp_path, call, fragment):
    connect_default(monkeypatch, emu)
    hooks: list[AtlasFlexAsyncHook] = []

    def make(*args: Any) -> AtlasFlexAsyncHook:
        hook = AtlasFlexAsyncHook(*args)
        hooks.append(hook)
        return hook

    async def scenario() -> None:
        try:
            await call(make)
        finally:
            for hook in hooks:
                await hook.aclose()

    with pytest.raises(Exception) as exc:
        asyncio.run(scenario())
    assert_refused(exc, fragment, emu, guard, tmp_path)


# ---- The mongodb_atlas connection (through the transfer operator, dst under tmp_path) ------------

T = "test_connection_refused"
SA = "service_account"
CONNECTION_ROWS = [
    row(T, "conn-type-http", "a connection of type 'http'",
        "has type 'http'; the Atlas flex hooks need a 'mongodb_atlas' connection", AT_CONNECTION,
        "digest", {"conn_type": "http"}),
    row(T, "login-empty", "Login empty (API key)",
        "has an empty login: put the API public key in the Login field", AT_CONNECTION, "digest", {"login": ""}),
    row(T, "password-empty", "Password empty (API key)",
        "has an empty password: put the API private key in the Password field", AT_CONNECTION,
        "digest", {"password": ""}),
    row(T, "password-blank-service-account", "Password of spaces (service account)",
        "has an empty password: put the service account client secret in the Password field", AT_CONNECTION,
        SA, {"password": "   "}),
    row(T, "login-with-space", "Login 'ab cd' (spaces inside)",
        "has a login containing spaces or control characters", AT_CONNECTION, "digest", {"login": "ab cd"}),
    row(T, "auth-type-unknown", "extra auth_type='oauth'",
        "has extra auth_type='oauth'; use 'service_account'", AT_CONNECTION,
        "digest", {"extra": {"auth_type": "oauth"}}),
    row(T, "service-account-with-api-key-login", "auth_type='service_account' with an API public key as Login",
        "extra auth_type='service_account' but its login is not a service account client id (those start with "
        "'mdb_sa_id_')", AT_CONNECTION, "digest", {"extra": {"auth_type": SA}}),
    row(T, "digest-with-service-account-login", "auth_type='digest' with a mdb_sa_id_ client id as Login",
        "extra auth_type='digest' but its login is a service account client id", AT_CONNECTION,
        SA, {"extra": {"auth_type": "digest"}}),
    row(T, "group-id-short", "extra group_id='123'",
        "extra 'group_id' of connection 'mongodb_atlas_default' must be 24 lower-case hexadecimal characters",
        AT_CONNECTION, "digest", {"extra": {"group_id": "123"}}),
    row(T, "group-id-int", "extra group_id as a JSON number",
        "extra 'group_id' of connection 'mongodb_atlas_default' must be a 24-character hexadecimal string (e.g. "
        "'32b6e34b3d91647abb20e7b8'), got int 123456789012345678901234 (an id is text: pass it as a string, in quotes "
        "in JSON)",
        AT_CONNECTION, "digest", {"extra": {"group_id": 123456789012345678901234}}),
    row(T, "host-with-credentials", "Host 'http://<key>:<secret>@127.0.0.1:<port>'",
        "has credentials in its Host field; put the key or client id in Login and the secret in Password",
        AT_CONNECTION + "; the secret is not echoed", "digest",
        {"host": lambda emu: emu.base_url.replace("://", f"://{emu.api_key.public_key}:{emu.api_key.private_key}@")}),
    row(T, "host-bad-scheme", "Host 'ftp://127.0.0.1:<port>'",
        "give the Atlas base URL, e.g. https://cloud.mongodb.com (scheme http or https", AT_CONNECTION,
        "digest", {"host": lambda emu: emu.base_url.replace("http://", "ftp://")}),
    row(T, "host-garbage", "Host 'not a host!'",
        "has host 'https://not a host!'; give the Atlas base URL", AT_CONNECTION, "digest", {"host": "not a host!"}),
    row(T, "port-out-of-range", "Port 70000 (beside a Host that has its own port)",
        "has port 70000; use a port from 1 to 65535 or leave it empty", AT_CONNECTION, "digest", {"port": 70000}),
    row(T, "port-conflicts-with-host", "Port differing from the port in Host",
        "in the Port field but", AT_CONNECTION, "digest", {"port": lambda emu: emu.port + 1}),
    row(T, "schema-unknown", "Schema 'ftp'",
        "has schema 'ftp'; leave it empty (or http/https)", AT_CONNECTION, "digest", {"schema": "ftp"}),
    row(T, "timeout-zero", "extra timeout=0",
        "has extra timeout=0; it must be a number from 0.001 to 3600", AT_CONNECTION,
        "digest", {"extra": {"timeout": 0}}),
    row(T, "timeout-nan", "extra timeout='NaN'",
        "has extra timeout='NaN'; it must be a number from 0.001 to 3600", AT_CONNECTION,
        "digest", {"extra": {"timeout": "NaN"}}),
    row(T, "timeout-too-large", "extra timeout=1e12 (overflows the socket layer)",
        "it must be a number from 0.001 to 3600", AT_CONNECTION, "digest", {"extra": {"timeout": 1e12}}),
    row(T, "max-retries-too-many", "extra max_retries=101",
        "has extra max_retries=101; it must be a whole number from 0 to 100", AT_CONNECTION,
        "digest", {"extra": {"max_retries": 101}}),
    row(T, "max-retries-fraction", "extra max_retries=2.5",
        "has extra max_retries=2.5; it must be a whole number", AT_CONNECTION,
        "digest", {"extra": {"max_retries": 2.5}}),
    row(T, "proxies-string", "extra proxies='http://proxy:3128' (not a mapping)",
        "extra proxies must map scheme to proxy URL", AT_CONNECTION,
        "digest", {"extra": {"proxies": "http://proxy:3128"}}),
    row(T, "proxies-no-scheme", "extra proxies={'https': 'proxy:3128'}",
        "extra proxies['https'] is not a proxy URL; write it as scheme://host:port", AT_CONNECTION,
        "digest", {"extra": {"proxies": {"https": "proxy:3128"}}}),
    row(T, "proxies-unknown-key", "extra proxies={'ftp': 'http://proxy:3128'} (never used)",
        "extra proxies has key 'ftp'; use 'https', 'http' or 'all'", AT_CONNECTION,
        "digest", {"extra": {"proxies": {"ftp": "http://proxy:3128"}}}),
    row(T, "verify-missing-ca-bundle", "extra verify='/nonexistent/ca.pem'",
        "extra verify names a CA bundle '/nonexistent/ca.pem' that does not exist on this machine", AT_CONNECTION,
        "digest", {"extra": {"verify": "/nonexistent/ca.pem"}}),
    row(T, "token-sharing-unknown", "extra sharing_scope='hosts'",
        "has extra sharing_scope='hosts'; use 'host'", AT_CONNECTION, SA, {"extra": {"sharing_scope": "hosts"}}),
    row(T, "extra-not-json", "Extra '{group_id: ...' (not JSON)",
        "has an Extra field that is not a JSON object (JSONDecodeError); write it as e.g.", AT_CONNECTION,
        "digest", {"extra": "{group_id: 5f1b2c3d4e5f60718293a4b5"}),
    row(T, "extra-json-list", "Extra '[\"digest\"]' (JSON, not an object)",
        "Extra must be a JSON object, not a JSON array; write it as e.g. {\"group_id\": \"<24-hex project id>\"",
        AT_CONNECTION, "digest", {"extra": '["digest"]'}),
]


@pytest.mark.parametrize(("auth", "overrides", "fragment"), CONNECTION_ROWS)
def test_connection_refused(emu, guard, monkeypatch, tmp_path, auth, overrides, fragment):
    fields = connect_default(
        monkeypatch, emu, auth, **{key: value(emu) if callable(value) else value for key, value in overrides.items()}
    )
    if airflow_drops_connection_with_extra(fields.get("extra")):
        fragment = "is not defined"  # Airflow 3.1: its Connection model drops the connection before we see it
    with pytest.raises(Exception) as exc:
        run_transfer(tmp_path)
    assert_refused(exc, fragment, emu, guard, tmp_path, *([fields["password"]] if fields["password"].strip() else []))


# ---- Destination paths built from cluster names and dates never leave the root -------------------

T = "test_hostile_placeholder_value_is_refused"
GOOD = {"cluster_name": "alpha", "snapshot_id": HEX, "restore_job_id": JOB, "date": "2026-11-28"}
ESCAPE_ROWS = [
    case(T, "cluster-parent", KIND, "resolve_destination with cluster_name='../x'",
         "Refused to fill the placeholder: the path is never built",
         says("dst placeholder {cluster_name} cannot be filled with '../x': it must become one path segment"),
         "cluster_name", "../x"),
    case(T, "cluster-separator", KIND, "resolve_destination with cluster_name='a/b'",
         "Refused to fill the placeholder: the path is never built",
         says("dst placeholder {cluster_name} cannot be filled with 'a/b'"), "cluster_name", "a/b"),
    case(T, "cluster-percent-escape", KIND, "resolve_destination with cluster_name='%2e%2e' (an encoded '..')",
         "Refused to fill the placeholder: the path is never built",
         says("dst placeholder {cluster_name} cannot be filled with '%2e%2e'"), "cluster_name", "%2e%2e"),
    case(T, "date-dot", KIND, "resolve_destination with date='.'",
         "Refused to fill the placeholder: the path is never built",
         says("dst placeholder {date} cannot be filled with '.'"), "date", "."),
    case(T, "cluster-absolute", KIND, "resolve_destination with cluster_name='/etc/cron.d'",
         "Refused to fill the placeholder: the path is never built",
         says("dst placeholder {cluster_name} cannot be filled with '/etc/cron.d'"), "cluster_name", "/etc/cron.d"),
]


@pytest.mark.parametrize(("placeholder", "value"), ESCAPE_ROWS)
def test_hostile_placeholder_value_is_refused(tmp_path, placeholder, value):
    dst = f"file://{tmp_path}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz"
    with pytest.raises(AtlasFlexConfigError, match=re.escape(f"dst placeholder {{{placeholder}}} cannot be filled")):
        resolve_destination(dst, None, {**GOOD, placeholder: value})
    assert files_under(tmp_path) == []


HOSTILE = [
    "..", ".", "../x", "x/..", "../../etc", "a/b", "/etc", "/etc/passwd", "//host/share", "a\\b", "..\\..",
    "C:", "C:\\Windows", "~", "~root", "%2e%2e", "%2e%2e%2f", "%2F", "%00", "a\x00b", "\x00", "\n", "x\n", " ",
    "", ".hidden", "a.", "a..b", "....", "-", "-rf", "*", "?", "#frag", "a b", "file:///etc", "s3://other/x",
    "{cluster_name}", "{{ ds }}", "\u2215etc", "\uff0e\uff0e", "\u2024\u2024", "caf\u00e9", "a" * 300,
    "alpha/../../..", "2026-11-28/../../x",
]
TEMPLATES = [
    "file://{root}/exports/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz",
    "file://{root}/exports/{{cluster_name}}-{{date}}-{{restore_job_id}}.tgz",
    "file://{root}/exports/{{date}}/{{cluster_name}}",
]


@reliability(
    KIND,
    "Every placeholder ({cluster_name}, {date}, {snapshot_id}, {restore_job_id}) of three dst templates filled with "
    f"each of {len(HOSTILE)} hostile values: '..', '.', separators, absolute and UNC paths, backslashes, "
    "drive letters, '~', percent-escapes, NUL, newlines, URLs, unrendered templates, Unicode look-alike slashes and dots",
    "Refused every value that is not one plain path segment; built the path for the others",
    "AtlasFlexConfigError \u201cdst placeholder {...} cannot be filled with ...\u201d; every path that was built "
    "lies under the dst root",
)
def test_destination_never_escapes_the_root(tmp_path):
    root = tmp_path / "exports"
    real_root = os.path.realpath(root)
    refused = 0
    for template in TEMPLATES:
        dst = template.format(root=tmp_path)
        for placeholder in PLACEHOLDERS:
            if "{" + placeholder + "}" not in dst:
                continue
            for value in HOSTILE:
                try:
                    path = resolve_destination(dst, None, {**GOOD, placeholder: value})
                except AtlasFlexConfigError as exc:
                    assert f"{{{placeholder}}}" in str(exc) or "must end with a file name" in str(exc)
                    refused += 1
                    continue
                resolved = os.path.realpath(path.path)
                assert resolved.startswith(real_root + os.sep), (template, placeholder, value, resolved)
                assert str(path).startswith(f"file://{root}/"), (template, placeholder, value, str(path))
                assert ".." not in Path(path.path).parts
    assert refused >= len(HOSTILE) * 4  # most values are refused everywhere; a few plain names are fine
    assert files_under(tmp_path) == []
