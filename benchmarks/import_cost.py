"""Benchmark: what importing the provider costs a DAG file, over ``import airflow.sdk``.

Airflow parses every DAG file again and again, so whatever a DAG file imports from us is paid on
each parse. This runs ``python -X importtime`` in fresh processes, each importing ``airflow.sdk``
first and then the modules the example DAG imports, and sums the cumulative time of the imports
that come after ``airflow.sdk``. The baseline, measured in the same run, is a DAG of the same shape
built from Airflow's own stock classes (an operator, a sensor and a trigger module).

    .venv/bin/python benchmarks/import_cost.py [--runs 7]

Goal (issue 8): our modules add at most 10 ms over ``import airflow.sdk`` (median of 7), and pull
in none of ``requests``, ``httpx``'s client stack, ``urllib3`` or the emulator.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import dataclass

OURS = (
    "airflow_provider_atlasflex.operators.snapshot_download",
    "airflow_provider_atlasflex.sensors.snapshot_url",
    "airflow_provider_atlasflex.transfers.snapshot_to_storage",
)
# A DAG of the same shape with stock classes: an operator module, a sensor module, a trigger module.
STOCK = (
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.sensors.python",
    "airflow.providers.standard.triggers.temporal",
)
HEAVY = ("requests", "urllib3", "pendulum.parsing", "airflow_provider_atlasflex.testing")
TARGET_MS = 10.0


@dataclass(frozen=True)
class ImportCost:
    median_ms: float
    runs_ms: tuple[float, ...]


def _one_run(modules: tuple[str, ...]) -> float:
    """Milliseconds spent importing ``modules`` after ``airflow.sdk``, in a fresh interpreter."""
    code = "import airflow.sdk\n" + "".join(f"import {m}\n" for m in modules)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
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


def import_cost(modules: tuple[str, ...], runs: int) -> ImportCost:
    samples = tuple(_one_run(modules) for _ in range(runs))
    return ImportCost(statistics.median(samples), samples)


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


def rows(runs: int = 7) -> list[tuple[str, str, str, str, str]]:
    """Benchmark table rows: (goal, figure, baseline, ratio, verdict)."""
    ours = import_cost(OURS, runs)
    stock = import_cost(STOCK, runs)
    heavy = heavy_modules_pulled(OURS)
    return [
        (
            "DAG parse: import cost over airflow.sdk (median)",
            f"{ours.median_ms:.1f} ms",
            f"stock operator+sensor+trigger: {stock.median_ms:.1f} ms",
            f"{ours.median_ms / stock.median_ms:.2f}x" if stock.median_ms else "n/a",
            "PASS" if ours.median_ms <= TARGET_MS else f"FAIL (> {TARGET_MS:g} ms)",
        ),
        (
            "DAG parse: heavy modules pulled",
            str(len(heavy)) + (f" ({', '.join(heavy[:4])}...)" if heavy else ""),
            "0",
            "-",
            "PASS" if not heavy else "FAIL",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    table = rows(args.runs)
    print("| goal | figure | baseline | ratio | verdict |\n|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 0 if all(row[-1] == "PASS" for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
