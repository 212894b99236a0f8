"""The storage host behind ``snapshotUrl``: signed links, Range, HEAD, faults.

Why S3-like behaviour: Atlas snapshot links point at an object store, which answers
403 with an XML error for a bad or expired signature, honours single byte ranges,
and may drop a connection mid-body; the provider's downloader must cope with all.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from xml.sax.saxutils import escape

from .faults import FaultPlan, FaultSet
from .presign import DOWNLOAD_PREFIX
from .routing import ParsedRequest, Reply
from .state import ProjectState
from .tgz import SnapshotArchive

__all__ = ["SnapshotFileServer"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _xml_error(status: int, code: str, message: str, resource: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{hashlib.md5(resource.encode()).hexdigest()[:16].upper()}"
        "</RequestId></Error>"
    ).encode()
    return Reply(status, [("Content-Type", "application/xml")], body)


class SnapshotFileServer:
    """Serves ``/backup-download/{restoreJobId}/{cluster}-{snapshotId}.tgz``."""

    def __init__(self, state: ProjectState, faults: FaultSet, sleep: Callable[[float], None] = time.sleep) -> None:
        self.state = state
        self.faults = faults
        self._sleep = sleep

    def handle(self, req: ParsedRequest) -> tuple[Reply, list[int]]:
        st = self.state
        parts = req.path[len(DOWNLOAD_PREFIX) :].split("/")
        job = st.job_by_id(parts[0]) if parts else None
        plan: FaultPlan = self.faults.on_call(
            "snapshotFile", job.cluster if job else None, has_body=req.method != "HEAD"
        )
        fired = [f.id for f in plan.fired]
        if plan.delay:
            self._sleep(plan.delay)
        if req.method not in ("GET", "HEAD"):
            return _xml_error(405, "MethodNotAllowed", "The specified method is not allowed.", req.path), fired
        if plan.before is not None:
            f = plan.before
            code = {403: "AccessDenied", 404: "NoSuchKey", 429: "SlowDown", 503: "SlowDown"}.get(
                f.status or 500, "InternalError"
            )
            reply = _xml_error(f.status or 500, f.error_code or code, f.detail or "Injected fault.", req.path)
            if f.retry_after is not None:
                reply.headers.append(("Retry-After", str(round(f.retry_after))))
            return reply, fired
        expires, signature = req.query.get("Expires"), req.query.get("Signature")
        if not expires or not signature:
            return _xml_error(
                403,
                "AccessDenied",
                "Query-string authentication requires the Expires and Signature parameters.",
                req.path,
            ), fired
        if not st.signer.verify(req.path, expires, signature):
            return _xml_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                req.path,
            ), fired
        now = st.clock()
        if job is None:
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.", req.path), fired
        if now >= int(expires) or not job.link_usable(now):
            return _xml_error(403, "AccessDenied", "Request has expired", req.path), fired
        return self._serve(req, job.snapshot.archive, plan), fired

    def _serve(self, req: ParsedRequest, archive: SnapshotArchive, plan: FaultPlan) -> Reply:
        size = archive.size
        etag = f'"{hashlib.md5(f"{archive.snapshot_id}:{size}".encode()).hexdigest()}"'
        filename = f"{archive.cluster_name}-{archive.snapshot_id}.tgz"
        headers = [
            ("Content-Type", "application/gzip"),
            ("Accept-Ranges", "bytes"),
            ("ETag", etag),
            ("Last-Modified", formatdate(archive.mtime, usegmt=True)),
            ("Content-Disposition", f'attachment; filename="{filename}"'),
        ]
        start, end, status = 0, size, 200
        range_header = req.headers.get("Range")
        if_range = req.headers.get("If-Range")
        if range_header and not plan.ignore_range and (if_range is None or if_range == etag):
            m = _RANGE.match(range_header.strip())
            if m and (m.group(1) or m.group(2)):
                first, last = m.group(1), m.group(2)
                if first:
                    start = int(first)
                    end = min(size, int(last) + 1) if last else size
                    valid = start < size and (not last or int(last) >= start)
                else:  # suffix range: the last N bytes
                    n = int(last)
                    start, end = max(0, size - n), size
                    valid = n > 0
                if not valid:
                    return Reply(
                        416,
                        [("Content-Type", "application/xml"), ("Content-Range", f"bytes */{size}")],
                        _xml_error(416, "InvalidRange", "The requested range is not satisfiable", req.path).body,
                    )
                status = 206
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
            # Malformed or multi-range headers are ignored: the whole file is sent (RFC 9110).
        length = end - start
        stream = archive.iter_range(start, end) if req.method == "GET" else None
        if stream is not None and plan.corrupt_at is not None and start <= plan.corrupt_at < end:
            stream = _flip_byte(stream, plan.corrupt_at - start)
        return Reply(status, headers, stream=stream, length=length, cut_after=plan.cut_after_bytes)


def _flip_byte(stream: Iterator[bytes], offset: int) -> Iterator[bytes]:
    """The same pieces, with every bit of the byte ``offset`` bytes into the stream flipped."""
    seen = 0
    for piece in stream:
        if seen <= offset < seen + len(piece):
            i = offset - seen
            piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1 :]
        seen += len(piece)
        yield piece
