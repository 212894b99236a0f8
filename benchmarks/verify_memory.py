"""Benchmark: re-reading an export (sha256 + gzip + tar walk) keeps memory flat and costs little over hashing.

Writes a small and a large export (the emulator's .tgz layout, with sidecars), then in a fresh
process each: hashes the file with plain hashlib (the baseline: the least any check must read) and
runs AtlasFlexExportVerifyOperator on it. Reports peak RSS growth and MiB/s of both, as ratios in
the same run (these machines are shared and noisy). Exits 1 if the large file needs noticeably
more memory than the small one.

    .venv/bin/python benchmarks/verify_memory.py [--small-mib 64] [--large-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
GROUP = "5f1b2c3d4e5f60718293a4b5"
SNAPSHOT = "6a1b2c3d4e5f60718293a4b6"


def write_export(directory: Path, size: int) -> Path:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_atlasflex.archive.manifest import build_manifest, write_sidecars
    from airflow_provider_atlasflex.testing.emulator.tgz import SnapshotArchive

    archive = SnapshotArchive(snapshot_id=SNAPSHOT, cluster_name="alpha", group_id=GROUP, size=size, mtime=0)
    path = directory / f"{SNAPSHOT}.tgz"
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for piece in archive.iter_range(0, size):
            digest.update(piece)
            handle.write(piece)
    write_sidecars(
        ObjectStoragePath(path.as_uri()),
        build_manifest(
            file_name=path.name,
            cluster_name="alpha",
            group_id=GROUP,
            snapshot_id=SNAPSHOT,
            snapshot={"finishTime": "2026-11-28T03:00:00Z", "mongoDBVersion": "8.0.4"},
            restore_job_id="7a1b2c3d4e5f60718293a4b7",
            size=size,
            sha256=digest.hexdigest(),
        ),
    )
    return path


def measure(path: Path) -> dict[str, float]:
    from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator

    class TI:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    size = path.stat().st_size
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    hash_seconds = time.perf_counter() - started
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    context: Any = {"ti": TI(), "logical_date": None, "dag_run": None}
    [result] = AtlasFlexExportVerifyOperator(task_id="verify", path=path.as_uri()).execute(context)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert result["status"] == "verified" and result["sha256"] == digest.hexdigest(), result
    return {
        "bytes": size,
        "rss_growth_mib": (peak - baseline) / MIB,
        "verify_mib_per_s": size / MIB / seconds,
        "hash_mib_per_s": size / MIB / hash_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small-mib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child))))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for mib in (args.small_mib, args.large_mib):
            directory = Path(workdir) / str(mib)
            directory.mkdir()
            path = write_export(directory, mib * MIB)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True
            ).stdout.strip()
            rows.append(json.loads(out.splitlines()[-1]))
            path.unlink()
    small, large = rows
    print(f"{'size':>10} {'peak RSS growth':>16} {'verify':>12} {'sha256 only':>12} {'verify/hash':>12}")
    for row in rows:
        print(
            f"{row['bytes'] / MIB:>7.0f} MiB {row['rss_growth_mib']:>12.1f} MiB {row['verify_mib_per_s']:>6.0f} MiB/s"
            f" {row['hash_mib_per_s']:>6.0f} MiB/s {row['verify_mib_per_s'] / row['hash_mib_per_s']:>11.2f}x"
        )
    allowance = max(small["rss_growth_mib"] * 1.5, small["rss_growth_mib"] + 16)
    flat = large["rss_growth_mib"] <= allowance
    ratio = large["bytes"] / small["bytes"]
    print(
        f"\n{ratio:.0f}x the bytes needed {large['rss_growth_mib']:.1f} MiB vs {small['rss_growth_mib']:.1f} MiB of extra "
        "memory: " + ("flat" if flat else "NOT FLAT")
    )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
