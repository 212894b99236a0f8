"""An overall deadline from sending a request to its complete response headers, with public APIs only.

Why: socket timeouts bound each read, not their sum. A hostile storage host (the snapshot link's
host) that sends the status line and headers one byte at a time, each byte within the read
timeout, holds the download for as long as it likes (http.client accepts up to 100 header lines
of 64 KiB each). The stall rule of the copy loop cannot see this: it watches the body, which
starts only once the headers are complete, so it does not replace this deadline. One deadline per
request covers the TCP connect, TLS handshake and headers: ``connect timeout +
HEADER_DEADLINE_FACTOR x read timeout``.

How: :class:`HeaderDeadlineAdapter` is a requests transport adapter (``HTTPAdapter`` subclass,
mounted on the download's session) whose ``send`` opens the request's connection itself, with
urllib3's public connection classes (``connect``, ``request``, ``getresponse``, ``set_tunnel``
for a proxy's CONNECT), so it holds that connection without swapping urllib3's pool classes. A
timer armed before the connect shuts the connection's socket down when the deadline passes first
(the blocked read returns at once), and the request fails with :class:`HeaderDeadlineExceeded`,
which names the host and port only (never the link's query). Once the headers are in, the timer
is disarmed: the body is the copy loop's business, read with urllib3's public ``read1``. The
response is built by ``HTTPAdapter.build_response``, as requests does.

Each request gets its own connection (a download makes a handful of long requests: no pool
needed); it is closed once its response is closed. A redirect's body is never read: requests
would read all of it into memory (``Session.send`` consumes it even with ``allow_redirects=False``),
and a hostile host's could be endless. SOCKS proxies and client certificates go
through requests' own adapter, without the header deadline (the read timeouts still apply).

Why not httpx/httpcore (which Airflow ships): a custom ``NetworkBackend`` would bound the headers
without a timer thread, but httpcore's body path costs 3-4x the CPU per byte of http.client's on
the copy's reader thread (measured on loopback: 0.25-0.32 s against 0.07-0.09 s per 256 MiB), and
requests-mock, which the transfer tests mock the link with, would no longer see the download.

Imported only when a download starts (it imports requests and urllib3).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import threading
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.response import HTTPResponse
from urllib3.util import parse_url

# Headers that take longer than the connect timeout plus this many read timeouts are a trickle, not a slow host:
# an honest storage host sends its headers in one packet right after it starts answering.
HEADER_DEADLINE_FACTOR = 2.0

# Its DEBUG request lines carry the link's path and query: link_secrecy filters this logger like urllib3's.
_log = logging.getLogger(__name__)

# The address each response came from (the proxy's, through a proxy), for the link policy's peer check.
_peers: weakref.WeakKeyDictionary[requests.Response, str] = weakref.WeakKeyDictionary()


class HeaderDeadlineExceeded(requests.ConnectionError):
    """The response headers were not complete within the deadline; the connection was dropped (retryable)."""


def header_deadline(timeout: Any, factor: float = HEADER_DEADLINE_FACTOR) -> float | None:
    """Seconds allowed from the request to complete headers, for requests' ``timeout`` argument (None: unbounded)."""
    connect, read = _split(timeout)
    if connect is None or read is None:
        return None
    return connect + factor * read


def peer_address(response: requests.Response) -> str | None:
    """The IP address a response of :class:`HeaderDeadlineAdapter` came from (None for any other response)."""
    return _peers.get(response)


