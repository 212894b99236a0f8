"""Where an export lands: the ``dst`` template, its placeholders, and whether its local root is private.

How a verified copy is published at ``dst`` is :mod:`.commit`'s job.
"""

from __future__ import annotations

import os
import re
import stat
import string
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, ObjectStoragePath

from airflow_provider_atlasflex.exceptions import AirflowNotFoundException, AtlasFlexConfigError
from airflow_provider_atlasflex.validation import require_connection_id

if TYPE_CHECKING:
    from airflow.sdk import Context

PLACEHOLDERS = ("cluster_name", "snapshot_id", "restore_job_id", "date")
_WRITTEN_AS = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
# What a placeholder may become: exactly one path segment that cannot be "." or "..", hold a
# separator, a percent-escape or a drive letter. Cluster names, 24-hex ids and YYYY-MM-DD all fit.
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
_JINJA_MARKERS = ("{{", "{%", "{#")


def check_destination_template(dst: Any, dst_conn_id: Any) -> str | ObjectStoragePath:
    """Refuse a ``dst`` that cannot work, before any network call."""
    _check_dst_conn_id(dst_conn_id)
    if isinstance(dst, ObjectStoragePath):
        _reject_parent_segments(str(dst))
        _require_file_name(str(dst), dst.name)
        return dst
    if not isinstance(dst, str) or not dst.strip():
        raise AtlasFlexConfigError(
            f"dst must be a URL such as 'file:///backups/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz' or "
            f"'s3://bucket/atlas/...', got {type(dst).__name__} {dst!r}."
        )
    if dst != dst.strip():
        raise AtlasFlexConfigError(
            f"dst {dst!r} starts or ends with whitespace (often a multi-line template); remove it."
        )
    if any(marker in dst for marker in _JINJA_MARKERS):
        raise AtlasFlexConfigError(
            f"dst {dst!r} still holds a Jinja expression: it was not rendered (pass it as the operator's dst "
            "argument, which is templated) or it rendered to text that contains one."
        )
    if "://" not in dst:
        raise AtlasFlexConfigError(
            f"dst {dst!r} has no scheme; write file:///absolute/path for a local disk, or s3://, gs://, ... "
            "for object storage."
        )
    _placeholders(dst)
    _reject_relative_file_url(dst)
    _reject_parent_segments(dst)
    _require_file_name(dst, dst.rsplit("/", 1)[-1])
    try:
        path = ObjectStoragePath(dst.split("{", 1)[0] or dst, conn_id=dst_conn_id)
        path.fs  # noqa: B018 - resolves the filesystem: fails for a scheme nothing handles
    except (ValueError, ImportError) as exc:
        scheme = dst.split("://", 1)[0]
        raise AtlasFlexConfigError(
            f"No filesystem handles dst scheme '{scheme}://' ({exc}). Install the provider that adds it (e.g. "
            "pip install 'airflow-provider-atlasflex[s3]' for s3://, apache-airflow-providers-google for gs://) or "
            "use file://."
        ) from None
    return dst


def resolve_destination(dst: str | ObjectStoragePath, dst_conn_id: str | None, values: Mapping[str, str]) -> ObjectStoragePath:
    """Fill the placeholders and build the path, which never leaves the part of ``dst`` before them.

    Each value must be one safe path segment (no separator, no "." or "..", no percent-escape),
    whatever its source, so a hostile cluster name or date cannot move the file elsewhere.
    """
    if isinstance(dst, ObjectStoragePath):
        path = dst
    else:
        used = _placeholders(dst)
        for name in used:
            value = values.get(name)
            if not isinstance(value, str) or not _SAFE_SEGMENT.fullmatch(value):
                raise AtlasFlexConfigError(
                    f"dst placeholder {{{name}}} cannot be filled with {value!r}: it must become one path segment "
                    "of letters, digits, '-', '_' and inner dots (no '/', '\\', '..' or '%')."
                )
        filled = dst.format_map({k: values.get(k, "") for k in PLACEHOLDERS})
        _reject_relative_file_url(filled)
        path = ObjectStoragePath(filled, conn_id=dst_conn_id)
    _reject_parent_segments(str(path))
    _require_file_name(str(path), path.name)
    return path


def run_date(context: Context) -> str:
    """The run's date for ``{date}``: the logical date, or when the run was due for runs without one."""
    when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
    if when is None:
        when = datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d")


