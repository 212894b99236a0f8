"""Benchmark: a 200-cluster night on 20 worker hosts, with and without ``sharing_scope: deployment`` (issue 11).

Each host is a separate process with its own host token store; Atlas's token limits are on
(10 token requests a minute, 100 active tokens). Prints token requests, token-endpoint 429s, the
most tokens active at once, exports completed and wall time for both modes side by side. The
'host' run shows the figures before the deployment mode: every host fetches its own token, and
the 429s make hosts wait out Retry-After.

    .venv/bin/python benchmarks/token_night.py [--clusters 200] [--hosts 20]

``main()`` returns the rows (name, figure, baseline, target, verdict) for a ``make bench`` table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

Row = tuple[str, str, str, str, str]
TARGETS = {"token_requests": 5, "token_429s": 0, "peak_active_tokens": 3}


def night(mode: str, clusters: int, hosts: int) -> dict[str, float]:
    from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
    from airflow_provider_atlasflex.testing.token_night import run_night

    names = tuple(f"cluster-{i:03d}" for i in range(clusters))
    with tempfile.TemporaryDirectory() as workdir, AtlasEmulator(
        clusters=names, snapshots_per_cluster=1, snapshot_size=20_000, restore_duration=0.3, enforce_token_limits=True
    ) as emu:
        os.environ["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")
        return run_night(emu, mode=mode, hosts=hosts, workdir=workdir).as_row()


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args(argv)
    shared = night("deployment", args.clusters, args.hosts)
    today = night("host", args.clusters, args.hosts)
    rows: list[Row] = []
    for name in ("token_requests", "token_429s", "peak_active_tokens", "exports_complete", "wall_seconds"):
        fmt = "{:.1f}" if name == "wall_seconds" else "{:.0f}"
        target = TARGETS.get(name, args.clusters if name == "exports_complete" else None)
        figure = shared[name]
        if target is None:
            verdict, target_text = "-", "-"
        elif name == "exports_complete":
            verdict, target_text = ("PASS" if figure >= target else "FAIL"), f">= {target}"
        else:
            verdict, target_text = ("PASS" if figure <= target else "FAIL"), f"<= {target}"
        rows.append((f"{args.hosts}-host night: {name}", fmt.format(figure), fmt.format(today[name]), target_text, verdict))
    return rows


if __name__ == "__main__":
    table = main()
    header = ("what", "sharing_scope=deployment", "sharing_scope=host (before)", "target", "verdict")
    widths = [max(len(str(r[i])) for r in (header, *table)) for i in range(5)]
    for row in (header, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    sys.exit(1 if any(r[4] == "FAIL" for r in table) else 0)
