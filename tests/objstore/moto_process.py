"""Run moto's S3 server on a free loopback port and print that port (the fixture reads it).

Why a separate process: a 512 MiB upload would otherwise share the test process's interpreter
(and its memory) with the server, and a worker killed mid-upload must meet a server that lives on.
"""

from __future__ import annotations

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
