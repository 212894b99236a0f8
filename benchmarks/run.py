"""``make bench``: run the registered benchmarks and print ONE table (goal, figure, baseline, ratio, PASS/FAIL).

    .venv/bin/python -m benchmarks.run                    # full sizes (1 GiB copies, 100 MiB and 4 GiB memory)
    .venv/bin/python -m benchmarks.run --smoke            # tiny sizes, no verdicts (what CI runs)
    .venv/bin/python -m benchmarks.run --only transfer --transfer-mib 256 --runs 5

Sizes also come from the environment: ATLASFLEX_BENCH_TRANSFER_MIB, ATLASFLEX_BENCH_MEMORY_SMALL_MIB,
ATLASFLEX_BENCH_MEMORY_LARGE_MIB, ATLASFLEX_BENCH_RUNS; generated files are cached in
ATLASFLEX_BENCH_DIR (default ~/.cache/atlasflex-bench). Exits 1 when a goal FAILs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.registry import BENCHMARKS, MIB, MODULES, Row, Settings, render


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def parse(argv: list[str] | None = None) -> tuple[Settings, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run, no verdicts")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--runs", type=int, default=_env_int("ATLASFLEX_BENCH_RUNS", 3))
    parser.add_argument("--transfer-mib", type=int, default=_env_int("ATLASFLEX_BENCH_TRANSFER_MIB", 1024))
    parser.add_argument("--memory-small-mib", type=int, default=_env_int("ATLASFLEX_BENCH_MEMORY_SMALL_MIB", 100))
    parser.add_argument("--memory-large-mib", type=int, default=_env_int("ATLASFLEX_BENCH_MEMORY_LARGE_MIB", 4096))
    parser.add_argument("--work-dir", default=os.environ.get("ATLASFLEX_BENCH_DIR", ""))
    args = parser.parse_args(argv)
    if args.smoke:
        settings = Settings(smoke=True, runs=1, transfer_bytes=2 * MIB, memory_small_bytes=MIB,
                            memory_large_bytes=3 * MIB, work_dir=args.work_dir)
    else:
        settings = Settings(
            runs=args.runs,
            transfer_bytes=args.transfer_mib * MIB,
            memory_small_bytes=args.memory_small_mib * MIB,
            memory_large_bytes=args.memory_large_mib * MIB,
            work_dir=args.work_dir or str(Path.home() / ".cache" / "atlasflex-bench"),
        )
    return settings, args.only


def main(argv: list[str] | None = None) -> int:
    settings, only = parse(argv)
    for module in MODULES:
        importlib.import_module(module)
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; registered: {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    scratch = None
    if not settings.work_dir:  # smoke runs leave nothing behind
        scratch = tempfile.mkdtemp(prefix="atlasflex-bench-")
        settings = Settings(**{**settings.__dict__, "work_dir": scratch})
    rows: list[Row] = []
    try:
        for name, function in BENCHMARKS.items():
            if not only or name in only:
                # stdout carries only the table: what a benchmark prints or logs (the triggerer's log lines) goes to stderr
                with contextlib.redirect_stdout(sys.stderr):
                    rows += function(settings)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(render(rows))
    return 1 if any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