class HeaderDeadlineAdapter(HTTPAdapter):
    """requests' adapter, plus the deadline from request to complete headers (see the module docstring)."""

    def __init__(self, factor: float = HEADER_DEADLINE_FACTOR, **kwargs: Any) -> None:
        self.factor = factor
        self._lock = threading.Lock()
        self._open: list[tuple[HTTPResponse, HTTPConnection]] = []
        super().__init__(**kwargs)

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        connect_timeout, read_timeout = _split(timeout)
        seconds = header_deadline(timeout, self.factor)
        proxy = select_proxy(request.url or "", proxies or {})
        socks = proxy is not None and not proxy.lower().startswith(("http://", "https://"))
        if seconds is None or cert or socks or request.body is not None:  # the download sends GETs only
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        self._close_finished()
        conn, target, headers = self._connection(request, connect_timeout, verify, proxy)
        watch, connected, peer = _Watch(conn), False, None
        timer = threading.Timer(seconds, watch.expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                conn.connect()
                connected, peer = True, _peer_of(conn)
                conn.timeout = read_timeout  # each read of the headers; the deadline bounds their sum
                watch.check()
                conn.request(
                    request.method or "GET", target, headers=headers,
                    preload_content=False, decode_content=False,
                )
                raw = conn.getresponse()
            finally:
                timer.cancel()
                expired = watch.disarm()
            if expired:  # the timer fired as the headers completed: its socket is shut down
                raise _Expired
        except BaseException as exc:
            conn.close()
            if watch.expired:
                raise HeaderDeadlineExceeded(_message(request, seconds), request=request) from None
            mapped = _as_requests_error(exc, request, connected=connected, proxy=proxy)
            if mapped is exc:
                raise
            raise mapped from exc
        _log.debug('%s:%s "%s %s HTTP/1.1" %s %s', conn.host, conn.port, request.method, target, raw.status,
                   raw.headers.get("Content-Length"))
        response = self.build_response(request, raw)
        if response.is_redirect:
            # requests reads a redirect's whole body into memory even when it does not follow it (it
            # consumes it to release the connection); only Location matters, and this connection is not reused.
            raw.close()
        if peer is not None:
            _peers[response] = peer
        with self._lock:
            self._open.append((raw, conn))
        if not stream:
            response.content  # noqa: B018  (requests' meaning of stream=False: read the body now)
        return response

    def close(self) -> None:
        with self._lock:
            conns, self._open = [conn for _, conn in self._open], []
        for conn in conns:
            conn.close()
        super().close()

    def _close_finished(self) -> None:
        """Close the connections whose responses were closed (a keep-alive connection stays open otherwise)."""
        with self._lock:
            done = [conn for raw, conn in self._open if raw.closed]
            self._open = [(raw, conn) for raw, conn in self._open if not raw.closed]
        for conn in done:
            conn.close()

    def _connection(
        self, request: requests.PreparedRequest, connect_timeout: float | None, verify: bool | str, proxy: str | None
    ) -> tuple[HTTPConnection, str, dict[str, str]]:
        """A new connection for ``request``, the target for its request line, and the headers to send."""
        url = parse_url(request.url or "")
        headers = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in request.headers.items()}
        target = url.request_uri
        https = url.scheme == "https"
        host, port = url.host or "", url.port or (443 if https else 80)
        if proxy:
            via = parse_url(proxy)
            address = (via.host or "", via.port or (443 if via.scheme == "https" else 80))
            if https:  # CONNECT through the proxy, then TLS with the link's host
                conn: HTTPConnection = HTTPSConnection(*address, timeout=connect_timeout, **_tls(verify))
                conn.set_tunnel(host, port, headers=self.proxy_headers(proxy), scheme=via.scheme or "http")
                return conn, target, headers
            headers.update(self.proxy_headers(proxy))  # plain http: the proxy forwards the absolute URL
            cls = HTTPSConnection if via.scheme == "https" else HTTPConnection
            return cls(*address, timeout=connect_timeout), request.url or "", headers
        if https:
            return HTTPSConnection(host, port, timeout=connect_timeout, **_tls(verify)), target, headers
        return HTTPConnection(host, port, timeout=connect_timeout), target, headers


class _Expired(Exception):
    """The deadline passed as the headers completed."""


class _Watch:
    """One request's timer: shuts its connection's socket down if the deadline passes before the headers."""

    def __init__(self, conn: HTTPConnection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._disarmed = False
        self.expired = False

    def expire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self.expired = True
            sock = self._conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        """After the connect: a deadline that passed during it (before there was a socket to cut) fails now."""
        with self._lock:
            if self.expired:
                raise _Expired

    def disarm(self) -> bool:
        """Stop the timer's effect; True if it had already fired."""
        with self._lock:
            self._disarmed = True
            return self.expired


def _split(timeout: Any) -> tuple[float | None, float | None]:
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    valid = [isinstance(x, (int, float)) and not isinstance(x, bool) for x in (connect, read)]
    return (float(connect) if valid[0] else None), (float(read) if valid[1] else None)


def _tls(verify: bool | str) -> dict[str, Any]:
    """The TLS settings requests would use for ``verify`` (its default CA bundle, or the path given)."""
    if verify is False:
        return {"cert_reqs": ssl.CERT_NONE}
    where = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    if not where or not os.path.exists(where):
        raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {where}")
    if os.path.isdir(where):
        return {"cert_reqs": ssl.CERT_REQUIRED, "ca_cert_dir": where}
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": where}


def _peer_of(conn: HTTPConnection) -> str | None:
    try:
        return str(conn.sock.getpeername()[0]) if conn.sock is not None else None
    except (OSError, IndexError):
        return None


def _as_requests_error(
    exc: BaseException, request: requests.PreparedRequest, *, connected: bool, proxy: str | None
) -> BaseException:
    """The exception requests' own adapter raises for the same failure (callers catch requests' exceptions)."""
    if isinstance(exc, ConnectTimeoutError):
        return requests.ConnectTimeout(exc, request=request)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(exc, request=request)
    if isinstance(exc, TimeoutError):  # a TLS handshake or a read: urllib3 calls both a read timeout
        return requests.ReadTimeout(exc, request=request)
    if isinstance(exc, OSError) and proxy and not connected:  # e.g. the proxy refused the CONNECT
        return requests.exceptions.ProxyError(exc, request=request)
    if isinstance(exc, (OSError, http.client.HTTPException, Urllib3Error)):
        return requests.ConnectionError(exc, request=request)
    return exc


def _message(request: requests.PreparedRequest, seconds: float) -> str:
    url = parse_url(request.url or "")
    host = f"{url.host}:{url.port}" if url.port else (url.host or "?")
    return (
        f"the storage host {host} did not complete its response headers within {seconds:g} s of the request "
        "(it sends them too slowly, e.g. a byte at a time); the connection was dropped"
    )
