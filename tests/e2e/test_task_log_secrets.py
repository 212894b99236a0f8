"""No secret reaches a task log file, the CLI output, XCom or a rendered template: real Airflow runs.

How the log files are produced: plain ``airflow dags test`` runs every task inside the CLI process
and prints task logs to stdout only, so it writes no per-task log files. These tests run
``airflow dags test --use-executor`` instead: Airflow's LocalExecutor runs each task in its own
supervised process, exactly as a deployment does, talking to a real Execution API server
(``airflow api-server --apps execution``, started for the run) and writing
``<base_log_folder>/dag_id=.../run_id=.../task_id=.../[map_index=N/]attempt=1.log``. Deferrable
runs resume through a real ``airflow triggerer``, whose trigger logs land beside the task's log
(``attempt=1.log.trigger.N.log``). Every process is stopped before each test ends.

Each test scans, for every secret the run involved (the API private key, the service account's
client secret and its Basic credentials, every bearer token the emulator issued, the query string
and ``Signature=`` of every pre-signed link it handed out): every file under the log folder, the
command output, the api-server and triggerer output, and every table of the metadata database
(``xcom`` and ``rendered_task_instance_fields`` included, which must not be empty).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, DagTestResult
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import (
    ALL_TASKS,
    CLUSTERS,
    MAPPED_TASKS,
    RESTORE_SECONDS,
    UNMAPPED_TASKS,
    assert_exported_identically,
    database_text,
    run_nightly,
    task_log_files,
)
from tests.reliability.registry import reliability

RESTORE_JOB_OPERATIONS = (
    "downloadGroupFlexClusterBackup",
    "listGroupFlexClusterBackupRestoreJobs",
    "getGroupFlexClusterBackupRestoreJob",
)


def _snapshot_urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["snapshotUrl"]] if isinstance(value.get("snapshotUrl"), str) else []
        return found + [u for v in value.values() for u in _snapshot_urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _snapshot_urls(v)]
    return []


def secrets_of(emu: AtlasEmulator, auth: str) -> dict[str, str]:
    """Every secret of the run, by what it is: credentials, issued tokens, served links' credentials."""
    found: dict[str, str] = {}
    if auth == "digest":
        found["API private key"] = emu.api_key.private_key
    else:
        sa = emu.service_account
        found["client secret"] = sa.client_secret
        found["Basic client credentials"] = base64.b64encode(f"{sa.client_id}:{sa.client_secret}".encode()).decode()
        tokens = emu.issued_tokens()
        assert tokens, "the service account never got a token: nothing was proven"
        found.update({f"bearer token #{i}": token for i, token in enumerate(tokens, 1)})
    urls = [u for c in emu.clusters for job in emu.restore_jobs(c) for u in _snapshot_urls(job)]
    for exchange in emu.requests:
        if exchange.operation in RESTORE_JOB_OPERATIONS and exchange.response_body:
            urls += _snapshot_urls(json.loads(exchange.response_body))
        if exchange.operation == "snapshotFile" and exchange.query.get("Signature"):
            found[f"Signature of the link {exchange.path}"] = exchange.query["Signature"]
    for url in set(urls):
        query = urlsplit(url).query
        found[f"query string of the link {urlsplit(url).path}"] = query
        found[f"Signature of the link {urlsplit(url).path}"] = parse_qs(query)["Signature"][0]
    assert any(k.startswith("query string") for k in found), "no link was served: nothing was proven"
    # Any "Signature=" at all is a link's credential, whichever link it came from.
    found["a link's Signature= parameter"] = "Signature="
    too_short = [k for k, v in found.items() if len(v) < 10]
    assert not too_short, f"values too short to search for without false hits: {too_short}"
    return found


def surfaces(sandbox: AirflowSandbox, result: DagTestResult) -> dict[str, str]:
    """Everything Airflow wrote for the run that a person or another process can read."""
    texts = {f"log file {p.relative_to(sandbox.log_folder)}": p.read_text(errors="replace")
             for p in sandbox.log_folder.rglob("*") if p.is_file()}
    texts["the airflow dags test output"] = result.output
    texts.update({f"{name} output": path.read_text(errors="replace") for name, path in result.service_logs.items()})
    texts.update({f"database table {name}": text for name, text in database_text(sandbox).items()})
    return texts


