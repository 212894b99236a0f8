"""A loopback storage host whose answers a test writes byte by byte: trickles, cuts, truncations, redirects.

The emulator's storage host is well-behaved by design (faults aside); these tests need one that
lies in ways no fault knob expresses. It listens on 127.0.0.1 only and records every request.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


Respond = Callable[[Request, socket.socket], None]


class HostileStorage:
    """``with HostileStorage(respond) as host: host.url("/x.tgz")``; ``respond(request, sock)`` writes the answer."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[Request] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                reader = self.request.makefile("rb")
                line = reader.readline(65536).decode("latin-1").split()
                headers: dict[str, str] = {}
                while True:
                    raw = reader.readline(65536)
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                if len(line) < 2:
                    return
                request = Request(line[0], line[1], headers)
                owner.requests.append(request)
                try:
                    owner.respond(request, self.request)
                except OSError:
                    pass  # the client hung up: what a hostile answer may provoke

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/snapshot.tgz", query: str = "Expires=4102444800&Signature=hostile-sig-0123456789") -> str:
        return f"http://127.0.0.1:{self.port}{path}?{query}"

    def __enter__(self) -> HostileStorage:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def head(status: str = "200 OK", **headers: object) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
