"""S3: the signed manifest names the object version it proves (its ETag), so stale sidecars show on sight.

Two writers racing with ``overwrite=True`` leave the winner's object under the loser's sidecars when
the loser writes its sidecars last; the same happens when anyone replaces the object. The manifest
records the ETag of the object its commit wrote, signed with the rest: retention and the copy see
the difference from a listing (no read), even when the new bytes have the same size.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import verify_export
from airflow_provider_atlasflex.archive.keys import KeyRing
from airflow_provider_atlasflex.archive.manifest import read_manifest
from airflow_provider_atlasflex.archive.proof import at_rest_problem
from airflow_provider_atlasflex.archive.scan import scan_exports
from tests.objstore.conftest import S3Server
from tests.objstore.test_s3_export import MIB, RUN_DATE, copy, request_link
from tests.reliability.registry import reliability
from tests.unit.export_fixtures import retention

pytestmark = __import__("pytest").mark.usefixtures("fresh_tokens", "fast_retries")


@reliability(
    "hostile-at-rest",
    "S3 destination: after an export's sidecars are written, its object is replaced by other bytes of the same "
    "size (a racing writer that won, or anyone with write access to the bucket)",
    "The signed manifest records the ETag of the object its commit wrote; the listing's ETag differs, so the "
    "export is unproven without reading it: retention keeps it, a new copy replaces it (overwrite=True)",
    "Retention report: unproven 'mismatch: the object is not the version its manifest was signed for (ETag "
    "..., signed ...): replaced since, its sidecars are stale'; the scrub: status stale_sidecars",
)
def test_a_replaced_object_is_stale_on_sight(make_emulator, atlas_conn, moto_server: S3Server, bucket, s3_conn):
    emu = make_emulator(snapshot_size=1 * MIB)
    atlas_conn(emu, "digest")
    first = copy(bucket, s3_conn, request_link()["id"])
    s3 = moto_server.client()
    key = f"exports/alpha/{RUN_DATE}/{first['snapshot_id']}.tgz"
    dst = ObjectStoragePath(f"s3://{bucket}/{key}", conn_id=s3_conn)
    manifest = read_manifest(dst)
    assert manifest is not None and manifest["object_etag"] == s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')

    body: Any = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))  # same size, other bytes

    dst.fs.invalidate_cache()
    checked = verify_export(dst, keys=KeyRing())  # the scrub names them for what they are
    assert checked["status"] == "stale_sidecars" and any("stale sidecars: they were signed for" in p for p in checked["problems"])

    root = ObjectStoragePath(f"s3://{bucket}/exports", conn_id=s3_conn)
    (found,) = scan_exports(root).exports
    problem = at_rest_problem(found.path, found.manifest, found.size, KeyRing(), found.etag)
    assert problem is not None and "sidecars are stale" in problem[1]
    report = retention(root, keep_last=1, dst_conn_id=s3_conn)
    assert [u["path"] for u in report["unproven"]] == [str(found.path)] and report["deleted"] == []

    root.fs.invalidate_cache()  # the listing above is this process's; a copy task runs in its own
    again = copy(bucket, s3_conn, request_link()["id"], overwrite=True)
    assert again["already_present"] is False and again["sha256"] == first["sha256"]
