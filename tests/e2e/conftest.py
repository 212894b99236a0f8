"""Real Airflow (``airflow dags test``) against the local emulator: shared fixtures."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import AirflowSandbox

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags_examples"
DAG_ID = "atlas_flex_nightly_export"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``airflow db migrate``; each test starts from a copy of that database."""
    sandbox = AirflowSandbox(tmp_path_factory.mktemp("airflow-template"), DAGS)
    sandbox.migrate()
    return sandbox.home


@pytest.fixture
def sandbox(migrated_home: Path, tmp_path: Path) -> Iterator[AirflowSandbox]:
    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copy2(migrated_home / "airflow.db", home / "airflow.db")
    yield AirflowSandbox(home, DAGS)


def sandbox_with_dag(migrated_home: Path, tmp_path: Path, file_name: str, source: str) -> AirflowSandbox:
    """A sandbox (copy of the migrated database) whose DAG folder holds only ``source``, a DAG written for a test."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copy2(migrated_home / "airflow.db", home / "airflow.db")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / file_name).write_text(source)
    return AirflowSandbox(home, dags)


def read_xcoms(sandbox: AirflowSandbox, task_id: str, key: str = "return_value") -> dict[int, Any]:
    """XCom values of one task from the sandbox's metadata database, by map index."""
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute("SELECT map_index, value FROM xcom WHERE task_id = ? AND key = ?", (task_id, key)).fetchall()
    values = {}
    for map_index, raw in rows:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        values[map_index] = json.loads(value) if isinstance(value, str) and value[:1] in "{[\"" else value
    return values
