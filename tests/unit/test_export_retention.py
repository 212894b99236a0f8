"""AtlasFlexExportRetentionOperator over 10 nights of fake exports: dry run, real run, what must survive."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.manifest import sidecar_paths
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from tests.unit import export_fixtures
from tests.unit.export_fixtures import (
    CLUSTERS,
    FOREIGN,
    all_files,
    commit_export,
    flip_byte,
    nights,
    resign_manifest,
    retention,
    ten_nights,
    with_sidecars,
)

storage_root = export_fixtures.storage_root  # file:// and memory://


def test_dry_run_then_real_run_keep_the_newest_three(storage_root, caplog, capsys):
    caplog.set_level(logging.INFO)
    exports = ten_nights(storage_root)
    before = all_files(storage_root)
    expected_deleted = with_sidecars([p for c in CLUSTERS for p in exports[c][3:]])

    plan = retention(storage_root, keep_last=3, dry_run=True)
    assert all_files(storage_root) == before  # a dry run deletes nothing
    assert plan["dry_run"] is True
    assert {d["path"] for d in plan["deleted"]} == {str(p) for c in CLUSTERS for p in exports[c][3:]}
    assert len(plan["kept"]) == 6 and {p["path"] for p in plan["protected"]} == {str(exports[c][0]) for c in CLUSTERS}
    logged = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    for cluster in CLUSTERS:
        for path in exports[cluster][3:]:
            assert logged.count(f"Would delete {path} (cluster {cluster}") == 1
    assert "Would delete 14 export(s), kept 6" in logged

    done = retention(storage_root, keep_last=3)
    assert done["deleted"] == plan["deleted"]  # the real run does what the dry run said
    assert all_files(storage_root) == before - expected_deleted
    foreign = {str(storage_root.joinpath(*r.split("/"))) for r in FOREIGN}
    assert foreign <= all_files(storage_root)  # every foreign file survives
    logged = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    for path in expected_deleted:
        assert f"Deleted {path}" in logged

    again = retention(storage_root, keep_last=3)  # idempotent
    assert again["deleted"] == [] and all_files(storage_root) == before - expected_deleted


def test_keep_days_counts_from_the_snapshot_finish_time(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    report = retention(root, keep_days=3.5)  # nights 0..3 are younger than 3.5 days
    assert {k["path"] for k in report["kept"]} == {str(p) for c in CLUSTERS for p in exports[c][:4]}
    assert len(report["deleted"]) == 12


def test_keep_last_and_keep_days_keep_what_either_keeps(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    report = retention(root, keep_last=5, keep_days=2.5)
    assert {k["path"] for k in report["kept"]} == {str(p) for c in CLUSTERS for p in exports[c][:5]}


def test_an_unverified_newest_export_does_not_count(storage_root):
    """keep_last=1 with a broken newest file: the newest verified one (night 1) survives too."""
    exports = ten_nights(storage_root)
    newest = exports["alpha"][0]
    newest.write_bytes(newest.read_bytes()[:-100])  # cut short: its size no longer matches its manifest
    sidecar_paths(exports["beta"][0]).sha256.unlink()  # unproven: no .sha256
    report = retention(storage_root, keep_last=1)
    kept = {k["path"] for k in report["kept"]}
    for cluster in CLUSTERS:
        assert {str(exports[cluster][0]), str(exports[cluster][1])} <= kept
        assert all(p.exists() for p in exports[cluster][:2])
        assert not any(p.exists() for p in exports[cluster][2:])
    assert {p["path"] for p in report["protected"]} == {str(exports[c][1]) for c in CLUSTERS}


@pytest.mark.parametrize("verify", ["size", "full"])
def test_the_protected_export_is_fully_verified_whatever_verify_says(tmp_path, verify):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    raw = bytearray(exports["alpha"][0].read_bytes())
    raw[200] ^= 0xFF  # the right size, sidecars agree: only a full re-read sees it
    exports["alpha"][0].write_bytes(bytes(raw))
    report = retention(root, keep_last=1, verify=verify, dry_run=True)
    assert str(exports["alpha"][1]) in {p["path"] for p in report["protected"]}
    assert str(exports["alpha"][1]) not in {d["path"] for d in report["deleted"]}


def test_a_cluster_with_no_verified_export_loses_nothing(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    for path in exports["beta"]:  # same size, sidecars intact: only a full re-read sees the damage
        flip_byte(path, 100)
    report = retention(root, keep_last=2)
    assert all(p.exists() for p in exports["beta"])
    assert report["skipped_clusters"] == [{"group_id": export_fixtures.GROUP, "cluster_name": "beta", "exports": 10}]
    assert not any(p.exists() for p in exports["alpha"][2:])


def test_exports_without_their_checksum_are_unproven_and_kept(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    for path in exports["beta"]:
        sidecar_paths(path).sha256.unlink()
    report = retention(root, keep_last=2)
    assert all(p.exists() for p in exports["beta"])
    assert {u["path"] for u in report["unproven"]} == {str(p) for p in exports["beta"]}
    assert not any(p.exists() for p in exports["alpha"][2:])


def test_clusters_of_different_projects_are_kept_apart(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(3)
    mine = [commit_export(root / "p1", "alpha", t, night=n) for n, t in enumerate(when)]
    theirs = [commit_export(root / "p2", "alpha", t, night=n, group_id="6a" * 12) for n, t in enumerate(when)]
    retention(root, keep_last=1)
    assert [p.exists() for p in mine] == [p.exists() for p in theirs] == [True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give keep_last (newest exports kept per cluster) and/or keep_days"),
        ({"keep_last": 0}, "keep_last must be a whole number of 1 or more"),
        ({"keep_last": "3"}, "keep_last must be a whole number of 1 or more, or None, got '3'"),
        ({"keep_days": -1}, "keep_days must be greater than zero"),
        ({"keep_last": 1, "verify": "sha"}, "verify must be one of ['size', 'full']"),
        ({"keep_last": 1, "dry_run": "False"}, "dry_run must be True or False"),
    ],
)
def test_bad_policy_is_refused_before_listing(tmp_path, kwargs, message):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    ten_nights(root)
    before = all_files(root)
    with pytest.raises(AtlasFlexConfigError) as failure:
        retention(root, **kwargs)
    assert message in str(failure.value)
    assert all_files(root) == before


def test_exports_without_finish_time_fall_back_to_export_time(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    now = datetime.now(timezone.utc)
    old = commit_export(root, "alpha", now - timedelta(days=20), night=1)
    resign_manifest(old, lambda manifest: manifest["snapshot"].pop("finishTime"))
    commit_export(root, "alpha", now - timedelta(hours=2), night=2)
    report = retention(root, keep_days=7)
    assert [d["path"] for d in report["deleted"]] == [str(old)]
