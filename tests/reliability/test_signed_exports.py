"""Proofs nobody else can forge (issue 15, item 4): someone who can write the export destination but
holds none of our keys plants files; the copy, retention and the scrub must not take them for ours.

Planted file sets are written the way such a writer would: the file, a correct ``sha256sum`` line
and a manifest of our exact format (built by our own ``build_manifest``), unsigned or with a forged
signature. Our own exports are signed with the tests' key (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import ExportVerificationError, verify_export
from airflow_provider_atlasflex.archive.keys import KeyRing
from airflow_provider_atlasflex.archive.manifest import build_manifest, read_manifest, sidecar_paths
from airflow_provider_atlasflex.archive.signature import SigningKey, sign
from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from tests.reliability.registry import reliability
from tests.reliability.test_faults_transfer import RUN_DATE, copy, request_link, sha256_of
from tests.reliability.test_hostile_commit import logged
from tests.unit.export_fixtures import (
    GROUP,
    commit_export,
    flip_byte,
    make_tgz,
    nights,
    resign_manifest,
    retention,
    verify,
)
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

NOT_GZIP = b"hello world"  # 11 bytes
FOREIGN_KEY = SigningKey("unittests", b"a-key-the-attacker-made-up-0123456789")


def plant(path: Path | ObjectStoragePath, data: bytes, *, snapshot_id: str, cluster: str = "alpha",
          group_id: str = GROUP, signature: str = "none", **times: str) -> None:
    """A file with a correct ``.sha256`` and a manifest of our format: unsigned, or signed with a made-up key."""
    # ObjectStoragePath first: on Airflow 3.1 (universal-pathlib < 0.3) it is a pathlib.Path subclass too.
    target = path if isinstance(path, ObjectStoragePath) else ObjectStoragePath(f"file://{path}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    manifest: dict[str, Any] = build_manifest(
        file_name=target.name, cluster_name=cluster, group_id=group_id, snapshot_id=snapshot_id,
        snapshot={"finishTime": times.get("finish_time", "2026-11-28T01:00:00Z")}, restore_job_id="d" * 24,
        size=len(data), sha256=sha, exported_at=times.get("exported_at", "2026-11-28T02:00:00+00:00"),
    )
    if signature == "forged":
        manifest = sign(manifest, FOREIGN_KEY)
    paths = sidecar_paths(target)
    paths.sha256.write_text(f"{sha}  {target.name}\n")
    paths.manifest.write_text(json.dumps(manifest, indent=2))


# ---- the copy: a planted file set is never "already present" ----------------------------------------


def _link_and_target(emu: Any, atlas_conn: Any, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A ready restore job of alpha, and the path its copy will write (predictable: what a planter uses)."""
    atlas_conn(emu, "digest")
    job = request_link()
    return job, tmp_path / "exports" / "alpha" / RUN_DATE / f"{job['snapshotId']}.tgz"


@pytest.mark.parametrize("planted", ["11-bytes", "fake-tgz"])
@pytest.mark.parametrize("signature", ["none", "forged"])
@reliability(
    "hostile-at-rest",
    "Before the copy, someone without our keys plants <root>/alpha/<date>/<snapshotId>.tgz (11 non-gzip bytes, or "
    "a valid .tgz of their own) with a matching .sha256 and a manifest of our format, unsigned or with a "
    "made-up key; overwrite=True",
    "The copy did not accept it (the manifest's signature does not verify) and downloaded over it: the "
    "export is Atlas' bytes with a signed manifest",
    "'<dst> exists and will be replaced (overwrite=True): unsigned: ...' (or 'bad_signature: ...'); the "
    "run succeeds with already_present=False",
)
def test_a_planted_file_set_is_downloaded_over(emu, atlas_conn, tmp_path, planted, signature):
    job, target = _link_and_target(emu, atlas_conn, tmp_path)
    plant(target, NOT_GZIP if planted == "11-bytes" else make_tgz(seed=5), snapshot_id=job["snapshotId"],
          group_id=emu.group_id, signature=signature)

    result = copy(tmp_path, job["id"], overwrite=True)

    assert result["already_present"] is False and len(emu.requests.by_operation("snapshotFile")) == 1
    assert sha256_of(target) == emu.expected_sha256(job["snapshotId"]) == result["sha256"]
    assert verify_export(ObjectStoragePath(f"file://{target}"))["status"] == "verified"


