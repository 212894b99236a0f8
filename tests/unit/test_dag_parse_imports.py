"""DAG files import us on every parse: what the example DAGs import must not pull heavy modules (issue 8, goal 3).

Each example DAG's provider imports run in a fresh interpreter after ``import airflow.sdk``, and so does
the DAG file itself (which also builds the operators); the modules that became loaded are compared with
a list of heavy ones (HTTP client stacks, form libraries, cloud SDKs, the emulator, the trigger
machinery) and with our own implementation modules (hooks, copy, commit, manifest, checks), which a
task imports when it runs. This is a regression test, not a timing: the figure is in
``benchmarks/import_cost.py`` (``make bench``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags_examples"
PACKAGE = "airflow_provider_atlasflex"
# Loaded only when a task runs (hooks) or defers (triggers), never while a DAG file is parsed.
HEAVY = (
    "requests",
    "urllib3",
    "httpx",
    "pendulum.parsing",
    "wtforms",
    "flask",
    "isal",
    "botocore",
    "s3fs",
    f"{PACKAGE}.testing",
    f"{PACKAGE}.triggers",
    "airflow.triggers",
    # Our implementation modules: imported inside execute()/poke() and the helpers they call. What an
    # operator's signature needs comes from airflow_provider_atlasflex.defaults.
    f"{PACKAGE}.hooks",
    f"{PACKAGE}.restore_jobs",
    f"{PACKAGE}.freshness",
    f"{PACKAGE}.archive.holdings",
    f"{PACKAGE}.restore_targets",
    f"{PACKAGE}.transfers.resumable_download",
    f"{PACKAGE}.transfers.download_output",
    f"{PACKAGE}.transfers.download_terms",
    f"{PACKAGE}.transfers.progress_log",
    f"{PACKAGE}.transfers.link_response",
    f"{PACKAGE}.transfers.header_deadline",
    f"{PACKAGE}.transfers.copy_pipeline",
    f"{PACKAGE}.archive.gzip_walker",
    f"{PACKAGE}.archive.tar_walker",
    f"{PACKAGE}.archive.at_rest",
    f"{PACKAGE}.transfers.gzip_check",
    f"{PACKAGE}.transfers.tar_check",
    f"{PACKAGE}.transfers.link_policy",
    f"{PACKAGE}.transfers.link_secrecy",
    f"{PACKAGE}.archive.commit",
    f"{PACKAGE}.archive.local_disk",
    f"{PACKAGE}.archive.lock",
    f"{PACKAGE}.archive.partials",
    f"{PACKAGE}.archive.object_store_commit",
    f"{PACKAGE}.archive.s3_parts",
    f"{PACKAGE}.archive.manifest",
    f"{PACKAGE}.archive.check",
    f"{PACKAGE}.archive.scan",
    f"{PACKAGE}.archive.storage_url",
    f"{PACKAGE}.archive.deletion",
    f"{PACKAGE}.transfers.destination",
    f"{PACKAGE}.transfers.snapshot_links",
    f"{PACKAGE}.transfers.asset_events",
)


def provider_imports(dag_file: Path) -> list[str]:
    """The provider modules a DAG file imports at module level (what every parse pays for)."""
    modules = []
    for node in ast.parse(dag_file.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names if alias.name.startswith(PACKAGE)]
    return modules


def newly_loaded_heavy(modules: list[str], dag_file: Path | None = None) -> list[str]:
    """Heavy modules loaded by importing ``modules`` (then running ``dag_file``, if given) after airflow.sdk."""
    code = (
        "import importlib, json, runpy, sys\n"
        "import airflow.sdk\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        + (f"runpy.run_path({str(dag_file)!r})\n" if dag_file else "")
        + f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before\n"
        "                        if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


DAG_FILES = sorted(p for p in DAGS.glob("*.py") if p.name != "__init__.py")


def test_every_example_dag_imports_the_provider() -> None:
    assert DAG_FILES, f"no example DAGs found under {DAGS}"
    assert all(provider_imports(p) for p in DAG_FILES), "an example DAG imports nothing from the provider"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_parse_loads_no_heavy_module(dag_file: Path) -> None:
    loaded = newly_loaded_heavy(provider_imports(dag_file))
    assert loaded == [], (
        f"parsing {dag_file.name} loads {loaded}: import these inside execute()/the methods that use them"
    )


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_parse_builds_its_operators_without_heavy_modules(dag_file: Path) -> None:
    """The DAG file run as the parser runs it: building the operators (their __init__) loads nothing heavy either."""
    loaded = newly_loaded_heavy([], dag_file)
    assert loaded == [], (
        f"running {dag_file.name} loads {loaded}: import these inside execute()/the methods that use them, "
        "and take signature defaults from airflow_provider_atlasflex.defaults"
    )
