"""Publishing an export on S3: a multipart upload straight to the final key, completed only after verification.

Why not a temporary object and a rename: on S3 a rename is a server-side copy plus a delete, so every
byte is written twice, and a killed task leaves the temporary object's multipart upload behind. S3
shows no object at a key until its multipart upload is *completed*, so the upload itself is the
temporary object:

* parts of 8 MiB (16, 32, then 64 MiB after each 1000 parts, so 10 000 parts hold ~490 GiB) are
  uploaded as the download streams in; memory stays at one part;
* ``commit(size)`` runs only after the download core verified size, sha256 and gzip/tar; it checks
  that the store holds exactly the parts sent (numbers, sizes, MD5 ETags) and completes with
  ``MpuObjectSize`` and, for ``overwrite=False``, ``If-None-Match: *`` (atomic no-clobber: a
  second writer gets 412 and raises :class:`DestinationExistsError`; nothing it sent is published);
* ``abort()`` aborts the upload (repeated until the store has no trace of it): no object, no parts.

Two writers on one key each have their own upload id, so neither can touch the other's parts. A
live upload is kept fresh by a heartbeat (the bytes waiting for the next part are uploaded as that
part every :data:`HEARTBEAT_INTERVAL` while no part has gone out; the full part later replaces it),
so ``open()`` can abort, for the same key only, uploads idle for longer than :data:`STALE_UPLOAD_AGE`:
those of killed attempts. Age is measured against the store's clock (its ``Date`` header). A
writer whose upload is aborted anyway (e.g. cut from S3 for minutes) fails cleanly: completing
needs the upload and its verified parts, so wrong bytes are never published. A lifecycle rule
(AbortIncompleteMultipartUpload) remains the backstop for keys never written again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from airflow_provider_atlasflex.archive.commit import DestinationExistsError, ExportCommit
from airflow_provider_atlasflex.archive.s3_parts import MAX_PART_SIZE, MIB, PART_SIZE, Part, PartWriter
from airflow_provider_atlasflex.exceptions import DestinationMissingError, SnapshotTransferError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

S3_PROTOCOLS = ("s3", "s3a", "s3n")
# A live writer touches its upload at least this often; one idle for STALE_UPLOAD_AGE is dead. With
# Airflow's default retry_delay (5 minutes) a retry therefore removes the upload of the try before it.
HEARTBEAT_INTERVAL = 30.0
STALE_UPLOAD_AGE = 240.0
_ABORT_ROUNDS = 3
# Conditional writes racing on one key: S3 answers 409 to the loser of a tie; retrying gives 412 or 200.
_CONFLICT_RETRIES = 3

log = logging.getLogger(__name__)


def is_s3(path: ObjectStoragePath) -> bool:
    """Whether ``path`` lives on an S3 (or S3-compatible) store reached through s3fs."""
    return path.protocol in S3_PROTOCOLS and callable(getattr(path.fs, "call_s3", None))


class S3MultipartExportCommit(ExportCommit):
    """One attempt's multipart upload to ``dst``'s final key; see the module docstring.

    :param part_size: size of the first 1000 parts (at least 5 MiB, S3's minimum).
    :param stale_upload_age: seconds without activity after which another upload to the same key is
        taken for a dead attempt's and aborted by ``open()``.
    :param heartbeat_interval: seconds between touches of this upload while no part goes out.
    """

    def __init__(
        self,
        dst: ObjectStoragePath,
        *,
        overwrite: bool,
        part_size: int = PART_SIZE,
        stale_upload_age: float | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        super().__init__(dst, overwrite=overwrite)
        if not 5 * MIB <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be from 5 MiB (S3's minimum) to 64 MiB, got {part_size}")
        self.part_size = part_size
        # Read at call time, so a deployment (or a test) can change the module defaults.
        self.stale_upload_age = STALE_UPLOAD_AGE if stale_upload_age is None else stale_upload_age
        self.heartbeat_interval = HEARTBEAT_INTERVAL if heartbeat_interval is None else heartbeat_interval
        self.fs = dst.fs
        self.bucket, self.key, _ = self.fs.split_path(dst.path)
        self.upload_id: str | None = None
        self.etag: str | None = None
        self._writer: PartWriter | None = None

    # ---- the ExportCommit protocol -----------------------------------------------------------

    def open(self) -> None:
        """Abort the uploads that dead attempts left at this key; nothing is created until bytes arrive."""
        if not self.key or self.key.endswith("/"):
            raise SnapshotTransferError(f"{self.dst} names a bucket or a prefix, not an object key")
        self._require_bucket()
        self.abort_stale_uploads()

    def _require_bucket(self) -> None:
        """Fail before any byte is downloaded when the bucket does not exist (a typo, a deleted bucket).

        Only a definite "no such bucket" fails: a role allowed to write objects but not to read the
        bucket's metadata (403) goes on, and the upload itself says what it may not do.
        """
        try:
            self._call("head_bucket", Bucket=self.bucket)
        except FileNotFoundError:
            conn_id = getattr(self.dst, "conn_id", None)
            seen_with = f"connection {conn_id!r}" if conn_id else "the filesystem's default credentials"
            raise DestinationMissingError(
                f"the S3 bucket {self.bucket!r} does not exist (looked up with {seen_with}). Create the bucket, or "
                "fix the destination root (in the example DAGs: the Variable atlasflex_destination_root) or the "
                "connection's endpoint; nothing was downloaded."
            ) from None
        except OSError:
            return

    def output(self) -> BinaryIO:
        """A writer from byte 0; a previous writer's upload (a download that restarted) is aborted first."""
        self._discard_writer()
        self._writer = PartWriter(self)
        return cast(BinaryIO, self._writer)

    def commit(self, size: int) -> None:
        writer = self._require_writer()
        if writer.written != size:
            raise SnapshotTransferError(
                f"the upload received {writer.written} bytes, not the {size} verified; not committed"
            )
        writer.stop_heartbeat()
        if writer.upload_id is None:
            self._put_small(writer.take_tail(), size)
        else:
            writer.flush_tail()
            self._verify_parts(writer)
            self._complete(writer, size)
        self.committed = True
        self._writer = None

    def abort(self) -> None:
        """Abort this attempt's upload; never touches the object at ``dst`` or another writer's upload."""
        self._discard_writer()

    def still_published(self) -> bool:
        """Whether ``dst`` still holds the object this attempt completed (same ETag and size)."""
        if not self.committed or self.etag is None:
            return self.committed
        try:
            head = self._call("head_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return False
        return _same_etag(head.get("ETag"), self.etag)

    # ---- dead attempts -----------------------------------------------------------------------

    def abort_stale_uploads(self) -> list[str]:
        """Abort uploads to exactly this key idle for longer than ``stale_upload_age``; return their ids.

        Idle means: no part received since (see :meth:`_last_activity`). Listing needs
        ``s3:ListBucketMultipartUploads``; without it (or on any error), a warning says so and the export goes on.
        """
        aborted: list[str] = []
        try:
            uploads, now = self._uploads_for_key()
            for upload in uploads:
                upload_id = upload["UploadId"]
                if upload_id == self.upload_id:
                    continue
                idle = now - self._last_activity(upload)
                if idle <= self.stale_upload_age:
                    continue
                if self._abort_upload(upload_id):
                    log.warning(
                        "Aborted multipart upload %s of %s: idle for %.0f s (more than %.0f s), left by an attempt "
                        "that did not finish",
                        upload_id, self.dst, idle, self.stale_upload_age,
                    )
                    aborted.append(upload_id)
        except OSError as exc:  # cleaning up is best effort: it must not fail the export
            log.warning(
                "Could not list or abort earlier multipart uploads of %s (%s): grant s3:ListBucketMultipartUploads, "
                "s3:ListMultipartUploadParts and s3:AbortMultipartUpload, and keep a lifecycle rule that aborts "
                "incomplete multipart uploads.",
                self.dst, exc,
            )
        return aborted

    def _uploads_for_key(self) -> tuple[list[Mapping[str, Any]], float]:
        """Pending uploads of exactly this key (the listing is by prefix), and the store's time now."""
        uploads: list[Mapping[str, Any]] = []
        markers: dict[str, str] = {}
        now = time.time()
        while True:
            page = self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=self.key, **markers)
            now = _server_time(page, now)
            uploads += [u for u in page.get("Uploads", []) if u.get("Key") == self.key]
            if not page.get("IsTruncated"):
                return uploads, now
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def _last_activity(self, upload: Mapping[str, Any]) -> float:
        """When the upload last received a part; +inf (never stale) while it has none.

        An upload without parts holds no bytes and costs nothing, and its ``Initiated`` alone cannot
        tell a dead attempt from a live one whose first part is in flight (some S3-compatible stores,
        moto among them, even report a fixed date): it is left to the lifecycle rule.
        """
        try:
            parts = self._list_parts(upload["UploadId"])
        except FileNotFoundError:
            return float("inf")  # completed or aborted meanwhile: nothing to do
        return max((_timestamp(p.get("LastModified")) for p in parts), default=float("inf"))

    # ---- calls to the store ------------------------------------------------------------------

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return cast("dict[str, Any]", self.fs.call_s3(method, **kwargs))

    def _list_parts(self, upload_id: str) -> list[Mapping[str, Any]]:
        parts: list[Mapping[str, Any]] = []
        marker: dict[str, Any] = {}
        while True:
            page = self._call("list_parts", Bucket=self.bucket, Key=self.key, UploadId=upload_id, **marker)
            parts += page.get("Parts", [])
            if not page.get("IsTruncated"):
                return parts
            marker = {"PartNumberMarker": page["NextPartNumberMarker"]}

    def _create_upload(self) -> str:
        made = self._call("create_multipart_upload", Bucket=self.bucket, Key=self.key)
        self.upload_id = str(made["UploadId"])
        return self.upload_id

    def _upload_part(self, upload_id: str, number: int, data: bytes) -> Part:
        try:
            answer = self._call(
                "upload_part", Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=data
            )
        except FileNotFoundError:
            raise self._upload_gone_error() from None
        part = Part(number, len(data), str(answer["ETag"]), hashlib.md5(data, usedforsecurity=False).hexdigest())
        if _etag_is_md5(answer) and answer["ETag"].strip('"') != part.md5:
            raise SnapshotTransferError(
                f"the store acknowledged part {number} of {self.dst} with ETag {answer['ETag']}, not the MD5 of the "
                "bytes sent; not committed"
            )
        return part

    def _abort_upload(self, upload_id: str) -> bool:
        """Abort ``upload_id`` until the store no longer knows it (a part in flight can outlive one abort)."""
        for _ in range(_ABORT_ROUNDS):
            try:
                self._call("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            except FileNotFoundError:
                return True
            try:
                self._call("list_parts", Bucket=self.bucket, Key=self.key, UploadId=upload_id, MaxParts=1)
            except FileNotFoundError:
                return True
        log.warning("Multipart upload %s of %s is still listed after %d aborts", upload_id, self.dst, _ABORT_ROUNDS)
        return False

    def _put_small(self, data: bytes, size: int) -> None:
        """A file smaller than one part: one conditional PUT (a sidecar, a tiny snapshot)."""
        condition = {} if self.overwrite else {"IfNoneMatch": "*"}
        try:
            answer = self._call("put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except FileExistsError:
            raise self._exists_error() from None
        self.etag = str(answer.get("ETag") or "") or None
        if self.etag and _etag_is_md5(answer) and not _same_etag(self.etag, hashlib.md5(data, usedforsecurity=False).hexdigest()):
            raise SnapshotTransferError(f"the store stored {self.dst} with ETag {self.etag}, not the MD5 of the bytes sent")

    def _verify_parts(self, writer: PartWriter) -> None:
        """The store holds exactly the parts this attempt sent: same numbers, sizes and ETags."""
        assert writer.upload_id is not None
        try:
            listed = {p["PartNumber"]: p for p in self._list_parts(writer.upload_id)}
        except FileNotFoundError:
            raise self._upload_gone_error() from None
        for part in writer.parts:
            found = listed.get(part.number)
            if found is None or found.get("Size") != part.size or not _same_etag(found.get("ETag"), part.etag):
                raise SnapshotTransferError(
                    f"part {part.number} of the upload to {self.dst} is not the one this attempt sent "
                    f"({part.size} bytes, ETag {part.etag}); nothing was committed"
                )

    def _complete(self, writer: PartWriter, size: int) -> None:
        assert writer.upload_id is not None
        condition = {} if self.overwrite else {"IfNoneMatch": "*"}
        parts = [{"PartNumber": p.number, "ETag": p.etag} for p in writer.parts]
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                answer = self._call(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=writer.upload_id,
                    MultipartUpload={"Parts": parts},
                    MpuObjectSize=size,
                    **condition,
                )
                break
            except FileExistsError:
                if self._holds_our_parts(writer, size):  # our own completion, answered twice
                    self.etag = writer.multipart_etag()
                    return
                raise self._exists_error() from None
            except OSError as exc:
                if _error_code(exc) != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES:
                    raise
                time.sleep(0.2 * (attempt + 1))
        self.etag = str(answer.get("ETag") or writer.multipart_etag())
        self.upload_id = None

    def _holds_our_parts(self, writer: PartWriter, size: int) -> bool:
        try:
            head = self._call("head_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return False
        if head.get("ContentLength") != size or not _same_etag(head.get("ETag"), writer.multipart_etag()):
            return False
        try:  # our upload still pending means the object is another writer's with the same bytes
            self._call("list_parts", Bucket=self.bucket, Key=self.key, UploadId=writer.upload_id, MaxParts=1)
        except FileNotFoundError:
            return True
        return False

    def _upload_gone_error(self) -> SnapshotTransferError:
        return SnapshotTransferError(
            f"the multipart upload of {self.dst} was aborted by someone else (a writer that took it for a dead "
            "attempt's after minutes without a part, or a lifecycle rule); nothing was committed"
        )

    def _exists_error(self) -> DestinationExistsError:
        return DestinationExistsError(
            f"{self.dst} appeared while copying (another writer committed first) and overwrite=False; the store "
            "refused to replace it (If-None-Match)"
        )

    # ---- writer lifecycle ----------------------------------------------------------------------

    def _require_writer(self) -> PartWriter:
        if self._writer is None:
            raise RuntimeError("S3MultipartExportCommit.output() was not called, or the commit is finished")
        return self._writer

    def _discard_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop_heartbeat()
            if writer.upload_id is not None:
                self._abort_upload(writer.upload_id)
        self.upload_id = None


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs exception (s3fs keeps botocore's ClientError as the cause)."""
    response = getattr(exc.__cause__, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, Mapping) else None


def _etag_is_md5(answer: Mapping[str, Any]) -> bool:
    """Whether the ETag in ``answer`` is the MD5 of the bytes (not with SSE-KMS or customer keys)."""
    kms = str(answer.get("ServerSideEncryption", "")).startswith("aws:kms")
    etag = str(answer.get("ETag", "")).strip('"')
    return not kms and "SSECustomerAlgorithm" not in answer and len(etag) == 32 and "-" not in etag


def _same_etag(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a).strip('"') == str(b).strip('"')


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return 0.0


def _server_time(answer: Mapping[str, Any], default: float) -> float:
    """The store's clock from the answer's ``Date`` header, so a skewed worker clock does not age uploads."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date).timestamp() if date else default
    except (TypeError, ValueError):
        return default
