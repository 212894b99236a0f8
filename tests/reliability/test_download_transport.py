"""The download's own transport (``header_deadline.HeaderDeadlineAdapter``) on real sockets: TLS and a CONNECT proxy.

The adapter opens each request's connection itself (urllib3's public connection classes), so it
owns what requests' pools did before: certificate checks against the connection's CA bundle (or
none with verify=false), the proxy's CONNECT tunnel with its credentials, and the header deadline
inside that tunnel. The storage host is ``HostileStorage`` behind a TLS front (``TlsFront``, with a
certificate from a test CA); the proxy is a small CONNECT relay on 127.0.0.1 that records what it was
asked.
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.transfers.resumable_download import ResumableDownload
from tests.reliability.hostile_storage import HostileStorage, Request, head
from tests.reliability.registry import reliability
from tests.reliability.test_ca_bundle_env import TlsFront, _ca, _pem, _server_cert
from tests.reliability.test_hostile_api import _socket_buffer_bytes
from tests.reliability.test_hostile_download import TGZ

QUERY = "Expires=4102444800&Signature=transport-sig-0123456789"


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that only tunnels (CONNECT), recording each target and Proxy-Authorization."""

    def __init__(self) -> None:
        self.tunnels: list[tuple[str, str | None]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        line = reader.readline(65536).decode("latin-1").split()
        auth = None
        while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "proxy-authorization":
                auth = value.strip()
        if len(line) < 2 or line[0] != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        self.tunnels.append((line[1], auth))
        host, _, port = line[1].rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 30)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()
            client.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key, ca_cert = _ca("storage CA")
    _, other_ca = _ca("unrelated CA")
    server_key, server_cert = _server_cert(ca_key, ca_cert)
    return {
        "ca": _pem(tmp_path / "storage-ca.pem", ca_cert),
        "other_ca": _pem(tmp_path / "other-ca.pem", other_ca),
        "server": _pem(tmp_path / "server.pem", server_cert, server_key),
    }


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    relay = ConnectProxy()
    yield relay
    relay.close()


def _serve_tgz(request: Request, sock: Any) -> None:
    sock.sendall(head(Content_Length=len(TGZ), Content_Type="application/gzip") + TGZ)


def _download(url: str, out: Path, **kwargs: Any) -> Any:
    return ResumableDownload(url, lambda: out.open("wb"), allow_insecure_http=True, backoff_max=0.01, **kwargs).run()


def test_https_through_a_connect_proxy_with_the_connections_ca(tmp_path, pki, proxy):
    with HostileStorage(_serve_tgz) as storage:
        front = TlsFront(storage.port, pki["server"])
        try:
            url = f"https://127.0.0.1:{front.port}/snapshot.tgz?{QUERY}"
            proxies = {"https": f"http://corp:s3cret@127.0.0.1:{proxy.port}"}
            result = _download(url, tmp_path / "copy.tgz", proxies=proxies, verify=str(pki["ca"]), timeout=5)
        finally:
            front.close()
    assert result.sha256 == hashlib.sha256(TGZ).hexdigest() == hashlib.sha256((tmp_path / "copy.tgz").read_bytes()).hexdigest()
    assert proxy.tunnels == [(f"127.0.0.1:{front.port}", "Basic " + base64.b64encode(b"corp:s3cret").decode())]
    assert front.handshakes == 1 and [r.target for r in storage.requests] == [f"/snapshot.tgz?{QUERY}"]


@reliability(
    "hostile",
    "Behind the connection's CONNECT proxy, the https storage host sends its status line and headers one byte every "
    "0.2 s inside the tunnel (each byte within the 1 s read timeout)",
    "Bounded the time from request to complete headers (connect timeout + 2 x read timeout = 3 s) inside the "
    "tunnel too: dropped the connection; nothing committed",
    "'... the storage host 127.0.0.1:<port> did not complete its response headers within 3 s of the request' "
    "within seconds; no query string",
)
def test_headers_trickled_through_the_proxy_tunnel_meet_the_deadline(tmp_path, pki, proxy):
    def trickle(request: Request, sock: Any) -> None:
        until = time.monotonic() + 12
        for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 10_000:
            if time.monotonic() > until:
                return
            sock.sendall(bytes([byte]))
            time.sleep(0.2)

    with HostileStorage(trickle) as storage:
        front = TlsFront(storage.port, pki["server"])
        try:
            url = f"https://127.0.0.1:{front.port}/snapshot.tgz?{QUERY}"
            started = time.monotonic()
            with pytest.raises(SnapshotTransferError) as failed:
                _download(url, tmp_path / "copy.tgz", proxies={"https": f"http://127.0.0.1:{proxy.port}"},
                          verify=str(pki["ca"]), timeout=1, max_attempts=1)
            elapsed = time.monotonic() - started
        finally:
            front.close()
    message = str(failed.value)
    assert f"the storage host 127.0.0.1:{front.port} did not complete its response headers within 3 s" in message
    assert 3 <= elapsed < 8, f"the trickled headers held the copy {elapsed:.1f} s"
    assert "Signature" not in message and len(proxy.tunnels) == 1


