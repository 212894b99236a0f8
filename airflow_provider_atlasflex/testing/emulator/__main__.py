"""CLI: run the emulator in the foreground for demos and scripted end-to-end runs.

Prints the connection facts (it exists to hand out the *demo* credentials) as
readable lines plus one ``ATLAS_EMULATOR_JSON {...}`` line, optionally writes the
same JSON to ``--ready-file`` once listening, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType

from .emulator import AtlasEmulator

JSON_PREFIX = "ATLAS_EMULATOR_JSON "


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_atlasflex.testing.emulator",
        description="Local emulator of the MongoDB Atlas Admin API flex-backup endpoints.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (default)")
    p.add_argument("--seed", default="demo", help="seed for deterministic ids and credentials")
    p.add_argument("--clusters", type=_csv, default=("alpha", "beta"), help="flex clusters, comma separated")
    p.add_argument("--non-flex-clusters", type=_csv, default=("legacy-m10",), help="non-flex clusters")
    p.add_argument("--snapshot-size", type=int, default=1_000_000, help="bytes of each .tgz")
    p.add_argument("--snapshots-per-cluster", type=int, default=8)
    p.add_argument("--restore-duration", type=float, default=2.0, help="seconds a download job takes")
    p.add_argument("--link-ttl", type=float, default=4 * 3600, help="seconds a snapshotUrl stays valid")
    p.add_argument("--token-ttl", type=float, default=3600, help="OAuth access token lifetime")
    p.add_argument("--no-token-limits", action="store_true", help="disable OAuth rate/active-token limits")
    p.add_argument("--ready-file", help="write the JSON description here once listening")
    return p


def _write_ready(path: str, text: str) -> None:
    """Atomic write so a waiting script never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".atlas-emulator-", dir=directory)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        emu = AtlasEmulator(
            clusters=args.clusters,
            non_flex_clusters=args.non_flex_clusters,
            snapshot_size=args.snapshot_size,
            snapshots_per_cluster=args.snapshots_per_cluster,
            restore_duration=args.restore_duration,
            link_ttl=args.link_ttl,
            token_ttl=args.token_ttl,
            enforce_token_limits=not args.no_token_limits,
            seed=args.seed,
            host=args.host,
            port=args.port,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        emu.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        info = emu.describe()
        lines = [
            f"Atlas emulator listening on {info['base_url']}",
            f"  group id:               {info['group_id']}",
            f"  API key (Project Owner): {emu.api_key.public_key} / {emu.api_key.private_key}",
            f"  API key (Read Only):     {emu.read_only_api_key.public_key} / {emu.read_only_api_key.private_key}",
            f"  service account:         {emu.service_account.client_id} / {emu.service_account.client_secret}",
        ]
        for name, c in info["clusters"].items():
            lines.append(f"  flex cluster {name}: newest snapshot {c['newest_snapshot_id']}")
        payload = json.dumps(info, sort_keys=True)
        print("\n".join(lines))
        print(JSON_PREFIX + payload, flush=True)
        if args.ready_file:
            _write_ready(args.ready_file, payload)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except OSError:
                pass
    print("Atlas emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
