"""Re-reading committed exports: find them under a root, and prove one against its sidecars.

Shared by the verify ("scrub") and retention operators. Reading is one sequential pass with flat
memory whatever the file size: the raw bytes are hashed and counted, inflated member by member
(zlib checks each gzip member's CRC32 and length), and the inflated stream is walked by an
incremental tar header parser that needs the end-of-archive marker to call an archive complete.
(``tarfile``'s stream mode stops quietly at a truncated or garbled header, so it cannot prove that.)
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, ObjectStoragePath

from airflow_provider_atlasflex.archive.signature import BAD_SIGNATURE, UNSIGNED
from airflow_provider_atlasflex.archive.signature import check as check_signature
from airflow_provider_atlasflex.defaults import DEFAULT_VERIFY_CHUNK_SIZE, MIB
from airflow_provider_atlasflex.exceptions import (
    AirflowFailException,
    AirflowNotFoundException,
    AtlasFlexConfigError,
    AtlasFlexError,
)
from airflow_provider_atlasflex.transfers.commit import PARTIAL_NAME
from airflow_provider_atlasflex.transfers.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    MAX_SIDECAR_BYTES,
    SHA256_SUFFIX,
    ManifestError,
    read_manifest,
    read_sha256_sidecar,
)
from airflow_provider_atlasflex.validation import require_connection_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_atlasflex.archive.keys import KeyRing

GZIP_MAGIC = b"\x1f\x8b"
_TAR_BLOCK = 512
_ZERO_BLOCK = bytes(_TAR_BLOCK)
_MAX_OUTPUT_PER_STEP = MIB  # inflated bytes produced per zlib call: bounds memory on a "zip bomb"
_MAX_PAX_HEADER = MIB
# Entries with no data after their header (tarfile.SUPPORTED_TYPES minus the regular ones).
_NO_DATA_TYPES = frozenset(b"123456")
_REGULAR_TYPES = frozenset(b"07\x00S")

VERIFIED = "verified"
# unsigned: a manifest without a signature; bad_signature: one whose signature does not verify with a key of ours.
FAILED_STATUSES = ("unproven", "mismatch", "damaged", "missing", "unreadable", UNSIGNED, BAD_SIGNATURE)


class ExportVerificationError(AtlasFlexError, AirflowFailException):
    """An export differs from its sidecars, is damaged, missing or unproven: a retry cannot change that."""


class ExportReadError(AtlasFlexError):
    """An export could not be read (storage error): retried by Airflow like any transient failure."""


class ArchiveDamage(Exception):
    """The bytes are not a complete gzip-compressed tar archive (the message says where and why)."""


# ---- one sequential pass: sha256, gzip members, tar listing ---------------------------------------


class TarStreamLister:
    """Feed inflated tar bytes in order; counts members and their data size, and needs the end marker."""

    def __init__(self) -> None:
        self.members = 0
        self.member_bytes = 0
        self.offset = 0
        self.ended = False
        self._header = bytearray()
        self._skip = 0
        self._pax: bytearray | None = None
        self._pax_size: int | None = None
        self._zero_blocks = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self._skip:
                n = min(self._skip, len(view) - i)
                if self._pax is not None:
                    self._pax += view[i : i + n]
                self._skip -= n
                i += n
                self.offset += n
                if not self._skip and self._pax is not None:
                    self._pax_size = _pax_size(bytes(self._pax), self._pax_size)
                    self._pax = None
                continue
            if self.ended:
                if bytes(view[i:]).strip(b"\0"):
                    raise ArchiveDamage(f"data after the tar end-of-archive marker (inflated offset {self.offset})")
                self.offset += len(view) - i
                return
            take = view[i : i + _TAR_BLOCK - len(self._header)]
            self._header += take
            i += len(take)
            self.offset += len(take)
            if len(self._header) == _TAR_BLOCK:
                self._on_header(bytes(self._header), self.offset - _TAR_BLOCK)
                self._header.clear()

    def finish(self) -> None:
        if self.ended:
            return
        if self._skip or self._header:
            raise ArchiveDamage(
                f"the tar archive is truncated inside entry {self.members} (inflated offset {self.offset})"
            )
        raise ArchiveDamage(f"the tar archive has no end-of-archive marker after {self.members} member(s) (truncated)")

    def _on_header(self, block: bytes, at: int) -> None:
        if block == _ZERO_BLOCK:
            self._zero_blocks += 1
            self.ended = self._zero_blocks == 2
            return
        if self._zero_blocks:
            raise ArchiveDamage(f"a lone zero block before the tar header at inflated offset {at}")
        stored = _tar_number(block[148:156], at, "checksum")
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
        if stored not in (unsigned, signed):
            raise ArchiveDamage(f"invalid tar header (checksum mismatch) at inflated offset {at}")
        size = _tar_number(block[124:136], at, "size")
        kind = block[156]
        padded = -(-size // _TAR_BLOCK) * _TAR_BLOCK
        if kind in b"xg":
            if size > _MAX_PAX_HEADER:
                raise ArchiveDamage(f"an extended tar header of {size} bytes at inflated offset {at}")
            self._pax = bytearray() if kind == ord("x") else None
            self._skip = padded
            return
        if kind in b"LK":  # GNU long name / long link: data is a name, not a member
            self._skip = padded
            return
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
            padded = -(-size // _TAR_BLOCK) * _TAR_BLOCK
        self.members += 1
        if kind in _NO_DATA_TYPES:
            return
        if kind in _REGULAR_TYPES:
            self.member_bytes += size
        self._skip = padded


def _tar_number(field_bytes: bytes, at: int, what: str) -> int:
    if field_bytes[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field_bytes[0] & 0x7F]) + field_bytes[1:], "big")
    text = field_bytes.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ArchiveDamage(f"invalid tar header ({what} field {field_bytes!r}) at inflated offset {at}") from None


def _pax_size(records: bytes, current: int | None) -> int | None:
    """The ``size`` record of a pax header (it overrides the next member's size field)."""
    for line in records.split(b"\n"):
        _, _, keyword_value = line.partition(b" ")
        keyword, _, value = keyword_value.partition(b"=")
        if keyword == b"size" and value.isdigit():
            return int(value)
    return current


class GzipInflater:
    """Inflate concatenated gzip members with bounded output per step; zlib checks CRC32 and length."""

    def __init__(self, sink: TarStreamLister) -> None:
        self.members = 0
        self._sink = sink
        self._decoder = zlib.decompressobj(wbits=31)
        self._in_member = 0
        self.raw_offset = 0

    def feed(self, data: bytes) -> None:
        pending = data
        try:
            while pending:
                if self._in_member == 0 and not pending.startswith(GZIP_MAGIC[: len(pending)]):
                    what = "does not start with" if self.members == 0 else "has trailing bytes without"
                    raise ArchiveDamage(f"the file {what} the gzip signature (at byte {self.raw_offset})")
                before = len(pending)
                self._sink.feed(self._decoder.decompress(pending, _MAX_OUTPUT_PER_STEP))
                if self._decoder.eof:
                    leftover = self._decoder.unused_data
                    self.raw_offset += before - len(leftover)
                    self.members += 1
                    self._in_member = 0
                    self._decoder = zlib.decompressobj(wbits=31)
                    pending = leftover
                else:
                    pending = self._decoder.unconsumed_tail
                    self._in_member += before - len(pending)
                    self.raw_offset += before - len(pending)
        except zlib.error as exc:
            raise ArchiveDamage(f"invalid gzip data in member {self.members + 1} ({exc})") from None

    def finish(self) -> None:
        if self.members == 0 or self._in_member:
            raise ArchiveDamage(f"the gzip stream is truncated (ends inside member {self.members + 1})")
        self._sink.finish()


@dataclass
class ContentCheck:
    """What one pass over a file found: always bytes and sha256; ``damage`` when it is not a whole .tgz."""

    bytes: int = 0
    sha256: str = ""
    gzip_members: int = 0
    tar_members: int = 0
    tar_member_bytes: int = 0
    damage: str | None = None


def check_content(path: ObjectStoragePath, chunk_size: int = DEFAULT_VERIFY_CHUNK_SIZE) -> ContentCheck:
    """Read ``path`` once: sha256 and size of every byte, gzip integrity, complete tar listing.

    Damage does not stop the pass (the sha256 of the whole file is still reported); I/O errors raise.
    """
    digest = hashlib.sha256()
    lister = TarStreamLister()
    inflater = GzipInflater(lister)
    result = ContentCheck()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
            result.bytes += len(chunk)
            if result.damage is None:
                try:
                    inflater.feed(chunk)
                except ArchiveDamage as exc:
                    result.damage = str(exc)
    if result.damage is None:
        try:
            inflater.finish()
        except ArchiveDamage as exc:
            result.damage = str(exc)
    result.sha256 = digest.hexdigest()
    result.gzip_members = inflater.members
    result.tar_members = lister.members
    result.tar_member_bytes = lister.member_bytes
    return result


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
        content = check_content(path, chunk_size)
        size, sha = content.bytes, content.sha256
        result.update(
            {
                "bytes": size,
                "sha256": sha,
                "gzip_members": content.gzip_members,
                "tar_members": content.tar_members,
                "tar_member_bytes": content.tar_member_bytes,
            }
        )
        if content.damage:
            damaged = True
            problems.append(f"not a complete .tgz: {content.damage}")
    except OSError as exc:
        result["status"] = "unreadable"
        problems.append(f"could not be read: {exc.strerror or exc}")
        return result
    if manifest is not None and size != manifest["bytes"]:
        mismatch = True
        problems.append(f"bytes: the manifest says {manifest['bytes']}, the file has {size}")
    for where, expected in (
        ("the manifest", manifest and manifest["sha256"]),
        (f"{path.name}{SHA256_SUFFIX}", recorded_sha),
    ):
        if expected and expected != sha:
            mismatch = True
            problems.append(f"sha256: {where} says {expected}, the file's is {sha}")
    result["status"] = signature or (
        "mismatch" if mismatch else "damaged" if damaged else "unproven" if unproven else VERIFIED
    )
    return result


def describe_failures(results: list[dict[str, Any]]) -> str:
    """One line per failed file: path, status, and what differs."""
    return "\n".join(
        f"  {r['path']}: {r['status']}: {'; '.join(r['problems'])}" for r in results if r["status"] != VERIFIED
    )


# ---- finding exports under a root ----------------------------------------------------------------


@dataclass
class FoundExport:
    """An export named by a valid manifest of ours (the file itself may be missing)."""

    path: ObjectStoragePath
    manifest: dict[str, Any]
    size: int | None  # None: the file is missing
    has_checksum: bool
    etag: str | None = None  # on object stores, from the listing


@dataclass
class Scan:
    exports: list[FoundExport] = field(default_factory=list)
    unproven: list[tuple[ObjectStoragePath, str]] = field(default_factory=list)  # (file, why)
    partials: list[str] = field(default_factory=list)  # temporary files of copy attempts, relative to root
    files_seen: int = 0


def scan_exports(root: ObjectStoragePath, unproven_suffixes: tuple[str, ...] = (".tgz",)) -> Scan:
    """Every export under ``root`` that carries an ``atlasflex-export/1`` manifest, plus the unproven ones.

    Unproven: files ending with one of ``unproven_suffixes`` that have no valid manifest of ours,
    and those whose manifest of ours is damaged. Hidden names (temporary copies) and other files
    (foreign ``.json`` included) are left out.
    """
    etags: dict[str, str | None] = {}
    listing: dict[str, int | None] = {}
    for relative, size, etag in _files_under(root):
        listing[relative], etags[relative] = size, etag
    scan = Scan(files_seen=len(listing))
    claimed: set[str] = set()
    for relative in sorted(listing):
        name = relative.rsplit("/", 1)[-1]
        if not name.endswith(MANIFEST_SUFFIX) or name.startswith(".") or name == MANIFEST_SUFFIX:
            continue
        export_relative = relative[: -len(MANIFEST_SUFFIX)]
        export_path = child_path(root, export_relative)
        try:
            if not _claims_to_be_ours(child_path(root, relative), listing[relative]):
                continue
            manifest = read_ours(export_path)
        except FileNotFoundError:  # deleted since the listing
            continue
        except (ManifestError, OSError) as exc:
            if export_relative in listing:
                scan.unproven.append((export_path, f"its manifest is damaged: {exc}"))
                claimed.add(export_relative)
            continue
        if manifest is None:  # deleted since the listing
            continue
        claimed.add(export_relative)
        scan.exports.append(
            FoundExport(
                export_path,
                manifest,
                listing.get(export_relative),
                f"{export_relative}{SHA256_SUFFIX}" in listing,
                etags.get(export_relative),
            )
        )
    for relative in sorted(listing):
        name = relative.rsplit("/", 1)[-1]
        if PARTIAL_NAME.fullmatch(name):
            scan.partials.append(relative)
        if relative not in claimed and not name.startswith(".") and name.endswith(unproven_suffixes):
            scan.unproven.append((child_path(root, relative), f"no {name}{MANIFEST_SUFFIX} manifest of ours beside it"))
    return scan


def read_ours(path: ObjectStoragePath) -> dict[str, Any] | None:
    """``read_manifest`` plus the check that the manifest describes this very file (never another one)."""
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("file") != path.name:
        raise ManifestError(
            f"{path.name}{MANIFEST_SUFFIX} describes {manifest.get('file')!r}, not the file {path.name!r} beside it"
        )
    return manifest


def _claims_to_be_ours(path: ObjectStoragePath, size: int | None) -> bool:
    """Whether a ``.json`` declares our format; someone else's JSON (or a large file) is left alone."""
    if size is not None and size > MAX_SIDECAR_BYTES:
        return False
    with path.open("rb") as handle:
        raw = handle.read(MAX_SIDECAR_BYTES + 1)
    if len(raw) > MAX_SIDECAR_BYTES:
        return False
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and document.get("format") == MANIFEST_FORMAT


def _files_under(root: ObjectStoragePath) -> Iterator[tuple[str, int | None, str | None]]:
    """(path relative to root, size, ETag on object stores) of every file below ``root``, from one listing."""
    base = root.path.rstrip("/")
    for key, info in root.fs.find(root.path, detail=True).items():
        if info.get("type") != "file":
            continue
        key = str(key)
        if not key.startswith(base + "/"):
            continue
        size, etag = info.get("size"), info.get("ETag")
        yield (
            key[len(base) + 1 :],
            int(size) if isinstance(size, int) else None,
            etag.strip('"') if isinstance(etag, str) and etag.strip('" ') else None,
        )


def child_path(root: ObjectStoragePath, relative: str) -> ObjectStoragePath:
    return root.joinpath(*relative.split("/"))


# ---- input checks (before any I/O) ---------------------------------------------------------------


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
            raise AtlasFlexConfigError(f"{what} {value!r} still holds a Jinja expression: it was not rendered.")
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
        raise AtlasFlexConfigError(f"{what} {text!r} must not contain '.' or '..' path segments.")
    if conn_id is not None:
        try:
            BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise AtlasFlexConfigError(f"dst_conn_id {conn_id!r} is not a defined connection; create it.") from None
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
            "(e.g. apache-airflow-providers-amazon for s3://) or use file://."
        ) from None
    return path
