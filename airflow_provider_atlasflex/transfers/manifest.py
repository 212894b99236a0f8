"""The sidecars committed beside every export: ``<file>.sha256`` and ``<file>.json``.

``<file>.sha256`` is exactly what ``sha256sum -c`` reads (``<64 hex>  <basename>\\n``), so anyone can
check an export without this provider. ``<file>.json`` (format ``atlasflex-export/1``) says what the
file is: cluster, project, snapshot and its Atlas metadata, restore job, bytes, sha256, export time
and provider version. Sidecars are written after the export and the manifest last, so a file
without both sidecars is unproven, and a manifest is the mark that says "this export is ours".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_atlasflex.exceptions import AtlasFlexError
from airflow_provider_atlasflex.version import __version__

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST_FORMAT = "atlasflex-export/1"
SHA256_SUFFIX = ".sha256"
MANIFEST_SUFFIX = ".json"
# A manifest is a few hundred bytes; a larger ".json" is someone else's file and is not read whole.
MAX_MANIFEST_BYTES = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)\n?$")
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "file": str,
    "cluster_name": str,
    "group_id": str,
    "snapshot_id": str,
    "snapshot": dict,
    "restore_job_id": str,
    "bytes": int,
    "sha256": str,
    "exported_at": str,
    "provider_version": str,
}


class ManifestError(AtlasFlexError):
    """A sidecar exists but is not one of ours, or is damaged (says which file and what is wrong)."""


class Sidecars(NamedTuple):
    sha256: ObjectStoragePath
    manifest: ObjectStoragePath


def sidecar_paths(dst: ObjectStoragePath) -> Sidecars:
    """Where the sidecars of the export ``dst`` live: beside it, named after it."""
    return Sidecars(dst.parent / f"{dst.name}{SHA256_SUFFIX}", dst.parent / f"{dst.name}{MANIFEST_SUFFIX}")


def checksum_line(sha256: str, file_name: str) -> str:
    """One line in the format ``sha256sum`` writes and ``sha256sum -c`` reads."""
    return f"{sha256}  {file_name}\n"


def write_sidecars(
    dst: ObjectStoragePath,
    *,
    cluster_name: str,
    group_id: str,
    snapshot_id: str,
    snapshot: Mapping[str, Any],
    restore_job_id: str,
    bytes: int,
    sha256: str,
    exported_at: datetime | str | None = None,
    provider_version: str = __version__,
) -> Sidecars:
    """Write ``<dst>.sha256`` then ``<dst>.json`` (the manifest last: it marks the export complete)."""
    if isinstance(exported_at, datetime):
        exported_at = exported_at.astimezone(timezone.utc).isoformat()
    manifest = {
        "format": MANIFEST_FORMAT,
        "file": dst.name,
        "cluster_name": cluster_name,
        "group_id": group_id,
        "snapshot_id": snapshot_id,
        "snapshot": dict(snapshot),
        "restore_job_id": restore_job_id,
        "bytes": bytes,
        "sha256": sha256,
        "exported_at": exported_at or datetime.now(timezone.utc).isoformat(),
        "provider_version": provider_version,
    }
    paths = sidecar_paths(dst)
    paths.sha256.write_text(checksum_line(sha256, dst.name))
    paths.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


def read_manifest(dst: ObjectStoragePath) -> dict[str, Any]:
    """The parsed ``<dst>.json``; FileNotFoundError when absent, ManifestError when not a valid one of ours."""
    return parse_manifest(_read_small(sidecar_paths(dst).manifest), dst.name, str(sidecar_paths(dst).manifest))


def read_checksum(dst: ObjectStoragePath) -> str:
    """The sha256 recorded in ``<dst>.sha256``; FileNotFoundError when absent, ManifestError when malformed."""
    path = sidecar_paths(dst).sha256
    text = _read_small(path).decode("utf-8", "replace")
    match = _CHECKSUM_LINE.fullmatch(text)
    if not match:
        raise ManifestError(f"{path} is not a sha256sum line ('<64 hex>  {dst.name}'), got {text[:100]!r}")
    if match.group(2) != dst.name:
        raise ManifestError(f"{path} names {match.group(2)!r}, not the export {dst.name!r} beside it")
    return match.group(1)


def parse_manifest(raw: bytes, file_name: str, where: str) -> dict[str, Any]:
    """Check a manifest's format, fields and that it describes ``file_name``; return it."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ManifestError(f"{where} is not an {MANIFEST_FORMAT} manifest (format {found!r})")
    for field, kind in REQUIRED_FIELDS.items():
        value = manifest.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"{where}: field {field!r} must be {_kind_name(kind)}, got {value!r}")
    if manifest["file"] != file_name:
        raise ManifestError(f"{where} describes {manifest['file']!r}, not the file {file_name!r} beside it")
    if not _SHA256.fullmatch(manifest["sha256"]) or manifest["bytes"] < 0:
        raise ManifestError(f"{where}: sha256 or bytes is malformed")
    return manifest


def _read_small(path: ObjectStoragePath) -> bytes:
    with path.open("rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes: not a sidecar of ours")
    return bytes(raw)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", dict: "an object"}
    return names.get(kind, str(kind)) if isinstance(kind, type) else " or ".join(names[k] for k in kind)
