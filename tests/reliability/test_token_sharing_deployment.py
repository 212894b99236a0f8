"""sharing_scope 'deployment': one token for every worker host (issue 11).

Worker hosts are separate processes with separate host stores (as Celery workers or Kubernetes
pods); they share Airflow Variables, stood in for by ``FileVariables`` (same contract: read,
write, last writer wins, no compare-and-swap).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_atlasflex.hooks import deployment_tokens
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.deployment_tokens import VariableTokenStore, encryption_key, variable_name
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.testing.token_night import FileVariables, run_night
from tests.reliability.registry import reliability

BASE, CLIENT, SECRET = "https://atlas.test", "mdb_sa_id_0123456789abcdef01234567", "mdb_sa_sk_first-secret"


@pytest.fixture
def variables(tmp_path: Path) -> Iterator[FileVariables]:
    directory = tmp_path / "variables"
    directory.mkdir()
    transport = FileVariables(directory)
    deployment_tokens.use_variables(transport)
    yield transport
    deployment_tokens.use_variables(deployment_tokens.AirflowVariables())


def store(transport: FileVariables, secret: str = SECRET, **kwargs: object) -> VariableTokenStore:
    return VariableTokenStore(
        transport, variable_name(BASE, CLIENT, secret), encryption_key(BASE, CLIENT, secret), **kwargs  # type: ignore[arg-type]
    )


def token(value: str, now: float | None = None) -> CachedToken:
    now = time.time() if now is None else now
    return CachedToken(value, now + 3600, now)


# ---- the night -------------------------------------------------------------------------------------


@reliability(
    "hostile",
    "a 200-cluster night on 20 worker hosts (separate processes and host stores, as pods), Atlas' token limits on, "
    "sharing_scope 'deployment'",
    "the hosts agree on one token through an encrypted Airflow Variable (lease, then read-back)",
    "all 200 exports complete; no 429 from the token endpoint; at most 5 token requests, at most 3 active tokens",
)
def test_two_hundred_cluster_night_on_twenty_hosts(tmp_path: Path) -> None:
    clusters = tuple(f"cluster-{i:03d}" for i in range(200))
    with AtlasEmulator(
        clusters=clusters, snapshots_per_cluster=1, snapshot_size=20_000, restore_duration=0.3, enforce_token_limits=True
    ) as emu:
        result = run_night(emu, mode="deployment", hosts=20, workdir=tmp_path)
        issued = emu.issued_tokens(emu.service_account.client_id)
    assert result.exports_complete == 200 and result.failed_hosts == 0
    assert result.token_429s == 0
    assert result.token_requests <= 5
    assert result.peak_active_tokens <= 3
    stored = "".join(p.read_text() for p in (tmp_path / "variables").iterdir())
    assert stored and not any(t in stored for t in issued)  # only ciphertext in the Variable


# ---- hosts racing ------------------------------------------------------------------------------------


def _host_process(token_dir: str, result_file: str, start_at: float) -> None:
    os.environ["ATLASFLEX_TOKEN_DIR"] = token_dir
    TOKEN_CACHE.clear()
    with deployment_tokens._stores_lock:
        deployment_tokens._stores.clear()
    time.sleep(max(0.0, start_at - time.time()))
    hook = AtlasFlexHook()
    try:
        hook.get_flex_cluster("alpha")
        hook.get_flex_cluster("beta")
        Path(result_file).write_text(hook._sent_token or "")
        code = 0
    except Exception:  # noqa: BLE001 - the exit code reports it
        code = 1
    os._exit(code)


def run_hosts(tmp_path: Path, count: int) -> list[str]:
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    processes, results = [], []
    for i in range(count):
        token_dir = tmp_path / f"host-{i}"
        token_dir.mkdir(mode=0o700)
        results.append(tmp_path / f"host-{i}.used")
        processes.append(context.Process(target=_host_process, args=(str(token_dir), str(results[-1]), start_at)))
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * count
    return [r.read_text() for r in results]


@pytest.fixture
def emu_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: FileVariables) -> Iterator[AtlasEmulator]:
    with AtlasEmulator(clusters=("alpha", "beta"), snapshots_per_cluster=1, restore_duration=0.0) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT",
            json.dumps(emulator_connection(emu, "service_account", sharing_scope="deployment")),
        )
        yield emu


@reliability(
    "hostile",
    "8 worker hosts with separate host stores need a token at the same moment (sharing_scope 'deployment')",
    "one host wins the lease in the shared Variable and fetches; the others wait for its token",
    "1 token request; every host ends using the same token; 1 active token",
)
def test_hosts_refreshing_at_once_end_with_one_token(emu_deployment: AtlasEmulator, tmp_path: Path) -> None:
    used = run_hosts(tmp_path, 8)
    client = emu_deployment.service_account.client_id
    assert len(set(used)) == 1
    assert emu_deployment.token_requests(client) == 1
    assert emu_deployment.active_token_count(client) == 1


def test_two_hosts_publishing_at_once_converge_and_name_the_loser(variables: FileVariables) -> None:
    """The lease lost (both fetched): after publishing, both use the stored token; the other one is displaced."""
    for round_ in range(20):
        hosts = [store(variables, settle_seconds=0.05), store(variables, settle_seconds=0.05)]
        mine = [token(f"a-{round_}"), token(f"b-{round_}")]
        results: list[tuple[CachedToken, list[CachedToken]]] = [None, None]  # type: ignore[list-item]
        barrier = threading.Barrier(2)

        def publish(
            i: int,
            barrier: threading.Barrier = barrier,
            hosts: list[VariableTokenStore] = hosts,
            mine: list[CachedToken] = mine,
            results: list[tuple[CachedToken, list[CachedToken]]] = results,
        ) -> None:
            barrier.wait()
            results[i] = hosts[i].publish(mine[i])

        threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = {r[0].access_token for r in results}
        assert len(winners) == 1, f"round {round_}: hosts disagree"
        (winner,) = winners
        assert store(variables).claim().access_token == winner  # what any other host now reads


@reliability(
    "hostile",
    "the token shared through the Variable is revoked in Atlas while hosts use it",
    "the host that gets 401 drops it from its host store and from the Variable, fetches one new token and shares it",
    "the tasks succeed; exactly one extra token request for all hosts",
)
def test_revoked_shared_token_is_replaced_once_for_all_hosts(emu_deployment: AtlasEmulator, tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    run_hosts(tmp_path / "first", 2)
    emu_deployment.revoke_all_tokens()
    (tmp_path / "second").mkdir()
    used = run_hosts(tmp_path / "second", 4)
    assert len(set(used)) == 1
    assert emu_deployment.token_requests(emu_deployment.service_account.client_id) == 2


# ---- clocks and secrets --------------------------------------------------------------------------------


@reliability(
    "hostile",
    "a host whose clock is 2 hours fast stores the shared token (its issued and expiry times are 2 hours ahead)",
    "other hosts shift its times back by the skew they can see (issued in their future), so it counts as valid "
    "for its real lifetime, not 2 hours longer",
    "no extra token request; the token is refreshed on time",
)
def test_token_from_a_host_with_a_fast_clock_is_not_trusted_past_its_life(variables: FileVariables) -> None:
    now = time.time()
    fast = store(variables, clock=lambda: time.time() + 7200, settle_seconds=0.01)
    fast.publish(token("from-the-future", now + 7200))
    seen = store(variables, settle_seconds=0.01).claim()
    assert seen is not None and seen.access_token == "from-the-future"
    assert seen.expires_at <= time.time() + 3600 + 1  # its real end, not 2 hours later


def test_token_from_a_host_with_a_slow_clock_is_replaced_once(variables: FileVariables) -> None:
    now = time.time()
    slow = store(variables, clock=lambda: time.time() - 7200, settle_seconds=0.01)
    slow.publish(token("from-the-past", now - 7200))
    good = store(variables, settle_seconds=0.01)
    assert good.claim() is None  # looks expired: this host fetches
    winner, displaced = good.publish(token("fresh"))
    assert winner.access_token == "fresh" and [t.access_token for t in displaced] == ["from-the-past"]
    assert slow.claim() is not None and slow.claim().access_token == "fresh"  # the slow host adopts it


@reliability(
    "hostile",
    "the service account's secret is rotated while hosts share a token",
    "hosts with the new secret use another Variable and key (both derived from the secret) and share a new token; "
    "the old record cannot be read with the new key",
    "no host uses a token it cannot account for; at most one token per secret",
)
def test_rotated_secret_starts_a_new_shared_token(variables: FileVariables) -> None:
    old = store(variables, settle_seconds=0.01)
    old.publish(token("old-secret-token"))
    new = store(variables, "mdb_sa_sk_rotated-secret", settle_seconds=0.01)
    assert new.name != old.name
    assert new.claim() is None  # nothing shared yet under the new secret: fetch one
    # Even the old record under the new name is unreadable with the new key.
    variables.set(new.name, variables.get(old.name) or "")
    assert new.claim() is None


def test_variable_holds_only_ciphertext_under_a_masked_name(variables: FileVariables) -> None:
    try:
        from airflow.sdk._shared.secrets_masker import should_hide_value_for_key
    except ImportError:  # Airflow < 3.1
        from airflow.sdk.execution_time.secrets_masker import should_hide_value_for_key

    shared = store(variables, settle_seconds=0.01)
    shared.publish(token("bearer-value-never-in-clear"))
    (path,) = variables.directory.iterdir()
    assert "bearer-value-never-in-clear" not in path.read_text()
    assert should_hide_value_for_key(shared.name)


def test_unreachable_variables_fall_back_to_host_sharing(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def get(self, key: str) -> str | None:
            raise ConnectionError("api server down")

        def set(self, key: str, value: str) -> None:
            raise ConnectionError("api server down")

    shared = VariableTokenStore(Down(), variable_name(BASE, CLIENT, SECRET), encryption_key(BASE, CLIENT, SECRET))
    assert shared.claim() is None
    assert shared.publish(token("t"))[0].access_token == "t"
    assert sum("could not use Airflow Variable" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        ("LocalExecutor", "host"),
        ("SequentialExecutor", "host"),
        ("CeleryExecutor", "deployment"),
        ("KubernetesExecutor", "deployment"),
        ("LocalExecutor,CeleryExecutor", "deployment"),
        ("airflow.providers.edge3.executors.EdgeExecutor", "deployment"),
    ],
)
def test_default_token_sharing_follows_the_executor(
    executor: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_atlasflex.hooks import connection_config

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    connection_config.default_token_sharing.cache_clear()
    try:
        assert connection_config.default_token_sharing() == expected
    finally:
        connection_config.default_token_sharing.cache_clear()
