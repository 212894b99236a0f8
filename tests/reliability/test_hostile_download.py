"""A lying or hostile storage host behind snapshotUrl (issue 7, items 6, 9, 10, 11, 14, 15).

The Admin API is mocked (requests-mock) or the emulator; the storage host is either mocked or a
loopback server that writes its answers byte by byte (``hostile_storage``). Every test checks that
nothing is committed when the copy fails, and that no message carries the link's query string.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import tarfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, SnapshotLinkExpiredError, SnapshotTransferError
from airflow_provider_atlasflex.transfers.resumable_download import ResumableDownload, SnapshotLink
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator
from tests.reliability.conftest import files_under
from tests.reliability.hostile_storage import HostileStorage, Request, head
from tests.reliability.registry import reliability
from tests.unit.conftest import CLUSTER, CLUSTER_URL, GROUP, JOB, SNAP, job, set_connection
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

JOB_URL = f"{CLUSTER_URL}/backup/restoreJobs/{JOB}"
JOBS_URL = f"{CLUSTER_URL}/backup/restoreJobs"
POST_URL = f"{CLUSTER_URL}/backup/download"
LINK = f"https://download.test/{JOB}.tgz?Signature=sig-secret-123&Expires=4102444800"
JOB2, JOB3 = "8a1b2c3d4e5f60718293a4b8", "8a1b2c3d4e5f60718293a4b9"
LINK2 = f"https://download.test/{JOB2}.tgz?Signature=sig-secret-456&Expires=4102444800"
LINK3 = f"https://download.test/{JOB3}.tgz?Signature=sig-secret-789&Expires=4102444800"
SECRETS = ("sig-secret", "Signature=", "hostile-sig")


def make_tgz(members: int = 1, size: int = 300_000) -> tuple[bytes, list[bytes]]:
    """A .tgz whose tar is split over ``members`` gzip members; returns (file, members)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(3):
            data = hashlib.shake_256(str(i).encode()).digest(size // 3)
            info = tarfile.TarInfo(f"dump/c{i}.bson")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    cut = len(raw) // members // 512 * 512
    parts = [gzip.compress(raw[i * cut : (i + 1) * cut if i < members - 1 else len(raw)]) for i in range(members)]
    return b"".join(parts), parts


TGZ, _ = make_tgz()


@pytest.fixture(autouse=True)
def snapshot_resource(request: pytest.FixtureRequest) -> Any:
    """The snapshot's Atlas metadata, which the copy records in the export's manifest sidecar (mocked API only)."""
    if "requests_mock" not in request.fixturenames:
        return None  # the test talks to the emulator
    return request.getfixturevalue("requests_mock").get(
        f"{CLUSTER_URL}/backup/snapshots/{SNAP}",
        json={"id": SNAP, "status": "COMPLETED", "mongoDBVersion": "8.0.4", "finishTime": "2026-11-28T01:00:00Z"},
    )


def connect(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    set_connection(
        monkeypatch, login="pubkey01", password="private-key-never-logged",
        extra={"group_id": GROUP, "max_retries": 2, **extra},
    )


def copy(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("dst", f"file://{tmp_path}/exports/{{cluster_name}}/{{snapshot_id}}.tgz")
    kwargs.setdefault("link_refresh_poll_interval", 0.05)
    return AtlasFlexSnapshotToStorageOperator(
        task_id="copy_to_storage", cluster_name=CLUSTER, restore_job_id=JOB, **kwargs
    ).execute(make_context())


def assert_nothing_committed(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    assert not exports.exists() or files_under(exports) == []


def assert_no_query(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text}"


def api(requests_mock: Any, link: str = LINK, **job_fields: Any) -> None:
    """The restore job, with ``link``, and an empty job list (so a refresh must POST)."""
    requests_mock.get(JOB_URL, json=job(snapshotUrl=link, **job_fields))
    requests_mock.get(JOBS_URL, json={"results": [], "totalCount": 0})
    requests_mock.get(re.compile(r"^http://127\.0\.0\.1:\d+/"), real_http=True)


# ---- item 6: truncation at a gzip member boundary ---------------------------------------------


@reliability(
    "hostile",
    "A .tgz made of several gzip members, served without Content-Length (closed connection or chunked), "
    "cut cleanly right after the first member",
    "Inflated every byte and walked the tar headers as they passed: no end-of-archive marker (two zero "
    "blocks) was seen, so the copy failed; nothing committed",
    "'... the tar archive is truncated: no end-of-archive marker after N member(s) (inflated offset N; e.g. cut "
    "at a gzip member boundary)'",
)
@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
def test_cut_at_a_gzip_member_boundary_without_length(requests_mock, monkeypatch, tmp_path, framing):
    _, members = make_tgz(members=3)

    def respond(request: Request, sock: Any) -> None:
        if framing == "chunked":
            sock.sendall(head(Transfer_Encoding="chunked", Content_Type="application/gzip"))
            sock.sendall(f"{len(members[0]):x}\r\n".encode() + members[0] + b"\r\n0\r\n\r\n")
        else:
            sock.sendall(head(Connection="close", Content_Type="application/gzip") + members[0])

    with HostileStorage(respond) as host:
        connect(monkeypatch, allow_insecure_http=True)
        api(requests_mock, host.url())
        with pytest.raises(SnapshotTransferError, match="no end-of-archive marker") as failed:
            copy(tmp_path, max_download_attempts=2)
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


def test_several_gzip_members_served_whole_are_accepted(requests_mock, monkeypatch, tmp_path):
    """Control for the row above: the same multi-member file, complete, is committed byte-identical."""
    whole, _ = make_tgz(members=3)
    connect(monkeypatch)
    api(requests_mock)
    requests_mock.get(LINK, content=whole)
    result = copy(tmp_path)
    assert result["sha256"] == hashlib.sha256(whole).hexdigest()


# ---- item 9: which links are fetched ------------------------------------------------------------


@reliability(
    "hostile",
    "The restore job's snapshotUrl is plain http (no allow_insecure_http on the connection)",
    "Refused the link before any request; nothing written",
    "'... the snapshot link http://host/path?<redacted> is plain http: its signature and the backup would "
    "cross the network unencrypted ... set the connection extra allow_insecure_http: true' (for local tests)",
)
def test_plain_http_link_is_refused(requests_mock, monkeypatch, tmp_path):
    http_link = LINK.replace("https://", "http://")
    connect(monkeypatch)
    api(requests_mock, http_link)
    fetched = requests_mock.get(http_link, content=TGZ)
    with pytest.raises(SnapshotTransferError, match="is plain http") as failed:
        copy(tmp_path)
    assert fetched.call_count == 0
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


@reliability(
    "hostile",
    "The snapshotUrl points at a loopback, private or link-local host (127.0.0.1, ::1, 169.254.169.254, "
    "10.x, 192.168.x, 2130706433, localhost) or uses file://, ftp://",
    "Refused the link before any request (the name or literal address is checked; a host name that "
    "resolves to such an address is refused once connected, before any byte is written)",
    "'... the snapshot link <scheme://host/path?<redacted>> points at <host>, a loopback, private or "
    "link-local host; refused' / '... has scheme 'file'; only https links are fetched'",
)
@pytest.mark.parametrize(
    "link",
    [
        "https://127.0.0.1/x.tgz?Signature=sig-secret-1",
        "https://[::1]/x.tgz?Signature=sig-secret-1",
        "https://169.254.169.254/latest/meta-data?Signature=sig-secret-1",
        "https://10.1.2.3/x.tgz?Signature=sig-secret-1",
        "https://192.168.0.10/x.tgz?Signature=sig-secret-1",
        "https://2130706433/x.tgz?Signature=sig-secret-1",
        "https://localhost:8443/x.tgz?Signature=sig-secret-1",
        "file:///etc/passwd?Signature=sig-secret-1",
        "ftp://download.test/x.tgz?Signature=sig-secret-1",
    ],
)
def test_local_hosts_and_other_schemes_are_refused(requests_mock, monkeypatch, tmp_path, link):
    connect(monkeypatch)
    requests_mock.get(JOB_URL, json=job(snapshotUrl=link))
    with pytest.raises(SnapshotTransferError, match="refused|only https links") as failed:
        copy(tmp_path)
    assert {r.hostname for r in requests_mock.request_history} == {"atlas.test"}  # only the Admin API
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


@reliability(
    "hostile",
    "The storage host answers 302 to a link on another host (which would serve a valid .tgz)",
    "Did not follow it: redirects are followed only within the link's own scheme, host and port; "
    "nothing written",
    "'... the snapshot link https://host/path?<redacted> redirected to another host "
    "(https://other/path?<redacted>); redirects are followed only within the link's own host, so nothing was "
    "fetched from it. Check for a proxy between this worker and the storage host that rewrites answers ...'",
)
def test_redirect_to_another_host_is_not_followed(requests_mock, monkeypatch, tmp_path):
    elsewhere = "https://elsewhere.test/x.tgz?Signature=sig-secret-other"
    connect(monkeypatch)
    api(requests_mock)
    requests_mock.get(LINK, status_code=302, headers={"Location": elsewhere})
    other = requests_mock.get(elsewhere, content=TGZ)
    with pytest.raises(SnapshotTransferError, match="redirected to another host") as failed:
        copy(tmp_path)
    assert other.call_count == 0
    assert "Check for a proxy between this worker and the storage host" in str(failed.value)
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


def test_redirect_within_the_same_host_is_followed(requests_mock, monkeypatch, tmp_path):
    moved = "https://download.test/moved/x.tgz?Signature=sig-secret-moved"
    connect(monkeypatch)
    api(requests_mock)
    requests_mock.get(LINK, status_code=307, headers={"Location": "/moved/x.tgz?Signature=sig-secret-moved"})
    target = requests_mock.get(moved, content=TGZ)
    result = copy(tmp_path)
    assert target.call_count == 1 and result["sha256"] == hashlib.sha256(TGZ).hexdigest()


# ---- item 10: the connection's network settings -------------------------------------------------


@reliability(
    "hostile",
    "The connection sets proxies and a CA bundle (verify) for a network where only the proxy reaches storage",
    "Fetched the snapshot link through the connection's proxy with its CA bundle, like the API calls, "
    "still sending no Atlas credentials",
    "Nothing: the export works behind the proxy",
)
def test_download_uses_the_connections_proxies_and_ca_bundle(requests_mock, monkeypatch, tmp_path):
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    proxies = {"https": "http://proxy.internal.test:3128"}
    connect(monkeypatch, proxies=proxies, verify=str(bundle))
    api(requests_mock)
    link = requests_mock.get(LINK, content=TGZ)
    copy(tmp_path)
    [request] = link.request_history
    assert request.proxies.get("https") == proxies["https"]
    assert request.verify == str(bundle)
    assert "Authorization" not in request.headers
    assert requests_mock.request_history[0].proxies.get("https") == proxies["https"]  # as the API call did


# ---- item 11: DEBUG logging ----------------------------------------------------------------------


@reliability(
    "hostile",
    "Logging at DEBUG (urllib3 and the download's adapter log every request line with its path and query) during "
    "a full export "
    "that resumes once and gets one fresh link",
    "Registered each link's query string with Airflow's masker and redacted it in the transport "
    "loggers' records before any handler sees them",
    "The transport's 'GET /backup-download/...?<redacted>' lines; no Signature= or query string in any log "
    "record or output",
)
def test_debug_transport_logs_do_not_carry_the_link_query(emu, atlas_conn, caplog, capsys, tmp_path):
    from tests.reliability.conftest import secrets_of
    from tests.reliability.test_secrets import run_export

    atlas_conn(emu, "digest")
    emu.faults.add(operation="snapshotFile", cut_after_bytes=100_000)
    emu.faults.add(operation="snapshotFile", status=403, nth=2)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    try:
        run_export(tmp_path)
    finally:
        logging.getLogger("urllib3").setLevel(logging.NOTSET)
    messages = [r.getMessage() for r in caplog.records if not r.name.startswith("airflow_provider_atlasflex.testing")]
    output = capsys.readouterr()
    text = "\n".join([*messages, output.out, output.err])
    downloads = [m for m in messages if "GET /backup-download/" in m]
    assert len(downloads) >= 3, "the transport's DEBUG request lines were not captured: nothing was proven"
    assert all("?<redacted>" in m or "?***" in m for m in downloads), downloads
    for secret in secrets_of(emu):
        assert secret not in text, f"a secret ({secret[:8]}...) reached a DEBUG log line"


# ---- item 14: a refused link is replaced by a NEW job ---------------------------------------------


@reliability(
    "hostile",
    "The storage host refuses (403) a link that Atlas still lists as valid, so the live job would be 'reused'",
    "Requested a NEW restore job (never the refused one, also when reconciling a lost POST) and resumed "
    "on its link",
    "Nothing: identical bytes; the result reports link_refreshes=1",
)
def test_refused_link_is_replaced_by_a_new_job(requests_mock, monkeypatch, tmp_path):
    connect(monkeypatch)
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(JOBS_URL, json={"results": [job()], "totalCount": 1})  # Atlas: still valid, reusable
    refused = requests_mock.get(LINK, status_code=403, text="<Error><Code>AccessDenied</Code></Error>")
    post = requests_mock.post(POST_URL, json=job(id=JOB2, snapshotUrl=LINK2))
    requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs/{JOB2}", json=job(id=JOB2, snapshotUrl=LINK2))
    fresh = requests_mock.get(LINK2, content=TGZ)
    result = copy(tmp_path)
    assert (refused.call_count, post.call_count, fresh.call_count) == (1, 1, 1)
    assert result["sha256"] == hashlib.sha256(TGZ).hexdigest() and result["link_refreshes"] == 1


@reliability(
    "hostile",
    "The storage host refuses the link; the POST for a new job answers 500 after creating it, and the job "
    "list then shows both the refused (still 'valid') job and the new one",
    "Reconciled the lost POST with the job list but skipped the job it had already used, so it took the new "
    "job's link (no second POST)",
    "Nothing: identical bytes; the result reports link_refreshes=1",
)
def test_reconciling_a_lost_post_never_picks_the_refused_job(requests_mock, monkeypatch, tmp_path):
    connect(monkeypatch)
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(JOBS_URL, json={"results": [job(), job(id=JOB2, snapshotUrl=LINK2)], "totalCount": 2})
    requests_mock.get(LINK, status_code=403)
    post = requests_mock.post(POST_URL, [{"status_code": 500, "json": {"error": 500, "errorCode": "UNEXPECTED_ERROR"}},
                                         {"json": job(id=JOB3, snapshotUrl=LINK3)}])
    fresh = requests_mock.get(LINK2, content=TGZ)
    result = copy(tmp_path)
    assert (post.call_count, fresh.call_count, result["link_refreshes"]) == (1, 1, 1)


@reliability(
    "hostile",
    "The storage host refuses the link and the first replacement too, then accepts new links",
    "Failed clearly after its one refresh; clearing the copy task (the remedy the message gives) "
    "requested another new job and exported",
    "'... was refused (HTTP 403) by the storage host (it was already a newly requested link). Clear the "
    "copy task to retry: after a refusal it requests a new restore job and link ...'; the retry succeeds",
)
def test_the_remedy_for_a_refused_link_works(requests_mock, monkeypatch, tmp_path):
    connect(monkeypatch)
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(JOBS_URL, json={"results": [job()], "totalCount": 1})
    requests_mock.get(LINK, status_code=403)
    requests_mock.get(LINK2, status_code=403)
    post = requests_mock.post(POST_URL, [{"json": job(id=JOB2, snapshotUrl=LINK2)},
                                         {"json": job(id=JOB3, snapshotUrl=LINK3)}])
    requests_mock.get(LINK3, content=TGZ)
    with pytest.raises(SnapshotLinkExpiredError, match="Clear the copy task") as failed:
        copy(tmp_path)
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)

    result = copy(tmp_path)  # what "clear the copy task" does: the same task runs again

    assert post.call_count == 2 and result["sha256"] == hashlib.sha256(TGZ).hexdigest()


# ---- item 15: stalls and the link's expiry ----------------------------------------------------------


@reliability(
    "hostile",
    "The storage host announces the file, then sends 1 byte every 50 ms forever (the read timeout never "
    "trips); stall_window=1, stall_min_bytes=10000 (defaults: 60 s, 1 MiB)",
    "Treated each window with too few bytes as a stall: dropped the connection, resumed with Range from "
    "the last byte received, and failed after max_download_attempts; nothing committed",
    "'... failed after 3 attempts: stalled: fewer than 10000 bytes arrived in 1 s' within seconds, not hours",
)
def test_trickling_host_is_a_stall(requests_mock, monkeypatch, tmp_path):
    def respond(request: Request, sock: Any) -> None:
        start = int(request.headers.get("range", "bytes=0-")[6:-1])
        if start:
            sock.sendall(head("206 Partial Content", Content_Length=len(TGZ) - start,
                              Content_Range=f"bytes {start}-{len(TGZ) - 1}/{len(TGZ)}"))
        else:
            sock.sendall(head(Content_Length=len(TGZ), Content_Type="application/gzip"))
        for byte in TGZ[start:]:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)

    with HostileStorage(respond) as host:
        connect(monkeypatch, allow_insecure_http=True)
        api(requests_mock, host.url())
        started = time.monotonic()
        with pytest.raises(SnapshotTransferError, match="stalled: fewer than 10000 bytes arrived in 1 s") as failed:
            copy(tmp_path, stall_window=1, stall_min_bytes=10_000, max_download_attempts=3)
        elapsed = time.monotonic() - started
    assert elapsed < 20, f"the stalled copy took {elapsed:.0f} s"
    ranges = [r.headers.get("range") for r in host.requests]
    assert ranges[0] is None and len(ranges) == 3 and all(r and r != "bytes=0-" for r in ranges[1:]), ranges
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


@reliability(
    "hostile",
    "The restore job's link expires in 30 s when the copy starts (within the 60 s margin)",
    "Requested a new restore job and copied from its link; the old link was never used",
    "Nothing: identical bytes; the result reports link_refreshes=1",
)
def test_link_about_to_expire_is_replaced_before_use(requests_mock, monkeypatch, tmp_path):
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    connect(monkeypatch)
    api(requests_mock, expires=soon)
    old = requests_mock.get(LINK, content=TGZ)
    requests_mock.post(POST_URL, json=job(id=JOB2, snapshotUrl=LINK2))
    fresh = requests_mock.get(LINK2, content=TGZ)
    result = copy(tmp_path)
    assert (old.call_count, fresh.call_count, result["link_refreshes"]) == (0, 1, 1)


def _ranged(context: Any, request: Any) -> bytes:
    start = int((request.headers.get("Range") or "bytes=0-")[6:-1])
    if start:
        context.status_code = 206
        context.headers["Content-Range"] = f"bytes {start}-{len(TGZ) - 1}/{len(TGZ)}"
    context.headers["Content-Length"] = str(len(TGZ) - start)
    return TGZ[start:]


@reliability(
    "hostile",
    "The link's expiry (the job's expirationDate) arrives while the copy is still running",
    "Stopped before it ran out: with a refresh left, resumed with Range on a new link; without one, "
    "failed clearly; nothing committed on failure",
    "Nothing (identical bytes) or '... the snapshot link ... expires at <time> ... stopped before it ran out. "
    "Clear the copy task to start again with a fresh link.'",
)
@pytest.mark.parametrize("refresh", [True, False], ids=["refreshed", "no-refresh-left"])
def test_link_expiring_during_the_copy(requests_mock, tmp_path, refresh):
    now = [1_000_000.0]
    reads = [0]

    def clock() -> float:
        reads[0] += 1
        if reads[0] == 3:  # a few reads into the body, time jumps past the expiry margin
            now[0] += 3600
        return now[0]

    requests_mock.get(LINK, content=lambda request, context: _ranged(context, request))
    requests_mock.get(LINK2, content=lambda request, context: _ranged(context, request))
    out = tmp_path / "copy.tgz"
    download = ResumableDownload(
        SnapshotLink(LINK, now[0] + 600),
        lambda: out.open("wb"),
        refresh_link=(lambda why: SnapshotLink(LINK2, now[0] + 4 * 3600)) if refresh else None,
        chunk_size=4096,
        clock=clock,
    )
    if refresh:
        result = download.run()
        assert result.sha256 == hashlib.sha256(TGZ).hexdigest() and result.link_refreshes == 1
        resumed = requests_mock.request_history[-1]
        assert resumed.url == LINK2 and resumed.headers["Range"] != "bytes=0-"
    else:
        with pytest.raises(SnapshotLinkExpiredError, match="stopped before it ran out") as failed:
            download.run()
        assert_no_query(str(failed.value))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stall_window": 0}, "stall_window must be a number of seconds from 1"),
        ({"stall_window": float("inf")}, "stall_window"),
        ({"stall_window": "60"}, "stall_window"),
        ({"stall_min_bytes": 0}, "stall_min_bytes must be a whole number of bytes from 1"),
        ({"stall_min_bytes": 1.5}, "stall_min_bytes"),
        ({"stall_min_bytes": True}, "stall_min_bytes"),
    ],
)
def test_bad_stall_thresholds_fail_before_any_request(requests_mock, monkeypatch, tmp_path, kwargs, message):
    connect(monkeypatch)
    with pytest.raises(AtlasFlexConfigError, match=message):
        copy(tmp_path, **kwargs)
    assert requests_mock.call_count == 0


def test_hostile_storage_helper_is_loopback_only():
    with HostileStorage(lambda request, sock: None) as host:
        assert host.url().startswith("http://127.0.0.1:")
    json.dumps(host.requests, default=str)
