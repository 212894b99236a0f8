"""Packaging: provider metadata, entry point, connection form, and the example DAG."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_atlasflex.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]


def test_provider_info_is_valid_against_airflows_schema():
    import jsonschema

    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_matches_the_distribution_and_entry_point():
    dist = importlib.metadata.distribution("airflow-provider-atlasflex")
    assert get_provider_info()["package-name"] == dist.metadata["Name"]
    (entry,) = [e for e in dist.entry_points if e.group == "apache_airflow_provider"]
    assert entry.load()() == get_provider_info()


def test_every_listed_module_and_class_imports():
    info = get_provider_info()
    modules = [m for section in ("hooks", "operators", "sensors", "triggers") for item in info[section] for m in item["python-modules"]]
    modules += [t["python-module"] for t in info["transfers"]]
    for name in modules:
        __import__(name)
    (conn,) = info["connection-types"]
    module, _, cls = conn["hook-class-name"].rpartition(".")
    hook = getattr(__import__(module, fromlist=[cls]), cls)
    assert hook.conn_type == conn["connection-type"] == "mongodb_atlas"
    assert hook.default_conn_name == "mongodb_atlas_default"


def test_airflow_lists_the_provider_and_connection_type(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    providers = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "airflow-provider-atlasflex" in providers
    hooks = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "--output", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "mongodb_atlas" in hooks


def test_example_dag_imports_cleanly_and_maps_over_clusters():
    import importlib.util

    path = REPO / "dags_examples" / "atlas_flex_nightly_export.py"
    spec = importlib.util.spec_from_file_location("atlas_flex_nightly_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    assert dag.dag_id == "atlas_flex_nightly_export" and dag.catchup is False
    assert {t.task_id for t in dag.tasks} == {
        "export_selection",
        "destination",
        "discover_clusters",
        "clusters_to_export",
        "export_cluster.request_link",
        "export_cluster.wait_for_link",
        "export_cluster.copy_to_storage",
        "night_report",
    }
    # Where backups go is deployment configuration (Variables), never a param that run conf overrides.
    assert set(dag.params) == {"clusters", "exclude", "all_projects"}
    assert dag.get_task("night_report").trigger_rule == "all_done"
    for task_id in ("export_cluster.request_link", "export_cluster.wait_for_link", "export_cluster.copy_to_storage"):
        assert dag.get_task(task_id).map_index_template == "{{ task.cluster_name }}"


@pytest.mark.parametrize("module", ["airflow_provider_atlasflex", "airflow_provider_atlasflex.operators.snapshot_download"])
def test_importing_the_provider_sends_no_request(module):
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network at import')\n"
        "socket.socket.connect = refuse\n"
        f"import {module}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
