"""The example on the docs page "Testing your own DAGs offline", run exactly as the page shows it.

docs/testing-offline.md includes the lines between the START and END markers, so the page can
never show code that does not run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

MY_DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags_examples"

# [START offline_dag_test]
from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox, emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator


def test_nightly_export_survives_two_cut_downloads(tmp_path: Path) -> None:
    sandbox = AirflowSandbox(home=tmp_path / "airflow-home", dags_folder=MY_DAGS_FOLDER)
    sandbox.migrate()  # a fresh SQLite metadata database in that AIRFLOW_HOME
    with AtlasEmulator(clusters=("alpha",)) as emu:
        cuts = emu.faults.add(operation="snapshotFile", cut_after_bytes=100_000, times=2)
        result = sandbox.dags_test(
            "atlas_flex_nightly_export",
            conf={"clusters": ["alpha"]},
            connections={"mongodb_atlas_default": emulator_connection(emu)},
            env={
                "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": (tmp_path / "exports").as_uri(),
                "ATLAS_FLEX_POLL_SECONDS": "1",
            },
        )
    assert result.succeeded, result.tail()
    assert cuts.fired == 2  # both cuts happened, and the copy resumed past them
    assert len(list((tmp_path / "exports").rglob("*.tgz"))) == 1
# [END offline_dag_test]
