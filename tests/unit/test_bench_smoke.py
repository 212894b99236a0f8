"""``make bench`` cannot rot: its smoke mode (tiny files, no verdicts) runs the real benchmarks end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.registry import BENCHMARKS, Row, benchmark, render

REPO = Path(__file__).resolve().parents[2]


def test_smoke_run_prints_one_table_with_every_goal():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split(" | ")[0].strip() == "goal" and "result" in lines[0]
    goals = [line.split(" | ")[0].strip() for line in lines[2:]]
    assert any(g.startswith("copy incompressible") for g in goals)
    assert any(g.startswith("copy realistic") for g in goals)
    assert any(g.startswith("peak RSS growth") for g in goals)
    assert all(line.rstrip().endswith("-") for line in lines[2:]), "a smoke run must not judge anything"


def test_the_table_accepts_rows_from_other_benchmarks():
    @benchmark("example-from-another-area")
    def example(settings: object) -> list[Row]:
        return [Row("import time", "8 ms", "airflow.sdk 40 ms", 0.2, "<= 10 ms", True)]

    try:
        table = render(example(None))
        assert "import time" in table and "PASS" in table
        with pytest.raises(ValueError, match="registered twice"):
            benchmark("example-from-another-area")(example)
    finally:
        BENCHMARKS.pop("example-from-another-area")
