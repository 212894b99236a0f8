"""Run moto's S3 server on a free loopback port and print that port (the fixture reads it).

Why a separate process: a 512 MiB upload would otherwise share the test process's interpreter
(and its memory) with the server, and a worker killed mid-upload must meet a server that lives on.

One fidelity fix: moto checks ``If-None-Match: *`` and then writes, as two steps, so two writers
completing at the same moment can both pass the check (the later one silently replaces the
earlier). S3 makes a conditional write atomic (one succeeds, the other gets 412, or 409 to retry).
Writes of keys (PUT, and POST which completes a multipart upload) are therefore serialized here,
so the race tests judge the provider against S3's behaviour, not against moto's gap.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.responses import S3Response
from werkzeug.serving import make_server

_KEY_WRITES = threading.Lock()


def _serialized(name: str) -> None:
    original = getattr(S3Response, name)

    def locked(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        with _KEY_WRITES:
            return original(self, *args, **kwargs)

    setattr(S3Response, name, locked)


def main() -> None:
    _serialized("_key_response_put")
    _serialized("_key_response_post")
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
