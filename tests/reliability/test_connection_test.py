"""The connection Test (UI button, ``airflow connections test``) against the emulator.

It must always authenticate (a wrong key fails even without a default project) and say what the
credential can and cannot do in the default project.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from tests.reliability.registry import reliability

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_wrong_secret_fails_even_without_a_default_project(emu, atlas_conn, auth):
    atlas_conn(emu, auth, password="mdb_sa_sk_wrong" if auth == "service_account" else "wrong", group_id="")
    ok, message = AtlasFlexHook().test_connection()
    assert not ok and "rejected" in message
    assert any(x.status == 401 for x in emu.requests)


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_without_a_default_project_lists_the_projects_it_can_see(emu, atlas_conn, auth):
    atlas_conn(emu, auth, group_id="")
    ok, message = AtlasFlexHook().test_connection()
    assert ok, message
    assert "can see 1 project(s)" in message and emu.group_id in message and "Set the group_id extra" in message
    groups = emu.requests.by_operation("listGroups")
    assert groups[-1].status == 200 and groups[-1].headers["Accept"] == "application/vnd.atlas.2023-01-01+json"


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_owner_may_read_and_request_downloads(emu, atlas_conn, auth):
    atlas_conn(emu, auth)
    ok, message = AtlasFlexHook().test_connection()
    assert ok, message
    assert f"In project {emu.group_id} it can read backups and request downloads." in message
    assert all(not jobs for jobs in (emu.restore_jobs(c) for c in emu.clusters)), "the probe created a job"


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_read_only_credential_is_told_it_cannot_request_downloads(emu, atlas_conn, auth):
    if auth == "digest":
        key = emu.read_only_api_key
        atlas_conn(emu, auth, login=key.public_key, password=key.private_key)
    else:
        account = emu.read_only_service_account
        atlas_conn(emu, auth, login=account.client_id, password=account.client_secret)
    ok, message = AtlasFlexHook().test_connection()
    assert not ok
    assert "can read backups but can NOT request downloads" in message
    assert "Project Backup Export Operator" in message


def test_unknown_default_project_is_reported(emu, atlas_conn):
    atlas_conn(emu, "digest", group_id="0" * 24)
    ok, message = AtlasFlexHook().test_connection()
    assert not ok and "0" * 24 in message and "not found" in message


# ---- a host that never answers: the Test still answers in time ---------------------------------------------

TEST_ANSWERS_WITHIN = 15.0  # generous: the deadline is 10 s (connection_check.TEST_DEADLINE_SECONDS)


class _LoopbackHost:
    """A TCP port on 127.0.0.1 that misbehaves: ``refuses``, ``blackholed`` (never accepts: its accept queue is
    full, so a connect waits for a SYN-ACK that never comes), ``silent`` (accepts, reads, never replies) or
    ``trickle`` (sends a status line and endless headers, one byte every 0.5 s, within every read timeout)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = self._keep(socket.socket())
        self._server.bind(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        if behaviour == "refuses":
            return  # bound, not listening: the kernel answers each connect with a reset
        self._server.listen(0 if behaviour == "blackholed" else 8)
        if behaviour == "blackholed":
            for _ in range(2):  # fill the accept queue (backlog 0 holds one); later SYNs are dropped
                filler = self._keep(socket.socket())
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", self.port))
            time.sleep(0.2)
            return
        threading.Thread(target=self._serve, daemon=True).start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)
        return sock

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            self._keep(client)
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        client.settimeout(0.1)
        with contextlib.suppress(OSError):
            client.recv(65536)  # the request; a silent host answers nothing, ever
        head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 100_000
        for byte in head if self.behaviour == "trickle" else b"":
            if self._stop.wait(0.5):
                return
            with contextlib.suppress(OSError):
                client.sendall(bytes([byte]))
        self._stop.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@reliability(
    "hostile",
    "The connection's Test (UI button, airflow connections test) against a host that refuses connections, one "
    "that never accepts them (blackholed), one that accepts and never replies, and one that trickles its headers "
    "a byte every 0.5 s (within every read timeout); the connection keeps its timeout of 60 s and 5 retries",
    "The Test sends each request once, with a timeout of at most 5 s, and stops waiting at 10 s whatever the "
    "host does; nothing is written",
    "An answer within 10 s (measured: refused < 1 s, blackholed and silent ~5 s, trickle ~10 s): the transport "
    "error, or 'No complete answer from http://127.0.0.1:<port> within 10 s, so the Test stopped waiting ...'",
)
def test_the_test_answers_in_time_whatever_the_host_does(monkeypatch):
    from airflow_provider_atlasflex.hooks.connection_check import TEST_DEADLINE_SECONDS

    hosts = {name: _LoopbackHost(name) for name in ("refuses", "blackholed", "silent", "trickle")}
    credentials = {"service_account": ("mdb_sa_id_0123456789abcdef01234567", "mdb_sa_sk_secret-0001"),
                   "digest": ("pubkey01", "private-key-0001")}
    for (name, host), (auth, (login, password)) in itertools.product(hosts.items(), credentials.items()):
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}_{auth.upper()}", json.dumps({
            "conn_type": "mongodb_atlas", "host": host.url, "login": login, "password": password,
            # The connection's own patience would hold the Test for minutes: 60 s a request, 5 retries.
            "extra": {"auth_type": auth, "allow_insecure_http": True, "timeout": 60, "max_retries": 5,
                      "group_id": "5f1b2c3d4e5f60718293a4b5"},
        }))
    answers: dict[tuple[str, str], tuple[bool, str, float]] = {}

    def test(name: str, auth: str) -> None:
        started = time.monotonic()
        ok, message = AtlasFlexHook(f"{name}_{auth}").test_connection()
        answers[(name, auth)] = (ok, message, time.monotonic() - started)

    # Every host and auth type at once: ~10 s in all.
    testers = [threading.Thread(target=test, args=pair) for pair in itertools.product(hosts, credentials)]
    try:
        for tester in testers:
            tester.start()
        for tester in testers:
            tester.join(TEST_ANSWERS_WITHIN + 5)
    finally:
        for host in hosts.values():
            host.close()
    print({pair: (round(seconds, 1), message[:90]) for pair, (_, message, seconds) in answers.items()})
    assert len(answers) == len(testers), "the Test did not answer for some host"
    for (name, auth), (ok, message, seconds) in answers.items():
        assert not ok, (name, auth, message)
        assert seconds < TEST_ANSWERS_WITHIN, (name, auth, seconds, message)
        assert credentials[auth][1] not in message
        if name == "refuses":
            assert seconds < 3 and "Could not reach Atlas" in message, (auth, seconds, message)
        if name == "trickle":  # it waited for the deadline, then said why it stopped
            assert seconds >= TEST_DEADLINE_SECONDS - 0.5, (auth, seconds)
            assert f"No complete answer from {hosts[name].url} within 10 s" in message, (auth, message)
