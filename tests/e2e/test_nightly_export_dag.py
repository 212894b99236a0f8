"""The example nightly DAG, run by real ``airflow dags test`` against the emulator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import DAG_ID, read_xcoms

CLUSTERS = ("alpha", "beta")
RUN_DATE = "2026-11-20"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("mode", "auth"),
    [("poke", "digest"), ("deferrable", "service_account")],
    ids=["poke-digest", "deferrable-service-account"],
)
def test_nightly_export_copies_every_cluster(sandbox, tmp_path, mode, auth):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=3_000_000, restore_duration=2.0) as emu:
        result = sandbox.dags_test(
            DAG_ID,
            logical_date=RUN_DATE,
            conf={"clusters": list(CLUSTERS), "destination_root": exports.as_uri()},
            connections={"mongodb_atlas_default": emulator_connection(emu, auth)},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(mode == "deferrable"),
                "ATLAS_FLEX_POLL_SECONDS": "1",
            },
            timeout=240,
        )
        assert result.succeeded, result.tail()
        deferred = "new_state=deferred" in result.output
        assert deferred is (mode == "deferrable")

        expected = {c: emu.newest_completed_snapshot_id(c) for c in CLUSTERS}
        exported = sorted(str(p.relative_to(exports)) for p in exports.rglob("*") if p.is_file())
        assert exported == sorted(
            f"{c}/{RUN_DATE}/{expected[c]}.tgz{sidecar}" for c in CLUSTERS for sidecar in ("", ".json", ".sha256")
        )
        for cluster, snapshot_id in expected.items():
            path = exports / cluster / RUN_DATE / f"{snapshot_id}.tgz"
            assert path.stat().st_size == emu.snapshot_size_of(snapshot_id)
            assert sha256_of(path) == emu.expected_sha256(snapshot_id)

        # restore-job metadata reached XCom, without the link's credential
        jobs = read_xcoms(sandbox, "export_cluster.request_link")
        ids = read_xcoms(sandbox, "export_cluster.request_link", "restore_job_id")
        copies = read_xcoms(sandbox, "export_cluster.copy_to_storage")
        assert sorted(jobs) == sorted(ids) == sorted(copies) == [0, 1]
        for index, cluster in enumerate(CLUSTERS):
            emulator_jobs = {j["id"] for j in emu.restore_jobs(cluster)}
            assert ids[index] in emulator_jobs and jobs[index]["id"] == ids[index]
            assert jobs[index]["snapshotId"] == expected[cluster] and jobs[index]["deliveryType"] == "DOWNLOAD"
            assert copies[index]["sha256"] == emu.expected_sha256(expected[cluster])
            assert copies[index]["cluster_name"] == cluster and copies[index]["restore_job_id"] == ids[index]
        # one DOWNLOAD job per cluster: nothing was requested twice
        assert all(len(emu.restore_jobs(c)) == 1 for c in CLUSTERS)

        secrets = [emu.api_key.private_key, emu.service_account.client_secret, "Signature="]
        assert not [s for s in secrets if s in result.output]
