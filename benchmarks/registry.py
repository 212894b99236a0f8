"""The benchmark registry and the one table ``make bench`` prints.

Each benchmark is a function registered with :func:`benchmark`; it receives the run's
:class:`Settings` and returns table rows. Other areas (triggerer scale, import time, request
counts) add their own module with ``@benchmark(...)`` functions and list it in ``MODULES``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MIB = 1024 * 1024
# Modules that register benchmarks, imported by run.py in this order.
MODULES = ("benchmarks.transfer", "benchmarks.import_cost", "benchmarks.triggerer_scale")


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions; ``smoke`` runs tiny sizes and judges nothing (it only proves the code runs)."""

    smoke: bool = False
    runs: int = 3
    transfer_bytes: int = 1024 * MIB
    memory_small_bytes: int = 100 * MIB
    memory_large_bytes: int = 4096 * MIB
    work_dir: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One line of the table: a goal's figure, the baseline measured in the same run, their ratio, the verdict."""

    goal: str
    figure: str
    baseline: str
    ratio: float | None
    target: str
    passed: bool | None  # None: informational, or a smoke run


BenchmarkFunction = Callable[[Settings], list[Row]]
BENCHMARKS: dict[str, BenchmarkFunction] = {}


def benchmark(name: str) -> Callable[[BenchmarkFunction], BenchmarkFunction]:
    def register(function: BenchmarkFunction) -> BenchmarkFunction:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = function
        return function

    return register


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def render(rows: Sequence[Row]) -> str:
    header = ("goal", "figure", "baseline (same run)", "ratio", "target", "result")
    lines = [
        (r.goal, r.figure, r.baseline, "-" if r.ratio is None else f"{r.ratio:.2f}", r.target, verdict(r.passed))
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)
