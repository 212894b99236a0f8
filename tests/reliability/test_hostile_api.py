"""A lying or hostile Admin API: redirects to another host, plain http, HTML or wrongly shaped answers, huge bodies.

The "API host" is a scripted loopback server (:class:`HostileServer`); a second one on another
loopback address plays the host a redirect points at and records whether any credential reached it.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import (
    AtlasFlexConfigError,
    AtlasFlexError,
    AtlasRedirectError,
    AtlasUnexpectedAnswerError,
)
from airflow_provider_atlasflex.hooks.answers import MAX_API_BODY_BYTES
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger
from tests.reliability.hostile_server import Answer, HostileServer, Seen
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

GROUP = "5f1b2c3d4e5f60718293a4b5"
SNAP = "6a1b2c3d4e5f60718293a4b6"
JOB = "7a1b2c3d4e5f60718293a4b7"
SA_ID = "mdb_sa_id_0123456789abcdef01234567"
SA_SECRET = "mdb_sa_sk_hostile-test-secret"
API_KEY, PRIVATE_KEY = "pubkey01", "private-key-hostile-test"
ATLAS_JSON = {"Content-Type": "application/vnd.atlas.2024-11-13+json;charset=utf-8"}
CHALLENGE = 'Digest realm="MMS Public API", nonce="hostile-nonce", algorithm=MD5, qop="auth"'
HTML = b"<!doctype html><html><body><h1>Scheduled maintenance</h1></body></html>"


def a_job(**fields: Any) -> dict[str, Any]:
    return {"id": JOB, "snapshotId": SNAP, "deliveryType": "DOWNLOAD", "status": "PENDING", **fields}


def json_answer(body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(200, headers if headers is not None else ATLAS_JSON, json.dumps(body).encode())


def token_or(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
    """The token endpoint answers like Atlas; every other path is up to ``answer``."""

    def serve(seen: Seen) -> Answer:
        if seen.path == "/api/oauth/token":
            return json_answer({"access_token": "tok-hostile-test", "token_type": "Bearer", "expires_in": 3600},
                               {"Content-Type": "application/json"})
        return answer(seen)

    return serve


def connect(monkeypatch: pytest.MonkeyPatch, host: str, auth: str, **extra: Any) -> None:
    login, password = (SA_ID, SA_SECRET) if auth == "service_account" else (API_KEY, PRIVATE_KEY)
    fields = {
        "conn_type": "mongodb_atlas", "host": host, "login": login, "password": password,
        "extra": {"group_id": GROUP, "auth_type": auth, "allow_insecure_http": True, "sharing_scope": "process",
                  "max_retries": 1, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))


def call_sync(operation: str) -> Any:
    hook = AtlasFlexHook()
    try:
        if operation == "download":
            return hook.request_snapshot_download("alpha", SNAP)
        return hook.get_restore_job("alpha", JOB)
    finally:
        hook.close()


def call_async() -> Any:
    async def read() -> Any:
        hook = AtlasFlexAsyncHook()
        try:
            return await hook.get_restore_job("alpha", JOB)
        finally:
            await hook.aclose()

    return asyncio.run(read())


# ---- item 7: redirects --------------------------------------------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """Another host (127.0.0.2): challenges like Atlas, and accepts any answer with a fabricated job."""

    def serve(seen: Seen) -> Answer:
        if seen.headers.get("Authorization"):
            return json_answer(a_job(status="COMPLETED", snapshotUrl="https://elsewhere.invalid/x.tgz"))
        return Answer(401, {"WWW-Authenticate": CHALLENGE, "Content-Type": "application/json"}, b"{}")

    with HostileServer(serve, host="127.0.0.2") as server:
        yield server


@reliability(
    "hostile",
    "The Admin API host answers a call with a cross-host 302 to a responder that challenges for Digest "
    "and answers with a fabricated restore job (each auth type; sync POST and GET, async GET)",
    "Did not follow the redirect: no request, no Digest answer and no bearer token reached the other host; "
    "its JSON was never read",
    "AtlasRedirectError (task fails without retries) naming the host the redirect pointed at and the fix "
    "(Host = the Atlas base URL, https)",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
@pytest.mark.parametrize("caller", ["sync-POST", "sync-GET", "async-GET"])
def test_cross_host_redirect_is_never_followed(monkeypatch, elsewhere, auth, caller):
    def redirect(seen: Seen) -> Answer:
        return Answer(302, {"Location": elsewhere.base_url + seen.path, "Content-Length": "0"})

    with HostileServer(token_or(redirect)) as atlas:
        connect(monkeypatch, atlas.base_url, auth)
        with pytest.raises(AtlasRedirectError) as failed:
            if caller == "async-GET":
                call_async()
            else:
                call_sync("download" if caller == "sync-POST" else "get")
        assert elsewhere.seen == [] and elsewhere.authorizations() == []
        assert atlas.seen[-1].method == ("POST" if caller == "sync-POST" else "GET")
    message = str(failed.value)
    assert "redirect (HTTP 302)" in message and repr(elsewhere.base_url) in message
    assert "https://cloud.mongodb.com" in message


# ---- item 8: plain http -------------------------------------------------------------------------


@reliability(
    "hostile",
    "The connection's Host is http://... (or schema http with a bare host) and the allow_insecure_http "
    "extra is not set",
    "Refused before any request: no client secret, Digest answer or backup link sent in clear text",
    "AtlasFlexConfigError saying the secrets and links would travel in clear text, to use https, and that "
    "'allow_insecure_http': true opts out (emulator/test servers only)",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
@pytest.mark.parametrize("form", ["host-url", "schema-http"])
@pytest.mark.parametrize("caller", ["sync", "async"])
def test_plain_http_host_is_refused_before_any_request(emu, monkeypatch, auth, form, caller):
    fields = emulator_connection(emu, auth)
    del fields["extra"]["allow_insecure_http"]
    if form == "schema-http":
        fields["host"] = fields["host"].removeprefix("http://")
        fields["schema"] = "http"
    monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))
    with pytest.raises(AtlasFlexConfigError) as failed:
        call_async() if caller == "async" else call_sync("get")
    assert len(emu.requests) == 0
    message = str(failed.value)
    assert "clear text" in message and '"allow_insecure_http": true' in message and "https" in message
    assert fields["password"] not in message


def test_plain_http_works_with_the_explicit_opt_in(emu, atlas_conn):
    atlas_conn(emu, "digest")  # emulator_connection sets allow_insecure_http
    assert AtlasFlexHook().get_flex_cluster("alpha")["name"] == "alpha"


# ---- item 16: wrong or huge answers ---------------------------------------------------------------


def answering(path_part: str, answer: Answer, otherwise: Callable[[Seen], Answer] | None = None) -> Callable:
    def serve(seen: Seen) -> Answer:
        if path_part in seen.path:
            return answer
        if otherwise is not None:
            return otherwise(seen)
        return json_answer({"results": [], "totalCount": 0})

    return token_or(serve)


@reliability(
    "hostile",
    "The download POST gets HTTP 200 with an HTML page (Content-Type text/html), or with a JSON body "
    "that is not a restore job",
    "Failed at once; nothing pushed to XCom (before: success with restore_job_id=None)",
    "AtlasUnexpectedAnswerError: 'answered downloadGroupFlexClusterBackup ... with HTTP 200 but sent a "
    "'text/html' body, not JSON' plus the likely cause (proxy, captive portal, wrong Host)",
)
@pytest.mark.parametrize(
    "answer, expected",
    [
        (Answer(200, {"Content-Type": "text/html; charset=utf-8"}, HTML), "'text/html' body, not JSON"),
        (Answer(200, ATLAS_JSON, HTML), "a body that is not JSON"),
        (json_answer({"detail": "ok"}), "a restore job without a 24-hex 'id'"),
        (json_answer([a_job()]), "a restore job that is a JSON array"),
    ],
    ids=["html", "html-labelled-json", "no-id", "array"],
)
def test_download_post_answered_with_something_else_fails_at_once(monkeypatch, answer, expected):
    with HostileServer(answering("/backup/download", answer)) as atlas:
        connect(monkeypatch, atlas.base_url, "digest")
        context = make_context()
        with pytest.raises(AtlasUnexpectedAnswerError) as failed:
            AtlasFlexSnapshotDownloadOperator(
                task_id="request_link", cluster_name="alpha", snapshot_id=SNAP
            ).execute(context)
    assert expected in str(failed.value) and "downloadGroupFlexClusterBackup" in str(failed.value)
    assert "Scheduled maintenance" not in str(failed.value)
    assert context["ti"].pushed == {}


@reliability(
    "hostile",
    "The snapshot list (newest snapshot lookup) gets HTTP 200 with an HTML page, or JSON whose 'results' "
    "is not a list",
    "Failed at once instead of reading it as an empty list",
    "AtlasUnexpectedAnswerError naming listGroupFlexClusterBackupSnapshots and what was wrong (not "
    "'no COMPLETED snapshot yet')",
)
@pytest.mark.parametrize(
    "answer, expected",
    [
        (Answer(200, {"Content-Type": "text/html"}, HTML), "'text/html' body, not JSON"),
        (json_answer({"results": "none", "totalCount": 0}), "'results' is not a list"),
        (json_answer({"results": [{"status": "COMPLETED"}]}), "a snapshot without a 24-hex 'id' (item 0"),
    ],
    ids=["html", "results-not-list", "snapshot-without-id"],
)
def test_snapshot_list_answered_with_something_else_fails_at_once(monkeypatch, answer, expected):
    with HostileServer(answering("/backup/snapshots", answer)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        with pytest.raises(AtlasUnexpectedAnswerError) as failed:
            AtlasFlexHook().get_newest_completed_snapshot("alpha")
    assert expected in str(failed.value) and "listGroupFlexClusterBackupSnapshots" in str(failed.value)
    assert "no COMPLETED" not in str(failed.value)


BAD_URL_JOB = a_job(status="COMPLETED", snapshotUrl={"href": "https://x.invalid/a.tgz?Signature=s3cr3t"})


@reliability(
    "hostile",
    "A COMPLETED restore job whose snapshotUrl is not a string (an object), polled by the sensor "
    "(poke and deferrable trigger)",
    "Failed at the first poll instead of waiting the sensor's whole timeout",
    "AtlasUnexpectedAnswerError: 'a restore job whose 'snapshotUrl' is a dict, not a string' (the value "
    "itself is never echoed)",
)
@pytest.mark.parametrize("mode", ["poke", "trigger"])
def test_completed_job_with_a_non_string_link_fails_at_the_first_poll(monkeypatch, mode):
    with HostileServer(answering("/backup/restoreJobs/", json_answer(BAD_URL_JOB))) as atlas:
        connect(monkeypatch, atlas.base_url, "digest")
        started = time.monotonic()
        if mode == "poke":
            sensor = AtlasFlexSnapshotUrlSensor(
                task_id="wait", cluster_name="alpha", restore_job_id=JOB, poke_interval=0.05, timeout=5,
                deferrable=False,
            )
            with pytest.raises(AtlasUnexpectedAnswerError) as failed:
                sensor.execute(make_context())
            message = str(failed.value)
        else:
            trigger = AtlasFlexRestoreJobTrigger(
                cluster_name="alpha", restore_job_id=JOB, group_id=None, atlas_conn_id="mongodb_atlas_default",
                poll_interval=0.05, end_time=time.time() + 5,
            )

            async def first_event() -> Any:
                async for event in trigger.run():
                    return event.payload

            event = asyncio.run(first_event())
            assert event["status"] == "error"
            message = event["message"]
        polls = [s for s in atlas.seen if "/backup/restoreJobs/" in s.path]
    assert len(polls) == 1 and time.monotonic() - started < 4
    assert "'snapshotUrl' is a dict, not a string" in message and "s3cr3t" not in message


def test_ready_snapshot_url_refuses_a_non_string_link():
    with pytest.raises(AtlasFlexError, match="snapshotUrl"):
        ready_snapshot_url(BAD_URL_JOB, "alpha")


def endless(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    block = b'{"results": [' + b" " * (chunk - 13)
    sent = 0
    while sent < total:
        yield block
        sent += len(block)
        block = b" " * chunk


@reliability(
    "hostile",
    "A restore-job answer of 100 MiB streamed without Content-Length, or announcing 400 MiB in "
    "Content-Length (sync and async hooks)",
    "Stopped reading at the 16 MiB cap for Admin API bodies (announced: refused before reading); memory "
    "stayed bounded",
    "AtlasUnexpectedAnswerError: 'a body that passed 16777216 bytes, more than the 16 MiB any Admin API "
    "answer needs'",
)
@pytest.mark.parametrize("caller", ["sync", "async"])
@pytest.mark.parametrize("announced", [False, True], ids=["streamed", "announced"])
def test_huge_api_body_is_capped(monkeypatch, caller, announced):
    total = 400 * 1024 * 1024 if announced else 100 * 1024 * 1024
    headers = {**ATLAS_JSON, **({"Content-Length": str(total)} if announced else {})}
    answer = Answer(200, headers, endless(total), length=False)
    with HostileServer(answering("/backup/restoreJobs/", answer)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        tracemalloc.start()
        try:
            with pytest.raises(AtlasUnexpectedAnswerError) as failed:
                call_async() if caller == "async" else call_sync("get")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 3 * MAX_API_BODY_BYTES, f"peak {peak / 2**20:.0f} MiB"
    assert ("announces" if announced else "passed 16777216 bytes") in str(failed.value)
    if announced:
        assert peak < MAX_API_BODY_BYTES


def _socket_buffer_bytes() -> int:
    """What the two kernels' socket buffers may hold of a body the client never read (send + receive maxima)."""
    try:
        return sum(int(open(f"/proc/sys/net/ipv4/tcp_{kind}").read().split()[2]) for kind in ("rmem", "wmem"))
    except (OSError, IndexError, ValueError):
        return 64 * 1024 * 1024  # not Linux: a generous bound, still far below the body's size


