"""What moto never answers, with a scripted store: S3's 409 ConditionalRequestConflict on a racing completion.

S3 answers 409 to a conditional CompleteMultipartUpload that raced another write of the key; the
caller must retry, and then gets 412 (someone else won) or 200. s3fs turns both into exceptions
that keep botocore's error as their cause.
"""

from __future__ import annotations

import errno
import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_provider_atlasflex.archive import object_store_commit
from airflow_provider_atlasflex.archive.commit import DestinationExistsError
from airflow_provider_atlasflex.archive.object_store_commit import MIB, S3MultipartExportCommit


def s3_error(code: str, status: int, kind: type[OSError] = OSError) -> OSError:
    error = kind(errno.EIO, code) if kind is OSError else kind(code)
    error.__cause__ = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op")
    return error


class ScriptedStore:
    """Answers like S3 for one key; ``completions`` scripts what CompleteMultipartUpload does."""

    def __init__(self, completions: list[Any]) -> None:
        self.completions = completions
        self.calls: list[str] = []
        self.parts: dict[int, dict[str, Any]] = {}
        self.aborted = False

    def split_path(self, path: str) -> tuple[str, str, None]:
        bucket, key = path.split("/", 1)
        return bucket, key, None

    def call_s3(self, method: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(method)
        if method == "head_bucket":  # the bucket exists
            return {}
        if method == "list_multipart_uploads":
            return {"Uploads": []}
        if method == "create_multipart_upload":
            return {"UploadId": "u1"}
        if method == "upload_part":
            etag = f'"{hashlib.md5(kwargs["Body"], usedforsecurity=False).hexdigest()}"'
            self.parts[kwargs["PartNumber"]] = {"PartNumber": kwargs["PartNumber"], "Size": len(kwargs["Body"]), "ETag": etag}
            return {"ETag": etag}
        if method == "list_parts":
            if self.aborted:
                raise s3_error("NoSuchUpload", 404, FileNotFoundError)
            return {"Parts": [self.parts[n] for n in sorted(self.parts)]}
        if method == "complete_multipart_upload":
            outcome = self.completions.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return {"ETag": outcome}
        if method == "abort_multipart_upload":
            self.aborted = True
            return {}
        if method == "head_object":
            return {"ETag": '"someone-else-2"', "ContentLength": 0}
        raise AssertionError(method)


def export_to(store: ScriptedStore, data: bytes) -> S3MultipartExportCommit:
    dst: Any = SimpleNamespace(name="x.tgz", fs=store, path="bucket/exports/x.tgz", protocol="s3")
    commit = S3MultipartExportCommit(dst, overwrite=False, heartbeat_interval=0)
    commit.open()
    with commit.output() as out:
        out.write(data)
    return commit


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(object_store_commit.time, "sleep", lambda seconds: None)


def test_a_409_conflict_is_retried_and_then_the_completion_succeeds():
    store = ScriptedStore([s3_error("ConditionalRequestConflict", 409), '"abc-2"'])
    commit = export_to(store, b"x" * (9 * MIB))
    commit.commit(9 * MIB)
    assert commit.committed and commit.etag == '"abc-2"'
    assert store.calls.count("complete_multipart_upload") == 2
    assert not store.aborted


def test_a_409_then_412_means_another_writer_won_and_the_upload_is_aborted():
    store = ScriptedStore([s3_error("ConditionalRequestConflict", 409), s3_error("PreconditionFailed", 412, FileExistsError)])
    commit = export_to(store, b"x" * (9 * MIB))
    with pytest.raises(DestinationExistsError, match="If-None-Match"):
        commit.commit(9 * MIB)
    commit.abort()
    assert store.aborted and not commit.committed


def test_other_errors_are_not_retried():
    store = ScriptedStore([s3_error("InternalError", 500)])
    commit = export_to(store, b"x" * (9 * MIB))
    with pytest.raises(OSError, match="InternalError"):
        commit.commit(9 * MIB)
    assert store.calls.count("complete_multipart_upload") == 1
