"""What makes a stored export provably ours: one definition for the copy, the verify/scrub and retention.

A file at the destination is an export of ours only when its ``.json`` manifest carries a valid
signature (:mod:`airflow_provider_atlasflex.archive.signature`, made with a key writers of the
destination do not hold), its ``.sha256`` agrees with the manifest, and its bytes are the ones
the manifest records. Matching sidecars alone prove nothing: anyone who can write the file can
write them too.

* :func:`at_rest_problem` is the check that reads no export bytes (signature, ``.sha256``, the
  listed size): retention deletes nothing that fails it.
* :func:`prove_export` adds a full re-read (sha256, gzip members, tar listing; see
  :func:`.check.verify_export`, whose ``verified`` status is the full proof): the copy
  accepts an existing file as already present only when it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.check import VERIFIED, read_ours, verify_export
from airflow_provider_atlasflex.archive.manifest import (
    MANIFEST_SUFFIX,
    SHA256_SUFFIX,
    ManifestError,
    read_sha256_sidecar,
)
from airflow_provider_atlasflex.archive.signature import check as check_signature
from airflow_provider_atlasflex.defaults import DEFAULT_VERIFY_CHUNK_SIZE

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.keys import KeyRing


@dataclass(frozen=True)
class Proof:
    """Whether ``dst`` provably holds an export: ``reason`` says what is missing when it does not."""

    proven: bool
    reason: str
    manifest: dict[str, Any] | None = None


def signature_problem(manifest: Mapping[str, Any], keys: KeyRing) -> tuple[str, str] | None:
    """(``unsigned`` or ``bad_signature``, why) unless ``manifest`` carries a valid signature of ours."""
    signed = check_signature(manifest, keys.secret_of)
    return None if signed.valid else (signed.status, signed.reason)


def at_rest_problem(
    path: ObjectStoragePath, manifest: Mapping[str, Any], size: int | None, keys: KeyRing, etag: str | None = None
) -> tuple[str, str] | None:
    """(status, why) when ``manifest`` does not prove ``path`` without reading it; None when it does.

    ``size`` is the file's size from a listing (None: unknown, which proves nothing); ``etag`` its
    ETag on an object store: a signed ``object_etag`` that differs means the object was replaced
    after its manifest was written (e.g. the sidecars of a racing writer that lost), without a read.
    """
    problem = signature_problem(manifest, keys)
    if problem is not None:
        return problem
    try:
        recorded = read_sha256_sidecar(path)
    except (ManifestError, OSError) as exc:
        return "unproven", f"its {SHA256_SUFFIX} sidecar cannot be used: {exc}"
    if recorded is None:
        return "unproven", f"it has no {SHA256_SUFFIX} sidecar"
    if recorded != manifest["sha256"]:
        return "mismatch", f"its {SHA256_SUFFIX} sidecar and its manifest record different sha256"
    if size != manifest["bytes"]:
        return "mismatch", f"its manifest records {manifest['bytes']} bytes, the file has {size}"
    signed_etag = manifest.get("object_etag")
    if isinstance(signed_etag, str) and etag is not None and _etag(signed_etag) != _etag(etag):
        return "mismatch", (
            f"the object is not the version its manifest was signed for (ETag {_etag(etag)}, signed "
            f"{_etag(signed_etag)}): replaced since, its sidecars are stale"
        )
    return None


def _etag(value: str) -> str:
    return value.strip().strip('"')


def object_etag(path: ObjectStoragePath, info: Mapping[str, Any] | None = None) -> str | None:
    """The ETag of ``path`` on an object store (from ``info`` if given), None elsewhere."""
    if info is None:
        try:
            info = path.fs.info(path.path)
        except OSError:
            return None
    value = info.get("ETag") or info.get("etag")
    return _etag(value) if isinstance(value, str) and value.strip('" ') else None


def prove_export(
    dst: ObjectStoragePath,
    *,
    snapshot_id: str,
    cluster_name: str,
    group_id: str,
    keys: KeyRing,
    chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE,
) -> Proof:
    """Whether ``dst`` holds exactly the export of ``snapshot_id`` that one of our commits signed.

    Checked: the manifest is ours and names this file, snapshot, cluster and project; then
    :func:`at_rest_problem` (cheap: a planted file set usually fails here, unread); then a full
    re-read must verify (sha256 and size as signed, a complete gzip-compressed tar).
    """
    try:
        manifest = read_ours(dst)
    except (ManifestError, OSError) as exc:
        return Proof(False, str(exc))
    if manifest is None:
        return Proof(False, f"it has no {MANIFEST_SUFFIX} sidecar proving which snapshot it holds")
    expected = {"snapshot_id": snapshot_id, "cluster_name": cluster_name, "group_id": group_id}
    for key, value in expected.items():
        if manifest[key] != value:
            return Proof(False, f"its sidecar records {key} {manifest[key]!r}, not {value!r}", manifest)
    try:
        info = dst.fs.info(dst.path)
    except OSError:
        info = {}
    size = info.get("size") if isinstance(info.get("size"), int) else None
    problem = at_rest_problem(dst, manifest, size, keys, object_etag(dst, info))
    if problem is not None:
        return Proof(False, f"{problem[0]}: {problem[1]}", manifest)
    result = verify_export(dst, chunk_size, keys)
    if result["status"] != VERIFIED:
        return Proof(False, f"{result['status']}: {'; '.join(result['problems'])}", manifest)
    return Proof(True, "its signed manifest records this snapshot and the file re-reads as a whole .tgz with its sha256", manifest)
