"""Hostile conditions for service-account tokens: a triggerer full of waits, a squatted token directory.

Issue 7 items 12 and 13. The triggerer runs every deferred sensor's trigger as a coroutine of one
process; task processes on a host share a token store directory other local users may have
pre-created. Both used to multiply token requests past Atlas's 10 a minute / 100 live tokens.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.hooks.token_cache import TokenCache
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger
from tests.reliability.registry import reliability

CLUSTERS = tuple(f"cluster-{i:02d}" for i in range(10))


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[AtlasEmulator]:
    with AtlasEmulator(
        clusters=CLUSTERS, snapshots_per_cluster=1, snapshot_size=10_000, restore_duration=0.0, enforce_token_limits=True
    ) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(emulator_connection(emu, "service_account"))
        )
        yield emu


def make_jobs(emu: AtlasEmulator, count: int) -> list[tuple[str, str]]:
    """``count`` DOWNLOAD restore jobs, ready at once, spread over the clusters: (cluster, job id)."""
    jobs = []
    for i in range(count):
        cluster = CLUSTERS[i % len(CLUSTERS)]
        jobs.append((cluster, emu.state.create_download(cluster, emu.newest_completed_snapshot_id(cluster)).id))
    return jobs


def trigger_for(cluster: str, job_id: str, poll_interval: float = 0.2) -> AtlasFlexRestoreJobTrigger:
    return AtlasFlexRestoreJobTrigger(
        cluster_name=cluster,
        restore_job_id=job_id,
        group_id=None,
        atlas_conn_id="mongodb_atlas_default",
        poll_interval=poll_interval,
        end_time=time.time() + 120,
    )


async def run_triggers(jobs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    async def first_event(trigger: AtlasFlexRestoreJobTrigger) -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return await asyncio.gather(*(first_event(trigger_for(c, j)) for c, j in jobs))


def token_failures(emu: AtlasEmulator) -> list[int]:
    return [x.status for x in emu.requests.by_operation("oauthToken") if x.status != 200]


@pytest.mark.parametrize("waits", [30, 500])
def test_deferred_waits_with_no_token_share_one(emulator: AtlasEmulator, waits: int) -> None:
    events = asyncio.run(run_triggers(make_jobs(emulator, waits)))
    assert [e["status"] for e in events] == ["success"] * waits
    client = emulator.service_account.client_id
    assert emulator.token_requests(client) <= 2
    assert token_failures(emulator) == []


@reliability(
    "hostile",
    "30 deferred sensors in one triggerer with no token cached (Atlas: 10 token requests a minute)",
    "one token request for all triggers: single flight across the process's event loops and threads and, "
    "through the host store's lock, its other processes",
    "every wait succeeds; 1 token request, no 429, no failed trigger",
)
def test_triggerer_stampede_makes_one_token_request(emulator: AtlasEmulator) -> None:
    events = asyncio.run(run_triggers(make_jobs(emulator, 30)))
    assert [e["status"] for e in events] == ["success"] * 30
    assert emulator.token_requests(emulator.service_account.client_id) == 1
    assert token_failures(emulator) == []


def test_event_loops_in_several_threads_share_one_token(emulator: AtlasEmulator) -> None:
    jobs = make_jobs(emulator, 40)
    results: list[list[dict[str, Any]]] = []
    start = threading.Barrier(4)

    def loop_in_thread(part: list[tuple[str, str]]) -> None:
        start.wait()
        results.append(asyncio.run(run_triggers(part)))

    threads = [threading.Thread(target=loop_in_thread, args=(jobs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(e["status"] for part in results for e in part) == ["success"] * 40
    assert emulator.token_requests(emulator.service_account.client_id) == 1


def test_sync_and_async_callers_in_threads_share_one_token(emulator: AtlasEmulator) -> None:
    jobs = make_jobs(emulator, 12)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def sync_caller(i: int) -> None:
        start.wait()
        try:
            AtlasFlexHook().get_flex_cluster(CLUSTERS[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def async_caller(part: list[tuple[str, str]]) -> None:
        start.wait()
        asyncio.run(run_triggers(part))

    threads = [threading.Thread(target=sync_caller, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=async_caller, args=(jobs[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert emulator.token_requests(emulator.service_account.client_id) == 1


def _triggerer_process(part: list[tuple[str, str]], start_at: float) -> None:
    """A separate triggerer process (spawned: a fresh interpreter, as on a real host)."""
    time.sleep(max(0.0, start_at - time.time()))
    events = asyncio.run(run_triggers(part))
    if any(e["status"] != "success" for e in events):
        raise SystemExit(1)


def test_triggerer_processes_on_one_host_share_one_token(emulator: AtlasEmulator) -> None:
    jobs = make_jobs(emulator, 40)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 8  # after every interpreter has started and imported Airflow
    processes = [context.Process(target=_triggerer_process, args=(jobs[i::4], start_at)) for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(90)
    assert [p.exitcode for p in processes] == [0] * 4
    assert emulator.token_requests(emulator.service_account.client_id) == 1


@reliability(
    "hostile",
    "the shared token is about to expire while 30 triggers poll",
    "one trigger fetches the new token for all and revokes the one it replaces",
    "every wait succeeds; 1 new token request; the replaced token is no longer active in Atlas",
)
def test_triggerer_revokes_the_token_it_replaces(emulator: AtlasEmulator) -> None:
    hook = AtlasFlexHook()
    hook.get_flex_cluster(CLUSTERS[0])  # stores a token in the host store
    client = emulator.service_account.client_id
    (old,) = emulator.issued_tokens(client)
    key = hook._token_key
    # Same token, but about to expire as far as the provider is concerned (Atlas still accepts it).
    TOKEN_CACHE.put(key, CachedToken(old, time.time() + 30, time.time() - 3570), lambda _: None)
    TOKEN_CACHE.clear()
    events = asyncio.run(run_triggers(make_jobs(emulator, 30)))
    assert [e["status"] for e in events] == ["success"] * 30
    assert emulator.token_requests(client) == 2
    assert emulator.active_token_count(client) == 1
    assert old not in [x.headers.get("Authorization", "")[7:] for x in emulator.requests.by_operation(
        "getGroupFlexClusterBackupRestoreJob")]


# ---- item 13: a squatted token directory ----------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def squatted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host store directory, pre-created by another local user (uid 65534) with mode 0777."""
    if os.getuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    directory = tmp_path / "airflow-atlasflex-0"
    directory.mkdir()
    directory.chmod(0o777)
    os.chown(directory, NOBODY, NOBODY)
    monkeypatch.setenv("ATLASFLEX_TOKEN_DIR", str(directory))
    return directory


