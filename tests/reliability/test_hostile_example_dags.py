"""Hostile conditions around the example DAGs: whoever may trigger a run must not decide where backups go
or which cluster a restore overwrites (issue 7 items 5 and 17).

The live proofs run in real Airflow (``tests/e2e/test_nightly_export_dag.py`` passes a
``destination_root`` in conf and checks nothing lands there; ``tests/e2e/test_restore_drill_dag.py``
triggers the drill at a production cluster and checks no restore starts).
"""

from __future__ import annotations

import importlib.util
import inspect
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.reliability.registry import reliability

DAGS = Path(__file__).resolve().parents[2] / "dags_examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", DAGS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@reliability(
    "hostile",
    "A user allowed to trigger the nightly DAG passes a destination in run conf (params are conf-overridable)",
    "The destination comes only from the Variables atlasflex_destination_root / atlasflex_destination_conn_id; "
    "no param, and no task reading conf, decides it",
    "Exports land under the Variable's root; conf has no say (documented in the DAG and README)",
)
def test_run_conf_cannot_choose_where_backups_go(monkeypatch, tmp_path):
    dag = load("atlas_flex_nightly_export").dag
    assert not {"destination_root", "dst", "dst_conn_id"} & set(dag.params)
    destination = dag.get_task("destination")
    assert inspect.signature(destination.python_callable).parameters == {}  # no params, no conf, no context
    copy = dag.get_task("export_cluster.copy_to_storage")
    assert {ref.operator.task_id for ref in (copy.dst, copy.dst_conn_id)} == {"destination"}
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT", "s3://backups/atlas/")
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_CONN_ID", "aws_backups")
    assert destination.python_callable() == {
        "dst": "s3://backups/atlas/{cluster_name}/{date}/{snapshot_id}.tgz",
        "dst_conn_id": "aws_backups",
    }


@reliability(
    "hostile",
    "Another local user reads exports from the example DAG's default root in the shared temp directory",
    "The default root is $AIRFLOW_HOME/atlas-flex-exports (the Airflow user's own directory), never under /tmp",
    "No configuration needed for a private default; set atlasflex_destination_root for real storage",
)
def test_default_destination_is_not_in_the_shared_temp_directory(monkeypatch, tmp_path):
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_CONN_ID", raising=False)
    result = load("atlas_flex_nightly_export").dag.get_task("destination").python_callable()
    assert result["dst"].startswith((home / "atlas-flex-exports").as_uri() + "/")
    # (the test's AIRFLOW_HOME is itself under tmp_path; what matters is that the default follows it)
    shared = (Path(tempfile.gettempdir()) / "atlas-flex-exports").as_uri()
    assert not result["dst"].startswith(shared) and result["dst_conn_id"] is None


@reliability(
    "hostile",
    "A user allowed to trigger the restore drill names a production cluster as the scratch target in conf",
    "The scratch_cluster param only accepts restore-drill* names; the operator also refuses the source cluster",
    "The run is refused at trigger time (param validation) and no restore job is created",
)
@pytest.mark.parametrize("target", ["beta", "prod-a", "alpha"])
def test_restore_drill_conf_cannot_target_a_production_cluster(target):
    scratch = load("atlas_flex_restore_drill").dag.params.get_param("scratch_cluster")
    with pytest.raises(Exception, match="does not match"):
        scratch.resolve(value=target)
    assert scratch.resolve(value="restore-drill-weekly") == "restore-drill-weekly"
