"""Packaging: provider metadata, entry point, connection form, the example DAG, and the Airflow floor."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_atlasflex.get_provider_info import get_provider_info

REPO = Path(__file__).resolve().parents[2]


def test_provider_info_is_valid_against_airflows_schema():
    import airflow
    import jsonschema

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
        "plan_exports",
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


def test_provider_info_versions_and_transfer_target_name_what_airflow_knows():
    from airflow_provider_atlasflex.version import __version__

    info = get_provider_info()
    assert info["versions"] == [__version__] == [importlib.metadata.version("airflow-provider-atlasflex")]
    (transfer,) = info["transfers"]
    assert transfer["target-integration-name"] == "Common IO"  # the integration that owns ObjectStoragePath


def test_example_dag_ships_inside_the_package():
    """The wheel's example_dags is the top-level dags_examples/ (package-dir mapping): same file."""
    from importlib.resources import files

    shipped = files("airflow_provider_atlasflex.example_dags") / "atlas_flex_nightly_export.py"
    assert shipped.read_bytes() == (REPO / "dags_examples" / "atlas_flex_nightly_export.py").read_bytes()


def test_demo_copies_the_example_dag_from_the_package(tmp_path):
    from airflow_provider_atlasflex.testing.demo import copy_example_dag

    copied = copy_example_dag(tmp_path / "dags")
    assert copied == tmp_path / "dags" / "atlas_flex_nightly_export.py"
    assert copied.read_bytes() == (REPO / "dags_examples" / "atlas_flex_nightly_export.py").read_bytes()


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_atlasflex.hooks.atlas_flex",
        "airflow_provider_atlasflex.hooks.atlas_flex_async",
        "airflow_provider_atlasflex.operators.snapshot_download",
        "airflow_provider_atlasflex.sensors.snapshot_url",
        "airflow_provider_atlasflex.triggers.restore_job",
        "airflow_provider_atlasflex.transfers.snapshot_to_storage",
        "airflow_provider_atlasflex.get_provider_info",
    ],
)
def test_public_modules_declare_all_and_it_names_their_classes(module):
    mod = __import__(module, fromlist=["__all__"])
    assert mod.__all__, f"{module} has no __all__"
    assert all(hasattr(mod, name) for name in mod.__all__)
    defined_here = {
        name for name, value in vars(mod).items()
        if isinstance(value, type) and value.__module__ == module and not name.startswith("_")
    }
    assert defined_here <= set(mod.__all__), f"public classes missing from {module}.__all__"


# ---- The Airflow floor is what the version matrix proves ------------------------------------------


def _makefile_value(name: str) -> str:
    match = re.search(rf"^{name} \??:?= *(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return match.group(1).strip()


def _pinned_airflow(minor: str) -> str:
    text = (REPO / "constraints" / f"airflow-{minor}.txt").read_text()
    (version,) = re.findall(r"^apache-airflow==(\S+)", text, re.MULTILINE)
    return version


def test_floor_in_pyproject_is_the_oldest_minor_the_matrix_runs():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (requirement,) = [d for d in project["dependencies"] if re.match(r"apache-airflow\b", d)]
    floor = re.fullmatch(r"apache-airflow>=(\d+\.\d+\.\d+)", requirement.replace(" ", ""))
    assert floor, f"the Airflow requirement must be a plain floor, got {requirement!r}"
    minors = _makefile_value("MATRIX_MINORS").split()
    assert minors == sorted(minors, key=lambda m: tuple(map(int, m.split(".")))), "MATRIX_MINORS oldest first"
    assert _pinned_airflow(minors[0]) == floor.group(1), "the floor must be the Airflow the oldest matrix venv runs"
    assert _makefile_value("NEWEST") == minors[-1]
    assert _makefile_value("CI_MATRIX_MINORS").split()[0] == minors[0], "CI must run the oldest minor"
    for minor in minors:
        assert _pinned_airflow(minor).startswith(f"{minor}."), f"constraints/airflow-{minor}.txt pins another minor"
    for extra, requirements in project["optional-dependencies"].items():
        assert not any(re.match(r"apache-airflow\s*($|[<>=!~;\[])", d) for d in requirements), (
            f"the {extra} extra must not pin Airflow: the matrix installs each minor from constraints/"
        )


def test_running_airflow_is_a_supported_minor():
    import airflow

    minors = _makefile_value("MATRIX_MINORS").split()
    assert ".".join(airflow.__version__.split(".")[:2]) in minors
