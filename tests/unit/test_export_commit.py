"""The commit strategies and the sidecar functions, without an operator: local disk and a generic fsspec filesystem.

``otherfs://`` is the local disk behind a filesystem class Airflow does not know as local, so the
generic :class:`FsspecExportCommit` path runs for real.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_atlasflex.archive.commit import (
    DestinationExistsError,
    FsspecExportCommit,
    LocalExportCommit,
    export_commit,
)
from airflow_provider_atlasflex.archive.keys import KeyRing
from airflow_provider_atlasflex.archive.manifest import (
    ManifestError,
    build_manifest,
    file_sha256,
    read_manifest,
    sidecar_paths,
    write_sidecars,
)
from airflow_provider_atlasflex.archive.partials import PARTIAL_SUFFIX, sweep_dead_partials_local
from airflow_provider_atlasflex.archive.proof import prove_export
from tests.unit.export_fixtures import make_tgz


class OtherFileSystem(LocalFileSystem):
    protocol = ("otherfs",)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("otherfs://"):
            path = path[len("otherfs://") :]
        return super()._strip_protocol(path)


@pytest.fixture
def otherfs() -> Iterator[None]:
    import fsspec
    from airflow.sdk.io import attach
    from airflow.sdk.io import store as io_store

    fsspec.register_implementation("otherfs", OtherFileSystem, clobber=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attach("otherfs", fs=OtherFileSystem())
        yield
    io_store._STORE_CACHE.pop("otherfs", None)
    importlib.import_module("fsspec.registry")._registry.pop("otherfs", None)


def write_through(commit: Any, data: bytes) -> None:
    commit.open()
    with commit.output() as handle:
        handle.write(b"first try, discarded")
    with commit.output() as handle:  # a restart rewrites from byte 0
        handle.write(data)
    commit.commit(len(data))


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


@pytest.mark.parametrize("scheme", ["file", "otherfs"])
def test_commit_publishes_exactly_the_bytes_written_last(tmp_path, otherfs, scheme):
    dst = ObjectStoragePath(f"{scheme}://{tmp_path}/a/b/x.tgz")
    commit = export_commit(dst, overwrite=False)
    assert isinstance(commit, LocalExportCommit if scheme == "file" else FsspecExportCommit)
    write_through(commit, b"the verified bytes")
    assert (tmp_path / "a/b/x.tgz").read_bytes() == b"the verified bytes"
    assert hidden(tmp_path / "a/b") == []


@pytest.mark.parametrize("scheme", ["file", "otherfs"])
def test_no_clobber_keeps_the_first_writers_file_and_aborts_cleanly(tmp_path, otherfs, scheme):
    dst = ObjectStoragePath(f"{scheme}://{tmp_path}/x.tgz")
    first, second = export_commit(dst, overwrite=False), export_commit(dst, overwrite=False)
    first.open()
    second.open()
    assert first.temporary_name != second.temporary_name
    for commit, data in ((first, b"first"), (second, b"second")):
        with commit.output() as handle:
            handle.write(data)
    first.commit(5)
    with pytest.raises(DestinationExistsError):
        second.commit(6)
    second.abort()
    assert (tmp_path / "x.tgz").read_bytes() == b"first"
    assert hidden(tmp_path) == []


def test_commit_refuses_a_size_other_than_verified(tmp_path):
    commit = export_commit(ObjectStoragePath(f"file://{tmp_path}/x.tgz"), overwrite=True)
    commit.open()
    with commit.output() as handle:
        handle.write(b"12345")
    with pytest.raises(Exception, match="holds 5 bytes, not the 6 verified"):
        commit.commit(6)
    commit.abort()
    assert list(tmp_path.iterdir()) == []


def test_local_sweep_removes_unlocked_and_old_temporaries_only(tmp_path):
    live = LocalExportCommit(ObjectStoragePath(f"file://{tmp_path}/x.tgz"), overwrite=False, file_mode=0o600, dir_mode=0o700)
    live.open()
    dead = tmp_path / f".x.tgz.00000000deadbeef{PARTIAL_SUFFIX}"
    dead.write_bytes(b"")
    assert sweep_dead_partials_local(str(tmp_path)) == [dead.name]
    assert hidden(tmp_path) == [live.temporary_name]
    live.abort()


def test_generic_sweep_removes_only_old_temporaries(tmp_path, otherfs):
    old = tmp_path / f".x.tgz.0000000000000001{PARTIAL_SUFFIX}"
    fresh = tmp_path / f".x.tgz.0000000000000002{PARTIAL_SUFFIX}"
    for path in (old, fresh):
        path.write_bytes(b"")
    os.utime(old, (time.time() - 25 * 3600,) * 2)
    write_through(export_commit(ObjectStoragePath(f"otherfs://{tmp_path}/x.tgz"), overwrite=False), b"data")
    assert hidden(tmp_path) == [fresh.name]


@pytest.mark.parametrize("scheme", ["file", "otherfs"])
def test_sidecars_round_trip_and_prove(tmp_path, otherfs, scheme):
    dst = ObjectStoragePath(f"{scheme}://{tmp_path}/s.tgz")
    write_through(export_commit(dst, overwrite=False), make_tgz())
    size, sha256 = file_sha256(dst)
    manifest = build_manifest(
        file_name="s.tgz", cluster_name="alpha", group_id="g" * 24, snapshot_id="a" * 24,
        snapshot={"id": "a" * 24, "links": [{"href": "x"}], "mongoDBVersion": "8.0.4"},
        restore_job_id="b" * 24, size=size, sha256=sha256,
    )
    paths = write_sidecars(dst, manifest)
    assert paths == sidecar_paths(dst)
    assert Path(paths.sha256.path).read_text() == f"{sha256}  s.tgz\n"
    stored = read_manifest(dst)
    assert stored is not None and stored["signature"]["key_id"] == "unittests" and "links" not in manifest["snapshot"]
    assert {k: v for k, v in stored.items() if k != "signature"} == json.loads(json.dumps(manifest))
    ids = {"cluster_name": "alpha", "group_id": "g" * 24, "keys": KeyRing()}
    assert prove_export(dst, snapshot_id="a" * 24, **ids).proven
    assert not prove_export(dst, snapshot_id="c" * 24, **ids).proven


def test_read_manifest_tells_missing_from_invalid(tmp_path):
    dst = ObjectStoragePath(f"file://{tmp_path}/s.tgz")
    assert read_manifest(dst) is None
    (tmp_path / "s.tgz.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(dst)
    (tmp_path / "s.tgz.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ManifestError, match="not an atlasflex export manifest"):
        read_manifest(dst)
    (tmp_path / "s.tgz.json").write_text(json.dumps({"format": "atlasflex-export/1", "file": "s.tgz"}))
    with pytest.raises(ManifestError, match="'snapshot_id' is missing"):
        read_manifest(dst)


def test_a_writer_that_lost_a_race_withdraws_only_its_own_sidecars(tmp_path):
    """Its sidecars beside another writer's object would describe the wrong bytes for good; the winner's stay."""
    import logging
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.manifest import read_manifest, sidecar_paths
    from airflow_provider_atlasflex.transfers.export_attempt import _withdraw_sidecars
    from tests.unit.export_fixtures import commit_export

    root = ObjectStoragePath(tmp_path.as_uri())
    path = commit_export(root, "alpha", datetime(2026, 12, 5, 3, 0, tzinfo=timezone.utc))
    recorded = read_manifest(path)["sha256"]
    _withdraw_sidecars(path, SimpleNamespace(sha256="f" * 64), logging.getLogger("test"))  # the winner's: kept
    assert sidecar_paths(path).manifest.exists() and sidecar_paths(path).sha256.exists()
    _withdraw_sidecars(path, SimpleNamespace(sha256=recorded), logging.getLogger("test"))  # its own: removed
    assert not sidecar_paths(path).manifest.exists() and not sidecar_paths(path).sha256.exists()
    assert path.exists()  # the object is never touched
