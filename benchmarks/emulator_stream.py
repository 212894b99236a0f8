"""Benchmark: stream a multi-GiB snapshot from the emulator; report MB/s and memory.

Why a script and not a test: serving 2 GiB takes seconds and is about the
emulator's capacity, not correctness.  Run:

    python benchmarks/emulator_stream.py               # 2 GiB, emulator in-process
    python benchmarks/emulator_stream.py --size 512MiB --verify

Prints throughput, the peak RSS growth of this process (server + client) sampled
every 50 ms, and, with --verify, checks the SHA-256 against expected_sha256().
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from requests.auth import HTTPDigestAuth

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator

MEDIA = "application/vnd.atlas.2024-11-13+json"
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", text.strip())
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 2GiB, 500MB, 1048576)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def current_rss() -> int:
    """Resident set size in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class PeakRss:
    """Samples this process's RSS in the background; reports the peak growth."""

    def __init__(self) -> None:
        self.base = current_rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, current_rss())

    def __enter__(self) -> PeakRss:  # noqa: PYI034 - typing.Self needs 3.11
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=2 << 30, help="snapshot size (default 2GiB)")
    ap.add_argument("--chunk", type=parse_size, default=1 << 20, help="client read size (default 1MiB)")
    ap.add_argument("--verify", action="store_true", help="hash while reading and compare with expected_sha256")
    args = ap.parse_args()

    with AtlasEmulator(
        clusters=("alpha",), snapshot_size=args.size, snapshots_per_cluster=1, restore_duration=0
    ) as emu:
        s = requests.Session()
        s.auth = HTTPDigestAuth(emu.api_key.public_key, emu.api_key.private_key)
        sid = emu.newest_completed_snapshot_id("alpha")
        job = s.post(
            emu.cluster_url("alpha") + "/backup/download",
            json={"snapshotId": sid},
            headers={"Accept": MEDIA, "Content-Type": MEDIA},
        ).json()
        url = urlsplit(job["snapshotUrl"])
        h = hashlib.sha256() if args.verify else None
        buf = bytearray(args.chunk)
        view = memoryview(buf)
        total = 0
        with PeakRss() as rss:
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
            conn.request("GET", f"{url.path}?{url.query}")
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            while True:
                n = resp.readinto(buf)
                if not n:
                    break
                total += n
                if h is not None:
                    h.update(view[:n])
            elapsed = time.perf_counter() - t0
            conn.close()
        assert total == args.size, (total, args.size)
        print(f"size            {total:,} bytes ({total / 2**30:.2f} GiB)")
        print(f"elapsed         {elapsed:.2f} s")
        print(f"throughput      {total / elapsed / 1e6:.0f} MB/s{' (incl. client SHA-256)' if h else ''}")
        print(f"peak RSS growth {(rss.peak - rss.base) / 2**20:.1f} MiB (server + client, same process)")
        if h is not None:
            ok = h.hexdigest() == emu.expected_sha256(sid)
            print(f"sha256          {'OK' if ok else 'MISMATCH'} {h.hexdigest()}")
            if not ok:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
