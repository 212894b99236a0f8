"""The record of every HTTP exchange the emulator served.

Why: tests assert on what the client *sent* (retries, auth, bodies) and validate
both requests and responses against the OpenAPI spec after the fact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from ._util import Headers

__all__ = ["RecordedExchange", "RequestLog"]


@dataclass
class RecordedExchange:
    """One request and the response the emulator gave to it.

    ``operation`` is the OpenAPI operationId, or ``oauthToken``/``oauthRevoke``/
    ``snapshotFile``, or ``None`` for unknown routes.  For ``snapshotFile`` the body
    is not kept: ``response_body`` is ``b""`` and ``response_body_length`` says how
    many body bytes were actually written (less than Content-Length if cut).
    """

    operation: str | None
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    status: int = 0
    response_headers: Headers = field(default_factory=Headers)
    response_body: bytes = b""
    response_body_length: int = 0
    path_params: dict[str, str] = field(default_factory=dict)
    path_template: str | None = None
    base_url: str = ""
    started_at: float = 0.0
    duration: float = 0.0
    principal: str | None = None
    faults: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Full request URL as the client addressed it."""
        from urllib.parse import urlencode

        q = f"?{urlencode(self.query)}" if self.query else ""
        return f"{self.base_url}{self.path}{q}"

    def json(self) -> Any:
        """The response body parsed as JSON."""
        import json

        return json.loads(self.response_body)

    def request_json(self) -> Any:
        """The request body parsed as JSON."""
        import json

        return json.loads(self.body)


class RequestLog:
    """Thread-safe, append-only list of :class:`RecordedExchange` (``emu.requests``).

    Iteration and indexing work on a snapshot taken under the lock, so a test can
    read it while the server is still answering other requests.
    """

    def __init__(self) -> None:
        self._items: list[RecordedExchange] = []
        self._lock = threading.Lock()

    def append(self, item: RecordedExchange) -> None:
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[RecordedExchange]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[RecordedExchange]:
        return iter(self.snapshot())

    @overload
    def __getitem__(self, i: int) -> RecordedExchange: ...
    @overload
    def __getitem__(self, i: slice) -> list[RecordedExchange]: ...
    def __getitem__(self, i: int | slice) -> RecordedExchange | list[RecordedExchange]:
        with self._lock:
            return self._items[i]

    def by_operation(self, operation: str) -> list[RecordedExchange]:
        """Exchanges of one operation, oldest first."""
        return [x for x in self.snapshot() if x.operation == operation]

    def __repr__(self) -> str:
        return f"RequestLog({len(self)} exchanges)"
