"""HTTP plumbing: a loopback ``ThreadingHTTPServer`` speaking HTTP/1.1 keep-alive.

Why stdlib only: the emulator ships inside the provider's ``testing`` package and
must run anywhere the provider runs, with no extra dependencies.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._util import Headers
from .api import AdminApi
from .auth import OAuthError, TokenStore
from .errors import ApiErrorResponse
from .faults import FaultSet
from .files import SnapshotFileServer
from .presign import DOWNLOAD_PREFIX
from .recording import RecordedExchange, RequestLog
from .routing import ParsedRequest, Reply, match_route

__all__ = ["Backend", "EmulatorHTTPServer"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
OAUTH_TOKEN_PATH = "/api/oauth/token"
OAUTH_REVOKE_PATH = "/api/oauth/revoke"


class Backend:
    """Everything a request handler needs, bundled for the server."""

    def __init__(
        self,
        api: AdminApi,
        files: SnapshotFileServer,
        tokens: TokenStore,
        faults: FaultSet,
        log_: RequestLog,
        base_url: Callable[[], str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.files = files
        self.tokens = tokens
        self.faults = faults
        self.log = log_
        self.base_url = base_url
        self.sleep = sleep

    # ---------------------------------------------------------------- oauth
    def oauth(self, req: ParsedRequest, operation: str) -> tuple[Reply, list[int]]:
        plan = self.faults.on_call(operation, None)
        fired = [f.id for f in plan.fired]
        if plan.delay:
            self.sleep(plan.delay)
        if req.method != "POST":
            return _json_reply(405, {"error": "invalid_request", "error_description": "Use POST."}), fired
        if plan.before is not None:
            f = plan.before
            status = f.status or 500
            if status == 401:
                body: dict[str, Any] = {"error": "invalid_client", "error_description": f.detail or "Injected fault."}
            else:
                body = {
                    "detail": f.detail or ("Unexpected error." if status >= 500 else "Injected fault."),
                    "error": status,
                    "errorCode": f.error_code or ("RATE_LIMITED" if status == 429 else "UNEXPECTED_ERROR"),
                    "parameters": [],
                    "reason": _phrase(status),
                }
            reply = _json_reply(status, body)
            if "errorCode" in body:  # real Atlas errors carry their code in a header too
                reply.headers.append(("X-Error-Code", body["errorCode"]))
            if f.retry_after is not None:
                reply.headers.append(("Retry-After", str(round(f.retry_after))))
            return reply, fired
        ctype = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _json_reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Content-Type must be application/x-www-form-urlencoded.",
                },
            ), fired
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        auth = req.headers.get("Authorization")
        try:
            if operation == "oauthToken":
                reply = _json_reply(200, self.tokens.issue(auth, form))
                reply.headers += [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
            else:
                self.tokens.revoke(auth, form)
                reply = Reply(200, [("Content-Type", "application/json")], b"")
        except OAuthError as err:
            reply = _json_reply(err.status, err.body)
            reply.headers += list(err.headers.items())
        return reply, fired


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json_reply(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(body, separators=(",", ":")).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AtlasEmulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        # Small JSON answers must not wait for delayed ACKs (Nagle): ~40 ms per call otherwise.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -------------------------------------------------------------- reading
    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    # ------------------------------------------------------------- dispatch
    def _dispatch(self) -> None:
        backend = self.server.backend
        started = time.time()
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = Headers(self.headers.items())
        body = self._read_body()
        record = RecordedExchange(
            operation=None,
            method=self.command,
            path=path,
            query=query,
            headers=headers,
            body=body or b"",
            base_url=backend.base_url(),
            started_at=started,
        )
        req = ParsedRequest(self.command, self.path, path, query, headers, body or b"")
        try:
            if body is None:
                self.close_connection = True
                reply = backend.api.error_reply(ApiErrorResponse(413, "PAYLOAD_TOO_LARGE", "Request body too large."))
            elif path == OAUTH_TOKEN_PATH or path == OAUTH_REVOKE_PATH:
                record.operation = "oauthToken" if path == OAUTH_TOKEN_PATH else "oauthRevoke"
                reply, record.faults = backend.oauth(req, record.operation)
            elif path.startswith(DOWNLOAD_PREFIX):
                record.operation = "snapshotFile"
                reply, record.faults = backend.files.handle(req)
            else:
                route, params, other = match_route(self.command, path)
                if route is None:
                    code, status = ("METHOD_NOT_ALLOWED", 405) if other else ("RESOURCE_NOT_FOUND", 404)
                    detail = (
                        f"Method {self.command} is not allowed on {path}." if other else f"Cannot find resource {path}."
                    )
                    reply = backend.api.error_reply(ApiErrorResponse(status, code, detail, [path]))
                else:
                    record.operation = route.operation
                    record.path_params = params
                    record.path_template = route.template
                    reply, principal, record.faults = backend.api.handle(req, route, params)
                    record.principal = principal.name if principal else None
        except Exception:  # a bug in the emulator must not kill the connection silently
            log.exception("emulator failed on %s %s", self.command, self.path)
            reply = backend.api.error_reply(ApiErrorResponse(500, "UNEXPECTED_ERROR", "Unexpected error."))
        # The exchange is logged before the body goes out, so a client that has read its
        # response always finds it in emu.requests (no race with this thread).
        self._write(reply, record, lambda: backend.log.append(record))
        record.duration = time.time() - started

    # -------------------------------------------------------------- writing
    def _write(self, reply: Reply, record: RecordedExchange, logged: Callable[[], None]) -> None:
        length = reply.length if reply.stream is not None or reply.length is not None else len(reply.body)
        assert length is not None
        record.status = reply.status
        record.response_headers = Headers([*reply.headers, ("Content-Length", str(length))])
        payload = b""
        if self.command != "HEAD" and reply.stream is None:
            payload = reply.body
            if reply.cut_after is not None and reply.cut_after < len(payload):
                payload = payload[: reply.cut_after]
            record.response_body = payload
            record.response_body_length = len(payload)
        logged()
        written = 0
        try:
            self.send_response(reply.status)
            for k, v in reply.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(length))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                pass
            elif reply.stream is None:
                self.wfile.write(payload)
                written = len(payload)
            else:
                limit = reply.cut_after
                for piece in reply.stream:
                    if limit is not None and written + len(piece) >= limit:
                        piece = piece[: limit - written]
                    # Counted before the write so the record is complete when the peer
                    # has the bytes (it counts bytes handed to the socket).
                    written += len(piece)
                    record.response_body_length = written
                    self.wfile.write(piece)
                    if limit is not None and written >= limit:
                        break
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            if self.command != "HEAD" and written < length:
                # Deliberately cut (fault) or client went away: drop the connection so
                # the peer sees a truncated body, never a desynchronised stream.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threading server that can also close its idle keep-alive connections on stop."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    # A real API front end accepts bursts of connections; socketserver's default backlog of 5 drops the
    # SYNs of a burst (a triggerer opening a few dozen kept-alive connections at once), and each dropped
    # SYN costs the client a 1 s, 3 s, 7 s... retransmit that Atlas would never make it wait.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass
