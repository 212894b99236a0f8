"""Hostile conditions around the example DAGs: whoever may trigger a run must not decide where backups go
or which cluster a restore overwrites (issue 7 items 5 and 17).

The live proofs run in real Airflow (``tests/e2e/test_nightly_export_dag.py`` passes a
``destination_root`` in conf and checks nothing lands there; ``tests/e2e/test_restore_drill_dag.py``
names a production cluster as source and scratch in conf and checks it is neither read nor written).
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
    "Exports land under the Variable's root; conf has no say (documented in the DAG and on the docs' Example DAGs page)",
)
def test_run_conf_cannot_choose_where_backups_go(monkeypatch, tmp_path):
    dag = load("atlas_flex_nightly_export").dag
    assert not {"destination_root", "dst", "dst_conn_id"} & set(dag.params)
    destination = dag.get_task("destination")
    assert inspect.signature(destination.python_callable).parameters == {}  # no params, no conf, no context
    copy = dag.get_task("export_cluster.copy_to_storage")
    assert {ref.operator.task_id for ref in (copy.dst, copy.dst_conn_id)} == {"destination"}
    plan = dag.get_task("plan_exports")  # the archive the plan scans comes from the same Variables
    assert {ref.operator.task_id for ref in (plan.archive_root, plan.archive_conn_id)} == {"destination"}
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT", "s3://backups/atlas/")
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DESTINATION_CONN_ID", "aws_backups")
    assert destination.python_callable() == {
        "root": "s3://backups/atlas",
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
    "A user allowed to trigger the restore drill names the source cluster (whose data lands in the scratch cluster) "
    "or the scratch target (whose data is replaced) in run conf",
    "The DAG has no params: drill_plan reads the clusters from the Variables atlasflex_drill_source_clusters / "
    "atlasflex_drill_scratch_cluster; the restore's target_pattern (restore-drill*) is not templated",
    "conf has no say; a Variable naming a production cluster as scratch is refused by the restore before any request",
)
def test_restore_drill_conf_cannot_choose_the_source_or_the_target(monkeypatch):
    dag = load("atlas_flex_restore_drill").dag
    assert not dict(dag.params)
    plan = dag.get_task("drill_plan")
    assert inspect.signature(plan.python_callable).parameters == {}  # no params, no conf, no context
    restore = dag.get_task("restore_into_scratch")
    assert restore.partial_kwargs["target_pattern"] == "restore-drill*"
    assert "target_pattern" not in restore.template_fields and "allow_any_target" not in restore.partial_kwargs
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SCRATCH_CLUSTER", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SOURCE_CLUSTERS", raising=False)
    with pytest.raises(ValueError, match="Set the Airflow Variable atlasflex_drill_source_clusters"):
        plan.python_callable()
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SOURCE_CLUSTERS", '["prod-a", "prod-b", "prod-a"]')
    assert plan.python_callable() == [
        {"cluster_name": "prod-a", "target_cluster_name": "restore-drill-scratch"},
        {"cluster_name": "prod-b", "target_cluster_name": "restore-drill-scratch"},
    ]
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SOURCE_CLUSTERS", "prod-a")
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SCRATCH_CLUSTER", "restore-drill-weekly")
    assert plan.python_callable() == [{"cluster_name": "prod-a", "target_cluster_name": "restore-drill-weekly"}]
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_DRILL_SOURCE_CLUSTERS", '{"cluster": "prod-a"}')
    with pytest.raises(ValueError, match="must be a JSON list of cluster names or one name"):
        plan.python_callable()
