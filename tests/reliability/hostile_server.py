"""A scriptable loopback HTTP server that plays a lying or hostile Atlas (or the host it redirects to).

Each test gives it a function from the request to an answer; the server records every request
(method, path, headers) so a test can prove what the client sent, and to whom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from typing_extensions import Self


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    client_port: int = 0  # the client's side of the connection: equal ports, one connection


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    # True: announce len(body) in Content-Length (a bytes body only); False: stream until the socket closes.
    length: bool = True


class HostileServer:
    """``with HostileServer(answer, host="127.0.0.2") as srv``: ``srv.base_url``, ``srv.seen``."""

    def __init__(self, answer: Callable[[Seen], Answer], host: str = "127.0.0.1") -> None:
        self.seen: list[Seen] = []
        self.bytes_sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.client_address[1])
                outer.seen.append(seen)
                reply = answer(seen)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if isinstance(reply.body, bytes) and reply.length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                chunks = [reply.body] if isinstance(reply.body, bytes) else reply.body
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        outer.bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def authorizations(self) -> list[str]:
        return [s.headers.get("Authorization", "") for s in self.seen if s.headers.get("Authorization")]
