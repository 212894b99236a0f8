"""docs/reliability.md is generated from the reliability tests and must match them.

Regenerate with: UPDATE_RELIABILITY_DOC=1 .venv/bin/python -m pytest tests/reliability/test_reliability_doc.py
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import tests.e2e
import tests.objstore
import tests.reliability
import tests.unit
from tests.reliability.registry import KINDS, REGISTRY, Row

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _load_all_rows() -> list[Row]:
    for package in (tests.reliability, tests.e2e, tests.objstore, tests.unit):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.startswith("test_"):
                importlib.import_module(f"{package.__name__}.{module.name}")
    return list(REGISTRY)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    lines = [
        "# Reliability: what we injected, what the export did, what you see",
        "",
        "Generated from the tests that prove each row (`tests/reliability/registry.py`); a test checks",
        "this file matches them. Every row runs in CI against the local Atlas emulator; rows whose test",
        "is under `tests/e2e/` run the DAG in real Airflow with `airflow dags test` (the Celery row: on a",
        "real CeleryExecutor deployment, docs/deployment-celery.md).",
        "",
        "| kind | rows |",
        "|---|---|",
    ]
    lines += [f"| {title} | {sum(r.kind == kind for r in rows)} |" for kind, title in KINDS.items()]
    for kind, title in KINDS.items():
        lines += ["", f"## {title}", "", "| injected | what the export did | what the user sees | test |", "|---|---|---|---|"]
        for row in sorted((r for r in rows if r.kind == kind), key=lambda r: r.test):
            module, _, name = row.test.partition("::")
            path = module.replace(".", "/") + ".py"
            name = name.replace(".", "::")
            lines.append(
                f"| {_cell(row.injected)} | {_cell(row.export_did)} | {_cell(row.user_sees)} | `{path}::{name}` |"
            )
    return "\n".join(lines) + "\n"


def test_every_row_names_a_test_that_exists():
    rows = _load_all_rows()
    assert rows, "no reliability rows registered"
    for row in rows:
        module_name, _, name = row.test.partition("::")
        module = importlib.import_module(module_name)
        function = name.split("[", 1)[0]
        owner = module
        for part in function.split("."):
            owner = getattr(owner, part)
        assert callable(owner), row.test


def test_doc_matches_the_tests():
    text = render(_load_all_rows())
    if os.environ.get("UPDATE_RELIABILITY_DOC") == "1":
        DOC.write_text(text)
    assert DOC.exists() and DOC.read_text() == text, (
        "docs/reliability.md is out of date; regenerate it with "
        "UPDATE_RELIABILITY_DOC=1 .venv/bin/python -m pytest tests/reliability/test_reliability_doc.py"
    )
