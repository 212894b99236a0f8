"""The weekly scrub-and-retention DAG, run by real ``airflow dags test`` over fake nightly exports."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.manifest import sidecar_paths
from tests.conftest import SIGNING_ENV
from tests.e2e.conftest import read_xcoms
from tests.unit.export_fixtures import commit_export, make_tgz, nights

DAG_ID = "atlas_flex_weekly_scrub"
CLUSTERS = ("alpha", "beta")


def populate(root: ObjectStoragePath) -> dict[str, list[ObjectStoragePath]]:
    exports = {c: [commit_export(root, c, when, night=n) for n, when in enumerate(nights(4))] for c in CLUSTERS}
    (root / "README.txt").write_text("not an export")
    return exports


def run(sandbox, root: ObjectStoragePath, conf: dict | None = None):
    """One run with the deployment's configuration in Variables (root, keep 2, 0.01 days), as an operator sets it."""
    return sandbox.dags_test(
        DAG_ID,
        logical_date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        conf=conf or {},
        env={
            "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": str(root),
            "AIRFLOW_VAR_ATLASFLEX_RETENTION_KEEP_LAST": "2",
            "AIRFLOW_VAR_ATLASFLEX_RETENTION_KEEP_DAYS": "0.01",
            **SIGNING_ENV,  # the key the fake exports were signed with (tests/conftest.py)
        },
        timeout=240,
    )


def test_scrub_passes_then_retention_deletes_old_exports(sandbox, tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = populate(root)
    result = run(sandbox, root)
    assert result.succeeded, result.tail()
    for cluster in CLUSTERS:
        assert all(p.exists() and sidecar_paths(p).manifest.exists() for p in exports[cluster][:2])
        assert not any(p.exists() or sidecar_paths(p).manifest.exists() for p in exports[cluster][2:])
    assert (root / "README.txt").exists()
    scrubbed = read_xcoms(sandbox, "scrub")[-1]
    assert sorted(r["status"] for r in scrubbed) == ["verified"] * 8
    report = read_xcoms(sandbox, "retention")[-1]
    assert sorted(d["path"] for d in report["deleted"]) == sorted(str(p) for c in CLUSTERS for p in exports[c][2:])


def test_a_flipped_byte_fails_the_scrub_and_nothing_is_deleted(sandbox, tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = populate(root)
    (root / "alpha" / "stray.tgz").write_bytes(make_tgz())
    victim = exports["beta"][3]
    raw = bytearray(victim.read_bytes())
    raw[1000] ^= 0x10
    victim.write_bytes(bytes(raw))
    result = run(sandbox, root)
    assert not result.succeeded
    assert f"{victim}: mismatch: " in result.output and "stray.tgz: unproven" in result.output
    assert all(p.exists() for c in CLUSTERS for p in exports[c])  # retention did not run
    assert read_xcoms(sandbox, "retention") == {}


def test_trigger_conf_cannot_widen_retention_but_can_make_it_a_dry_run(sandbox, tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = populate(root)
    elsewhere = ObjectStoragePath(f"file://{tmp_path}/elsewhere")
    kept_elsewhere = commit_export(elsewhere, "alpha", nights(3)[2], night=2)
    hostile = {"root": str(elsewhere), "keep_last": 1, "keep_days": 0.001, "dry_run": True}
    result = run(sandbox, root, hostile)
    assert result.succeeded, result.tail()
    assert all(p.exists() for c in CLUSTERS for p in exports[c]) and kept_elsewhere.exists()
    report = read_xcoms(sandbox, "retention")[-1]
    assert report["dry_run"] is True  # conf switched the dry run on...
    # ...but the plan is the Variables' policy over the Variables' root (keep 2 per cluster), not conf's
    assert sorted(d["path"] for d in report["deleted"]) == sorted(str(p) for c in CLUSTERS for p in exports[c][2:])