@reliability(
    "hostile",
    "The https storage host presents a certificate that the connection's CA bundle (verify) did not sign",
    "Refused in the TLS handshake, before the link (path and signature) was sent; retried, then failed",
    "'download of https://<host>/<path>?<redacted> failed after 2 attempts: SSLError'",
)
def test_a_certificate_from_another_ca_is_refused(tmp_path, pki):
    with HostileStorage(_serve_tgz) as storage:
        front = TlsFront(storage.port, pki["server"])
        try:
            url = f"https://127.0.0.1:{front.port}/snapshot.tgz?{QUERY}"
            with pytest.raises(SnapshotTransferError, match="failed after 2 attempts: SSLError"):
                _download(url, tmp_path / "copy.tgz", verify=str(pki["other_ca"]), max_attempts=2)
        finally:
            front.close()
    assert storage.requests == [] and front.handshakes == 0  # nothing was sent to a host we could not verify


def test_verify_false_accepts_any_certificate(tmp_path, pki):
    with HostileStorage(_serve_tgz) as storage:
        front = TlsFront(storage.port, pki["server"])
        try:
            result = _download(f"https://127.0.0.1:{front.port}/snapshot.tgz?{QUERY}", tmp_path / "copy.tgz",
                               verify=False)
        finally:
            front.close()
    assert result.sha256 == hashlib.sha256(TGZ).hexdigest()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open descriptors in /proc/self/fd (Linux)")
def test_the_copy_leaves_no_connection_open(tmp_path):
    """Each request has its own connection: the copy closes it, also when the host keeps it alive."""

    def keep_alive(request: Request, sock: Any) -> None:
        sock.sendall(head(Content_Length=len(TGZ), Content_Type="application/gzip") + TGZ)
        time.sleep(0.5)  # a keep-alive host: the connection stays open until the client closes it

    def descriptors() -> int:
        time.sleep(1)  # the in-process host's own side of the last connection is closed by now
        return len(list(Path("/proc/self/fd").iterdir()))

    with HostileStorage(keep_alive) as storage:
        url = storage.url()
        _download(url, tmp_path / "warm-up.tgz")  # imports and first-use descriptors
        before = descriptors()
        out = tmp_path / "copy.tgz"
        download = ResumableDownload(url, lambda: out.open("wb"), allow_insecure_http=True, max_attempts=1)
        result = download.run()
        after = descriptors()  # the download (its session) is still referenced: nothing was garbage-collected
        del download
    assert result.sha256 == hashlib.sha256(TGZ).hexdigest()
    assert after == before, f"{after - before} descriptor(s) left open after the copy"


@reliability(
    "hostile",
    "The storage host answers the link with a redirect within its own host whose body never ends (no "
    "Content-Length, 1 MiB after 1 MiB; requests reads a redirect's body even when it does not follow it)",
    "Read none of the redirect's body (closed its connection at the headers), followed Location, copied the file",
    "Nothing: the copy succeeds; the host got out no more than the socket buffers hold",
)
def test_an_endless_redirect_body_is_not_read(tmp_path):
    sent = [0]

    def redirect_then_file(request: Request, sock: Any) -> None:
        if request.target.startswith("/moved.tgz"):
            _serve_tgz(request, sock)
            return
        sock.sendall(head("302 Found", Location=f"/moved.tgz?{QUERY}", Connection="close"))
        block = b" " * (1024 * 1024)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sent[0] < 1024 * 1024 * 1024:
            sock.sendall(block)  # raises once the client hangs up
            sent[0] += len(block)

    with HostileStorage(redirect_then_file) as storage:
        result = _download(storage.url(), tmp_path / "copy.tgz", max_attempts=1)
        time.sleep(0.5)  # the host's writes fail once the client has closed
    assert result.sha256 == hashlib.sha256(TGZ).hexdigest()
    assert [r.target.split("?")[0] for r in storage.requests] == ["/snapshot.tgz", "/moved.tgz"]
    assert sent[0] <= _socket_buffer_bytes(), f"the host got {sent[0] / 2**20:.0f} MiB of the redirect's body out"
