"""Whoever may trigger the weekly scrub DAG must not decide what it deletes (review finding 3).

The live proof runs in real Airflow (``tests/e2e/test_weekly_scrub_dag.py`` triggers with a hostile
conf and checks the Variables' policy was applied, as a dry run).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from tests.reliability.registry import reliability
from tests.reliability.test_hostile_example_dags import load

HOSTILE_CONF = {"root": "file:///srv/atlas-exports", "keep_last": 1, "keep_days": 0.001, "dry_run": False}


def policy_task():
    return load("atlas_flex_weekly_scrub").dag.get_task("retention_policy")


@pytest.fixture
def variables(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    for name in ("DESTINATION_ROOT", "DESTINATION_CONN_ID", "RETENTION_KEEP_LAST", "RETENTION_KEEP_DAYS"):
        monkeypatch.delenv(f"AIRFLOW_VAR_ATLASFLEX_{name}", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_RETENTION_DRY_RUN", raising=False)

    def set_variable(name: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)

    return set_variable


@reliability(
    "hostile",
    "A user allowed to trigger the weekly scrub passes conf {root: <real root>, keep_last: 1, keep_days: 0.001, "
    "dry_run: false} (params are conf-overridable)",
    "Root, connection and policy come only from the Variables atlasflex_destination_root/_conn_id and "
    "atlasflex_retention_keep_last/_keep_days/_dry_run; the one param, dry_run, can switch a dry run on, never off",
    "Retention applies the deployment's policy whatever conf says; a conf dry_run: true makes it a dry run",
)
def test_run_conf_cannot_choose_what_retention_deletes(variables):
    dag = load("atlas_flex_weekly_scrub").dag
    assert set(dag.params) == {"dry_run"}
    for task_id in ("scrub", "retention"):
        operator = dag.get_task(task_id)
        fields = ("root", "dst_conn_id") + (("keep_last", "keep_days", "is_dry_run") if task_id == "retention" else ())
        assert {getattr(operator, f).operator.task_id for f in fields} == {"retention_policy"}
    variables("atlasflex_destination_root", "s3://backups/atlas/")
    variables("atlasflex_destination_conn_id", "aws_backups")
    variables("atlasflex_retention_keep_last", "21")
    variables("atlasflex_retention_keep_days", "60")
    variables("atlasflex_retention_dry_run", "true")
    assert policy_task().python_callable(params=HOSTILE_CONF) == {
        "root": "s3://backups/atlas",
        "dst_conn_id": "aws_backups",
        "keep_last": 21,
        "keep_days": 60.0,
        "dry_run": True,  # conf's false did not switch the deployment's dry run off
    }
    variables("atlasflex_retention_dry_run", "false")
    assert policy_task().python_callable(params={"dry_run": True})["dry_run"] is True  # conf may switch it on
    assert policy_task().python_callable(params={"dry_run": False})["dry_run"] is False


def test_defaults_are_the_nightly_destination_and_a_safe_policy(variables, tmp_path):
    policy = policy_task().python_callable(params={})
    nightly = load("atlas_flex_nightly_export").dag.get_task("destination").python_callable()
    assert nightly["dst"].startswith(policy["root"] + "/{cluster_name}/")
    assert policy["root"] == (tmp_path / "airflow-home" / "atlas-flex-exports").as_uri()
    assert not policy["root"].startswith((Path(tempfile.gettempdir()) / "atlas-flex-exports").as_uri())
    assert policy | {"root": None} == {
        "root": None,
        "dst_conn_id": None,
        "keep_last": 14,
        "keep_days": 35.0,
        "dry_run": False,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("atlasflex_retention_keep_last", "0"),
        ("atlasflex_retention_keep_last", "2.5"),
        ("atlasflex_retention_keep_days", "-1"),
        ("atlasflex_retention_keep_days", "soon"),
        ("atlasflex_retention_dry_run", "yes"),
    ],
)
def test_a_bad_policy_variable_is_refused_by_name(variables, name, value):
    variables(name, value)
    with pytest.raises(AtlasFlexConfigError, match=name):
        policy_task().python_callable(params={})
