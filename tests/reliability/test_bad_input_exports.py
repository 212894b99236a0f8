"""Bad input to the verify and retention operators, refused before any I/O.

Each row feeds one wrong value through ``execute(context)`` (templated fields are checked there,
after rendering) and checks: the exact exception type and a message that names the parameter and
says how to fix it; no network call (every socket ``connect`` is refused and recorded); no storage
read (the listing and re-read functions must not be reached); and the exports under the test's
root are byte-for-byte unchanged (a retention run refused late could have deleted some).
"""

from __future__ import annotations

import math
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive import check as export_check
from airflow_provider_atlasflex.archive import scan as export_scan
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator
from tests.reliability.registry import case
from tests.unit.export_fixtures import commit_export
from tests.unit.fake_context import make_context

KIND = "bad-input"
ROOT = "ROOT"  # replaced by the test's exports root (under tmp_path)
FILE = "FILE"  # replaced by the URL of one committed export
AT_EXECUTE = "Refused at the start of execute(), before the storage is listed or read: nothing read, nothing deleted"


def says(fragment: str) -> str:
    return f"AtlasFlexConfigError: \u201c\u2026{fragment}\u2026\u201d"


def row(test: str, case_id: str, injected: str, fragment: str, *values: Any) -> Any:
    return case(test, case_id, KIND, injected, AT_EXECUTE, says(fragment), *values, fragment)


