"""The link's HTTP session and what the copy reads from its responses, through requests' and urllib3's public APIs.

Imported only when a download starts (it imports requests and urllib3 when called).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

# The most one receive takes from the socket: the one allocation per receive the copy makes. Smaller costs
# more calls: the copy benchmark's reader thread took 0.5 s more CPU per GiB with 256 KiB, 0.1 s with 1 MiB.
RECEIVE_BYTES = 1024 * 1024


def credential_free_session() -> requests.Session:
    """A session that sends nothing but the link: no Atlas auth and no ~/.netrc credentials."""
    import requests

    from airflow_provider_atlasflex.transfers.header_deadline import HeaderDeadlineAdapter

    session = requests.Session()
    session.auth = _no_auth  # an explicit auth stops requests from looking up ~/.netrc
    for scheme in ("https://", "http://"):  # a host trickling its headers meets a deadline, not only read timeouts
        session.mount(scheme, HeaderDeadlineAdapter())
    return session


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def header_deadline_text(exc: BaseException) -> str | None:
    """The message of a header deadline (it names the host only), else None."""
    from airflow_provider_atlasflex.transfers.header_deadline import HeaderDeadlineExceeded

    return str(exc) if isinstance(exc, HeaderDeadlineExceeded) else None


def peer_address(response: requests.Response) -> str | None:
    """The IP address the response came from, when the download's adapter recorded it (None otherwise)."""
    from airflow_provider_atlasflex.transfers.header_deadline import peer_address

    return peer_address(response)


def content_length(response: requests.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    try:
        value = int(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def transient_read_errors() -> tuple[type[BaseException], ...]:
    """What a cut, reset or timed-out connection raises while the body is read."""
    import requests
    import urllib3

    return (
        OSError,  # resets, timeouts, TLS errors (file errors happen on the stage threads, not here)
        http.client.HTTPException,
        urllib3.exceptions.HTTPError,
        requests.RequestException,
    )


def body_reader(response: requests.Response) -> Callable[[memoryview], int]:
    """``readinto`` for the body's raw bytes, at most one receive per call.

    One receive per call (urllib3's public ``read1``) lets the copy loop see a trickle and apply
    the stall rule; a ``read`` would wait for the whole buffer. ``decode_content=False``: the
    file's own bytes, never a decoded Content-Encoding; chunked framing is removed by http.client.
    ``read1`` returns a new bytes object, so a receive is capped at :data:`RECEIVE_BYTES`: that is
    all the copy allocates besides its buffers, and it is freed before the next receive.
    """
    raw = response.raw

    def read_into(view: memoryview) -> int:
        data = raw.read1(min(len(view), RECEIVE_BYTES), decode_content=False)
        view[: len(data)] = data
        return len(data)

    return read_into