@pytest.mark.parametrize("planted", ["11-bytes", "fake-tgz"])
@reliability(
    "hostile-at-rest",
    "Before the copy, someone without our keys plants <root>/alpha/<date>/<snapshotId>.tgz (11 non-gzip bytes, or "
    "a valid .tgz of their own) with a matching .sha256 and an unsigned manifest of our format; overwrite=False",
    "The copy did not accept it; it downloaded to its own temporary file, found other bytes than Atlas serves "
    "and refused, leaving the planted file untouched (nothing is reported exported)",
    "The task fails: '<dst> already exists and overwrite=False, and unsigned: the manifest is not signed ...; "
    "it does not hold the <n> bytes ... Atlas served now'",
)
def test_a_planted_file_set_is_refused_without_overwrite(emu, atlas_conn, tmp_path, planted):
    job, target = _link_and_target(emu, atlas_conn, tmp_path)
    data = NOT_GZIP if planted == "11-bytes" else make_tgz(seed=5)
    plant(target, data, snapshot_id=job["snapshotId"], group_id=emu.group_id)

    with pytest.raises(SnapshotTransferError, match="already exists and overwrite=False, and unsigned") as refused:
        copy(tmp_path, job["id"])

    assert "not copied again" not in str(refused.value) and target.read_bytes() == data
    assert len(emu.requests.by_operation("snapshotFile")) == 1  # it looked at what Atlas serves, then refused


def test_our_own_signed_export_is_still_not_copied_again(emu, atlas_conn, tmp_path):
    atlas_conn(emu, "digest")
    first = copy(tmp_path, request_link()["id"])
    again = copy(tmp_path, request_link()["id"])
    assert (first["already_present"], again["already_present"]) == (False, True)
    assert len(emu.requests.by_operation("snapshotFile")) == 1


def test_an_export_signed_with_an_old_key_still_verifies_after_rotation(emu, atlas_conn, tmp_path, monkeypatch):
    atlas_conn(emu, "digest")
    first = copy(tmp_path, request_link()["id"])
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_ROTATED", "the-next-key-0123456789abcdefghijklmnop")
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID", "rotated")
    again = copy(tmp_path, request_link()["id"])
    assert again["already_present"] is True, "an export signed with the previous key was not trusted"
    new = commit_export(ObjectStoragePath(f"file://{tmp_path}/other"), "alpha", nights(1)[0])
    assert read_manifest(new)["signature"]["key_id"] == "rotated"
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_UNITTESTS")  # the old key deleted: its exports fail
    assert verify_export(ObjectStoragePath(f"file://{first['path'].removeprefix('file://')}"))["status"] == "bad_signature"


# ---- retention: deletes only what it proved ours ----------------------------------------------------


@reliability(
    "hostile-at-rest",
    "Someone without our keys plants a manifest of our format (old date, matching .sha256) beside a file that is "
    "not an export (a database file), and replaces the bytes of an old export of ours with others",
    "Retention deleted neither: the planted manifest is unsigned, and the replaced export's listed size (or, "
    "with verify='full', its content) no longer matches its signed manifest; both are reported unproven and kept",
    "'Keeping <path>: it is not proven ours (unsigned: ...); retention never deletes it'; the report lists "
    "both under 'unproven'",
)
@pytest.mark.parametrize("verify_mode", ["size", "full"])
def test_retention_never_deletes_what_it_did_not_prove_ours(tmp_path, verify_mode):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(4)
    ours = [commit_export(root, "alpha", w, night=n) for n, w in enumerate(when)]
    stranger = root / "alpha" / "2020-01-01" / "payroll.db"
    plant(stranger, b"precious data of someone else", snapshot_id="e" * 24,
          finish_time="2020-01-01T00:00:00Z", exported_at="2020-01-01T01:00:00+00:00")
    replaced = ours[3]
    if verify_mode == "size":
        replaced.write_bytes(make_tgz(seed=42, payload=60_000))
    else:
        flip_byte(replaced, 1000)
    new_bytes = replaced.read_bytes()
    # size: other bytes of another size; full: other bytes of the very same size, which only a re-read sees
    assert (len(new_bytes) == read_manifest(replaced)["bytes"]) is (verify_mode == "full")

    report = retention(root, keep_last=1, verify=verify_mode)

    assert stranger.read_bytes() == b"precious data of someone else" and sidecar_paths(stranger).manifest.exists()
    assert replaced.read_bytes() == new_bytes
    assert {u["path"] for u in report["unproven"]} == {str(stranger), str(replaced)}
    assert sorted(d["path"] for d in report["deleted"]) == sorted(str(p) for p in ours[1:3])
    assert [p["path"] for p in report["protected"]] == [str(ours[0])]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "planted"])
