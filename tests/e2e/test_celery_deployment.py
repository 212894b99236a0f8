"""The nightly export DAG on a real CeleryExecutor deployment, as production runs it (issue 16 item 7).

PostgreSQL (metadata database, Celery result backend) and Redis (broker) from Debian's packages,
then ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and three ``airflow celery
worker`` processes, each worker with its own token directory as if on its own machine (see
``tests/e2e/celery_deployment.py``). The scheduler runs the unpaused nightly DAG (deferrable) against
the local Atlas emulator with Atlas's token limits on (10 token requests a minute per service account)
and 24 flex clusters. The connection leaves ``sharing_scope`` out: the CeleryExecutor must make it
``deployment``.

``make e2e-celery`` runs it alone (installing the Debian packages if missing); ``make test`` runs it
with everything else. Without PostgreSQL, Redis or the Python packages it skips with the reason,
and under CI=true it fails. docs/deployment-celery.md describes the deployment and its figures.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from airflow_provider_atlasflex.hooks.deployment_tokens import VARIABLE_PREFIX
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.demo import file_sha256
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.celery_deployment import WORKERS, CeleryDeployment, DagRunRecord
from tests.e2e.conftest import DAG_ID, DAGS
from tests.e2e.throwaway_services import ThrowawayPostgres, ThrowawayRedis, live_group_members, postgres_bin_dir
from tests.reliability.registry import reliability

pytestmark = pytest.mark.celery

CLUSTERS = tuple(f"fleet-{n:02d}" for n in range(1, 25))
# Long enough that a link is not ready at the sensor's first poke (measured 5-16 s after the request
# on a busy 2-core machine), so the waits defer to the triggerer.
RESTORE_SECONDS = 20.0
# The scheduler's run must finish within this (measured runs: docs/deployment-celery.md).
RUN_TIMEOUT = 300
MAX_TOKEN_REQUESTS = 2


def _missing_is_fatal(reason: str) -> None:
    """Under CI=true a missing tool fails the test; elsewhere it skips, saying what to install."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Celery deployment test must run)", pytrace=False)
    pytest.skip(f"{reason}; `make e2e-celery` installs what is missing (as root, with apt-get)")


def _tools() -> tuple[Path, str]:
    for module, package in (
        ("airflow.providers.celery", "apache-airflow-providers-celery"),
        ("psycopg2", "psycopg2-binary"),
        ("redis", "redis"),
    ):
        try:
            __import__(module)
        except ImportError:
            _missing_is_fatal(f"Python package {package} is not installed (it is in the [dev] extra)")
    postgres = postgres_bin_dir()
    if postgres is None:
        _missing_is_fatal("PostgreSQL's initdb and postgres are not installed (Debian package: postgresql)")
    redis = shutil.which("redis-server")
    if redis is None:
        _missing_is_fatal("redis-server is not installed (Debian package: redis-server)")
    assert postgres is not None and redis is not None
    return postgres, redis


@reliability(
    "hostile",
    "a real CeleryExecutor deployment: PostgreSQL, Redis, 3 Celery workers and a triggerer each with its own "
    "token directory, 24 clusters, Atlas's token limits on, the connection not saying how to share tokens",
    "the provider picks deployment sharing from the executor; one worker fetches a token and every other "
    "process reads it from the encrypted Variable; deferred waits resume through the triggerer",
    "the scheduled run succeeds, 24 of 24 exports byte-identical, at most 2 token requests, no 429",
)
def test_nightly_export_on_a_celery_deployment_uses_one_token(tmp_path: Path) -> None:
    postgres_bin, redis_server = _tools()
    started = time.monotonic()
    dags = tmp_path / "dags"  # only the nightly DAG: the other examples would be scheduled too
    dags.mkdir()
    shutil.copy2(DAGS / f"{DAG_ID}.py", dags)
    exports = tmp_path / "exports"
    emulator = AtlasEmulator(
        clusters=CLUSTERS, snapshot_size=200_000, snapshots_per_cluster=2, restore_duration=RESTORE_SECONDS
    )
    assert emulator.enforce_token_limits  # Atlas's token limits: a burst of requests gets 429
    groups: list[int] = []  # every process group started, checked empty at the end
    with emulator as emu:
        env = {
            # No sharing_scope extra: the CeleryExecutor must make it "deployment".
            "AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT": json.dumps(emulator_connection(emu, "service_account")),
            "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "ATLAS_FLEX_POLL_SECONDS": "1",
        }
        with (
            ThrowawayPostgres(postgres_bin, tmp_path) as postgres,
            ThrowawayRedis(redis_server, tmp_path / "redis") as redis,
        ):
            groups += [s.process.pid for s in (postgres.service, redis.service) if s is not None]
            deployment = CeleryDeployment(tmp_path, dags, postgres, redis.url(), env)
            try:
                with deployment:
                    run = deployment.wait_for_first_run(DAG_ID, timeout=RUN_TIMEOUT)
                    _report(deployment, run, emu, started)
                    _assert_one_token_night(deployment, run, emu, exports)
            except BaseException:
                print(deployment.diagnostics(DAG_ID))
                raise
            finally:
                groups += [s.process.pid for s in deployment.services]
    left = {pgid: members for pgid in groups if (members := live_group_members(pgid))}
    assert not left, f"processes left running after the test (process group: pids): {left}"
    print(
        f"celery deployment: all stopped ({deployment.timings.get('stop', 0):.0f} s for Airflow's processes),"
        f" {time.monotonic() - started:.0f} s in all"
    )


