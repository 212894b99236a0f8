"""Stream a pre-signed snapshot link into a file: flat memory, sha256, resume on cuts, verified end.

The link is a credential, so it is never logged and never sent with Atlas credentials; errors
name only its host and path. Only https links to public hosts are fetched (see ``link_policy``),
through the connection's proxies and CA bundle, redirects only within the link's host.

The copy loop reads from the socket into a few reused buffers (``link_response.body_reader``),
and writes+hashes and inflates+checks each buffer on two threads (``copy_pipeline``). A cut
connection resumes with ``Range`` from the last byte received (everything received is written
first); a host that stalls (less than ``StallRule.min_bytes`` in ``StallRule.window`` seconds) is
treated as a cut; a link about to expire is replaced before it does. The terms of a copy are in
``download_terms``, its log lines in ``progress_log``, its file writes in ``download_output``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, BinaryIO

from airflow_provider_atlasflex.archive.gzip_walker import GzipWalker
from airflow_provider_atlasflex.defaults import DEFAULT_CHUNK_SIZE
from airflow_provider_atlasflex.exceptions import SnapshotLinkExpiredError, SnapshotTransferError
from airflow_provider_atlasflex.transfers.copy_pipeline import CopyPipeline
from airflow_provider_atlasflex.transfers.download_output import no_output, writer_for
from airflow_provider_atlasflex.transfers.download_terms import DownloadResult, SnapshotLink, StallRule
from airflow_provider_atlasflex.transfers.link_policy import check_peer, check_snapshot_link, redirect_target
from airflow_provider_atlasflex.transfers.link_response import (
    body_reader,
    content_length,
    credential_free_session,
    header_deadline_text,
    peer_address,
    transient_read_errors,
)
from airflow_provider_atlasflex.transfers.link_secrecy import hide_link_query
from airflow_provider_atlasflex.transfers.progress_log import ProgressLog
from airflow_provider_atlasflex.validation import redact_url

if TYPE_CHECKING:
    import requests

__all__ = ["DEFAULT_CHUNK_SIZE", "SLOTS", "DownloadResult", "ProgressLog", "ResumableDownload", "SnapshotLink",
           "StallRule"]

# Buffers in flight: one being filled, one per stage, one spare. Memory is SLOTS * chunk_size.
SLOTS = 4
# A link this close to its expiry is replaced before it is used (or before it runs out mid-copy).
DEFAULT_EXPIRY_MARGIN = 60.0
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_log = logging.getLogger(__name__)


class _Retry(Exception):
    """This attempt failed transiently; try again from the last byte written."""

    def __init__(self, reason: str, *, refresh: str | None = None) -> None:
        super().__init__(reason)
        self.refresh = refresh  # why the link must be replaced first, if it must


class ResumableDownload:
    """Copy one snapshot link into a writable binary file.

    :param url: the pre-signed link, or a :class:`SnapshotLink` with its expiry.
    :param open_output: opens the temporary output from the start (called again on a restart).
    :param refresh_link: called (with the reason) at most once, when the link is refused (401/403/410)
        or about to expire; returns a NEW link (never the refused one) to the same snapshot.
    :param chunk_size: bytes per buffer; :data:`SLOTS` buffers are kept.
    :param proxies: ``requests`` proxies (the connection's ``proxies`` extra).
    :param verify: TLS verification: True, False or a CA bundle path (the connection's ``verify`` extra).
    :param allow_insecure_http: fetch http links and local hosts (the connection's ``allow_insecure_http``).
    :param stall: the minimum-throughput rule; a stall counts as a failed attempt and is resumed.
    :param expiry_margin: seconds before the link's expiry at which it is replaced (or the copy stops).
    :param inflater: "auto", "isal" or "zlib" for the gzip check (default: ``ATLASFLEX_INFLATER`` or auto).
    """

    def __init__(
        self,
        url: str | SnapshotLink,
        open_output: Callable[[], BinaryIO],
        *,
        refresh_link: Callable[[str], str | SnapshotLink] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_attempts: int = 5,
        timeout: float = 60.0,
        backoff_max: float = 30.0,
        verify_gzip: bool = True,
        progress: ProgressLog | None = None,
        session: requests.Session | None = None,
        proxies: dict[str, str] | None = None,
        verify: bool | str = True,
        allow_insecure_http: bool = False,
        stall: StallRule | None = None,
        expiry_margin: float = DEFAULT_EXPIRY_MARGIN,
        inflater: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        link = url if isinstance(url, SnapshotLink) else SnapshotLink(url)
        self._url, self._expires_at = link.url, link.expires_at
        self._open_output = open_output
        self._refresh_link = refresh_link
        self._chunk_size = chunk_size
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._backoff_max = backoff_max
        self._verify_gzip = verify_gzip
        self._progress = progress
        self._allow_insecure = allow_insecure_http
        self._owns_session = session is None  # closed when the copy ends: its connections with it
        self._session = session or credential_free_session()
        if proxies:
            self._session.proxies.update(proxies)
        self._proxies = dict(proxies) if proxies else None  # also per request: HTTPS_PROXY beats session.proxies
        # Passed with each request: a session's verify loses to REQUESTS_CA_BUNDLE in the environment.
        self._verify = verify
        self._stall = stall or StallRule()
        self._expiry_margin = expiry_margin
        self._inflater = inflater
        self._clock = clock
        self._out: BinaryIO | None = None
        self._write: Callable[[memoryview], object] = no_output
        self._written = 0  # bytes handed to the pipeline; equal to bytes written once it is drained
        self._hasher = hashlib.sha256()
        self._gzip: GzipWalker | None = None
        self._pipeline: CopyPipeline | None = None
        self._total: int | None = None
        self._resumes = self._restarts = self._refreshes = 0

    def run(self) -> DownloadResult:
        check_snapshot_link(self._url, allow_insecure_http=self._allow_insecure)
        started = time.monotonic()
        if self._progress:
            self._progress.start()
        stages = [self._write_and_hash] + ([self._check_format] if self._verify_gzip else [])
        self._pipeline = CopyPipeline(stages, slots=SLOTS, slot_size=self._chunk_size)
        attempt = 0
        try:
            self._reset_output()
            while True:
                attempt += 1
                try:
                    self._replace_link_if_expiring()
                    self._attempt()
                    break
                except _Retry as exc:
                    if exc.refresh:
                        self._use_fresh_link(exc.refresh)
                    if attempt >= self._max_attempts:
                        raise SnapshotTransferError(
                            f"download of {redact_url(self._url)} failed after {attempt} attempts: {exc}. The "
                            "storage host or the network kept failing and nothing was committed; Airflow's task "
                            "retries apply. If it persists, check this worker's network and proxy to the storage "
                            "host, or raise max_download_attempts"
                        ) from None
                    delay = 0.0 if exc.refresh else random.uniform(0.5, 1.0) * min(self._backoff_max, 2 ** (attempt - 1))
                    _log.warning(
                        "Snapshot download interrupted at %d bytes (%s); resuming in %.1f s", self._written, exc, delay
                    )
                    time.sleep(delay)
            self._pipeline.drain()
            if self._gzip is not None:
                self._gzip.finish()
        finally:
            self._pipeline.close()
            self._close_output()
            if self._owns_session:
                self._session.close()
        seconds = time.monotonic() - started
        if self._progress:
            self._progress.finish(self._written, seconds, attempt)
        return DownloadResult(
            bytes=self._written,
            sha256=self._hasher.hexdigest(),
            attempts=attempt,
            resumes=self._resumes,
            restarts=self._restarts,
            link_refreshes=self._refreshes,
            seconds=seconds,
            inflater=self._gzip.inflater if self._gzip is not None else None,
        )

    # ---- one attempt ----------------------------------------------------------------------

    def _attempt(self) -> None:
        headers = {"Accept-Encoding": "identity"}  # the file's own bytes, as curl stores them
        if self._written:
            headers["Range"] = f"bytes={self._written}-"
        response = self._get(headers)
        with response:
            status = response.status_code
            if status in (401, 403, 410):
                raise _Retry(f"HTTP {status}, link refreshed", refresh=f"was refused (HTTP {status})")
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}")
            if status == 416 and self._total is not None and self._written >= self._total:
                return  # already complete
            if status == 206 and self._written:
                self._check_resume(response)
                self._resumes += 1
            elif status == 200:
                if self._written:
                    self._restarts += 1  # the server ignored Range: start over
                    self._reset_output()
                self._total = content_length(response)
                if self._progress:
                    self._progress.announce(self._total)
            else:
                raise SnapshotTransferError(
                    f"the snapshot link {redact_url(self._url)} answered HTTP {status}; "
                    "expected 200 or 206. Nothing was saved."
                )
            self._stream_body(response)

    def _get(self, headers: dict[str, str]) -> requests.Response:
        """GET the link, following redirects only within its own host (each target checked too)."""
        import requests

        url = self._url
        read_timeout = min(self._timeout, self._stall.window)
        for _ in range(MAX_REDIRECTS + 1):
            hide_link_query(url)
            try:
                response = self._session.get(
                    url,
                    headers=headers,
                    stream=True,
                    timeout=(self._timeout, read_timeout),
                    allow_redirects=False,
                    verify=self._verify,
                    proxies=self._proxies,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retry(header_deadline_text(exc) or type(exc).__name__) from None
            if not self._through_proxy(url):
                try:
                    check_peer(peer_address(response), url, allow_insecure_http=self._allow_insecure)
                except SnapshotTransferError:
                    response.close()
                    raise
            if response.status_code not in _REDIRECTS:
                return response
            location = response.headers.get("Location")
            response.close()
            url = redirect_target(url, location, allow_insecure_http=self._allow_insecure)
        raise SnapshotTransferError(
            f"the snapshot link {redact_url(self._url)} redirected more than {MAX_REDIRECTS} times; nothing was saved"
        )

    def _stream_body(self, response: requests.Response) -> None:
        """Receive into the pipeline's buffers until the body ends; everything received is written.

        On a cut, a stall or an expiring link, the bytes already received are handed on and
        written before the attempt ends, so the resume asks for the byte after the last one received.
        """
        assert self._pipeline is not None
        pipeline = self._pipeline
        read = body_reader(response)
        length = content_length(response)
        end = self._written + length if length is not None else self._total
        position = self._written
        monotonic, wall = time.monotonic, self._clock
        stall = self._stall
        window_end, window_start = monotonic() + stall.window, position
        deadline = self._expires_at - self._expiry_margin if self._expires_at is not None else math.inf
        transient = transient_read_errors()
        eof = False
        try:
            while not eof:
                index, slot = pipeline.acquire()
                filled, size = 0, len(slot)
                try:
                    while filled < size:
                        want = size - filled if end is None else min(size - filled, end - position - filled)
                        if want <= 0:
                            eof = True
                            break
                        try:
                            got = read(slot[filled : filled + want])
                        except transient as exc:
                            of = f" of {self._total}" if self._total is not None else ""
                            raise _Retry(
                                f"connection lost at {position + filled}{of} bytes ({type(exc).__name__})"
                            ) from None
                        if not got:
                            eof = True
                            break
                        filled += got
                        now = monotonic()
                        if now >= window_end:
                            if position + filled - window_start < stall.min_bytes:
                                raise _Retry(f"stalled: {stall.describe()}")
                            window_end, window_start = now + stall.window, position + filled
                        if wall() >= deadline:
                            raise _Retry("the link is about to expire", refresh=f"expires at {self._expiry_text()}")
                finally:
                    pipeline.submit(index, filled)
                    position += filled
                    self._written = position
                if self._progress:
                    self._progress.update(position, self._total)
        except _Retry:
            pipeline.drain()  # a stage error (bad gzip, full disk) outranks the retry
            raise
        pipeline.drain()
        if self._total is not None and self._written < self._total:
            raise _Retry(f"connection lost at {self._written} of {self._total} bytes (closed early)")

    # ---- the two stages (threads) ---------------------------------------------------------

    def _write_and_hash(self, data: memoryview) -> None:
        self._write(data)
        self._hasher.update(data)

    def _check_format(self, data: memoryview) -> None:
        assert self._gzip is not None
        self._gzip.feed(data)

    # ---- links ----------------------------------------------------------------------------

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

    def _replace_link_if_expiring(self) -> None:
        if self._expires_at is not None and self._clock() >= self._expires_at - self._expiry_margin:
            self._use_fresh_link(f"expires at {self._expiry_text()}")

    def _use_fresh_link(self, why: str) -> None:
        """Replace the link (once per copy); ``why`` says what is wrong with the current one."""
        shown = redact_url(self._url)
        if self._refresh_link is None or self._refreshes >= 1:
            already = " (it was already a newly requested link)" if self._refreshes else ""
            if why.startswith("was refused"):
                raise SnapshotLinkExpiredError(
                    f"the snapshot link {shown} {why} by the storage host{already}. Clear the copy task to retry: "
                    "after a refusal it requests a new restore job and link. If new links are refused too, the "
                    "storage host is refusing this worker (check its clock, proxy and network egress)."
                )
            raise SnapshotLinkExpiredError(
                f"the snapshot link {shown} {why}{already} and the copy reached {self._written} of "
                f"{self._total if self._total is not None else '?'} bytes; stopped before it ran out. Clear the "
                "copy task to start again with a fresh link."
            )
        self._refreshes += 1
        fresh = self._refresh_link(why)
        link = fresh if isinstance(fresh, SnapshotLink) else SnapshotLink(fresh)
        if link.url == self._url:
            raise SnapshotLinkExpiredError(
                f"asked for a new snapshot link because the link {shown} {why}, but got the same link back"
            )
        check_snapshot_link(link.url, allow_insecure_http=self._allow_insecure)
        self._url, self._expires_at = link.url, link.expires_at

    def _expiry_text(self) -> str:
        if self._expires_at is None:
            return "?"
        return datetime.fromtimestamp(self._expires_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _through_proxy(self, url: str) -> bool:
        from requests.utils import select_proxy

        settings = self._session.merge_environment_settings(url, dict(self._proxies or {}), True, None, None)
        return select_proxy(url, settings.get("proxies") or {}) is not None

    # ---- the temporary output -------------------------------------------------------------

    def _reset_output(self) -> None:
        if self._pipeline is not None:
            self._pipeline.drain()
        self._close_output()
        self._out = self._open_output()
        self._write = writer_for(self._out)
        self._written = 0
        self._hasher = hashlib.sha256()
        self._gzip = GzipWalker(inflater_name=self._inflater) if self._verify_gzip else None

    def _close_output(self) -> None:
        if self._out is not None:
            out, self._out = self._out, None
            self._write = no_output
            out.close()
