"""Finding committed exports under a root: one listing, and the manifests of ours in it.

Why apart from the re-read (:mod:`.check`): the verify ("scrub"), retention and the holdings
report all start from the same listing, and what counts as an export of ours (a ``.json`` that
declares our format and describes the file beside it) must be decided the same way for all of
them; only then does each decide what to read in full.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.archive.at_rest import NotRegularFile, open_regular
from airflow_provider_atlasflex.archive.check import read_ours
from airflow_provider_atlasflex.archive.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    MAX_SIDECAR_BYTES,
    SHA256_SUFFIX,
    ManifestError,
)
from airflow_provider_atlasflex.archive.partials import PARTIAL_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import ObjectStoragePath


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


def _claims_to_be_ours(path: ObjectStoragePath, size: int | None) -> bool:
    """Whether a ``.json`` declares our format; someone else's JSON (or a large file) is left alone."""
    if size is not None and size > MAX_SIDECAR_BYTES:
        return False
    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
    except NotRegularFile:  # replaced by a FIFO or a symlink since the listing: not ours to read
        return False
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