@reliability(
    "hostile",
    "The Digest challenge (401) arrives with a 256 MiB body and no Content-Length (sync hook and the triggerer's "
    "async hook; requests and httpx each read a challenge's whole body before answering)",
    "Read the challenge's body no further than the 16 MiB cap, closed that connection, answered the challenge on a "
    "new one, carried on",
    "Nothing: the call succeeds with bounded memory; the server could send no more than the cap plus what the "
    "socket buffers hold",
)
@pytest.mark.parametrize("caller", ["sync", "async"])
def test_huge_digest_challenge_body_is_capped(monkeypatch, caller):
    body = 256 * 1024 * 1024

    def serve(seen: Seen) -> Answer:
        if seen.headers.get("Authorization", "").startswith("Digest "):
            return json_answer(a_job())
        headers = {"WWW-Authenticate": CHALLENGE, "Content-Type": "application/json"}
        return Answer(401, headers, endless(body), length=False)

    with HostileServer(serve) as atlas:
        connect(monkeypatch, atlas.base_url, "digest")
        tracemalloc.start()
        try:
            job = call_async() if caller == "async" else call_sync("get")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert job["id"] == JOB
    assert peak < 3 * MAX_API_BODY_BYTES, f"peak {peak / 2**20:.0f} MiB"
    # Bytes the server got out: what the client read, plus at most what the socket buffers took in.
    bound = MAX_API_BODY_BYTES + _socket_buffer_bytes()
    assert MAX_API_BODY_BYTES // 2 < atlas.bytes_sent <= bound < body, f"sent {atlas.bytes_sent / 2**20:.1f} MiB"


@pytest.mark.parametrize("caller", ["sync", "async"])
def test_small_digest_challenge_body_keeps_its_connection(monkeypatch, caller):
    """A challenge body under the cap is read to its end, so the answer goes out on the same connection."""
    ports: list[int] = []

    def serve(seen: Seen) -> Answer:
        ports.append(seen.client_port)
        if seen.headers.get("Authorization", "").startswith("Digest "):
            return json_answer(a_job())
        return Answer(401, {"WWW-Authenticate": CHALLENGE, "Content-Type": "application/json"}, b'{"error": 401}')

    with HostileServer(serve) as atlas:
        connect(monkeypatch, atlas.base_url, "digest")
        assert (call_async() if caller == "async" else call_sync("get"))["id"] == JOB
    assert len(ports) == 2 and ports[0] == ports[1], ports
