"""Exports at rest: what damage on storage, crashes and racing runs do to verify and retention.

Each test is a doc row (docs/reliability.md). The exports are real ``.tgz`` files committed with
the sidecar writer; racing runs are real processes, repeated.
"""

from __future__ import annotations

import gzip
import multiprocessing
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.check import ExportReadError, ExportVerificationError
from airflow_provider_atlasflex.archive.manifest import sidecar_paths
from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import RESULTS_XCOM_KEY, AtlasFlexExportVerifyOperator
from tests.reliability.registry import reliability
from tests.unit import export_fixtures
from tests.unit.export_fixtures import (
    CLUSTERS,
    FOREIGN,
    all_files,
    commit_export,
    flip_byte,
    make_tgz,
    nights,
    retention,
    ten_nights,
    verify,
    with_sidecars,
)
from tests.unit.fake_context import make_context

storage_root = export_fixtures.storage_root  # file:// and memory://
WHEN = export_fixtures.WHEN


@reliability(
    "fault-clear-failure",
    "One bit of a committed export flips on storage (file:// and an fsspec object store), size unchanged",
    "The verify task read the file once and failed without retries; nothing was changed",
    "'1 of 1 export(s) under <path> failed verification: <path>: mismatch: not a complete .tgz: invalid gzip "
    "data in member 1 (... incorrect data check); sha256: the manifest says <a>, the file's is <b>; ...', then "
    "'What to do: mismatch: ... copy the snapshot again (overwrite=True) while Atlas still keeps it ...'; the "
    "per-file results in XCom 'results'",
)
def test_flipped_byte_is_detected_and_named(storage_root):
    path = commit_export(storage_root, "alpha", WHEN)
    flip_byte(path, len(path.read_bytes()) // 2)
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError) as failure:
        operator.execute(context)
    message = str(failure.value)
    assert str(path) in message and "mismatch" in message
    assert "sha256: the manifest says" in message and "invalid gzip data" in message
    assert "What to do:\n  mismatch: " in message and "copy the snapshot again (overwrite=True)" in message
    [result] = context["ti"].pushed[RESULTS_XCOM_KEY]
    assert result["status"] == "mismatch" and result["bytes"] == result["manifest_bytes"]


@reliability(
    "hostile",
    "An export whose sidecars agree with its bytes, but whose tar archive stops mid-member inside a valid gzip",
    "The verify task walked the tar headers to the end and failed (tarfile's stream mode would stop quietly)",
    "'<path>: damaged: not a complete .tgz: the tar archive is truncated inside entry 2 (inflated offset 30000)'",
)
def test_truncated_tar_inside_valid_gzip_is_damaged(tmp_path):
    inflated = gzip.decompress(make_tgz())
    cut = gzip.compress(inflated[:30_000])
    path = commit_export(ObjectStoragePath(f"file://{tmp_path}"), "alpha", WHEN, data=cut)
    operator, context = verify(path=str(path))
    with pytest.raises(ExportVerificationError, match="damaged: not a complete .tgz: the tar archive is truncated"):
        operator.execute(context)


