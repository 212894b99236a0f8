"""A storage host that trickles: its response headers, or its body, a byte at a time (real loopback sockets).

Each byte arrives within the read timeout, so socket timeouts alone never fire. The headers are
bounded by a deadline from request to complete headers (``header_deadline``); the body by the
stall rule (``stall_window`` / ``stall_min_bytes``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from tests.reliability.hostile_storage import HostileStorage, Request, head
from tests.reliability.registry import reliability
from tests.reliability.test_hostile_download import TGZ, api, assert_no_query, assert_nothing_committed, connect, copy

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

TRICKLE_FOR = 12.0  # the host gives up after this long (a test must end on any code)


@pytest.fixture(autouse=True)
def snapshot_resource(requests_mock: Any) -> Any:
    from tests.unit.conftest import CLUSTER_URL, SNAP

    return requests_mock.get(f"{CLUSTER_URL}/backup/snapshots/{SNAP}", json={"id": SNAP, "status": "COMPLETED"})


def _trickle(sock: Any, data: bytes, pause: float, until: float) -> None:
    for byte in data:
        if time.monotonic() > until:
            return
        sock.sendall(bytes([byte]))
        time.sleep(pause)


@reliability(
    "hostile",
    "The storage host sends its status line and headers one byte every 0.2 s (each byte within the 1 s read "
    "timeout: the connection's timeout extra), for as long as the client listens",
    "Bounded the time from request to complete headers (connect timeout + 2 x read timeout = 3 s): dropped the "
    "connection, retried, and failed after max_download_attempts; nothing committed",
    "'download of http://<host>/<path>?<redacted> failed after 2 attempts: the storage host 127.0.0.1:<port> did "
    "not complete its response headers within 3 s of the request (...)' within seconds; no query string",
)
def test_headers_trickled_a_byte_at_a_time_meet_a_deadline(requests_mock, monkeypatch, tmp_path):
    def respond(request: Request, sock: Any) -> None:
        until = time.monotonic() + TRICKLE_FOR
        _trickle(sock, b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 10_000 + b"\r\n", 0.2, until)

    with HostileStorage(respond) as host:
        connect(monkeypatch, allow_insecure_http=True, timeout=1)
        api(requests_mock, host.url())
        started = time.monotonic()
        with pytest.raises(SnapshotTransferError) as failed:
            copy(tmp_path, max_download_attempts=2)
        elapsed = time.monotonic() - started
    message = str(failed.value)
    assert "failed after 2 attempts" in message, message
    assert f"the storage host 127.0.0.1:{host.port} did not complete its response headers within 3 s" in message
    assert 3 <= elapsed < TRICKLE_FOR, f"the trickled headers held the copy {elapsed:.1f} s"
    assert len(host.requests) == 2
    assert_no_query(message)
    assert_nothing_committed(tmp_path)


def test_headers_that_arrive_at_once_are_not_cut(requests_mock, monkeypatch, tmp_path):
    """The deadline covers headers only: a body that takes longer than it (but never stalls) is copied whole."""

    def respond(request: Request, sock: Any) -> None:
        sock.sendall(head(Content_Length=len(TGZ), Content_Type="application/gzip"))
        step = len(TGZ) // 8
        for offset in range(0, len(TGZ), step):  # 8 pieces over ~4 s: longer than the 3 s header deadline
            sock.sendall(TGZ[offset : offset + step])
            time.sleep(0.5)

    with HostileStorage(respond) as host:
        connect(monkeypatch, allow_insecure_http=True, timeout=1)
        api(requests_mock, host.url())
        result = copy(tmp_path, max_download_attempts=1, stall_window=2, stall_min_bytes=1)
    assert result["bytes"] == len(TGZ) and result["attempts"] == 1


@reliability(
    "hostile",
    "The storage host sends proper headers, then the body at 1 byte per second (below every read timeout); "
    "stall_window=3, stall_min_bytes=10, connection timeout 5 s",
    "The stall rule (already in place) saw fewer than 10 bytes in a 3 s window: dropped the connection, resumed "
    "with Range, and failed after max_download_attempts; nothing committed",
    "'... failed after 2 attempts: stalled: fewer than 10 bytes arrived in 3 s' within seconds",
)
def test_body_trickled_at_one_byte_per_second_is_a_stall(requests_mock, monkeypatch, tmp_path):
    def respond(request: Request, sock: Any) -> None:
        start = int(request.headers.get("range", "bytes=0-")[6:-1])
        if start:
            sock.sendall(
                head(
                    "206 Partial Content",
                    Content_Length=len(TGZ) - start,
                    Content_Range=f"bytes {start}-{len(TGZ) - 1}/{len(TGZ)}",
                )
            )
        else:
            sock.sendall(head(Content_Length=len(TGZ), Content_Type="application/gzip"))
        _trickle(sock, TGZ[start:], 1.0, time.monotonic() + TRICKLE_FOR)

    with HostileStorage(respond) as host:
        connect(monkeypatch, allow_insecure_http=True, timeout=5)
        api(requests_mock, host.url())
        started = time.monotonic()
        with pytest.raises(SnapshotTransferError, match="stalled: fewer than 10 bytes arrived in 3 s") as failed:
            copy(tmp_path, stall_window=3, stall_min_bytes=10, max_download_attempts=2)
        elapsed = time.monotonic() - started
    assert elapsed < TRICKLE_FOR, f"the trickled body held the copy {elapsed:.1f} s"
    assert [r.headers.get("range") is not None for r in host.requests] == [False, True]
    assert_no_query(str(failed.value))
    assert_nothing_committed(tmp_path)


def test_tls_handshake_trickled_a_byte_at_a_time_is_bounded(requests_mock, monkeypatch, tmp_path):
    """A host trickling its TLS ServerHello: CPython bounds the whole handshake by the connect timeout
    (the header deadline, armed before the connection, would cut it otherwise)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            accepted.append(client)
            # A handshake record header announcing 16 KiB, then its body a byte at a time.
            threading.Thread(
                target=lambda c=client: _trickle_quietly(c, b"\x16\x03\x03\x40\x00" + b"\x02" * 16384), daemon=True
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        connect(monkeypatch, allow_insecure_http=True, timeout=1)
        api(requests_mock, f"https://127.0.0.1:{port}/snapshot.tgz?Signature=hostile-sig-0123")
        requests_mock.get(f"https://127.0.0.1:{port}/snapshot.tgz", real_http=True)
        started = time.monotonic()
        with pytest.raises(SnapshotTransferError) as failed:
            copy(tmp_path, max_download_attempts=2)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
        for client in accepted:
            client.close()
    message = str(failed.value)
    assert "failed after 2 attempts: " in message and ("ReadTimeout" in message or "within 3 s" in message), message
    assert elapsed < 2 * 3 + 3, f"the trickled handshake held the copy {elapsed:.1f} s"
    assert_no_query(message)
    assert_nothing_committed(tmp_path)


def _trickle_quietly(sock: Any, data: bytes) -> None:
    try:
        _trickle(sock, data, 0.2, time.monotonic() + TRICKLE_FOR)
    except OSError:
        pass  # the client hung up
