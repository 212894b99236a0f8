"""The sidecars committed beside every export: ``<file>.sha256`` and ``<file>.json``.

Stand-in with the interface of the commit branch's ``transfers/manifest.py`` (same names, same
semantics for what the verify and retention operators use: :func:`sidecar_paths`,
:func:`read_manifest`, :func:`read_sha256_sidecar`, :class:`ManifestError`, the suffixes and
format), so that the merge keeps that module and drops this one. Its writer is plain (no atomic
commit) and serves the tests' fake exports.

``<file>.sha256`` is what ``sha256sum -c`` reads (``<64 hex>  <basename>\\n``); ``<file>.json``
(format ``atlasflex-export/1``) records cluster, project, snapshot and its Atlas metadata, restore
job, bytes, sha256, export time and provider version. Both are written after the export, the
manifest last, so a file without them is unproven.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.version import __version__

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST_FORMAT = "atlasflex-export/1"
SHA256_SUFFIX = ".sha256"
MANIFEST_SUFFIX = ".json"
MAX_SIDECAR_BYTES = 1 << 20  # ours are a few hundred bytes
_SHA256SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)\n?$")


class ManifestError(SnapshotTransferError):
    """A sidecar exists but cannot be read or is not ours."""


@dataclass(frozen=True)
class SidecarPaths:
    sha256: ObjectStoragePath
    manifest: ObjectStoragePath


def sidecar_paths(dst: ObjectStoragePath) -> SidecarPaths:
    """``<file>.sha256`` and ``<file>.json`` beside ``dst``."""
    return SidecarPaths(dst.parent / f"{dst.name}{SHA256_SUFFIX}", dst.parent / f"{dst.name}{MANIFEST_SUFFIX}")


def sha256sum_line(sha256: str, file_name: str) -> str:
    """The line ``sha256sum -c`` checks: two spaces (text mode), the basename, a newline."""
    return f"{sha256}  {file_name}\n"


def build_manifest(
    *,
    file_name: str,
    cluster_name: str,
    group_id: str,
    snapshot_id: str,
    snapshot: Mapping[str, Any],
    restore_job_id: str,
    size: int,
    sha256: str,
    exported_at: str | None = None,
) -> dict[str, Any]:
    """The ``<file>.json`` content."""
    return {
        "format": MANIFEST_FORMAT,
        "file": file_name,
        "cluster_name": cluster_name,
        "group_id": group_id,
        "snapshot_id": snapshot_id,
        "snapshot": {k: v for k, v in snapshot.items() if k != "links"},
        "restore_job_id": restore_job_id,
        "bytes": size,
        "sha256": sha256,
        "exported_at": exported_at or datetime.now(timezone.utc).isoformat(),
        "provider_version": __version__,
    }


def write_sidecars(dst: ObjectStoragePath, manifest: Mapping[str, Any], **_modes: int) -> SidecarPaths:
    """Write ``<file>.sha256`` then ``<file>.json`` beside the already written ``dst``."""
    paths = sidecar_paths(dst)
    if manifest.get("file") != dst.name:
        raise ValueError(f"the manifest describes {manifest.get('file')!r}, not {dst.name!r}")
    paths.sha256.write_text(sha256sum_line(manifest["sha256"], dst.name))
    paths.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


def read_manifest(dst: ObjectStoragePath) -> dict[str, Any] | None:
    """``dst``'s ``<file>.json``, or None if there is none; :class:`ManifestError` if it is not a valid one."""
    path = sidecar_paths(dst).manifest
    raw = _read_small(path)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ManifestError(f"{path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path} is not an atlasflex export manifest (format {MANIFEST_FORMAT!r})")
    required = {"file": str, "snapshot_id": str, "bytes": int, "sha256": str, "cluster_name": str, "group_id": str}
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise ManifestError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    if not re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"]):
        raise ManifestError(f"{path}: 'sha256' is not 64 lowercase hex digits")
    return manifest


def read_sha256_sidecar(dst: ObjectStoragePath) -> str | None:
    """The hex digest in ``<file>.sha256`` (checking it names ``dst``), or None if there is none."""
    path = sidecar_paths(dst).sha256
    raw = _read_small(path)
    if raw is None:
        return None
    match = _SHA256SUM_LINE.fullmatch(raw.decode("utf-8", "replace"))
    if not match or match.group(2) != dst.name:
        raise ManifestError(f"{path} is not a sha256sum line for {dst.name}")
    return match.group(1)


def _read_small(path: ObjectStoragePath) -> bytes | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        return None
    except (IsADirectoryError, PermissionError) as exc:
        raise ManifestError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_SIDECAR_BYTES} bytes: not one of our sidecars")
    return bytes(raw)