class StorageGuard:
    """Records network connects and any call that would list or read the exports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []

        def refuse_connect(sock: socket.socket, address: Any, *args: Any) -> Any:
            self.calls.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"test blocked a network call to {address!r}")

        monkeypatch.setattr(socket.socket, "connect", refuse_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
        # The operators import these from export_scan and export_check when they run, so replacing them there is enough.
        for module, name in ((export_scan, "scan_exports"), (export_check, "verify_export"), (export_check, "check_content")):
            monkeypatch.setattr(module, name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"{name} was reached: bad input was not refused first")

        return record


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def exports(tmp_path: Path) -> tuple[Path, str]:
    """A root holding two committed exports (with sidecars); returns (root, URL of one export)."""
    root = tmp_path / "exports"
    base = ObjectStoragePath(f"file://{root}")
    commit_export(base, "alpha", datetime(2026, 11, 27, 3, tzinfo=timezone.utc), night=1)
    path = commit_export(base, "alpha", datetime(2026, 11, 28, 3, tzinfo=timezone.utc), night=0)
    return root, str(path)


def materialize(value: Any, root: Path, file_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(FILE, file_url).replace(ROOT, str(root))
    if callable(value):
        return value(root)
    return value


def assert_refused(exc: pytest.ExceptionInfo[BaseException], fragment: str, guard: StorageGuard) -> None:
    assert exc.type is AtlasFlexConfigError, f"{exc.type.__name__}: {exc.value}"
    assert fragment in str(exc.value), f"expected {fragment!r} in {str(exc.value)!r}"
    assert guard.calls == [], f"reached before the refusal: {guard.calls}"


# ---- AtlasFlexExportVerifyOperator ---------------------------------------------------------------

T = "test_verify_operator_refuses_bad_input"
VERIFY_ROWS = [
    row(
        T,
        "path-and-root",
        "path and root both given",
        "Pass exactly one of path (one export file) and root (a directory to scrub)",
        {"path": FILE, "root": f"file://{ROOT}"},
    ),
    row(T, "neither-path-nor-root", "neither path nor root", "Pass exactly one of path", {}),
    row(
        T,
        "path-rendered-empty",
        "path='' (a template that rendered empty)",
        "path is empty (a template that rendered empty?); pass a URL such as",
        {"path": ""},
    ),
    row(
        T,
        "path-no-scheme",
        "path='/backups/x.tgz' (no scheme)",
        "has no scheme; write e.g.",
        {"path": f"{ROOT}/alpha/x.tgz"},
    ),
    row(
        T,
        "path-relative-file-url",
        "path='file://backups/x.tgz' (two slashes: relative)",
        "is not an absolute file URL; write three slashes",
        {"path": "file://backups/x.tgz"},
    ),
    row(
        T,
        "path-unknown-scheme",
        "path='foo://bucket/x.tgz'",
        "No filesystem handles path 'foo://bucket/x.tgz'",
        {"path": "foo://bucket/x.tgz"},
    ),
    row(
        T,
        "path-dotdot",
        "path with a '..' segment",
        "must not contain '.' or '..' path segments; write the directory it means in full",
        {"path": f"file://{ROOT}/../x.tgz"},
    ),
    row(
        T,
        "path-unfilled-placeholder",
        "path with {snapshot_id} (the transfer's dst template, unfilled)",
        "holds a placeholder; name a concrete file",
        {"path": f"file://{ROOT}/alpha/{{snapshot_id}}.tgz"},
    ),
    row(
        T,
        "path-unrendered-jinja",
        "path with an unrendered '{{ ds }}'",
        "still holds a Jinja expression: it was not rendered (pass it as the operator's path argument",
        {"path": f"file://{ROOT}/{{{{ ds }}}}/x.tgz"},
    ),
    row(
        T,
        "path-is-a-directory",
        "path ending with '/' (a directory: use root)",
        "must end with the export's file name",
        {"path": f"file://{ROOT}/alpha/"},
    ),
    row(
        T,
        "path-objectstoragepath-dotdot",
        "path=ObjectStoragePath('file:///backups/../x.tgz')",
        "must not contain '.' or '..' path segments; write the directory it means in full",
        {"path": lambda root: ObjectStoragePath(f"file://{root}/../x.tgz")},
    ),
    row(
        T,
        "root-filesystem-root",
        "root='file:///' (the whole disk)",
        "is the root of the filesystem",
        {"root": "file:///"},
    ),
    row(
        T,
        "root-surrounding-whitespace",
        "root ending with a newline (a multi-line template)",
        "starts or ends with whitespace",
        {"root": f"file://{ROOT}\n"},
    ),
    row(T, "root-int", "root=42", "root must be a URL string or an ObjectStoragePath, got int 42", {"root": 42}),
    row(
        T,
        "dst-conn-id-rendered-none",
        "dst_conn_id='None' (a template that rendered None)",
        "dst_conn_id must name an Airflow connection for the storage",
        {"path": FILE, "dst_conn_id": "None"},
    ),
    row(
        T,
        "dst-conn-id-missing",
        "dst_conn_id='no_such_conn'",
        "dst_conn_id 'no_such_conn' is not a defined connection; create it (Admin > Connections",
        {"path": FILE, "dst_conn_id": "no_such_conn"},
    ),
    row(
        T,
        "chunk-size-zero",
        "chunk_size=0",
        "chunk_size must be a whole number of bytes from 1 KiB to 256 MiB",
        {"path": FILE, "chunk_size": 0},
    ),
    row(
        T,
        "allow-empty-string",
        "allow_empty='False' (a string, which Python reads as true)",
        "allow_empty must be True or False, got str 'False'",
        {"root": f"file://{ROOT}", "allow_empty": "False"},
    ),
    row(
        T,
        "unproven-suffixes-string",
        "unproven_suffixes='.tgz' (a string, not a list)",
        "unproven_suffixes must be a list of file endings such as ['.tgz']",
        {"root": f"file://{ROOT}", "unproven_suffixes": ".tgz"},
    ),
]


@pytest.mark.parametrize(("kwargs", "fragment"), VERIFY_ROWS)
def test_verify_operator_refuses_bad_input(exports, monkeypatch, kwargs, fragment):
    root, file_url = exports
    before = snapshot(root)
    guard = StorageGuard(monkeypatch)
    context = make_context()
    with pytest.raises(Exception) as exc:
        arguments = {key: materialize(value, root, file_url) for key, value in kwargs.items()}
        AtlasFlexExportVerifyOperator(task_id="verify", **arguments).execute(context)
    assert_refused(exc, fragment, guard)
    assert snapshot(root) == before and context["ti"].pushed == {}


# ---- AtlasFlexExportRetentionOperator ------------------------------------------------------------

T = "test_retention_operator_refuses_bad_input"
RETENTION_ROWS = [
    row(
        T,
        "no-policy",
        "neither keep_last nor keep_days",
        "Give keep_last (newest exports kept per cluster) and/or keep_days",
        {},
    ),
    row(
        T,
        "keep-last-zero",
        "keep_last=0 (would delete every export)",
        "keep_last must be a whole number of 1 or more, or None, got 0",
        {"keep_last": 0},
    ),
    row(
        T,
        "keep-last-string",
        "keep_last='7' (a rendered template, not a number)",
        "keep_last must be a whole number of 1 or more, or None, got '7'",
        {"keep_last": "7"},
    ),
    row(
        T,
        "keep-last-bool",
        "keep_last=True",
        "keep_last must be a whole number of 1 or more, or None, got True",
        {"keep_last": True},
    ),
    row(T, "keep-days-zero", "keep_days=0", "keep_days must be greater than zero, got 0", {"keep_days": 0}),
    row(T, "keep-days-nan", "keep_days=nan", "keep_days must be a finite number of days", {"keep_days": math.nan}),
    row(
        T,
        "verify-unknown",
        "verify='sha256'",
        "verify must be one of ['size', 'full'], got 'sha256'",
        {"keep_last": 3, "verify": "sha256"},
    ),
    row(
        T,
        "dry-run-string",
        "dry_run='False' (a string, which Python reads as true)",
        "dry_run must be True or False, got str 'False'",
        {"keep_last": 3, "dry_run": "False"},
    ),
    row(
        T,
        "root-rendered-empty",
        "root=''",
        "root is empty (a template that rendered empty?)",
        {"keep_last": 3, "root": ""},
    ),
    row(
        T, "root-no-scheme", "root='/backups' (no scheme)", "has no scheme; write e.g.", {"keep_last": 3, "root": ROOT}
    ),
    row(
        T,
        "root-dotdot",
        "root with a '..' segment",
        "must not contain '.' or '..' path segments; write the directory it means in full",
        {"keep_last": 3, "root": f"file://{ROOT}/.."},
    ),
    row(
        T,
        "root-unknown-scheme",
        "root='foo://bucket/atlas'",
        "No filesystem handles root 'foo://bucket/atlas'",
        {"keep_last": 3, "root": "foo://bucket/atlas"},
    ),
    row(
        T,
        "dst-conn-id-missing",
        "dst_conn_id='no_such_conn'",
        "dst_conn_id 'no_such_conn' is not a defined connection; create it (Admin > Connections",
        {"keep_last": 3, "dst_conn_id": "no_such_conn"},
    ),
]


@pytest.mark.parametrize(("kwargs", "fragment"), RETENTION_ROWS)
def test_retention_operator_refuses_bad_input(exports, monkeypatch, kwargs, fragment):
    root, file_url = exports
    before = snapshot(root)
    guard = StorageGuard(monkeypatch)
    with pytest.raises(Exception) as exc:
        arguments = {"root": f"file://{ROOT}", **kwargs}
        arguments = {key: materialize(value, root, file_url) for key, value in arguments.items()}
        AtlasFlexExportRetentionOperator(task_id="retention", **arguments).execute(make_context())
    assert_refused(exc, fragment, guard)
    assert snapshot(root) == before
