"""``make demo``: the nightly export DAG in real Airflow against the local Atlas emulator.

Starts the emulator with three flex clusters (one with backup disabled), runs ``airflow dags test
atlas_flex_nightly_export`` (discovery, deferrable sensor, service-account auth, dynamic task
mapping, the night's report), prints what discovery found and the report, then checks every
exported file against what the emulator served. Leaves nothing running; exits non-zero on any
mismatch.

The DAG comes from the installed package (``airflow_provider_atlasflex.example_dags``, the
repository's ``dags_examples/``), so the demo works from a wheel as well as from a checkout; it is
copied into ``WORKDIR/dags/``, which is also the copy to start your own DAG from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from airflow_provider_atlasflex.operators.night_report import render_table
from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator

DAG_ID = "atlas_flex_nightly_export"
NO_BACKUP_CLUSTER = "archive"  # a cluster whose backup is disabled: discovery skips it, the report says so


def read_xcom(home: Path, task_id: str, key: str = "return_value") -> Any:
    """One XCom value of the demo run, from the sandbox's metadata database (None if absent)."""
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute("SELECT value FROM xcom WHERE task_id = ? AND key = ?", (task_id, key)).fetchone()
    if row is None:
        return None
    value = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value
EXAMPLE_DAGS_PACKAGE = "airflow_provider_atlasflex.example_dags"
# Marks a work directory as the demo's own: only such a directory is wiped at the next run.
WORKDIR_MARKER = ".atlasflex-demo"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_example_dag(dags_folder: Path) -> Path:
    """Copy the example DAG shipped in the package into ``dags_folder``; returns the copy."""
    dags_folder.mkdir(parents=True, exist_ok=True)
    with as_file(files(EXAMPLE_DAGS_PACKAGE) / f"{DAG_ID}.py") as source:
        return Path(shutil.copy2(source, dags_folder / source.name))


def prepare_workdir(workdir: Path) -> None:
    """Empty ``workdir`` for a fresh run, refusing to wipe a directory the demo did not create."""
    ours = (workdir / WORKDIR_MARKER).exists() or (workdir / "airflow-home").is_dir()  # or an older demo's
    if workdir.exists() and any(workdir.iterdir()) and not ours:
        raise SystemExit(f"{workdir} is not empty and was not made by the demo; pass a new or empty --workdir.")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / WORKDIR_MARKER).touch()


def _sidecars_agree(path: Path, snapshot_id: str, size: int, digest: str) -> tuple[bool, str]:
    """Check the export's ``.sha256`` (``sha256sum -c`` format) and ``.json`` manifest against the file."""
    sha_file, manifest_file = path.with_name(path.name + ".sha256"), path.with_name(path.name + ".json")
    if not sha_file.is_file() or not manifest_file.is_file():
        return False, f"sidecars MISSING beside {path.name} (the export is unproven)"
    manifest = json.loads(manifest_file.read_text())
    agree = sha_file.read_text() == f"{digest}  {path.name}\n" and (
        manifest.get("snapshot_id"), manifest.get("bytes"), manifest.get("sha256")
    ) == (snapshot_id, size, digest)
    snapshot = manifest.get("snapshot") or {}
    detail = f"snapshot finished {snapshot.get('finishTime')}, MongoDB {snapshot.get('mongoDBVersion')}"
    verdict = "agree with the file" if agree else "DISAGREE with the file"
    return agree, f"sidecars {sha_file.name} (sha256sum -c) and {manifest_file.name} ({detail}) {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where Airflow's home and exports go")
    parser.add_argument("--clusters", default="alpha,beta")
    parser.add_argument("--snapshot-size", type=int, default=16 * 1024 * 1024, help="bytes per snapshot file")
    parser.add_argument("--auth", choices=("service_account", "digest"), default="service_account")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    prepare_workdir(workdir)
    exports = workdir / "exports"
    clusters = [c for c in args.clusters.split(",") if c]
    dag_file = copy_example_dag(workdir / "dags")
    sandbox = AirflowSandbox(workdir / "airflow-home", dag_file.parent)
    print(f"Example DAG: {dag_file}", flush=True)
    print(f"Preparing Airflow in {sandbox.home} ...", flush=True)
    sandbox.migrate()

    with AtlasEmulator(clusters=tuple(clusters), snapshot_size=args.snapshot_size, restore_duration=3.0) as emu:
        emu.add_cluster(NO_BACKUP_CLUSTER, snapshots=0, backup_enabled=False)
        print(f"Atlas emulator on {emu.base_url} (project {emu.group_id}); running the DAG ...", flush=True)
        result = sandbox.dags_test(
            DAG_ID,
            conf={},  # no cluster list: discovery exports every flex cluster of the project
            connections={"mongodb_atlas_default": emulator_connection(emu, args.auth)},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "ATLAS_FLEX_POLL_SECONDS": "1",
                # Where exports go is deployment configuration (an Airflow Variable), not run conf.
                "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            },
            timeout=300,
        )
        (workdir / "dags-test.log").write_text(result.output)
        if not result.succeeded:
            print(result.tail(), file=sys.stderr)
            print(f"\nThe DAG run failed (exit {result.returncode}); full log: {workdir / 'dags-test.log'}", file=sys.stderr)
            return 1
        print(f"DAG run succeeded in {result.seconds:.1f} s (log: {workdir / 'dags-test.log'})\n")
        discovery = read_xcom(sandbox.home, "discover_clusters") or {}
        print("Discovery:")
        for found in discovery.get("exportable", []):
            print(f"    export  {found['cluster_name']}")
        for skipped in discovery.get("skipped", []):
            print(f"    skip    {skipped['cluster_name']}: {skipped['reason']}")
        print("\nThe night's report:")
        print("    " + render_table(read_xcom(sandbox.home, "night_report", "report") or []).replace("\n", "\n    "))
        print()
        failures = 0
        for cluster in clusters:
            snapshot_id = emu.newest_completed_snapshot_id(cluster)
            found = sorted(exports.glob(f"{cluster}/*/{snapshot_id}.tgz"))
            if len(found) != 1:
                print(f"{cluster}: expected one export of snapshot {snapshot_id}, found {found}")
                failures += 1
                continue
            path = found[0]
            size, digest = path.stat().st_size, file_sha256(path)
            matches = size == emu.snapshot_size_of(snapshot_id) and digest == emu.expected_sha256(snapshot_id)
            proven, proof = _sidecars_agree(path, snapshot_id, size, digest)
            failures += not (matches and proven)
            print(f"{cluster}: {path}")
            print(f"    {size:,} bytes  sha256 {digest}  {'matches what Atlas served' if matches else 'MISMATCH'}")
            print(f"    {proof}")
    print("\nDemo OK: every snapshot exported and verified." if not failures else f"\n{failures} export(s) failed.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