def _placeholders(dst: str) -> list[str]:
    """The placeholder names in ``dst``; only the bare ``{name}`` form of the known ones is allowed."""
    try:
        parsed = list(string.Formatter().parse(dst))
    except ValueError as exc:
        raise AtlasFlexConfigError(
            f"dst {dst!r} has unbalanced braces ({exc}); placeholders are written {_WRITTEN_AS}."
        ) from None
    fields = [(name, spec, conversion) for _, name, spec, conversion in parsed if name is not None]
    unknown = sorted({name for name, _, _ in fields if name not in PLACEHOLDERS})
    if unknown:
        raise AtlasFlexConfigError(
            f"dst {dst!r} uses unknown placeholder(s) {unknown}; available: {_WRITTEN_AS}. "
            "(Jinja's {{ ... }} is rendered before this.)"
        )
    formatted = sorted({name for name, spec, conversion in fields if spec or conversion})
    if formatted:
        raise AtlasFlexConfigError(
            f"dst {dst!r} applies a format spec or conversion to {formatted}; write placeholders as plain "
            f"{_WRITTEN_AS}."
        )
    return [name for name, _, _ in fields]


def _check_dst_conn_id(dst_conn_id: Any) -> None:
    if dst_conn_id is None:
        return
    require_connection_id(
        dst_conn_id, "dst_conn_id", "for the destination (e.g. an AWS connection for s3://), or be None"
    )
    try:
        BaseHook.get_connection(dst_conn_id)
    except AirflowNotFoundException:
        # Some filesystems would otherwise fall back to ambient credentials without a word.
        raise AtlasFlexConfigError(
            f"dst_conn_id {dst_conn_id!r} is not a defined connection; create it, or leave dst_conn_id out to use "
            "the filesystem's default credentials."
        ) from None


def _require_file_name(dst: str, name: str) -> None:
    if not name or name.startswith("."):
        raise AtlasFlexConfigError(
            f"dst {dst!r} must end with a file name (not '/' or a hidden name), e.g. .../{{snapshot_id}}.tgz."
        )


def _reject_relative_file_url(dst: str) -> None:
    # file://relative/x is read relative to the worker's current directory, not from the root.
    if dst.lower().startswith("file://") and not dst[len("file://") :].startswith("/"):
        raise AtlasFlexConfigError(
            f"dst {dst!r} is not an absolute file URL; write three slashes, e.g. file:///backups/{{cluster_name}}/"
            "{date}/{snapshot_id}.tgz."
        )


def _reject_parent_segments(dst: str) -> None:
    location = dst.split("://", 1)[-1]
    if any(segment in ("..", ".") for segment in location.split("/")[1:]):
        raise AtlasFlexConfigError(
            f"dst {dst!r} must not contain '.' or '..' path segments; write the directory it means in full, e.g. "
            "file:///backups/{cluster_name}/{date}/{snapshot_id}.tgz."
        )


def destination_root(dst: str | ObjectStoragePath) -> str | None:
    """The local directory ``dst`` never leaves (the part before its first placeholder), or None if not local."""
    text = str(dst)
    if not text.lower().startswith("file://"):
        return None
    static = text.split("{", 1)[0][len("file://") :]
    root = static.rsplit("/", 1)[0]
    return root or "/"


def private_root_warning(root: str | None) -> str | None:
    """A warning if the local destination root lets other users in, or None.

    Group- or world-writable, or owned by another user: others could read exports, plant
    symlinks or pre-create files; the commit refuses what it can detect, but the root must be private.
    """
    if root is None:
        return None
    try:
        st = os.stat(root)
    except OSError:
        return None  # created by the export with dir_mode
    problems = []
    writable = [who for who, bit in (("group", 0o020), ("world", 0o002)) if st.st_mode & bit]
    if writable:
        problems.append(f"is {'- and '.join(writable)}-writable (mode {stat.S_IMODE(st.st_mode):#o})")
    if st.st_uid != os.geteuid():
        problems.append(f"is owned by uid {st.st_uid}, not this user (uid {os.geteuid()})")
    if not problems:
        return None
    return (
        f"Destination root {root} {' and '.join(problems)}: other local users could read or tamper with backups. "
        f"Fix: `chown {os.geteuid()} {root} && chmod 700 {root}`, or choose a private directory."
    )
