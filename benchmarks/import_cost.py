"""Benchmark: what importing the provider costs a DAG file, over ``import airflow.sdk``.

Airflow parses every DAG file again and again, so whatever a DAG file imports from us is paid on
each parse. This runs ``python -X importtime`` in fresh processes, each importing ``airflow.sdk``
first and then every provider module the example DAGs import (read from dags_examples/), and sums the
cumulative time of the imports that come after ``airflow.sdk``. The baseline, measured alternately in the
same run, is a DAG of the same shape built from Airflow's stock operator and sensor modules.

    .venv/bin/python -m benchmarks.import_cost [--runs 7]     (or: make bench, one row of its table)

Goal (issue 8): our modules add at most 10 ms over ``import airflow.sdk`` (median of 7), and pull
in none of ``requests``, ``httpx``'s client stack, ``urllib3``, ``pendulum`` parsing, form or cloud SDK
modules, or the emulator.

Both sides load from bytecode, as a pip-installed provider does (pip writes the ``.pyc`` files at install):
the runs ignore ``PYTHONDONTWRITEBYTECODE`` so the warm-up run can cache our modules' bytecode, and a
module still compiled from source in every run (no writable ``__pycache__``) is named in the table.
Without that, our editable checkout was compiled from source in each run while Airflow's modules came
from their ``.pyc``: the compile, not our code, was most of the figure.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.registry import Row, Settings, benchmark

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_provider_atlasflex"


def dag_imports() -> tuple[str, ...]:
    """Every provider module the example DAGs import at module level (what each parse pays for)."""
    modules: list[str] = []
    for dag_file in sorted((REPO / "dags_examples").glob("*.py")):
        for node in ast.parse(dag_file.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                modules.append(node.module)
    return tuple(dict.fromkeys(modules))


OURS = dag_imports()
# A DAG of the same shape built from stock classes (apache-airflow-providers-standard, which Airflow 3 ships):
# operator and sensor modules a DAG commonly imports, the sensors deferrable ones. (trigger_dagrun is left
# out: it imports Airflow's core and ORM, ~400 ms, and would make any provider look cheap.)
STOCK = (
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.bash",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.latest_only",
    "airflow.providers.standard.sensors.python",
    "airflow.providers.standard.sensors.time_delta",
    "airflow.providers.standard.sensors.filesystem",
)
HEAVY = (
    "requests", "urllib3", "httpx", "pendulum.parsing", "wtforms", "flask", "isal", "botocore", "s3fs",
    f"{PACKAGE}.testing",
)
TARGET_MS = 10.0


def _env() -> dict[str, str]:
    """The environment of the timed interpreters: bytecode may be written and read, as in a real install."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def _one_run(modules: tuple[str, ...]) -> float:
    """Milliseconds spent importing ``modules`` after ``airflow.sdk``, in a fresh interpreter."""
    code = "import airflow.sdk\n" + "".join(f"import {m}\n" for m in modules)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=_env()
    )
    total_us = 0
    after_sdk = False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith("  "):  # nested: counted in its top-level import's cumulative time
            continue
        name = name.strip()
        if name == "airflow.sdk":
            after_sdk = True
            continue
        if after_sdk and cumulative.strip().isdigit():
            total_us += int(cumulative.strip())
    if not after_sdk:
        raise RuntimeError("python -X importtime printed no line for airflow.sdk")
    return total_us / 1000


def compiled_from_source(modules: tuple[str, ...]) -> list[str]:
    """Modules that importing ``modules`` loads after ``airflow.sdk`` without cached bytecode to read."""
    code = (
        "import os, sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        + "".join(f"import {m}\n" for m in modules)
        + "for name in sorted(set(sys.modules) - before):\n"
        "    spec = getattr(sys.modules[name], '__spec__', None)\n"
        "    if spec and spec.has_location and spec.origin.endswith('.py') and not (\n"
        "            spec.cached and os.path.exists(spec.cached)):\n"
        "        print('from source:', name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    # Airflow may log to stdout too (deprecation warnings of stock modules): keep only our lines.
    return [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("from source: ")]


def heavy_modules_pulled(modules: tuple[str, ...]) -> list[str]:
    """Heavy modules that importing ``modules`` loads and ``import airflow.sdk`` alone does not."""
    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"heavy = {HEAVY!r}\n"
        "print('\\n'.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy "
        "or any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if line]


def rows(runs: int = 7, smoke: bool = False) -> list[Row]:
    """Table rows: our import cost and the stock DAG's, measured alternately in the same run, and what we pull."""
    ours_ms: list[float] = []
    stock_ms: list[float] = []
    _one_run(OURS)  # write and warm the .pyc files and the page cache for both sides before timing
    _one_run(STOCK)
    from_source = compiled_from_source(OURS) + compiled_from_source(STOCK)
    for _ in range(runs):  # interleaved, so a burst of load on this shared machine hits both sides
        ours_ms.append(_one_run(OURS))
        stock_ms.append(_one_run(STOCK))
    ours, stock = statistics.median(ours_ms), statistics.median(stock_ms)
    heavy = heavy_modules_pulled(OURS)
    judged = not smoke
    unfair = f" ({len(from_source)} module(s) compiled from source each run: {', '.join(from_source[:3])})"
    return [
        Row(
            goal=f"DAG parse: {len(OURS)} provider modules the example DAGs import, over airflow.sdk (median of {runs})",
            figure=f"{ours:.1f} ms" + (unfair if from_source else ""),
            baseline=f"{len(STOCK)} stock operator/sensor modules: {stock:.1f} ms",
            ratio=ours / stock if stock else None,
            target=f"<= {TARGET_MS:g} ms",
            passed=(ours <= TARGET_MS) if judged else None,
        ),
        Row(
            goal="DAG parse: heavy modules pulled beyond airflow.sdk",
            figure=str(len(heavy)) + (f" ({', '.join(heavy[:4])}...)" if heavy else ""),
            baseline="-",
            ratio=None,
            target="0",
            passed=(not heavy) if judged else None,
        ),
    ]


@benchmark("import_cost")
def import_cost_benchmark(settings: Settings) -> list[Row]:
    return rows(runs=max(settings.runs, 7) if not settings.smoke else 1, smoke=settings.smoke)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.registry import render

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    table = rows(args.runs)
    print(render(table))
    return 0 if all(row.passed for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
