"""Transfer speed and memory of the real operator (issue 8, goals 1 and 2).

Speed: a .tgz served over loopback by ``sendfile_server.py`` (a separate process that is not the
bottleneck), copied by ``AtlasFlexSnapshotToStorageOperator.execute()`` to file:// with every check
on (status, length, sha256, gzip and tar integrity, commit by rename), against
``curl -s URL | tee FILE | sha256sum`` on the same file in the same run, paired and alternated,
medians compared. The operator talks to the local Atlas emulator for the restore job; only the
job's snapshotUrl is pointed at the sendfile server. Each copy runs in a fresh process.

Memory: peak RSS growth of that process during execute(), over the same process idle just
before it (imports done, emulator and restore job ready), for a small and a large file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.registry import MIB, Row, Settings, benchmark, median
from benchmarks.snapshot_files import snapshot_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The copy signs its manifest; outside a task its key comes from AIRFLOW_VAR_ variables (unless the caller set them).
BENCH_SIGNING_ENV = {
    "AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID": "bench",
    "AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_BENCH": secrets.token_hex(32),
}


# ---- the copy, in a child process ------------------------------------------------------------


def copy_in_child(jobs: list[tuple[str, str]], out_dir: Path, warm_up: str) -> list[dict[str, Any]]:
    """Copy each (url, inflater) in one fresh process, after an unmeasured warm-up copy of ``warm_up``."""
    env = {**BENCH_SIGNING_ENV, **os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.transfer", "--child", json.dumps(jobs), str(out_dir), warm_up],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"copy failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _child(jobs: list[tuple[str, str]], out_dir: str, warm_up: str) -> list[dict[str, Any]]:
    import logging

    logging.disable(logging.WARNING)  # progress lines are not what is measured
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
    from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
    from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
    from airflow_provider_atlasflex.transfers import resumable_download
    from airflow_provider_atlasflex.transfers.gzip_check import inflater
    from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

    class TI:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    stage_cpu = {"write+hash": 0.0, "inflate+tar check": 0.0}

    def timed(name: str, function: Any) -> Any:
        def stage(self: Any, data: memoryview) -> None:
            started = time.thread_time()
            function(self, data)
            stage_cpu[name] += time.thread_time() - started

        return stage

    resumable_download.ResumableDownload._write_and_hash = timed(  # type: ignore[method-assign]
        "write+hash", resumable_download.ResumableDownload._write_and_hash
    )
    resumable_download.ResumableDownload._check_format = timed(  # type: ignore[method-assign]
        "inflate+tar check", resumable_download.ResumableDownload._check_format
    )
    context: Any = {"ti": TI(), "logical_date": None, "dag_run": None}
    with tempfile.TemporaryDirectory() as tokens, AtlasEmulator(clusters=("alpha",), snapshot_size=100_000,
                                                                restore_duration=0.0) as emu:
        os.environ["ATLASFLEX_TOKEN_DIR"] = tokens
        os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"] = json.dumps(emulator_connection(emu, "digest"))
        job = AtlasFlexSnapshotDownloadOperator(task_id="link", cluster_name="alpha").execute(context)
        real_get = AtlasFlexHook.get_restore_job
        served = [warm_up]

        def get_restore_job(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            answer = dict(real_get(self, *args, **kwargs))
            answer["snapshotUrl"] = served[0]  # the file the benchmark serves, not the emulator's
            return answer

        AtlasFlexHook.get_restore_job = get_restore_job  # type: ignore[method-assign]

        def copy() -> dict[str, Any]:
            return dict(AtlasFlexSnapshotToStorageOperator(
                task_id="copy", cluster_name="alpha", restore_job_id=job["id"],
                dst=f"file://{out_dir}/{{snapshot_id}}.tgz", overwrite=True, progress_interval=3600,
            ).execute(context))

        def remove(result: dict[str, Any]) -> None:
            # outside the timing: unlinking 1 GiB costs ~0.35 s, and the baseline's file is removed untimed too
            Path(result["path"].removeprefix("file://")).unlink()

        remove(copy())  # the idle process below has run the code once: imports and first-use caches are loaded
        results = []
        for url, name in jobs:
            served[0] = url
            os.environ["ATLASFLEX_INFLATER"] = name
            for key in stage_cpu:
                stage_cpu[key] = 0.0
            sampler = _RssSampler()
            idle = sampler.current()
            maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            with sampler:
                started, cpu = time.perf_counter(), time.process_time()
                main_cpu = time.thread_time()
                result = copy()
                seconds = time.perf_counter() - started
                cpu = time.process_time() - cpu
                main_cpu = time.thread_time() - main_cpu
            maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            remove(result)
            results.append({
                "seconds": seconds,
                "cpu": cpu,
                "bytes": result["bytes"],
                "sha256": result["sha256"],
                "idle_rss": idle,
                "rss_growth": max(sampler.peak - idle, maxrss_after - max(maxrss_before, idle), 0),
                "inflater": inflater()[0],
                "stage_cpu": {"reader (main thread)": main_cpu, **stage_cpu},
            })
    return results


class _RssSampler:
    """Peak resident set size, sampled every 2 ms from /proc (ru_maxrss alone would include set-up peaks)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(0.002)

    def __enter__(self) -> _RssSampler:  # noqa: PYI034
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


# ---- the baseline and the server ---------------------------------------------------------------


def curl_tee_sha256sum(url: str, out: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-c", 'set -o pipefail; curl -s "$0" | tee "$1" | sha256sum', url, str(out)],
        capture_output=True, text=True, check=True,
    )
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds, done.stdout.split()[0]


