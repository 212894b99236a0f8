"""The sidecars committed beside every export: ``<file>.sha256`` and ``<file>.json``, and what they prove.

Why sidecars: a ``.tgz`` alone proves nothing months later. ``<file>.sha256`` is what
``sha256sum -c`` reads (``<hex>  <basename>``); ``<file>.json`` records which snapshot of which
cluster it is, with Atlas' metadata, the restore job, the size and the sha256. Both are written
atomically (temporary object + rename, the export's file mode, fsync) *after* the export is
committed, never before, so an export without them is unproven, never wrongly proven.

Manifests are signed (HMAC-SHA256, see :mod:`airflow_provider_atlasflex.archive.signature`) when
written: whoever can write the destination can also write matching sidecars, but not a signature.
What proves an export is decided in one place, :mod:`.proof`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.commit import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, export_commit
from airflow_provider_atlasflex.archive.signature import SigningKey, sign
from airflow_provider_atlasflex.defaults import FUTURE_MARGIN
from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.version import __version__

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST_FORMAT = "atlasflex-export/1"
SHA256_SUFFIX = ".sha256"
MANIFEST_SUFFIX = ".json"
# Bounds what a sidecar read may cost: ours are a few hundred bytes.
MAX_SIDECAR_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20
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
    object_etag: str | None = None,
) -> dict[str, Any]:
    """The ``<file>.json`` content; ``snapshot`` is Atlas' snapshot resource (its ``links`` are left out).

    Atlas' metadata is recorded verbatim (it is evidence), but a snapshot ``finishTime`` later than
    the export itself is impossible: such a value is flagged in ``anomalies``, and retention orders
    the export by ``exported_at`` instead (see :func:`taken_at`), so one lying answer cannot make
    an export look newer than tonight's. ``object_etag`` (object stores) is the ETag of the object this
    commit wrote: signed with the rest, it ties the manifest to that very object version.
    """
    exported_at = exported_at or datetime.now(timezone.utc).isoformat()
    anomalies = []
    if not finish_time_trusted(snapshot.get("finishTime"), exported_at):
        anomalies.append(
            f"snapshot finishTime {snapshot.get('finishTime')} is later than exported_at {exported_at}: "
            "retention orders this export by exported_at"
        )
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
        "exported_at": exported_at,
        "provider_version": __version__,
    } | ({"anomalies": anomalies} if anomalies else {}) | ({"object_etag": object_etag} if object_etag else {})


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a manifest (``Z`` accepted, naive read as UTC), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def finish_time_trusted(finish_time: Any, exported_at: Any) -> bool:
    """False when both times parse and the snapshot would have finished after it was exported."""
    finished, exported = parse_time(finish_time), parse_time(exported_at)
    return finished is None or exported is None or finished <= exported


def taken_at(manifest: Mapping[str, Any]) -> datetime | None:
    """When an export's data was taken: the snapshot's finishTime, never later than ``exported_at``.

    A snapshot cannot finish after its export; a later finishTime (a lying or broken answer, e.g.
    2099) would make the export the "newest" for ever, so the export time is used instead.
    """
    snapshot = manifest.get("snapshot")
    finished = parse_time(snapshot.get("finishTime") if isinstance(snapshot, Mapping) else None)
    exported = parse_time(manifest.get("exported_at"))
    if finished is None or exported is None:
        return finished or exported
    return min(finished, exported)


def dated_in_future(manifest: Mapping[str, Any], now: datetime) -> str | None:
    """Which of the manifest's dates lies beyond now plus :data:`FUTURE_MARGIN` (None: neither does).

    Such an export is never trusted (retention never protects it or ranks it newest, the archive's
    holdings never count it): a wrong clock or a planted date must not pin it as the newest for ever.
    """
    snapshot = manifest.get("snapshot")
    dates = (
        ("snapshot finishTime", parse_time(snapshot.get("finishTime") if isinstance(snapshot, Mapping) else None)),
        ("exported_at", parse_time(manifest.get("exported_at"))),
    )
    for what, moment in dates:
        if moment is not None and moment > now + FUTURE_MARGIN:
            return f"its manifest dates its {what} {moment.isoformat()}, in the future"
    return None


def write_sidecars(
    dst: ObjectStoragePath,
    manifest: Mapping[str, Any],
    *,
    file_mode: int = DEFAULT_FILE_MODE,
    dir_mode: int = DEFAULT_DIR_MODE,
    key: SigningKey | None = None,
) -> SidecarPaths:
    """Commit ``<file>.sha256`` then the signed ``<file>.json`` beside the already committed ``dst``, each atomically.

    ``key`` signs the manifest; None: the current signing key (:meth:`.KeyRing.signing_key`, created on first use).
    """
    paths = sidecar_paths(dst)
    if manifest.get("file") != dst.name:
        raise ValueError(f"the manifest describes {manifest.get('file')!r}, not {dst.name!r}")
    if key is None:
        from airflow_provider_atlasflex.archive.keys import KeyRing

        key = KeyRing().signing_key()
    manifest = sign(manifest, key)
    _write_atomically(paths.sha256, sha256sum_line(manifest["sha256"], dst.name).encode(), file_mode, dir_mode)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomically(paths.manifest, text.encode(), file_mode, dir_mode)
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


def file_sha256(path: ObjectStoragePath) -> tuple[int, str]:
    """Size and sha256 of ``path``, read in 1 MiB pieces (flat memory)."""
    from airflow_provider_atlasflex.archive.at_rest import open_regular  # never a symlink, FIFO or device

    digest, size = hashlib.sha256(), 0
    with open_regular(path) as handle:
        while piece := handle.read(_HASH_CHUNK):
            digest.update(piece)
            size += len(piece)
    return size, digest.hexdigest()


def _write_atomically(path: ObjectStoragePath, data: bytes, file_mode: int, dir_mode: int) -> None:
    with export_commit(path, overwrite=True, file_mode=file_mode, dir_mode=dir_mode) as commit:
        with commit.output() as handle:
            handle.write(data)
        commit.commit(len(data))


def _read_small(path: ObjectStoragePath) -> bytes | None:
    from airflow_provider_atlasflex.archive.at_rest import NotRegularFile, open_regular

    try:
        with open_regular(path) as handle:  # a FIFO or a symlink to /dev/zero is refused, never read
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        return None
    except (IsADirectoryError, PermissionError, NotRegularFile) as exc:
        raise ManifestError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_SIDECAR_BYTES} bytes: not one of our sidecars")
    return raw
