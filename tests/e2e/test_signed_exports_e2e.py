"""Signed manifests in real Airflow (issue 15, item 4): the key is created by the first task that needs
it (zero configuration), kept in Airflow Variables, and a planted file set is never taken for ours.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import textwrap
import time

from airflow_provider_atlasflex.archive.keys import POINTER_VARIABLE, SECRET_VARIABLE_PREFIX
from airflow_provider_atlasflex.archive.manifest import build_manifest
from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import RUN_DATE, run_nightly, task_log_files
from tests.e2e.conftest import read_xcoms, sandbox_with_dag
from tests.reliability.registry import reliability


def signing_variables(sandbox: AirflowSandbox) -> dict[str, str]:
    """The signing Variables in the sandbox's database, decrypted (each must be stored encrypted)."""
    from cryptography.fernet import Fernet

    config = (sandbox.home / "airflow.cfg").read_text()
    fernet = Fernet(re.search(r"^fernet_key = (\S+)$", config, re.MULTILINE).group(1).encode())
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT key, val, is_encrypted FROM variable WHERE key LIKE 'atlasflex_signing%'"
        ).fetchall()
    assert all(encrypted for _, _, encrypted in rows), "a signing Variable is stored in clear"
    return {key: fernet.decrypt(value.encode()).decode() for key, value, _ in rows}


@reliability(
    "hostile-at-rest",
    "In real Airflow (the nightly DAG, LocalExecutor, no key configured): before the run someone without our "
    "keys plants <root>/alpha/<date>/<snapshotId>.tgz as 11 non-gzip bytes with a matching .sha256 and a "
    "manifest of our format",
    "The first copy task created the signing key in Airflow Variables; alpha's copy did not accept the planted "
    "set: it compared it with what Atlas serves and refused without retrying (overwrite=False), leaving it "
    "untouched; beta was exported with a signed manifest",
    "The run fails; the night's report names alpha as failed; alpha's task log: '<dst> already exists and "
    "overwrite=False, and unsigned: the manifest is not signed ...'; no key in any log",
)
def test_nightly_dag_refuses_a_planted_file_set(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=("alpha", "beta"), snapshot_size=500_000, restore_duration=0.0) as emu:
        snapshot_id = emu.newest_completed_snapshot_id("alpha")
        planted = exports / "alpha" / RUN_DATE / f"{snapshot_id}.tgz"
        planted.parent.mkdir(parents=True)
        planted.write_bytes(b"hello world")
        sha = hashlib.sha256(b"hello world").hexdigest()
        planted.with_name(planted.name + ".sha256").write_text(f"{sha}  {planted.name}\n")
        manifest = build_manifest(
            file_name=planted.name, cluster_name="alpha", group_id=emu.group_id, snapshot_id=snapshot_id,
            snapshot={"finishTime": "2026-11-20T01:00:00Z"}, restore_job_id="d" * 24, size=11, sha256=sha,
        )
        planted.with_name(planted.name + ".json").write_text(json.dumps(manifest, indent=2))
        result = run_nightly(sandbox, emu, exports, auth="digest", deferrable=False)
        (tmp_path / "dags-test.out").write_text(result.output)
        alpha_gets = [r for r in emu.requests.by_operation("snapshotFile") if "alpha" in r.path]

    assert not result.succeeded
    assert planted.read_bytes() == b"hello world" and len(alpha_gets) == 1  # compared once, never retried
    report = read_xcoms(sandbox, "night_report", "report")[-1]
    assert {r["cluster_name"]: r["outcome"] for r in report} == {"alpha": "failed", "beta": "exported"}
    logs = task_log_files(sandbox)
    alpha_log = "".join(p.read_text() for p in logs[("export_cluster.copy_to_storage", 0)])
    assert "already exists and overwrite=False, and unsigned" in alpha_log
    assert "not copied again" not in alpha_log
    beta = next((exports / "beta" / RUN_DATE).glob("*.tgz.json"))
    signed = json.loads(beta.read_text())["signature"]
    variables = signing_variables(sandbox)
    # zero configuration: the copy tasks created the key (alpha's and beta's may each have made one at once)
    keys = {k.removeprefix(SECRET_VARIABLE_PREFIX): v for k, v in variables.items() if k != POINTER_VARIABLE}
    assert signed["key_id"] in keys and variables[POINTER_VARIABLE] in keys
    everything = result.output + "".join(p.read_text() for paths in logs.values() for p in paths)
    assert all(len(secret) >= 32 and secret not in everything for secret in keys.values()), "a key reached a log"


