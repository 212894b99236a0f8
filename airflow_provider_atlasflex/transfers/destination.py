"""Where an export lands: the ``dst`` template, its placeholders, and the commit-by-rename protocol.

A copy is written to a hidden temporary name beside ``dst`` and renamed over it only once it is
complete and verified, so readers never see a partial file and a good export is never replaced
by a bad one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

PLACEHOLDERS = ("cluster_name", "snapshot_id", "restore_job_id", "date")
PARTIAL_SUFFIX = ".atlasflex-partial"


def check_destination_template(dst: Any, dst_conn_id: Any) -> str | ObjectStoragePath:
    """Refuse a ``dst`` that cannot work, before any network call."""
    if isinstance(dst, ObjectStoragePath):
        return dst
    if not isinstance(dst, str) or not dst.strip():
        raise AtlasFlexConfigError(
            f"dst must be a URL such as 'file:///backups/{{cluster_name}}/{{date}}/{{snapshot_id}}.tgz' or "
            f"'s3://bucket/atlas/...', got {type(dst).__name__} {dst!r}."
        )
    if dst_conn_id is not None and (not isinstance(dst_conn_id, str) or not dst_conn_id.strip()):
        raise AtlasFlexConfigError(f"dst_conn_id must name an Airflow connection or be None, got {dst_conn_id!r}.")
    if "://" not in dst:
        raise AtlasFlexConfigError(
            f"dst {dst!r} has no scheme; write file:///absolute/path for a local disk, or s3://, gs://, ... "
            "for object storage."
        )
    fields = [name for _, name, _, _ in string.Formatter().parse(dst) if name is not None]
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise AtlasFlexConfigError(
            f"dst {dst!r} uses unknown placeholder(s) {unknown}; available: "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + ". (Jinja's {{ ... }} is rendered before this.)"
        )
    _reject_parent_segments(dst)
    try:
        path = ObjectStoragePath(dst.split("{", 1)[0] or dst, conn_id=dst_conn_id)
        path.fs  # noqa: B018 - resolves the filesystem: fails for a scheme nothing handles
    except (ValueError, ImportError) as exc:
        scheme = dst.split("://", 1)[0]
        raise AtlasFlexConfigError(
            f"No filesystem handles dst scheme '{scheme}://' ({exc}). Install the provider that adds it (e.g. "
            "apache-airflow-providers-amazon for s3://, -google for gs://) or use file://."
        ) from None
    return dst


def resolve_destination(dst: str | ObjectStoragePath, dst_conn_id: str | None, values: Mapping[str, str]) -> ObjectStoragePath:
    """Fill the placeholders (values are validated ids, names and dates) and build the path."""
    if isinstance(dst, ObjectStoragePath):
        path = dst
    else:
        path = ObjectStoragePath(dst.format_map({k: values[k] for k in PLACEHOLDERS}), conn_id=dst_conn_id)
    _reject_parent_segments(str(path))
    if not path.name or path.name.startswith("."):
        raise AtlasFlexConfigError(f"dst {str(path)!r} must end with a file name such as {{snapshot_id}}.tgz.")
    return path


def partial_path(path: ObjectStoragePath) -> ObjectStoragePath:
    """The temporary name beside ``path``; fixed, so a retried task finds and removes a dead try's leftovers."""
    return path.parent / f".{path.name}{PARTIAL_SUFFIX}"


def _reject_parent_segments(dst: str) -> None:
    location = dst.split("://", 1)[-1]
    if any(segment in ("..", ".") for segment in location.split("/")[1:]):
        raise AtlasFlexConfigError(f"dst {dst!r} must not contain '.' or '..' path segments.")