@reliability(
    "hostile",
    "another local user pre-created the token store directory (owned by uid 65534, mode 0777); 20 task processes",
    "refuses it, logs a WARNING naming the directory and the fix, and shares the token through a private "
    "0700 directory under the Airflow user's home instead; replaced tokens are still revoked",
    "a warning in the task log; 1 token request and at most 2 live tokens for the 20 processes; "
    "nothing written in the squatted directory",
)
def test_squatted_directory_warns_and_falls_back_to_a_private_one(
    emulator: AtlasEmulator, squatted: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    context = multiprocessing.get_context("fork")

    def task(i: int) -> None:
        TOKEN_CACHE.clear()
        handler = logging.FileHandler(logs / f"task-{i}.log")
        logging.getLogger("airflow_provider_atlasflex").addHandler(handler)
        try:
            AtlasFlexHook().get_flex_cluster(CLUSTERS[i % len(CLUSTERS)])
            code = 0
        except BaseException:  # noqa: BLE001 - the exit code reports it
            code = 1
        handler.flush()
        atexit._run_exitfuncs()
        os._exit(code)

    codes = []
    for start in range(0, 20, 5):
        batch = [context.Process(target=task, args=(i,)) for i in range(start, start + 5)]
        for process in batch:
            process.start()
        for process in batch:
            process.join(60)
            codes.append(process.exitcode)
    assert codes == [0] * 20
    client = emulator.service_account.client_id
    assert emulator.token_requests(client) <= 2
    assert emulator.active_token_count(client) <= 2
    assert list(squatted.iterdir()) == []
    fallback = Path(os.environ["XDG_CACHE_HOME"]) / "airflow-provider-atlasflex" / "tokens"
    assert oct(fallback.stat().st_mode & 0o777) == "0o700" and fallback.stat().st_uid == os.getuid()
    warnings = [line for f in logs.iterdir() for line in f.read_text().splitlines() if str(squatted) in line]
    assert warnings, "no warning names the squatted directory"
    assert "owned by uid 65534" in warnings[0] and "ATLASFLEX_TOKEN_DIR" in warnings[0] and str(fallback) in warnings[0]


@pytest.mark.parametrize("problem", ["symlink", "mode-0755", "other-owner"])
def test_refused_store_directory_is_named_in_a_warning(
    problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    store = tmp_path / "store"
    if problem == "symlink":
        store.symlink_to(target)
    else:
        store.mkdir()
        store.chmod(0o755 if problem == "mode-0755" else 0o700)
        if problem == "other-owner":
            if os.getuid() != 0:
                pytest.skip("needs root")
            os.chown(store, NOBODY, NOBODY)
    cache = TokenCache(store_dir=store)
    with caplog.at_level(logging.WARNING, "airflow_provider_atlasflex"):
        cache.put("k", CachedToken("secret-token", 9e12, 0), lambda _: None)
        cache.put("k", CachedToken("secret-token", 9e12, 0), lambda _: None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(store) in warnings[0]  # once per process, naming it
    assert list(target.iterdir()) == []
    assert TokenCache(store_dir=store).get("k").access_token == "secret-token"  # shared via the fallback


def _fallback_as_uid(uid: int, env: dict[str, str], squatted: str) -> dict[str, object]:
    """In a child process running as ``uid`` with exactly ``env``: where a refused store falls back to."""
    import subprocess
    import sys

    code = (
        "import json, os, sys, tempfile\nfrom pathlib import Path\n"
        # imported first: the interpreter's own files may not be readable by that UID
        "from airflow_provider_atlasflex.hooks.oauth_token import CachedToken\n"
        "from airflow_provider_atlasflex.hooks.token_cache import TokenCache\n"
        f"os.setgid({uid}); os.setuid({uid})\n"
        f"cache = TokenCache(store_dir=Path({squatted!r}))\n"
        "cache.put('k', CachedToken('t', 9e12, 0), lambda _: None)\n"
        "directory = cache.store.directory()\n"
        "print(json.dumps({'directory': str(directory) if directory else None, "
        "'read_back': cache.get('k') is not None}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@reliability(
    "hostile",
    "A container runs tasks under an arbitrary UID with no passwd entry (OpenShift, Kubernetes runAsUser) and "
    "the token directory is unusable",
    "The store falls back to $XDG_CACHE_HOME, else $HOME/.cache, else the passwd home's .cache, else keeps tokens "
    "in memory only; it never raises",
    "One warning naming the refused directory; service-account tasks run (before: KeyError from pwd.getpwuid)",
)
def test_token_store_fallback_for_a_uid_without_passwd_entry() -> None:
    import pwd
    import shutil
    import tempfile

    if os.getuid() != 0:
        pytest.skip("needs root to switch to a UID without a passwd entry")
    uid = next(u for u in range(61_000, 62_000) if not _has_passwd_entry(pwd, u))
    tmp_path = Path(tempfile.mkdtemp(prefix="atlasflex-uid-"))  # pytest's tmp_path is private to root
    tmp_path.chmod(0o755)
    try:
        _check_fallbacks(uid, tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_fallbacks(uid: int, tmp_path: Path) -> None:
    squatted = tmp_path / "squatted"
    squatted.mkdir(mode=0o777)  # refused: reachable by other users
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, uid, uid)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.getcwd()}
    # no $HOME, no $XDG_CACHE_HOME, no passwd entry: no fallback, no exception
    assert _fallback_as_uid(uid, base, str(squatted)) == {"directory": None, "read_back": True}
    # $HOME set (as Kubernetes does): $HOME/.cache
    found = _fallback_as_uid(uid, {**base, "HOME": str(home)}, str(squatted))
    assert found["directory"] == str(home / ".cache" / "airflow-provider-atlasflex" / "tokens")
    # $XDG_CACHE_HOME wins over $HOME; a relative one is ignored, as XDG says
    xdg = home / "xdg"
    found = _fallback_as_uid(uid, {**base, "HOME": str(home), "XDG_CACHE_HOME": str(xdg)}, str(squatted))
    assert found["directory"] == str(xdg / "airflow-provider-atlasflex" / "tokens")
    found = _fallback_as_uid(uid, {**base, "HOME": str(home), "XDG_CACHE_HOME": "relative"}, str(squatted))
    assert found["directory"] == str(home / ".cache" / "airflow-provider-atlasflex" / "tokens")


def _has_passwd_entry(pwd: Any, uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@reliability(
    "hostile",
    "The token store's fallback lies under a directory other users may write (HOME=/tmp-like, no sticky bit) or "
    "own, while the configured store is refused",
    "The fallback is refused too: tokens stay in the task's memory; nothing is written where another user could "
    "swap the directory",
    "One warning naming the refused directory and saying no private fallback is usable",
)
@pytest.mark.parametrize("parent", ["world-writable", "sticky"])
def test_token_fallback_under_a_parent_others_may_write(parent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    squatted = tmp_path / "squatted"
    squatted.mkdir(mode=0o777)
    squatted.chmod(0o777)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777 if parent == "sticky" else 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared / "cache"))
    cache = TokenCache(store_dir=squatted)
    cache.put("k", CachedToken("t", 9e12, 0), lambda _: None)
    found = cache.store.directory()
    if parent == "sticky":  # /tmp-like: others cannot rename what we own in it
        assert found == shared / "cache" / "airflow-provider-atlasflex" / "tokens"
    else:
        assert found is None and cache.get("k") is not None  # memory only, still served
