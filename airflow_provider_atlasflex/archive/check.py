"""Re-reading committed exports: prove one against its sidecars.

Shared by the verify ("scrub") and retention operators, which find the exports with :mod:`.scan`.
Reading is one sequential pass with flat memory whatever the file size: the raw bytes are hashed
and counted, and walked by the same gzip and tar walks the copy runs before it commits
(:mod:`airflow_provider_atlasflex.archive`), so what the copy committed the scrub accepts. The pass is bounded: only regular files are opened (no
symlink, FIFO or device: :mod:`.at_rest`), it stops one byte past the size the manifest records,
and a file without a manifest stops at its first damage.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.at_rest import NotRegularFile, open_regular
from airflow_provider_atlasflex.archive.gzip_walker import GzipWalker
from airflow_provider_atlasflex.archive.local_disk import is_local
from airflow_provider_atlasflex.archive.manifest import (
    MANIFEST_SUFFIX,
    SHA256_SUFFIX,
    ManifestError,
    read_manifest,
    read_sha256_sidecar,
)
from airflow_provider_atlasflex.archive.signature import BAD_SIGNATURE, UNSIGNED
from airflow_provider_atlasflex.archive.signature import check as check_signature
from airflow_provider_atlasflex.archive.tar_walker import ArchiveDamage
from airflow_provider_atlasflex.archive.tar_walker import TarWalker as TarStreamLister  # noqa: F401 - old name
from airflow_provider_atlasflex.defaults import DEFAULT_VERIFY_CHUNK_SIZE
from airflow_provider_atlasflex.exceptions import AirflowFailException, AtlasFlexError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.keys import KeyRing

VERIFIED = "verified"
# unsigned: a manifest without a signature; bad_signature: one whose signature does not verify with a key of ours.
# stale_sidecars: on an object store, the signed manifest names another version (ETag) of the object.
STALE_SIDECARS = "stale_sidecars"
FAILED_STATUSES = (
    "unproven", "mismatch", "damaged", "missing", "unreadable", UNSIGNED, BAD_SIGNATURE, STALE_SIDECARS
)


class ExportVerificationError(AtlasFlexError, AirflowFailException):
    """An export differs from its sidecars, is damaged, missing or unproven: a retry cannot change that."""


class ExportReadError(AtlasFlexError):
    """An export could not be read (storage error): retried by Airflow like any transient failure."""


@dataclass
class ContentCheck:
    """What one pass over a file found; ``damage`` when it is not a whole .tgz.

    ``complete`` is False when the pass stopped early (past ``limit``, or at damage when asked to):
    then ``sha256`` is empty and ``bytes`` counts what was read, not the file's size.
    """

    bytes: int = 0
    sha256: str = ""
    gzip_members: int = 0
    tar_members: int = 0
    tar_member_bytes: int = 0
    damage: str | None = None
    complete: bool = True
    over_limit: bool = False
    stored_size: int | None = None  # the file's size as storage reports it, when the pass stopped past the limit


def check_content(
    path: ObjectStoragePath,
    chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE,
    *,
    limit: int | None = None,
    stop_at_damage: bool = False,
) -> ContentCheck:
    """Read ``path`` once: sha256 and size of every byte, gzip integrity, complete tar listing.

    :param limit: stop after ``limit + 1`` bytes (a longer file is not read to its end).
    :param stop_at_damage: stop at the first damage; otherwise the pass goes on for the sha256.
    Raises :class:`NotRegularFile` for a symlink, FIFO or device (never opened) and OSError for I/O errors.
    """
    digest = hashlib.sha256()
    walker = GzipWalker()
    result = ContentCheck()
    with open_regular(path) as handle:
        while chunk := handle.read(chunk_size if limit is None else min(chunk_size, limit + 1 - result.bytes)):
            digest.update(chunk)
            result.bytes += len(chunk)
            if result.damage is None:
                try:
                    walker.feed(chunk)
                except ArchiveDamage as exc:
                    result.damage = str(exc)
                    result.complete = not stop_at_damage
                    if stop_at_damage:
                        break
            if limit is not None and result.bytes > limit:
                result.complete, result.over_limit = False, True
                result.stored_size = _stored_size(handle, path)
                break
    if result.damage is None and result.complete:
        try:
            walker.finish()
        except ArchiveDamage as exc:
            result.damage = str(exc)
    result.sha256 = digest.hexdigest() if result.complete else ""
    result.gzip_members = walker.members
    assert walker.tar is not None
    result.tar_members = walker.tar.members
    result.tar_member_bytes = walker.tar.member_bytes
    return result


def _stored_size(handle: Any, path: ObjectStoragePath) -> int | None:
    """The size of the open file (local) or of the object, without reading it; None if unknown."""
    try:
        return int(os.fstat(handle.fileno()).st_size if is_local(path) else path.fs.size(path.path))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


# ---- proving one export against its sidecars -----------------------------------------------------


def verify_export(
    path: ObjectStoragePath, chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE, keys: KeyRing | None = None
) -> dict[str, Any]:
    """Compare ``path`` with ``<path>.json`` (and its signature) and ``<path>.sha256``; never raises for what it finds.

    Returns a JSON-able result: ``status`` is ``verified`` or one of :data:`FAILED_STATUSES`, and
    ``problems`` says, in words, every difference found. A manifest whose signature is missing or
    does not verify with ``keys`` (default: the signing keys in Airflow Variables) proves nothing,
    so its status is ``unsigned`` or ``bad_signature`` whatever else matches.
    """
    if keys is None:
        from airflow_provider_atlasflex.archive.keys import KeyRing

        keys = KeyRing()
    result: dict[str, Any] = {"path": str(path), "status": VERIFIED, "problems": []}
    problems: list[str] = result["problems"]
    unproven = damaged = mismatch = False
    signature: str | None = None
    manifest: dict[str, Any] | None = None
    recorded_sha: str | None = None
    try:
        manifest = read_ours(path)
        if manifest is None:
            unproven = True
            problems.append(f"no manifest sidecar {path.name}{MANIFEST_SUFFIX}: the file is unproven")
        else:
            result.update(
                {k: manifest.get(k) for k in ("cluster_name", "group_id", "snapshot_id", "exported_at")}
                | {"manifest_bytes": manifest["bytes"], "manifest_sha256": manifest["sha256"]}
            )
            signed = check_signature(manifest, keys.secret_of)
            result["signature"] = signed.status
            if not signed.valid:
                signature = signed.status
                problems.append(signed.reason)
    except (ManifestError, OSError) as exc:
        unproven = True
        problems.append(f"the manifest sidecar cannot be used: {exc}")
    try:
        recorded_sha = read_sha256_sidecar(path)
        if recorded_sha is None:
            unproven = True
            problems.append(f"no checksum sidecar {path.name}{SHA256_SUFFIX}: the file is unproven")
    except (ManifestError, OSError) as exc:
        unproven = True
        problems.append(f"the checksum sidecar cannot be used: {exc}")
    if manifest is not None and recorded_sha is not None and recorded_sha != manifest["sha256"]:
        mismatch = True
        problems.append(
            f"sha256: {path.name}{SHA256_SUFFIX} says {recorded_sha}, the manifest says {manifest['sha256']}"
        )
    try:
        if not path.exists():
            result["status"] = "missing"
            if manifest is None and recorded_sha is None:
                result["problems"] = ["the file does not exist (and has no sidecars)"]
            else:
                problems.insert(0, "the export file is missing (its sidecars point at nothing)")
            return result
        # Bounded: one byte past the recorded size proves a longer file; an unproven file stops at damage.
        limit = manifest["bytes"] if manifest is not None else None
        content = check_content(path, chunk_size, limit=limit, stop_at_damage=manifest is None)
        size, sha = content.bytes, content.sha256
        result.update(
            {
                "bytes": size if content.complete else None,
                "sha256": sha or None,
                "gzip_members": content.gzip_members,
                "tar_members": content.tar_members,
                "tar_member_bytes": content.tar_member_bytes,
            }
            | ({} if content.complete else {"bytes_read": size})
        )
        if content.damage:
            damaged = True
            stopped = "" if content.complete or content.over_limit else " (reading stopped there: no manifest)"
            problems.append(f"not a complete .tgz: {content.damage}{stopped}")
    except NotRegularFile as exc:
        result.update(status="unreadable", not_a_file=True)
        problems.append(f"could not be read: {exc.strerror}")
        return result
    except OSError as exc:
        result["status"] = "unreadable"
        problems.append(f"could not be read: {exc.strerror or exc}")
        return result
    stale = _stale_sidecars(path, manifest)
    if stale is not None:
        problems.append(stale)
    if manifest is not None and content.over_limit:
        mismatch = True
        has = "more" if content.stored_size is None else content.stored_size
        problems.append(
            f"bytes: the manifest says {manifest['bytes']}, the file has {has} (reading stopped after {size} bytes)"
        )
    elif manifest is not None and size != manifest["bytes"]:
        mismatch = True
        problems.append(f"bytes: the manifest says {manifest['bytes']}, the file has {size}")
    for where, expected in (
        ("the manifest", manifest and manifest["sha256"]),
        (f"{path.name}{SHA256_SUFFIX}", recorded_sha),
    ):
        if expected and sha and expected != sha:
            mismatch = True
            problems.append(f"sha256: {where} says {expected}, the file's is {sha}")
    result["status"] = signature or (
        STALE_SIDECARS if stale else "mismatch" if mismatch else "damaged" if damaged else "unproven" if unproven
        else VERIFIED
    )
    return result


def _stale_sidecars(path: ObjectStoragePath, manifest: dict[str, Any] | None) -> str | None:
    """On an object store: why the signed manifest describes another version of the object (None: it does not)."""
    signed = manifest.get("object_etag") if manifest is not None else None
    if not isinstance(signed, str):
        return None
    from airflow_provider_atlasflex.archive.proof import object_etag

    current = object_etag(path)
    if current is None or current == signed.strip().strip('"'):
        return None
    return (
        f"stale sidecars: they were signed for the object with ETag {signed.strip(chr(34))}, the object now has "
        f"ETag {current} (replaced since, e.g. by a racing writer); copy the snapshot again to repair them"
    )


def read_ours(path: ObjectStoragePath) -> dict[str, Any] | None:
    """``read_manifest`` plus the check that the manifest describes this very file (never another one)."""
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("file") != path.name:
        raise ManifestError(
            f"{path.name}{MANIFEST_SUFFIX} describes {manifest.get('file')!r}, not the file {path.name!r} beside it"
        )
    return manifest


def describe_failures(results: list[dict[str, Any]]) -> str:
    """One line per failed file: path, status, and what differs."""
    return "\n".join(
        f"  {r['path']}: {r['status']}: {'; '.join(r['problems'])}" for r in results if r["status"] != VERIFIED
    )
