"""AtlasFlexExportRetentionOperator over 10 nights of fake exports: dry run, real run, what must survive."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import datetime, timedelta, timezone

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator
from airflow_provider_atlasflex.transfers.export_check import ExportReadError, ExportVerificationError
from airflow_provider_atlasflex.transfers.manifest import sidecar_paths
from tests.unit import export_fixtures
from tests.unit.export_fixtures import commit_export, make_tgz, nights, relative_files
from tests.unit.fake_context import make_context

storage_root = export_fixtures.storage_root  # file:// and memory://
CLUSTERS = ("alpha", "beta")
FOREIGN = {
    "README.txt": b"exports of the data team",
    "alpha/copied-by-hand.tgz": make_tgz(seed=99),  # a .tgz without our sidecars
    "alpha/inventory.json": b'{"owner": "someone else"}',  # a .json that is not our manifest
    "beta/only-checksum.tgz": b"x",
    "beta/only-checksum.tgz.sha256": b"0" * 64 + b"  only-checksum.tgz\n",  # a .sha256 alone proves nothing
}


def ten_nights(root: ObjectStoragePath) -> dict[str, list[ObjectStoragePath]]:
    """10 nightly exports per cluster (index 0 = newest) plus foreign files that must survive."""
    exports = {
        cluster: [commit_export(root, cluster, when, night=n) for n, when in enumerate(nights(10))]
        for cluster in CLUSTERS
    }
    for relative, data in FOREIGN.items():
        path = root.joinpath(*relative.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return exports


def with_sidecars(paths: list[ObjectStoragePath]) -> set[str]:
    return {str(q) for p in paths for q in (p, sidecar_paths(p).sha256, sidecar_paths(p).manifest)}


def all_files(root: ObjectStoragePath) -> set[str]:
    return {str(root.joinpath(*r.split("/"))) for r in relative_files(root)}


def retention(root: ObjectStoragePath, **kwargs):
    operator = AtlasFlexExportRetentionOperator(task_id="retention", root=str(root), **kwargs)
    return operator.execute(make_context())


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


def test_full_verification_protects_against_a_flipped_byte_of_the_right_size(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    raw = bytearray(exports["alpha"][0].read_bytes())
    raw[200] ^= 0xFF
    exports["alpha"][0].write_bytes(bytes(raw))
    size_only = retention(root, keep_last=1, dry_run=True)
    assert str(exports["alpha"][1]) in {d["path"] for d in size_only["deleted"]}  # size looks right
    full = retention(root, keep_last=1, verify="full", dry_run=True)
    assert str(exports["alpha"][1]) in {p["path"] for p in full["protected"]}


def test_a_cluster_with_no_verified_export_loses_nothing(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    for path in exports["beta"]:
        sidecar_paths(path).sha256.unlink()
    report = retention(root, keep_last=2)
    assert all(p.exists() for p in exports["beta"])
    assert report["skipped_clusters"] == [{"group_id": export_fixtures.GROUP, "cluster_name": "beta", "exports": 10}]
    assert not any(p.exists() for p in exports["alpha"][2:])


def test_clusters_of_different_projects_are_kept_apart(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(3)
    mine = [commit_export(root / "p1", "alpha", t, night=n) for n, t in enumerate(when)]
    theirs = [commit_export(root / "p2", "alpha", t, night=n, group_id="6a" * 12) for n, t in enumerate(when)]
    retention(root, keep_last=1)
    assert [p.exists() for p in mine] == [p.exists() for p in theirs] == [True, False, False]


def test_a_manifest_naming_another_file_deletes_neither(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    old = commit_export(root, "alpha", nights(5)[4], night=4)
    commit_export(root, "alpha", nights(1)[0], night=0)
    victim = root / "alpha" / "victim.tgz"
    victim.write_bytes(b"not ours")
    sidecar_paths(old).manifest.rename(sidecar_paths(victim).manifest)
    report = retention(root, keep_last=1)
    assert victim.exists() and old.exists() and report["deleted"] == []


def test_crash_between_file_and_manifest_is_cleaned_next_run(tmp_path, monkeypatch):
    """Export first, manifest last: a crash in between leaves a manifest that the next run recognises."""
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    victim = exports["alpha"][9]
    real_unlink = type(victim).unlink

    def failing_unlink(self, *args, **kwargs):
        if str(self).endswith(".sha256") and str(self).startswith(str(victim)):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(type(victim), "unlink", failing_unlink)
    with pytest.raises(ExportReadError, match="1 deletion"):
        retention(root, keep_last=3)
    monkeypatch.undo()
    assert not victim.exists() and sidecar_paths(victim).manifest.exists()
    # In between, the scrub says what is wrong instead of passing silently.
    with pytest.raises(ExportVerificationError, match=f"{victim}: missing"):
        AtlasFlexExportVerifyOperator(task_id="scrub", root=str(root)).execute(make_context())
    report = retention(root, keep_last=3)
    assert report["cleaned_sidecars"] == [str(victim)]
    assert not sidecar_paths(victim).manifest.exists() and not sidecar_paths(victim).sha256.exists()


def _run_retention(root: str) -> None:
    AtlasFlexExportRetentionOperator(task_id="retention", root=root, keep_last=2).execute(make_context())


def test_two_retention_runs_racing_agree(tmp_path):
    """Two processes deleting the same exports at the same time: both succeed, the result is the policy's."""
    for round_ in range(3):
        root = ObjectStoragePath(f"file://{tmp_path}/round{round_}")
        exports = ten_nights(root)
        context = multiprocessing.get_context("fork")
        workers = [context.Process(target=_run_retention, args=(str(root),)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert [w.exitcode for w in workers] == [0, 0]
        survivors = with_sidecars([p for c in CLUSTERS for p in exports[c][:2]])
        foreign = {str(root.joinpath(*r.split("/"))) for r in FOREIGN}
        assert all_files(root) == survivors | foreign


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
    manifest_path = sidecar_paths(old).manifest
    manifest_path.write_text(manifest_path.read_text().replace('"finishTime"', '"finishTimeX"'))
    commit_export(root, "alpha", now - timedelta(hours=2), night=2)
    report = retention(root, keep_days=7)
    assert [d["path"] for d in report["deleted"]] == [str(old)]


def _run_scrub(root: str) -> None:
    AtlasFlexExportVerifyOperator(task_id="scrub", root=root).execute(make_context())


def test_scrub_racing_retention_does_not_fail_on_deleted_exports(tmp_path):
    """A weekly scrub that overlaps the retention run skips what retention deleted under it."""
    for round_ in range(3):
        root = ObjectStoragePath(f"file://{tmp_path}/round{round_}")
        for n, when in enumerate(nights(10)):
            commit_export(root, "alpha", when, night=n)
        context = multiprocessing.get_context("fork")
        workers = [
            context.Process(target=_run_retention, args=(str(root),)),
            context.Process(target=_run_scrub, args=(str(root),)),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert [w.exitcode for w in workers] == [0, 0]
