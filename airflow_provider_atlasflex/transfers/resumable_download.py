"""Stream a pre-signed snapshot link into a file: flat memory, sha256, resume on cuts, verified end.

The link is a credential, so it is never logged and never sent with Atlas credentials; errors
name only its host and path.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import requests

from airflow_provider_atlasflex.exceptions import SnapshotLinkExpiredError, SnapshotTransferError
from airflow_provider_atlasflex.transfers.gzip_check import GzipStreamCheck
from airflow_provider_atlasflex.validation import redact_url

MIB = 1024 * 1024
# Network reads are at most this big, so a cut connection loses at most this much.
READ_SIZE = 256 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# Failures worth another attempt from the last byte written (the link itself is fine).
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class DownloadResult:
    bytes: int
    sha256: str
    attempts: int
    resumes: int
    restarts: int
    link_refreshes: int
    seconds: float


class _Retry(Exception):
    """This attempt failed transiently; try again from the last byte written."""


@dataclass
class ProgressLog:
    """Logs bytes, percent and MiB/s every ``interval`` seconds."""

    log: logging.Logger | logging.LoggerAdapter
    label: str
    interval: float = 30.0
    _started: float = 0.0
    _last: float = 0.0

    def start(self) -> None:
        self._started = self._last = time.monotonic()

    def update(self, done: int, total: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        rate = done / MIB / max(now - self._started, 1e-6)
        percent = f" ({100 * done / total:.1f}%)" if total else ""
        size = f" of {total / MIB:.1f} MiB" if total else ""
        self.log.info("%s: %.1f MiB%s%s at %.1f MiB/s", self.label, done / MIB, size, percent, rate)


class ResumableDownload:
    """Copy one snapshot link into a writable binary file.

    :param url: the pre-signed link.
    :param open_output: opens the temporary output from the start (called again on a restart).
    :param refresh_link: called at most once when the link is refused (403) or expired; returns a
        fresh link to the same snapshot.
    """

    def __init__(
        self,
        url: str,
        open_output: Callable[[], BinaryIO],
        *,
        refresh_link: Callable[[], str] | None = None,
        chunk_size: int = 8 * MIB,
        max_attempts: int = 5,
        timeout: float = 60.0,
        backoff_max: float = 30.0,
        verify_gzip: bool = True,
        progress: ProgressLog | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self._open_output = open_output
        self._refresh_link = refresh_link
        self._chunk_size = chunk_size
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._backoff_max = backoff_max
        self._verify_gzip = verify_gzip
        self._progress = progress
        self._session = session or _credential_free_session()
        self._out: BinaryIO | None = None
        self._written = 0
        self._hasher = hashlib.sha256()
        self._gzip = GzipStreamCheck()
        self._total: int | None = None
        self._resumes = self._restarts = self._refreshes = 0

    def run(self) -> DownloadResult:
        started = time.monotonic()
        if self._progress:
            self._progress.start()
        self._reset_output()
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    self._attempt()
                    break
                except _Retry as exc:
                    if attempt >= self._max_attempts:
                        raise SnapshotTransferError(
                            f"download of {redact_url(self._url)} failed after {attempt} attempts: {exc}"
                        ) from None
                    delay = random.uniform(0.5, 1.0) * min(self._backoff_max, 2 ** (attempt - 1))
                    logging.getLogger(__name__).warning(
                        "Snapshot download interrupted at %d bytes (%s); resuming in %.1f s", self._written, exc, delay
                    )
                    time.sleep(delay)
            if self._verify_gzip:
                self._gzip.finish()
        finally:
            self._close_output()
        if self._progress:
            self._progress.update(self._written, self._total, force=True)
        return DownloadResult(
            bytes=self._written,
            sha256=self._hasher.hexdigest(),
            attempts=attempt,
            resumes=self._resumes,
            restarts=self._restarts,
            link_refreshes=self._refreshes,
            seconds=time.monotonic() - started,
        )

    # ---- one attempt ----------------------------------------------------------------------

    def _attempt(self) -> None:
        headers = {"Range": f"bytes={self._written}-"} if self._written else {}
        try:
            response = self._session.get(self._url, headers=headers, stream=True, timeout=self._timeout)
        except _TRANSIENT as exc:
            raise _Retry(type(exc).__name__) from None
        with response:
            if response.status_code in (401, 403, 410):
                self._use_fresh_link(response.status_code)
                raise _Retry(f"HTTP {response.status_code}, link refreshed")
            if response.status_code == 429 or response.status_code >= 500:
                raise _Retry(f"HTTP {response.status_code}")
            if response.status_code == 416 and self._total is not None and self._written >= self._total:
                return  # already complete
            if response.status_code == 206 and self._written:
                self._check_resume(response)
                self._resumes += 1
            elif response.status_code == 200:
                if self._written:
                    self._restarts += 1  # the server ignored Range: start over
                    self._reset_output()
                self._total = _content_length(response)
            else:
                raise SnapshotTransferError(
                    f"the snapshot link {redact_url(self._url)} answered HTTP {response.status_code}; "
                    "expected 200 or 206. Nothing was saved."
                )
            self._stream_body(response)

    def _stream_body(self, response: requests.Response) -> None:
        """Write the body in ``chunk_size`` pieces, reading it in smaller ones.

        A cut connection loses the piece being read: reading at most :data:`READ_SIZE` at a time
        bounds that loss, and what was already received is written before resuming after it.
        """
        pending = bytearray()
        try:
            for piece in response.iter_content(chunk_size=min(self._chunk_size, READ_SIZE)):
                pending += piece
                if len(pending) >= self._chunk_size:
                    self._write(pending)
                    pending.clear()
        except _TRANSIENT as exc:
            self._write(pending)
            of = f" of {self._total}" if self._total is not None else ""
            raise _Retry(f"connection lost at {self._written}{of} bytes ({type(exc).__name__})") from None
        self._write(pending)
        if self._total is not None and self._written < self._total:
            raise _Retry(f"connection closed at {self._written} of {self._total} bytes")
        if self._total is not None and self._written > self._total:
            raise SnapshotTransferError(
                f"received {self._written} bytes but Content-Length announced {self._total}; nothing was saved"
            )

    def _write(self, data: bytes | bytearray) -> None:
        if not data:
            return
        assert self._out is not None
        self._out.write(data)
        self._hasher.update(data)
        if self._verify_gzip:
            self._gzip.feed(data)
        self._written += len(data)
        if self._progress:
            self._progress.update(self._written, self._total)

    def _check_resume(self, response: requests.Response) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != self._written:
            raise SnapshotTransferError(
                f"the server resumed at the wrong offset (asked for byte {self._written}, got "
                f"{response.headers.get('Content-Range')!r}); nothing was saved"
            )
        total = None if match.group(3) == "*" else int(match.group(3))
        if self._total is not None and total is not None and total != self._total:
            raise SnapshotTransferError(
                f"the file changed size between attempts ({self._total} then {total} bytes); nothing was saved"
            )
        self._total = total if total is not None else self._total

    def _use_fresh_link(self, status: int) -> None:
        if self._refresh_link is None or self._refreshes >= 1:
            raise SnapshotLinkExpiredError(
                f"the snapshot link {redact_url(self._url)} was refused (HTTP {status}): it expired or was "
                "tampered with. Clear the download task to request a fresh link (links live 4 hours)."
            )
        self._refreshes += 1
        self._url = self._refresh_link()

    # ---- the temporary output -------------------------------------------------------------

    def _reset_output(self) -> None:
        self._close_output()
        self._out = self._open_output()
        self._written = 0
        self._hasher = hashlib.sha256()
        self._gzip = GzipStreamCheck()

    def _close_output(self) -> None:
        if self._out is not None:
            out, self._out = self._out, None
            out.close()


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _credential_free_session() -> requests.Session:
    """A session that sends nothing but the link: no Atlas auth and no ~/.netrc credentials."""
    session = requests.Session()
    session.auth = _no_auth  # an explicit auth stops requests from looking up ~/.netrc
    return session


def _content_length(response: requests.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