def assert_no_secret_anywhere(sandbox: AirflowSandbox, result: DagTestResult, emu: AtlasEmulator, auth: str) -> None:
    secrets = secrets_of(emu, auth)
    texts = surfaces(sandbox, result)
    # the places the brief names must exist and hold data, or "no secret in them" proves nothing
    assert texts["database table xcom"].strip(), "no XCom rows"
    assert texts["database table rendered_task_instance_fields"].strip(), "no rendered template fields"
    leaks = sorted(
        f"{what} in {where}" for where, text in texts.items() for what, value in secrets.items() if value in text
    )
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


def assert_log_files_for(sandbox: AirflowSandbox, expected: set[tuple[str, int]], *, triggers: set[int]) -> None:
    """A log file for every task instance that ran (mapped ones by map index), trigger logs for deferred ones."""
    files = task_log_files(sandbox)
    assert set(files) == expected, f"task log files for {sorted(files)}, expected {sorted(expected)}"
    for key, paths in files.items():
        assert any(p.name == "attempt=1.log" and p.stat().st_size > 0 for p in paths), f"empty log for {key}"
    deferred = {i for (task, i), paths in files.items()
                if task.endswith("wait_for_link") and any(".trigger." in p.name for p in paths)}
    assert deferred == triggers, f"trigger log files for map indexes {sorted(deferred)}, expected {sorted(triggers)}"