@reliability(
    "hostile-at-rest",
    "One export is dated 2099 (exported_at and finishTime both in 2099, so the finishTime guard does not fire), "
    "signed by us (a wrong clock) or planted; keep_last=1",
    "Retention never trusts a date later than now + 1 h: that export is neither protected nor counted among the "
    "newest; the real newest export is protected, the older ones go, the 2099 one is kept and named",
    "'Not trusting <path>: its manifest dates it 2099-01-01T00:00:00+00:00, in the future; ...' (planted: "
    "'Keeping <path>: it is not proven ours (unsigned: ...)')",
)
def test_an_export_dated_2099_never_pins_retention(tmp_path, caplog, capsys, signed):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(3)
    real = [commit_export(root, "alpha", w, night=n) for n, w in enumerate(when)]
    future = root / "alpha" / "2099-01-01" / f"{'f' * 24}.tgz"
    plant(future, make_tgz(seed=2099), snapshot_id="f" * 24, finish_time="2099-01-01T00:00:00Z",
          exported_at="2099-01-01T00:00:00+00:00")
    if signed:
        resign_manifest(future, lambda manifest: None)

    report = retention(root, keep_last=1)
    again = retention(root, keep_last=1)  # and the next night's run still keeps the real newest

    assert real[0].exists() and not real[1].exists() and not real[2].exists() and future.exists()
    assert [p["path"] for p in report["protected"]] == [p["path"] for p in again["protected"]] == [str(real[0])]
    if signed:
        assert [f["path"] for f in report["future_dated"]] == [str(future)]
        assert any("Not trusting" in line and str(future) in line for line in logged(caplog, capsys))
    else:
        assert [u["path"] for u in report["unproven"]] == [str(future)]


# ---- verify and the scrub: unsigned, bad signature and damaged are told apart -----------------------


@reliability(
    "hostile-at-rest",
    "A scrub finds one export whose manifest is unsigned, one whose signed manifest was edited afterwards, one "
    "signed with a key we do not have, and one of ours (signed) whose bytes are not a .tgz",
    "Verify reported each with its own status: unsigned, bad_signature (twice), damaged; the good export verified",
    "The scrub fails: '<path>: unsigned: ...', '<path>: bad_signature: the manifest's signature does not "
    "verify with key ...', '<path>: bad_signature: ... not a known signing key', '<path>: damaged: not a "
    "complete .tgz: ...'",
)
def test_verify_tells_unsigned_bad_signature_and_damaged_apart(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(5)
    good, unsigned, edited, foreign, damaged = (
        commit_export(root, "alpha", w, night=n) for n, w in enumerate(when)
    )
    _rewrite(unsigned, lambda m: m.pop("signature"))
    _rewrite(edited, lambda m: m.update(exported_at="2026-01-01T00:00:00+00:00"))
    plant(foreign, foreign.read_bytes(), snapshot_id=read_manifest(foreign)["snapshot_id"], signature="forged")
    _rewrite(foreign, lambda m: m["signature"].update(key_id="nosuchkey"))
    damaged.write_bytes(NOT_GZIP)
    resign_manifest(damaged, lambda m: m.update(bytes=len(NOT_GZIP), sha256=hashlib.sha256(NOT_GZIP).hexdigest()))
    sidecar_paths(damaged).sha256.write_text(f"{hashlib.sha256(NOT_GZIP).hexdigest()}  {damaged.name}\n")

    statuses = {str(p): verify_export(p)["status"] for p in (good, unsigned, edited, foreign, damaged)}
    assert statuses == {
        str(good): "verified",
        str(unsigned): "unsigned",
        str(edited): "bad_signature",
        str(foreign): "bad_signature",
        str(damaged): "damaged",
    }
    operator, context = verify(root=str(root))
    with pytest.raises(ExportVerificationError) as failed:
        operator.execute(context)
    text = str(failed.value)
    assert f"{unsigned}: unsigned:" in text and f"{edited}: bad_signature:" in text and f"{damaged}: damaged:" in text
    assert "not a known signing key" in text and f"{good}:" not in text


def _rewrite(path: ObjectStoragePath, change: Any) -> None:
    """Edit a manifest in place the way a writer without the key can (its signature is left as it was)."""
    manifest_path = sidecar_paths(path).manifest
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.write_text(json.dumps(manifest))


def test_the_key_ring_never_shows_a_secret():
    key = KeyRing().signing_key()
    assert key.key_id == "unittests" and "unit-tests-signing-key" not in repr(key)
    assert make_context() is not None
