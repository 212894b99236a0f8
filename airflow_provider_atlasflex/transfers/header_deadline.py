"""An overall deadline from sending a request to its complete response headers.

Socket timeouts bound each read, not their sum: a hostile storage host (the snapshot link's
host) that sends the status line and headers one byte at a time, each byte within the read
timeout, holds the download for as long as it likes (http.client accepts up to 100 header lines
of 64 KiB each). The body is covered by the stall rule of the copy loop; this covers what comes
before it, the TCP connect, TLS handshake and headers, with one deadline per request:
``connect timeout + HEADER_DEADLINE_FACTOR x read timeout``.

How: :class:`HeaderDeadlineAdapter` is mounted on the download's session. For each request it
arms a timer; the urllib3 connections it hands out register themselves with that request's timer
when they connect or send. When the timer fires before the headers are complete, it shuts the
connection's socket down (the blocked read returns at once) and the request fails with
:class:`HeaderDeadlineExceeded`, which names the host and port only (never the link's query).
Once the headers are in, the timer is disarmed: the body is the copy loop's business.

Imported only when a download starts (it imports requests and urllib3).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Headers that take longer than the connect timeout plus this many read timeouts are a trickle, not a slow host:
# an honest storage host sends its headers in one packet right after it starts answering.
HEADER_DEADLINE_FACTOR = 2.0


class HeaderDeadlineExceeded(requests.ConnectionError):
    """The response headers were not complete within the deadline; the connection was dropped (retryable)."""


def header_deadline(timeout: Any, factor: float = HEADER_DEADLINE_FACTOR) -> float | None:
    """Seconds allowed from the request to complete headers, for requests' ``timeout`` argument (None: unbounded)."""
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if not isinstance(connect, (int, float)) or not isinstance(read, (int, float)):
        return None
    return float(connect) + factor * float(read)


class _Watch:
    """One request's timer: the connections it used, and whether the deadline passed before the headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._disarmed = False
        self.expired = False

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            if self.expired:
                _cut(connection)

    def expire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self.expired = True
            for connection in self._connections:
                _cut(connection)

    def disarm(self) -> None:
        with self._lock:
            self._disarmed = True


def _cut(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


def _attach(connection: HTTPConnection) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:  # a kept-alive connection does not connect again
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


def _watch_pools(manager: Any) -> Any:
    """Use the watched connection classes, unless the manager has its own (SOCKS proxies keep theirs)."""
    if getattr(manager, "pool_classes_by_scheme", None) == poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = _WATCHED_POOLS
    return manager


class HeaderDeadlineAdapter(HTTPAdapter):
    """requests' adapter, plus the deadline from request to complete headers (see the module docstring)."""

    def __init__(self, factor: float = HEADER_DEADLINE_FACTOR, **kwargs: Any) -> None:
        self.factor = factor
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _watch_pools(super().proxy_manager_for(proxy, **proxy_kwargs))

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        seconds = header_deadline(kwargs.get("timeout", args[1] if len(args) > 1 else None), self.factor)
        if seconds is None:
            return super().send(request, *args, **kwargs)
        watch, previous = _Watch(), getattr(_current, "watch", None)
        timer = threading.Timer(seconds, watch.expire)
        timer.daemon = True
        _current.watch = watch
        timer.start()
        try:
            response = super().send(request, *args, **kwargs)
        except requests.RequestException:
            watch.disarm()
            if watch.expired:
                raise HeaderDeadlineExceeded(_message(request, seconds), request=request) from None
            raise
        finally:
            timer.cancel()
            _current.watch = previous
        watch.disarm()
        if watch.expired:  # the timer fired as the headers completed: its socket is shut down
            response.close()
            raise HeaderDeadlineExceeded(_message(request, seconds), request=request)
        return response


def _message(request: requests.PreparedRequest, seconds: float) -> str:
    parts = urlsplit(request.url or "")
    host = parts.netloc.rpartition("@")[2] or "?"
    return (
        f"the storage host {host} did not complete its response headers within {seconds:g} s of the request "
        "(it sends them too slowly, e.g. a byte at a time); the connection was dropped"
    )
