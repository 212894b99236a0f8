"""A loopback HTTP file server that is not the bottleneck: ``sendfile()`` from the page cache.

Run as a separate process (``python benchmarks/sendfile_server.py ROOT``): it prints its port and
serves ``GET /<name>`` for the files directly in ROOT (200 with Content-Length, or 206 for a
``Range: bytes=N-`` request), one thread per connection. Query strings are ignored, so a
pre-signed-looking URL works. Standard library only: it imports nothing of the provider.
"""

from __future__ import annotations

import os
import socket
import socketserver
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Handler(socketserver.BaseRequestHandler):
    root: Path

    def handle(self) -> None:
        sock: socket.socket = self.request
        reader = sock.makefile("rb")
        request_line = reader.readline(65536).decode("latin-1").split()
        headers = {}
        while True:
            line = reader.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if len(request_line) < 2 or request_line[0] not in ("GET", "HEAD"):
            sock.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        name = unquote(urlsplit(request_line[1]).path).lstrip("/")
        path = self.root / name
        if "/" in name or not path.is_file():
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        size = path.stat().st_size
        start = 0
        status = "200 OK"
        extra = ""
        wanted = headers.get("range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-") and wanted[6:-1].isdigit():
            start = min(int(wanted[6:-1]), size)
            status, extra = "206 Partial Content", f"Content-Range: bytes {start}-{size - 1}/{size}\r\n"
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/gzip\r\nContent-Length: {size - start}\r\n"
            f"Accept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        if request_line[0] == "GET":
            with path.open("rb") as f:
                try:
                    sock.sendfile(f, start)
                except (BrokenPipeError, ConnectionResetError):
                    pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    Handler.root = Path(sys.argv[1]).resolve()
    with Server(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