@contextmanager
def sendfile_server(root: Path) -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "sendfile_server.py"), str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _isal_installed() -> bool:
    try:
        import isal  # noqa: F401
    except ImportError:
        return False
    return True


def _served(settings: Settings, kind: str, size: int) -> tuple[Path, Path]:
    """(served directory, file) for ``kind``/``size``, linked into a directory of its own."""
    cache = Path(settings.work_dir)
    source = snapshot_file(cache, kind, size)
    root = cache / "served"
    root.mkdir(exist_ok=True)
    target = root / source.name
    if not target.exists():
        os.link(source, target)
    return root, target


# ---- the benchmarks ------------------------------------------------------------------------------


@benchmark("transfer")
def transfer(settings: Settings) -> list[Row]:
    inflaters = ["auto", "zlib"] if _isal_installed() else ["auto"]
    targets = {"incompressible": 1.0, "realistic": 0.9}
    files = {kind: _served(settings, kind, settings.transfer_bytes)[1] for kind in targets}
    root, warm_up = _served(settings, "incompressible", MIB)
    baseline: dict[str, list[float]] = {kind: [] for kind in targets}
    ours: dict[tuple[str, str], list[dict[str, Any]]] = {(k, n): [] for k in targets for n in inflaters}
    with sendfile_server(root) as base, tempfile.TemporaryDirectory(dir=settings.work_dir) as out:
        urls = {kind: f"{base}/{path.name}?Expires=4102444800&Signature=benchmark" for kind, path in files.items()}
        expected: dict[str, str] = {}
        for _ in range(settings.runs):
            cases = [(kind, name) for kind in targets for name in inflaters]
            # paired and alternated: each run measures the baseline then each copy, in fresh processes
            # (a smoke run shares one process for all copies: start-up would dominate its time)
            groups = [cases] if settings.smoke else [[case] for case in cases]
            for kind in targets:
                seconds, expected[kind] = curl_tee_sha256sum(urls[kind], Path(out) / "curl.tgz")
                baseline[kind].append(seconds)
            for group in groups:
                jobs = [(urls[kind], name) for kind, name in group]
                for (kind, name), result in zip(group, copy_in_child(jobs, Path(out), f"{base}/{warm_up.name}")):
                    if result["sha256"] != expected[kind] or result["bytes"] != files[kind].stat().st_size:
                        raise RuntimeError(f"{kind}: the copy's sha256/size differ from curl's")
                    ours[(kind, name)].append(result)
    rows: list[Row] = []
    for kind, target in targets.items():
        size = files[kind].stat().st_size
        base_rate = size / MIB / median(baseline[kind])
        for name in inflaters:
            runs = ours[(kind, name)]
            rate = size / MIB / median([r["seconds"] for r in runs])
            cpu = median([r["cpu"] for r in runs])
            stages = ", ".join(f"{k} {median([r['stage_cpu'][k] for r in runs]):.1f}" for k in runs[0]["stage_cpu"])
            judged = name == "auto" and not settings.smoke
            rows.append(Row(
                goal=f"copy {kind} {size / MIB:.0f} MiB .tgz ({runs[0]['inflater']})",
                figure=f"{rate:.0f} MiB/s (CPU s: {cpu:.1f} = {stages})",
                baseline=f"curl|tee|sha256sum {base_rate:.0f} MiB/s",
                ratio=rate / base_rate,
                target=f">= {target:.1f}x" if judged else "info",
                passed=(rate / base_rate >= target) if judged else None,
            ))
    return rows


@benchmark("memory")
def memory(settings: Settings) -> list[Row]:
    sizes = (settings.memory_small_bytes, settings.memory_large_bytes)
    paths = {size: _served(settings, "incompressible", size)[1] for size in sizes}
    root, warm_up = _served(settings, "incompressible", MIB)
    growth: dict[int, float] = {}
    idle: dict[int, float] = {}
    with sendfile_server(root) as base, tempfile.TemporaryDirectory(dir=settings.work_dir) as out:
        jobs = {size: (f"{base}/{paths[size].name}?Signature=benchmark", "auto") for size in sizes}
        # a fresh process per size: freed memory is not always given back, so sizes must not share one
        groups = [list(sizes)] if settings.smoke else [[size] for size in sizes]
        for group in groups:
            results = copy_in_child([jobs[size] for size in group], Path(out), f"{base}/{warm_up.name}")
            for size, result in zip(group, results):
                growth[size] = result["rss_growth"] / MIB
                idle[size] = result["idle_rss"] / MIB
    small, large = sizes
    judged = not settings.smoke
    rows = [
        Row(
            goal=f"peak RSS growth, {size / MIB:.0f} MiB copy",
            figure=f"{growth[size]:.1f} MiB",
            baseline=f"idle process {idle[size]:.0f} MiB RSS",
            ratio=None,
            target="<= 16 MiB" if judged else "info",
            passed=growth[size] <= 16 if judged else None,
        )
        for size in sizes
    ]
    difference = growth[large] - growth[small]
    rows.append(Row(
        goal=f"RSS growth {large / MIB:.0f} MiB vs {small / MIB:.0f} MiB",
        figure=f"{difference:+.1f} MiB",
        baseline=f"{growth[small]:.1f} MiB for {small / MIB:.0f} MiB",
        ratio=growth[large] / growth[small] if growth[small] else None,
        target="within +-2 MiB" if judged else "info",
        passed=abs(difference) <= 2 if judged else None,
    ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("JOBS", "OUT_DIR", "WARM_UP_URL"))
    args = parser.parse_args()
    jobs, out_dir, warm_up = args.child
    print(json.dumps(_child(json.loads(jobs), out_dir, warm_up)))


if __name__ == "__main__":
    main()