def _assert_one_token_night(deployment: CeleryDeployment, run: DagRunRecord, emu: AtlasEmulator, exports: Path) -> None:
    broken = deployment.broken_tasks(DAG_ID, run.run_id)
    assert run.state == "success", f"run {run.run_id} is {run.state}; tasks: {broken}"
    assert run.logical_date is not None
    _assert_exported_identically(emu, exports, run.logical_date.strftime("%Y-%m-%d"))
    client = emu.service_account.client_id
    requests = emu.token_requests(client)
    assert 1 <= requests <= MAX_TOKEN_REQUESTS, f"{requests} token requests for {len(CLUSTERS)} clusters"
    refused = [(x.operation, x.path) for x in emu.requests if x.status == 429]
    assert not refused, f"Atlas answered 429 to {refused}"
    # deployment mode: one encrypted Variable holds the token, never the token itself
    variables = deployment.query("SELECT key, val FROM variable WHERE key LIKE %s", (VARIABLE_PREFIX + "%",))
    assert len(variables) == 1, f"token Variables: {[key for key, _ in variables]}"
    assert not any(token in str(variables[0][1]) for token in emu.issued_tokens(client))
    # every worker and the triggerer held it in its own token directory: each took part, none asked Atlas
    hosts = [f"worker-{n}" for n in range(1, WORKERS + 1)] + ["triggerer"]
    without = [host for host in hosts if not list(deployment.token_dir(host).glob("*.json"))]
    assert not without, f"{without} never held the shared token: not every process took part"


def _assert_exported_identically(emu: AtlasEmulator, exports: Path, date: str) -> None:
    """Each cluster's newest snapshot at <cluster>/<date>/<id>.tgz with its sidecars, byte-identical, nothing else."""
    expected = {c: emu.newest_completed_snapshot_id(c) for c in CLUSTERS}
    found = sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file()) if exports.exists() else []
    tgz = [f"{c}/{date}/{s}.tgz" for c, s in expected.items()]
    assert found == sorted(f"{name}{suffix}" for name in tgz for suffix in ("", ".json", ".sha256"))
    differ = [c for c, s in expected.items() if file_sha256(exports / c / date / f"{s}.tgz") != emu.expected_sha256(s)]
    assert not differ, f"bytes differ from what Atlas served for {differ}"


def _report(deployment: CeleryDeployment, run: DagRunRecord, emu: AtlasEmulator, started: float) -> None:
    """The figures docs/deployment-celery.md quotes (shown with -rP or -s)."""
    tis = deployment.task_instances(DAG_ID, run.run_id)
    copies = [t for t in tis if t[0] == "export_cluster.copy_to_storage" and t[2] == "success"]
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in deployment.timings.items())
    print(
        f"celery deployment: run {run.state}, {len(copies)}/{len(CLUSTERS)} clusters exported,"
        f" {emu.token_requests(emu.service_account.client_id)} token request(s),"
        f" {sum(1 for x in emu.requests if x.status == 429)} answered 429, {len(tis)} task instances,"
        f" {len(emu.requests)} Atlas requests; dag_run start to end {run.seconds or 0:.0f} s;"
        f" {time.monotonic() - started:.0f} s since the test started ({phases})"
    )
