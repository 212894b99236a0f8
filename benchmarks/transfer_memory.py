"""Benchmark: the transfer's memory stays flat whatever the snapshot size.

Runs AtlasFlexSnapshotToStorageOperator against the local emulator for a small and a large
snapshot, each in a fresh process, and compares peak RSS growth and throughput in one run
(ratios, not absolute numbers: these machines are shared and noisy). Exits 1 if the large copy
needs noticeably more memory than the small one.

    .venv/bin/python benchmarks/transfer_memory.py [--small-mib 64] [--large-mib 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024


def measure(size: int) -> dict[str, float]:
    """One copy of ``size`` bytes in this process; returns peak RSS growth and MiB/s."""
    from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
    from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
    from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

    class TI:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    context = {"ti": TI(), "logical_date": None, "dag_run": None}
    with tempfile.TemporaryDirectory() as workdir, AtlasEmulator(
        clusters=("alpha",), snapshot_size=size, restore_duration=0.0
    ) as emu:
        os.environ["ATLASFLEX_TOKEN_DIR"] = str(Path(workdir) / "tokens")
        os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"] = json.dumps(emulator_connection(emu, "digest"))
        job = AtlasFlexSnapshotDownloadOperator(task_id="link", cluster_name="alpha").execute(context)
        emu.snapshot_bytes(job["snapshotId"], 0, 1)  # warm the emulator's archive layout
        emu.expected_sha256(job["snapshotId"])  # the server's own hashing is not the transfer's cost
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        started = time.perf_counter()
        result = AtlasFlexSnapshotToStorageOperator(
            task_id="copy",
            cluster_name="alpha",
            restore_job_id=job["id"],
            dst=f"file://{workdir}/out/{{snapshot_id}}.tgz",
            progress_interval=3600,
        ).execute(context)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        assert result["sha256"] == emu.expected_sha256(job["snapshotId"]), "sha256 mismatch"
    return {"bytes": size, "rss_growth_mib": (peak - baseline) / MIB, "mib_per_s": size / MIB / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small-mib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=2048)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    rows = []
    for mib in (args.small_mib, args.large_mib):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(mib * MIB)], capture_output=True, text=True, check=True
        ).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    small, large = rows
    print(f"{'size':>10} {'peak RSS growth':>16} {'throughput':>12}")
    for row in rows:
        print(f"{row['bytes'] / MIB:>7.0f} MiB {row['rss_growth_mib']:>12.1f} MiB {row['mib_per_s']:>8.0f} MiB/s")
    allowance = max(small["rss_growth_mib"] * 1.5, small["rss_growth_mib"] + 16)
    flat = large["rss_growth_mib"] <= allowance
    ratio = large["bytes"] / small["bytes"]
    print(f"\n{ratio:.0f}x the bytes needed {large['rss_growth_mib']:.1f} MiB vs {small['rss_growth_mib']:.1f} MiB of extra memory: "
          + ("flat" if flat else "NOT FLAT"))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
