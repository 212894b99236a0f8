"""One ``httpx.AsyncClient`` per event loop and connection settings, shared by every trigger in a triggerer.

A client per trigger means a connection pool, an SSL context (the costly part: loading the CA
bundle) and a TCP/TLS handshake per trigger and poll: 500 deferred sensors cost 500 clients,
13 s of CPU and 546 MiB. Triggers that talk to the same Atlas host with the same settings lease
one client instead (one of a few "lanes" in a large triggerer, see ``WAITS_PER_LANE``); it stays
open while any trigger uses it, keeps its connections alive across poll intervals, and is closed
when the last trigger using it ends (also when the loop shuts down).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# Keep idle connections longer than a poll interval (the sensor's default poke is 30 s), so each
# poll reuses its connection instead of paying a new TCP and TLS handshake. A server that closes
# sooner is fine: httpx notices the closed connection and opens a new one.
KEEPALIVE_EXPIRY = 120.0
# Requests in flight (and connections) per client. Each time a request arrives or finishes, httpcore
# checks every pooled connection for expiry (a poll() and getpeername() per idle connection) and
# counts the idle ones once per idle connection (quadratic), so every connection costs every request:
# 500 triggers polling at once spent 85% of the triggerer's CPU there with no limit, and 4 connections
# cost a quarter less CPU than 8 and a half less than 32 (benchmarks/triggerer_scale.py).
MAX_CONNECTIONS = 4
# More waits get more lanes (a client of MAX_CONNECTIONS each) instead of a bigger pool: a new lane opens
# when every lane already serves WAITS_PER_LANE waits, up to MAX_LANES. So a large triggerer keeps the
# per-request cost of a 4-connection pool while up to 32 polls are in flight: at Atlas' 150-300 ms
# latency one lane carries only 13-27 polls a second (500 sensors poking every 30 s need 17, and one
# client serves every project of a host), and a few answers that hang until the timeout hold up only
# the waits of their own lane.
WAITS_PER_LANE = 32
MAX_LANES = 8


@dataclass(frozen=True)
class ClientSettings:
    """What makes two clients interchangeable."""

    base_url: str
    verify: bool | str
    proxy: str | None
    timeout: float
    user_agent: str


@dataclass(eq=False)
class _Lane:
    client: httpx.AsyncClient
    gate: asyncio.Semaphore
    leases: int = 0


_lock = threading.Lock()
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientSettings, list[_Lane]]] = (
    weakref.WeakKeyDictionary()
)
_created = 0


def clients_created() -> int:
    """How many clients this process has built (tests prove triggers share them)."""
    return _created


def lease(settings: ClientSettings) -> httpx.AsyncClient:
    """A client of the running loop's for ``settings`` (its least busy lane); :func:`release` it when done."""
    global _created
    loop = asyncio.get_running_loop()
    with _lock:
        lanes = _registry.setdefault(loop, {}).setdefault(settings, [])
        lanes[:] = [lane for lane in lanes if not lane.client.is_closed]
        lane = min(lanes, key=lambda candidate: candidate.leases, default=None)
        if lane is None or (lane.leases >= WAITS_PER_LANE and len(lanes) < MAX_LANES):
            lane = _Lane(_build(settings), asyncio.Semaphore(MAX_CONNECTIONS))
            lanes.append(lane)
            _created += 1
        lane.leases += 1
        return lane.client


def gate(settings: ClientSettings, client: httpx.AsyncClient) -> asyncio.Semaphore:
    """Hold while a request of the leased ``client`` is in flight (see ``MAX_CONNECTIONS``)."""
    with _lock:
        lanes = _registry.get(asyncio.get_running_loop(), {}).get(settings, [])
        lane = next((candidate for candidate in lanes if candidate.client is client), None)
    return lane.gate if lane is not None else asyncio.Semaphore(MAX_CONNECTIONS)


async def release(settings: ClientSettings, client: httpx.AsyncClient) -> None:
    """Give a leased client back; the last wait of its lane to let go closes it.

    Triggers hold their lease for their whole wait, so while any trigger polls the client stays
    open with its kept-alive connections; a triggerer with nothing to wait for holds no sockets.
    Closing is awaited here (not left to a background task) so it also completes when the loop is
    shutting down and async generators are being closed.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        lanes = _registry.get(loop, {}).get(settings, [])
        lane = next((candidate for candidate in lanes if candidate.client is client), None)
        if lane is not None:
            lane.leases -= 1
            if lane.leases > 0:
                return
            lanes.remove(lane)
    if not client.is_closed:
        await client.aclose()


def _build(settings: ClientSettings) -> httpx.AsyncClient:
    import http.cookiejar

    import httpx

    class KeepNoCookies(http.cookiejar.CookieJar):
        """The Admin API needs no cookies, and one client serves every credential of a host: store none.

        A cookie one trigger's answer set would otherwise go out with every other trigger's requests,
        whatever connection (and credential) they use.
        """

        def extract_cookies(self, response: object, request: object) -> None:
            return None

        def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
            return None

    return httpx.AsyncClient(
        headers={"User-Agent": settings.user_agent},
        cookies=KeepNoCookies(),
        timeout=settings.timeout,
        verify=settings.verify,
        proxy=settings.proxy,
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
    )