def _level(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return "unparsed"  # not Airflow's JSON task log format: counts as suspicious
    return record.get("level") if isinstance(record, dict) else "unparsed"


def every_task_instance(clusters: int = len(CLUSTERS)) -> set[tuple[str, int]]:
    return {(t, -1) for t in UNMAPPED_TASKS} | {(t, i) for t in MAPPED_TASKS for i in range(clusters)}


def assert_logs_mention_the_export(sandbox: AirflowSandbox, emu: AtlasEmulator, cluster: str, index: int) -> None:
    """Positive control: the files scanned are the real task logs of this run."""
    files = task_log_files(sandbox)
    snapshot_id = emu.newest_completed_snapshot_id(cluster)
    job_id = emu.restore_jobs(cluster)[-1]["id"]
    request_log = "".join(p.read_text() for p in files[("export_cluster.request_link", index)])
    assert snapshot_id in request_log and job_id in request_log


@reliability(
    "secret",
    "A full nightly run with an API key (HTTP Digest), sensor in poke mode, through Airflow's LocalExecutor",
    "Exported every cluster; each task ran in its own process and wrote its own log file",
    "No private key, snapshotUrl query string or Signature= in any task log file, the CLI output, the "
    "api-server output, XCom, rendered template fields or any other table of the metadata database",
)
def test_digest_run_writes_no_secret_to_task_logs(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=RESTORE_SECONDS) as emu:
        result = run_nightly(sandbox, emu, exports, auth="digest", deferrable=False)
        assert result.succeeded, result.tail()
        assert_exported_identically(emu, exports)
    assert_log_files_for(sandbox, every_task_instance(), triggers=set())
    for index, cluster in enumerate(CLUSTERS):
        assert_logs_mention_the_export(sandbox, emu, cluster, index)
    assert_no_secret_anywhere(sandbox, result, emu, "digest")


@reliability(
    "secret",
    "A full nightly run with a service account (OAuth bearer tokens), sensor deferrable, through the "
    "LocalExecutor and a real triggerer",
    "Exported every cluster; the sensor waited in the triggerer, whose trigger logs sit beside the task logs",
    "No client secret, Basic credentials, bearer token or link query string in any task or trigger log file, "
    "the CLI, api-server or triggerer output, XCom, rendered template fields or the metadata database",
)
def test_service_account_run_writes_no_secret_to_task_or_trigger_logs(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=RESTORE_SECONDS) as emu:
        result = run_nightly(sandbox, emu, exports, auth="service_account", deferrable=True)
        assert result.succeeded, result.tail()
        assert_exported_identically(emu, exports)
    assert "triggerer" in result.service_logs
    assert_log_files_for(sandbox, every_task_instance(), triggers={0, 1})
    for index, cluster in enumerate(CLUSTERS):
        assert_logs_mention_the_export(sandbox, emu, cluster, index)
    assert_no_secret_anywhere(sandbox, result, emu, "service_account")


@pytest.mark.parametrize(
    ("auth", "deferrable"),
    [("digest", False), ("service_account", True)],
    ids=["digest-poke", "service-account-deferrable"],
)
@reliability(
    "fault-clear-failure",
    "Atlas ends one cluster's DOWNLOAD restore job FAILED during a real nightly run (API key with a poking "
    "sensor, and service account with a deferred sensor in a real triggerer)",
    "Failed that cluster's wait task at once (no retries) and never started its copy; the other cluster "
    "was exported as usual",
    "The run fails; the task log holds one error line naming the cluster, snapshot and restore job and what to "
    "do; no final or partial (.atlasflex-partial) file for that cluster",
)
@reliability(
    "secret",
    "A nightly run that fails (one restore job FAILED), with each auth method",
    "Logged the failure and its exception",
    "No credential, bearer token or link query string in the error, the task or trigger logs, the CLI output, "
    "XCom, rendered template fields or the metadata database",
)
def test_failed_restore_job_fails_clearly_without_leaking(sandbox, tmp_path, auth, deferrable):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=RESTORE_SECONDS) as emu:
        emu.fail_next_restore_job("beta")
        result = run_nightly(sandbox, emu, exports, auth=auth, deferrable=deferrable)
        assert result.returncode != 0 and "state=failed" in result.output, result.tail()
        assert_exported_identically(emu, exports, clusters=("alpha",))
        [failed_job] = emu.restore_jobs("beta")
        assert failed_job["status"] == "FAILED"

    snapshot_id, job_id = failed_job["snapshotId"], failed_job["id"]
    # every task instance that ran has its log; beta's copy never started (upstream failed)
    assert_log_files_for(
        sandbox, every_task_instance() - {("export_cluster.copy_to_storage", 1)}, triggers={0, 1} if deferrable else set()
    )
    # one clear error line in the failed task's log, naming cluster, snapshot and job, with the remedy
    [log_file] = [p for p in task_log_files(sandbox)[("export_cluster.wait_for_link", 1)] if p.name == "attempt=1.log"]
    errors = [line for line in log_file.read_text().splitlines() if _level(line) in ("error", "critical")]
    assert len(errors) == 1, errors
    message = f"Atlas reports restore job {job_id} (snapshot {snapshot_id}, cluster 'beta') as FAILED"
    assert message in errors[0] and "Request the download again" in errors[0], errors[0]
    assert message in result.output
    # the run did not retry a hopeless wait, and alpha's tasks logged no error at all
    assert all(p.name.startswith("attempt=1.log") for p in task_log_files(sandbox)[("export_cluster.wait_for_link", 1)])
    for key, paths in task_log_files(sandbox).items():
        if key[1] != 1 and key[0] != "night_report":
            for path in paths:
                assert '"level":"error"' not in path.read_text(), f"unexpected error in {path}"
    # the night's report fails the run once, naming the failed cluster
    report_log = "".join(p.read_text() for p in task_log_files(sandbox)[("night_report", -1)])
    assert "1 cluster(s) failed tonight: beta" in report_log
    # nothing, not even a hidden partial file, for the failed cluster
    assert not (exports / "beta").exists() or not any((exports / "beta").rglob("*"))
    assert not list(exports.rglob("*.atlasflex-partial"))
    assert_no_secret_anywhere(sandbox, result, emu, auth)


def test_every_task_of_the_dag_is_covered():
    """The DAG's task ids are the ones these tests expect log files for (a renamed task would go unseen)."""
    import importlib.util

    dag_file = Path(__file__).resolve().parents[2] / "dags_examples" / "atlas_flex_nightly_export.py"
    spec = importlib.util.spec_from_file_location("nightly_dag_task_ids", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(module.dag.task_ids) == sorted(ALL_TASKS)
