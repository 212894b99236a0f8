"""One export in a process of its own, as an Airflow worker runs it: ``python -m tests.objstore.worker '<json>'``.

The JSON holds the operator's arguments, plus optionally ``settings`` (module constants of
object_store_commit to change, e.g. a short heartbeat), ``rounds`` (argument overrides, one export
each, in order) and ``barrier`` (a path prefix: before round N the worker creates
``<barrier>-N.<pid>.ready`` and waits for ``<barrier>-N``, so racing workers start each round
together). Prints one JSON line per export: the result or the error, and the peak RSS growth
during it (Linux /proc).
"""

from __future__ import annotations

import json
import os
import sys
import time

from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive import object_store_commit
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.unit.fake_context import make_context


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> int:
    """Restart the peak-RSS count (Linux ``clear_refs``) and return the RSS now, in bytes.

    The imports before the export peak higher than a streaming copy should, so the process's
    lifetime peak (``ru_maxrss``) would hide what the export itself costs.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def main() -> int:
    args = json.loads(sys.argv[1])
    for name, value in args.pop("settings", {}).items():
        setattr(object_store_commit, name, value)
    barrier = args.pop("barrier", None)
    rounds = args.pop("rounds", [{}])
    # Build the filesystem (s3fs, aiobotocore, the connection) before measuring: imports are not the copy.
    first = {**args, **rounds[0]}
    ObjectStoragePath(first["dst"].split("{", 1)[0], conn_id=first.get("dst_conn_id")).fs  # noqa: B018
    failed = False
    for number, overrides in enumerate(rounds):
        if barrier:  # say "ready", then wait for the test to release every worker at once
            go = f"{barrier}-{number}"
            open(f"{go}.{os.getpid()}.ready", "w").close()
            while not os.path.exists(go):
                time.sleep(0.005)
        failed |= not export({**args, **overrides})
    return 1 if failed else 0


def export(args: dict[str, object]) -> bool:
    """One export; prints its report line."""
    baseline = _reset_peak_rss()
    try:
        result = AtlasFlexSnapshotToStorageOperator(task_id="copy_to_storage", **args).execute(make_context())
    except Exception as exc:  # noqa: BLE001 - reported to the test, which judges it
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return False
    growth = _peak_rss() - baseline
    print(json.dumps({"ok": True, "result": result, "rss_growth": growth}), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
