"""Checking a storage URL argument (an export file or a root of exports) before any I/O.

Why: the verify, retention, plan and protection-check operators all take such a URL, often from a
template; each must refuse an empty, unrendered, relative or unhandled one with the same clear
message, before it lists or reads anything.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook, ObjectStoragePath

from airflow_provider_atlasflex.exceptions import AirflowNotFoundException, AtlasFlexConfigError
from airflow_provider_atlasflex.validation import require_connection_id


def require_storage_path(value: Any, what: str, conn_id: Any, *, directory: bool) -> ObjectStoragePath:
    """A concrete ``file://``/``s3://``/... URL or ObjectStoragePath, checked without touching storage."""
    if conn_id is not None:
        require_connection_id(conn_id, "dst_conn_id", "for the storage (e.g. an AWS connection for s3://), or be None")
    example = "file:///backups/atlas" if directory else "file:///backups/atlas/alpha/2026-11-28/<snapshot>.tgz"
    if isinstance(value, ObjectStoragePath):
        text = str(value)
    elif isinstance(value, str):
        text = value
        if not value.strip():
            raise AtlasFlexConfigError(
                f"{what} is empty (a template that rendered empty?); pass a URL such as {example!r}."
            )
        if value != value.strip():
            raise AtlasFlexConfigError(f"{what} {value!r} starts or ends with whitespace; remove it.")
        if any(marker in value for marker in ("{{", "{%", "{#")):
            raise AtlasFlexConfigError(
                f"{what} {value!r} still holds a Jinja expression: it was not rendered (pass it as the operator's "
                f"{what} argument, which is templated) or it rendered to text that contains one."
            )
        if "{" in value or "}" in value:
            raise AtlasFlexConfigError(
                f"{what} {value!r} holds a placeholder; name a concrete {'directory' if directory else 'file'} "
                "(placeholders such as {cluster_name} are only filled in by the transfer)."
            )
        if "://" not in value:
            raise AtlasFlexConfigError(f"{what} {value!r} has no scheme; write e.g. {example!r} or s3://bucket/prefix.")
        if value.lower().startswith("file://") and not value[len("file://") :].startswith("/"):
            raise AtlasFlexConfigError(
                f"{what} {value!r} is not an absolute file URL; write three slashes (file:///...)."
            )
    else:
        raise AtlasFlexConfigError(
            f"{what} must be a URL string or an ObjectStoragePath, got {type(value).__name__} {value!r}."
        )
    if any(segment in (".", "..") for segment in text.split("://", 1)[-1].split("/")[1:]):
        raise AtlasFlexConfigError(
            f"{what} {text!r} must not contain '.' or '..' path segments; write the directory it means in full, "
            f"e.g. {example!r}."
        )
    if conn_id is not None:
        try:
            BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise AtlasFlexConfigError(
                f"dst_conn_id {conn_id!r} is not a defined connection; create it (Admin > Connections, or the "
                f"AIRFLOW_CONN_{conn_id.upper()} environment variable), or leave dst_conn_id out to use the "
                "filesystem's default credentials."
            ) from None
    try:
        path = value if isinstance(value, ObjectStoragePath) else ObjectStoragePath(value, conn_id=conn_id)
        if not directory and (not path.name or path.name.startswith(".") or text.endswith("/")):
            raise AtlasFlexConfigError(f"{what} {text!r} must end with the export's file name, e.g. {example!r}.")
        if directory and not path.path.strip("/"):
            raise AtlasFlexConfigError(f"{what} {text!r} is the root of the filesystem; name the exports' directory.")
        path.fs  # noqa: B018 - resolves the filesystem: fails for a scheme nothing handles
    except (ValueError, ImportError) as exc:
        if isinstance(exc, AtlasFlexConfigError):
            raise
        raise AtlasFlexConfigError(
            f"No filesystem handles {what} {text!r} ({exc}). Install the provider that adds its scheme "
            "(e.g. pip install 'airflow-provider-atlasflex[s3]' for s3://) or use file://."
        ) from None
    return path
