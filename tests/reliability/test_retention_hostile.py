"""Retention against lying metadata, rotten storage and racing commits (review findings 2, 6, 10, 12).

Each hostile test is a doc row (docs/reliability.md). Exports are real ``.tgz`` files committed with
the sidecar writer (tests/unit/export_fixtures.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import datetime, timezone

from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import verify_export
from airflow_provider_atlasflex.archive.manifest import build_manifest, sidecar_paths, write_sidecars
from tests.reliability.registry import reliability
from tests.unit.export_fixtures import GROUP, commit_export, flip_byte, make_tgz, nights, retention

FAR_FUTURE = "2099-01-01T00:00:00Z"


def _commit_with_finish_time(root: ObjectStoragePath, finish_time: str, exported_at: str) -> ObjectStoragePath:
    data = make_tgz(seed=77)
    path = root / "alpha" / "old" / "bogus.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    manifest = build_manifest(
        file_name=path.name,
        cluster_name="alpha",
        group_id=GROUP,
        snapshot_id="c" * 24,
        snapshot={"finishTime": finish_time},
        restore_job_id="d" * 24,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        exported_at=exported_at,
    )
    write_sidecars(path, manifest)
    return path


@reliability(
    "hostile",
    "The API reports a snapshot finishTime of 2099 for one export (keep_last=1, 5 real nightly exports)",
    "Retention never trusted that export (a date in the future): tonight's export stayed the protected newest, "
    "the older real ones were deleted, the bogus one was kept and reported as future-dated",
    "'Not trusting <path>: its manifest dates its snapshot finishTime 2099-01-01 ..., in the future; it is kept, "
    "never protected ...'; the manifest carries 'anomalies': ['snapshot finishTime ... is later than exported_at ...']",
)
def test_a_far_future_finish_time_does_not_pin_retention(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    real = [commit_export(root, "alpha", when, night=n) for n, when in enumerate(nights(5))]
    bogus = _commit_with_finish_time(root, FAR_FUTURE, "2020-01-01T00:00:00+00:00")
    report = retention(root, keep_last=1)
    assert [p["path"] for p in report["protected"]] == [str(real[0])]
    assert real[0].exists() and bogus.exists() and sidecar_paths(bogus).manifest.exists()
    assert [p["path"] for p in report["future_dated"]] == [str(bogus)]
    assert not any(p.exists() for p in real[1:])


def test_build_manifest_flags_a_finish_time_after_the_export():
    common = {
        "file_name": "x.tgz",
        "cluster_name": "alpha",
        "group_id": GROUP,
        "snapshot_id": "c" * 24,
        "restore_job_id": "d" * 24,
        "size": 1,
        "sha256": "0" * 64,
        "exported_at": "2026-11-28T04:00:00+00:00",
    }
    lying = build_manifest(snapshot={"finishTime": FAR_FUTURE}, **common)
    assert lying["snapshot"]["finishTime"] == FAR_FUTURE  # Atlas' answer is recorded as evidence, verbatim
    assert lying["anomalies"] == [
        (
            "snapshot finishTime 2099-01-01T00:00:00Z is later than exported_at 2026-11-28T04:00:00+00:00: "
            "retention orders this export by exported_at"
        )
    ]
    honest = build_manifest(snapshot={"finishTime": "2026-11-28T01:00:00Z"}, **common)
    assert "anomalies" not in honest


@reliability(
    "hostile",
    "One byte of the newest export flips on storage (size and sidecars unchanged), retention with keep_last=1 "
    "and the default verify='size'",
    "The export to be protected was fully re-read, failed, and the next-newest intact export was protected "
    "instead; the damaged newest was kept (keep_last), nothing intact that retention must keep was deleted",
    "'<newest> is not verified (mismatch: ...): an older export of its cluster stays protected'",
)
def test_a_rotten_newest_export_is_not_the_protected_one(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = [commit_export(root, "alpha", when, night=n) for n, when in enumerate(nights(3))]
    flip_byte(exports[0], 200)
    report = retention(root, keep_last=1)
    assert verify_export(exports[0])["status"] == "mismatch"
    assert [p["path"] for p in report["protected"]] == [str(exports[1])]
    assert exports[0].exists() and exports[1].exists() and not exports[2].exists()


def _partial(
    directory: ObjectStoragePath, name: str = ".x.tgz.0123456789abcdef.atlasflex-partial"
) -> ObjectStoragePath:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"half an export")
    return path


def test_retention_sweeps_dead_partials_and_dry_run_only_reports(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    commit_export(root, "alpha", nights(1)[0])
    dead = _partial(root / "alpha" / "2026-01-01")
    live = _partial(root / "beta" / "2026-01-02", ".y.tgz.fedcba9876543210.atlasflex-partial")
    fd = os.open(live.path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live attempt holds its lock
        report = retention(root, keep_last=1, dry_run=True)
        assert report["swept_partials"] == [str(dead)] and dead.exists()
        report = retention(root, keep_last=1)
        assert report["swept_partials"] == [str(dead)] and not dead.exists()
        assert live.exists()
    finally:
        os.close(fd)


@reliability(
    "hostile",
    "An export is re-committed at the same path (new bytes, new sidecars) after retention listed its old "
    "manifest as an orphan (the file was gone), right before retention's unlink",
    "Retention re-read the manifest (snapshot_id, sha256) and the file just before each unlink, saw the "
    "new commit and deleted nothing of it",
    "'Not deleting <path>.sha256: <path> changed since the listing (re-committed?); the next run judges it'",
)
def test_a_recommit_after_the_listing_keeps_its_fresh_sidecars(tmp_path, monkeypatch):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    commit_export(root, "alpha", nights(1)[0], night=0)
    when = datetime(2026, 11, 1, 3, tzinfo=timezone.utc)
    orphan = commit_export(root, "alpha", when, night=5)
    orphan.unlink()  # an interrupted deletion left the manifest behind
    path_type = type(orphan)
    real_exists = path_type.exists
    state = {"raced": False}

    def exists_then_recommit(self, *args, **kwargs):
        found = real_exists(self, *args, **kwargs)
        if str(self) == str(orphan) and not state["raced"]:
            state["raced"] = True  # the new commit lands right after retention's check
            commit_export(root, "alpha", when, night=5, data=make_tgz(seed=1234))
        return found

    monkeypatch.setattr(path_type, "exists", exists_then_recommit)
    retention(root, keep_last=1)
    monkeypatch.undo()
    assert state["raced"]
    assert orphan.exists() and sidecar_paths(orphan).sha256.exists() and sidecar_paths(orphan).manifest.exists()
    assert verify_export(orphan)["status"] == "verified"


def test_an_export_recommitted_after_the_listing_is_not_deleted(tmp_path, monkeypatch):
    from airflow_provider_atlasflex.archive import scan as export_scan  # the operator looks it up there when it runs

    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    when = nights(3)
    exports = [commit_export(root, "alpha", w, night=n) for n, w in enumerate(when)]
    real_scan = export_scan.scan_exports

    def scan_then_recommit(where):
        scan = real_scan(where)
        commit_export(root, "alpha", when[2], night=2, data=make_tgz(seed=4321))  # lands after the listing
        return scan

    monkeypatch.setattr(export_scan, "scan_exports", scan_then_recommit)
    report = retention(root, keep_last=1)
    assert [d["path"] for d in report["deleted"]] == [str(exports[1])]
    assert {k["path"]: k["reason"] for k in report["kept"]}[str(exports[2])].startswith("changed since the listing")
    assert exports[2].exists() and verify_export(exports[2])["status"] == "verified"
    assert not exports[1].exists()


def test_a_scrub_listing_in_the_middle_of_a_deletion_skips_that_export(tmp_path, monkeypatch):
    from airflow_provider_atlasflex.archive import check as export_check  # the operator looks it up there when it runs
    from tests.unit.export_fixtures import verify

    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    kept = commit_export(root, "alpha", nights(1)[0], night=0)
    doomed = commit_export(root, "alpha", nights(3)[2], night=2)
    doomed.unlink()  # retention has deleted the file; its sidecars go next
    real_verify = export_check.verify_export

    def sidecars_go_meanwhile(path, *args):
        if str(path) == str(doomed):
            sidecar_paths(doomed).sha256.unlink()
            sidecar_paths(doomed).manifest.unlink()
        return real_verify(path, *args)

    monkeypatch.setattr(export_check, "verify_export", sidecars_go_meanwhile)
    operator, context = verify(root=str(root))
    results = operator.execute(context)
    assert [r["path"] for r in results] == [str(kept)]


@reliability(
    "hostile-at-rest",
    "Someone who can write the destination copies tonight's signed export set (bytes and sidecars) to three other "
    "paths; retention runs with keep_last=2",
    "keep_last counted snapshots, not files: the copies shared tonight's rank, so last night's real export was kept",
    "The report keeps tonight's snapshot (every copy) and last night's; only older snapshots are deleted",
)
def test_copies_of_one_snapshot_never_push_a_real_recovery_point_out(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    real = [commit_export(root, "alpha", when, night=n) for n, when in enumerate(nights(4))]
    replays = []
    for where in ("zzz-1", "zzz-2", "zzz-3"):
        folder = root / "alpha" / where
        folder.mkdir(parents=True, exist_ok=True)
        for source in (real[0], sidecar_paths(real[0]).sha256, sidecar_paths(real[0]).manifest):
            (folder / source.name).write_bytes(source.read_bytes())
        replays.append(folder / real[0].name)
    report = retention(root, keep_last=2)
    assert real[0].exists() and real[1].exists(), "a real recovery point was deleted"
    assert not real[2].exists() and not real[3].exists()
    assert all(p.exists() for p in replays)  # copies of a kept snapshot are kept with it
    assert {p["path"] for p in report["deleted"]} == {str(real[2]), str(real[3])}