@reliability(
    "hostile",
    "A manifest planted beside a foreign file (victim.tgz.json describing another export's file name)",
    "Retention deleted neither the foreign file nor the export the manifest names; the scrub reports both unproven",
    "Nothing deleted; the scrub says '<victim>: unproven: the manifest sidecar cannot be used: victim.tgz.json "
    "describes '<snapshot>.tgz', not the file 'victim.tgz' beside it'",
)
def test_a_manifest_naming_another_file_deletes_neither(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    old = commit_export(root, "alpha", nights(5)[4], night=4)
    commit_export(root, "alpha", nights(1)[0], night=0)
    victim = root / "alpha" / "victim.tgz"
    victim.write_bytes(b"not ours")
    sidecar_paths(old).manifest.rename(sidecar_paths(victim).manifest)
    report = retention(root, keep_last=1)
    assert victim.exists() and old.exists() and report["deleted"] == []
    with pytest.raises(ExportVerificationError, match="describes .* not the file 'victim.tgz' beside it"):
        verify(root=str(root))[0].execute(make_context())


@reliability(
    "fault-clear-failure",
    "Storage refuses one deletion midway (the .sha256 of an export whose file was just deleted)",
    "Retention deleted the rest, kept that export's manifest, and failed; the next run removed the leftover "
    "sidecars; a scrub in between reports the export missing instead of passing",
    "'1 deletion(s) under <root> failed (the rest went ahead): <path>.sha256: Permission denied ... A retry "
    "deletes what is left ...; if it keeps failing, give the storage credentials ... the right to delete', then "
    "'Deleted the sidecars of <path>: the export itself is already gone'",
)
def test_crash_between_file_and_manifest_is_cleaned_next_run(tmp_path, monkeypatch):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    exports = ten_nights(root)
    victim = exports["alpha"][9]
    real_unlink = type(victim).unlink

    def failing_unlink(self, *args, **kwargs):
        if str(self).endswith(".sha256") and str(self).startswith(str(victim)):
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(type(victim), "unlink", failing_unlink)
    with pytest.raises(ExportReadError, match="1 deletion") as refused:
        retention(root, keep_last=3)
    assert "A retry deletes what is left" in str(refused.value) and "right to delete" in str(refused.value)
    monkeypatch.undo()
    assert not victim.exists() and sidecar_paths(victim).manifest.exists()
    with pytest.raises(ExportVerificationError, match=f"{victim}: missing") as scrubbed:
        verify(root=str(root))[0].execute(make_context())
    assert "missing: the export is gone but its sidecars are left: the next export-retention run" in str(scrubbed.value)
    report = retention(root, keep_last=3)
    assert report["cleaned_sidecars"] == [str(victim)]
    assert not sidecar_paths(victim).manifest.exists() and not sidecar_paths(victim).sha256.exists()


def _run_retention(root: str) -> None:
    context: Any = make_context()
    AtlasFlexExportRetentionOperator(task_id="retention", root=root, keep_last=2).execute(context)


def _run_scrub(root: str) -> None:
    context: Any = make_context()
    AtlasFlexExportVerifyOperator(task_id="scrub", root=root).execute(context)


def _race(*targets: tuple[object, str]) -> list[int | None]:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=(root,)) for target, root in targets]  # type: ignore[arg-type]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return [worker.exitcode for worker in workers]


@reliability(
    "hostile",
    "Two retention runs over the same root at the same time (two processes, 3 rounds)",
    "Both succeeded; together they deleted exactly what the policy says, sidecars included; foreign files survived",
    "Two green tasks; each logs what it deleted (a file the other run deleted first is skipped)",
)
def test_two_retention_runs_racing_agree(tmp_path):
    for round_ in range(3):
        root = ObjectStoragePath(f"file://{tmp_path}/round{round_}")
        exports = ten_nights(root)
        assert _race((_run_retention, str(root)), (_run_retention, str(root))) == [0, 0]
        survivors = with_sidecars([p for c in CLUSTERS for p in exports[c][:2]])
        foreign = {str(root.joinpath(*r.split("/"))) for r in FOREIGN}
        assert all_files(root) == survivors | foreign


@reliability(
    "hostile",
    "A weekly scrub overlapping a retention run on the same root (two processes, 10 rounds)",
    "The scrub skipped the exports deleted under it and verified the rest; retention deleted per policy",
    "Two green tasks; the scrub logs 'Skipping <path>: it was deleted while the scrub ran (retention?)'",
)
def test_scrub_racing_retention_does_not_fail_on_deleted_exports(tmp_path):
    for round_ in range(10):
        root = ObjectStoragePath(f"file://{tmp_path}/round{round_}")
        for n, when in enumerate(nights(10)):
            commit_export(root, "alpha", when, night=n)
        assert _race((_run_retention, str(root)), (_run_scrub, str(root))) == [0, 0]
