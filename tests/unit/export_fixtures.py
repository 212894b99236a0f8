"""Fake exports committed with the real sidecar writer, on file:// or fsspec's memory://."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.manifest import build_manifest, read_manifest, sidecar_paths, write_sidecars
from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator
from tests.unit.fake_context import make_context

GROUP = "5f1b2c3d4e5f60718293a4b5"
WHEN = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)


def make_tgz(payload: int = 50_000, members: int = 2, seed: int = 0) -> bytes:
    """A real gzip-compressed tar with ``members`` files of random (incompressible) bytes."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index in range(members):
            data = rng.randbytes(payload // members)
            info = tarfile.TarInfo(f"dump/part{index}.bson")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def snapshot_id(night: int, cluster: str = "alpha") -> str:
    return hashlib.sha256(f"{cluster}-{night}".encode()).hexdigest()[:24]


def commit_export(
    root: ObjectStoragePath,
    cluster: str,
    when: datetime,
    *,
    data: bytes | None = None,
    group_id: str = GROUP,
    sidecars: bool = True,
    night: int = 0,
) -> ObjectStoragePath:
    """``<root>/<cluster>/<date>/<snapshot>.tgz`` and (by default) its sidecars, as the transfer commits them."""
    snap = snapshot_id(night, cluster)
    data = data if data is not None else make_tgz(seed=night)
    path = root / cluster / when.strftime("%Y-%m-%d") / f"{snap}.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if sidecars:
        manifest = build_manifest(
            file_name=path.name,
            cluster_name=cluster,
            group_id=group_id,
            snapshot_id=snap,
            snapshot={"finishTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "mongoDBVersion": "8.0.4"},
            restore_job_id="7a1b2c3d4e5f60718293a4b7",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            exported_at=(when + timedelta(hours=1)).isoformat(),
        )
        write_sidecars(path, manifest)
    return path


def resign_manifest(path: ObjectStoragePath, change: Callable[[dict[str, Any]], None]) -> None:
    """Change an export's manifest and sign it again, as our own writer would (the key is the tests' key)."""
    manifest = read_manifest(path)
    assert manifest is not None
    manifest.pop("signature", None)
    change(manifest)
    write_sidecars(path, manifest)


def nights(count: int, now: datetime | None = None) -> list[datetime]:
    """``count`` snapshot times, newest first: an hour ago, then one day older each (any time of day)."""
    base = (now or datetime.now(timezone.utc)).replace(microsecond=0) - timedelta(hours=1)
    return [base - timedelta(days=i) for i in range(count)]


def relative_files(root: ObjectStoragePath) -> list[str]:
    base = root.path.rstrip("/")
    return sorted(
        str(k)[len(base) + 1 :] for k, v in root.fs.find(root.path, detail=True).items() if v["type"] == "file"
    )


@pytest.fixture(params=["file", "memory"])
def storage_root(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ObjectStoragePath]:
    """An empty exports root on the local disk, or on fsspec's in-memory object store."""
    if request.param == "file":
        yield ObjectStoragePath(f"file://{tmp_path}/exports")
        return
    yield from memory_root(request.node.name)


def memory_root(name: str) -> Iterator[ObjectStoragePath]:
    import fsspec  # type: ignore[import-untyped]
    from airflow.sdk.io import attach
    from airflow.sdk.io.store import _STORE_CACHE

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)
    bucket = "b" + hashlib.sha256(name.encode()).hexdigest()[:12]
    root = ObjectStoragePath(f"memory://{bucket}/exports")
    try:
        yield root
    finally:
        if fs.exists(f"/{bucket}"):
            fs.rm(f"/{bucket}", recursive=True)
        _STORE_CACHE.pop("memory", None)


# ---- ten nights of exports and foreign files, for retention ----------------------------------------

CLUSTERS = ("alpha", "beta")
FOREIGN = {
    "README.txt": b"exports of the data team",
    "alpha/copied-by-hand.tgz": make_tgz(seed=99),  # a .tgz without our sidecars
    "alpha/inventory.json": b'{"owner": "someone else"}',  # a .json that is not our manifest
    "beta/only-checksum.tgz": b"x",
    "beta/only-checksum.tgz.sha256": b"0" * 64 + b"  only-checksum.tgz\n",  # a .sha256 alone proves nothing
}


def ten_nights(root: ObjectStoragePath) -> dict[str, list[ObjectStoragePath]]:
    """10 nightly exports per cluster (index 0 = newest) plus foreign files that must survive."""
    exports = {
        cluster: [commit_export(root, cluster, when, night=n) for n, when in enumerate(nights(10))]
        for cluster in CLUSTERS
    }
    for relative, data in FOREIGN.items():
        path = root.joinpath(*relative.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return exports


def with_sidecars(paths: list[ObjectStoragePath]) -> set[str]:
    return {str(q) for p in paths for q in (p, sidecar_paths(p).sha256, sidecar_paths(p).manifest)}


def all_files(root: ObjectStoragePath) -> set[str]:
    return {str(root.joinpath(*r.split("/"))) for r in relative_files(root)}


def retention(root: ObjectStoragePath, **kwargs):
    operator = AtlasFlexExportRetentionOperator(task_id="retention", root=str(root), **kwargs)
    context: Any = make_context()
    return operator.execute(context)


def verify(**kwargs: Any) -> tuple[AtlasFlexExportVerifyOperator, Any]:
    """A verify operator and a fresh task context for it."""
    return AtlasFlexExportVerifyOperator(task_id="verify", **kwargs), make_context()


def flip_byte(path: ObjectStoragePath, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