RACE_DAG_ID = "atlas_flex_key_race"
RACE_DAG = textwrap.dedent(
    """
    import io
    import os
    import tarfile
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from airflow.sdk import DAG, task

    from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator

    WORK = os.environ.get("KEY_RACE_DIR", "/nonexistent")

    with DAG(dag_id="atlas_flex_key_race", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):

        @task
        def export(name: str) -> str:
            import hashlib

            from airflow.sdk import ObjectStoragePath

            from airflow_provider_atlasflex.archive.keys import KeyRing
            from airflow_provider_atlasflex.archive.manifest import build_manifest, write_sidecars

            work = Path(WORK)
            (work / f"ready-{name}").touch()
            deadline = time.monotonic() + 60
            while len(list(work.glob("ready-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.002)  # both tasks look for the key at the same moment
            key = KeyRing().signing_key()
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                info = tarfile.TarInfo(f"{name}.bson")
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
            data = buffer.getvalue()
            path = ObjectStoragePath(f"file://{work}/exports/{name}/{name}.tgz")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            manifest = build_manifest(
                file_name=path.name, cluster_name=name, group_id="5f1b2c3d4e5f60718293a4b5", snapshot_id="a" * 24,
                snapshot={}, restore_job_id="b" * 24, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            )
            write_sidecars(path, manifest, key=key)
            return key.key_id

        exported = export.expand(name=["one", "two"])
        exported >> AtlasFlexExportVerifyOperator(task_id="scrub", root=f"file://{WORK}/exports")
    """
)


@reliability(
    "hostile",
    "In real Airflow (LocalExecutor, separate task processes): two tasks find no signing key and create the "
    "first one at the same moment (a barrier lines them up), in a loop of rounds with the key Variables deleted "
    "before each",
    "Each task stored its own key under its own Variable (atlasflex_signing_secret_<key_id>) before pointing "
    "atlasflex_signing_key_id at it: no lost update; a scrub task in another process verified both exports",
    "Every round succeeds; both exports verify whichever task's key the pointer names last",
)
def test_two_tasks_creating_the_first_key_both_stay_verifiable(migrated_home, tmp_path):
    sandbox = sandbox_with_dag(migrated_home, tmp_path, "key_race.py", RACE_DAG)
    home = sandbox.home
    raced, started = 0, time.monotonic()
    for round_ in range(3):
        with sqlite3.connect(home / "airflow.db") as db:
            db.execute("DELETE FROM variable WHERE key LIKE 'atlasflex_signing%'")
        work = tmp_path / f"round-{round_}"
        work.mkdir()
        result = sandbox.dags_test(
            RACE_DAG_ID,
            logical_date=f"2026-11-{10 + round_:02d}",
            env={"KEY_RACE_DIR": str(work)},
            use_executor=True,
            timeout=180,
        )
        (tmp_path / f"round-{round_}.out").write_text(result.output)
        assert result.succeeded, result.tail()
        key_ids = read_xcoms(sandbox, "export")
        variables = signing_variables(sandbox)
        created = {k for k in variables if k.startswith(SECRET_VARIABLE_PREFIX)}
        used = {json.loads((work / "exports" / n / f"{n}.tgz.json").read_text())["signature"]["key_id"] for n in ("one", "two")}
        assert {f"{SECRET_VARIABLE_PREFIX}{k}" for k in used} <= created
        assert variables[POINTER_VARIABLE] in {k.removeprefix(SECRET_VARIABLE_PREFIX) for k in created}
        assert len(key_ids) >= 2
        raced += len(used) == 2
        if time.monotonic() - started > 420:
            break
    print(f"rounds in which both tasks created a key: {raced}")
    assert raced >= 1, "the two tasks never created a key at the same moment: the race was not exercised"
