"""Benchmark: 500 deferred waits in one triggerer process (issue 8, goal 4).

Runs the real ``AtlasFlexRestoreJobTrigger.run()`` coroutines, all in one event loop, against the
emulator (in a separate process, so its CPU is not counted). Each job becomes ready on its 3rd
poll (polls 1 s apart): the emulator completes a job once it has answered two polls for it. No token is cached at the start. Reports wall time, CPU time,
RSS growth, errors, token requests and TCP connections, each with its target, and the same
figures for a baseline in the same run: one HTTP client per trigger (the provider before client
sharing).

    .venv/bin/python benchmarks/triggerer_scale.py [--waits 500] [--no-baseline]

``main()`` returns the rows (name, figure, baseline, target, verdict) for a ``make bench`` table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from contextlib import aclosing
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.registry import Row as TableRow
from benchmarks.registry import Settings, benchmark

MIB = 1024 * 1024
POLL_INTERVAL = 1.0
READY_ON_POLL = 3
TARGETS = {"wall_s": 4.0, "cpu_s": 3.0, "rss_growth_mib": 150.0, "errors": 0, "token_requests": 2}
Row = tuple[str, str, str, str, str]


# ---- the emulator, in its own process ------------------------------------------------------------------


def _serve_emulator(pipe: Connection, waits: int) -> None:
    from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
    from airflow_provider_atlasflex.testing.emulator import AtlasEmulator

    clusters = tuple(f"cluster-{i:02d}" for i in range(20))
    with AtlasEmulator(
        clusters=clusters, snapshots_per_cluster=1, snapshot_size=10_000, restore_duration=1e6, enforce_token_limits=True
    ) as emu:
        accepted = [0]
        cpu_at_reset = [0.0]
        server = emu._server
        assert server is not None
        original = server.process_request

        def counting(request: Any, address: Any) -> None:
            accepted[0] += 1
            original(request, address)

        server.process_request = counting  # type: ignore[method-assign,assignment]
        pipe.send({"connection": emulator_connection(emu, "service_account"), "client": emu.service_account.client_id})
        while True:
            command, argument = pipe.recv()
            if command == "jobs":
                jobs = []
                for i in range(argument):
                    cluster = clusters[i % len(clusters)]
                    jobs.append((cluster, emu.state.create_download(cluster, emu.newest_completed_snapshot_id(cluster)).id))
                pipe.send(jobs)
            elif command == "ready_on_poll":
                ids, poll = set(argument[0]), argument[1]

                def complete_when_polled(ids: set[str] = ids, poll: int = poll) -> None:
                    # A job turns COMPLETED once it has been polled poll-1 times: its next poll finds it ready.
                    # Only the exchanges logged since the last look are read, so this watcher's CPU (which the
                    # emulator's server threads share) stays small while the log grows to 1,500 entries.
                    deadline = time.time() + 120
                    counts: dict[str, int] = {}
                    seen = 0
                    while ids and time.time() < deadline:
                        fresh = emu.requests[seen:]
                        seen += len(fresh)
                        for exchange in fresh:
                            if exchange.operation == "getGroupFlexClusterBackupRestoreJob":
                                job_id = exchange.path.rsplit("/", 1)[-1]
                                counts[job_id] = counts.get(job_id, 0) + 1
                                if job_id in ids and counts[job_id] >= poll - 1:
                                    emu.complete_restore_job(job_id)
                                    ids.discard(job_id)
                        time.sleep(0.02)

                threading.Thread(target=complete_when_polled, daemon=True).start()
                pipe.send(None)
            elif command == "stats":
                gets = emu.requests.by_operation("getGroupFlexClusterBackupRestoreJob")
                per_job: dict[str, int] = {}
                for exchange in gets:
                    job_id = exchange.path.rsplit("/", 1)[-1]
                    per_job[job_id] = per_job.get(job_id, 0) + 1
                token_statuses = [x.status for x in emu.requests.by_operation("oauthToken")]
                used = resource.getrusage(resource.RUSAGE_SELF)
                pipe.send(
                    {
                        "gets": per_job,
                        "token_statuses": token_statuses,
                        "connections": accepted[0],
                        "emulator_cpu_s": used.ru_utime + used.ru_stime - cpu_at_reset[0],
                    }
                )
            elif command == "reset":
                emu.clear_requests()
                accepted[0] = 0
                used = resource.getrusage(resource.RUSAGE_SELF)
                cpu_at_reset[0] = used.ru_utime + used.ru_stime
                pipe.send(None)
            else:
                pipe.send(None)
                return


class Emulator:
    def __init__(self, waits: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve_emulator, args=(child, waits), daemon=True)
        self._process.start()
        self.info: dict[str, Any] = self._pipe.recv()

    def ask(self, command: str, argument: Any = None) -> Any:
        self._pipe.send((command, argument))
        return self._pipe.recv()

    def stop(self) -> None:
        self.ask("stop")
        self._process.join(10)


# ---- the triggerer side -------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _wait_all(jobs: list[tuple[str, str]], started: list[float]) -> list[str]:
    """Run one trigger per job in this loop; ``started`` receives the time the first one started."""
    from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger

    async def one(cluster: str, job_id: str) -> str:
        if not started:
            started.append(time.perf_counter())
        trigger = AtlasFlexRestoreJobTrigger(
            cluster_name=cluster,
            restore_job_id=job_id,
            group_id=None,
            atlas_conn_id="mongodb_atlas_default",
            poll_interval=POLL_INTERVAL,
            end_time=time.time() + 120,
        )
        async with aclosing(trigger.run()) as events:  # type: ignore[type-var]
            async for event in events:
                return str(event.payload.get("status"))
        return "no event"

    return await asyncio.gather(*(one(c, j) for c, j in jobs))


def run_once(emulator: Emulator, waits: int, token_dir: str) -> dict[str, float]:
    """One round of ``waits`` deferred waits with no token cached; figures for the table."""
    from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE

    TOKEN_CACHE.clear()
    os.environ["ATLASFLEX_TOKEN_DIR"] = token_dir
    emulator.ask("reset")
    jobs = emulator.ask("jobs", waits)
    peak = [_rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    rss_before = peak[0]
    emulator.ask("ready_on_poll", ([job_id for _, job_id in jobs], READY_ON_POLL))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    sampler.start()
    started: list[float] = []
    statuses = asyncio.run(_wait_all(jobs, started))
    wall = time.perf_counter() - started[0]  # from the first trigger's start to the loop's end
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    sampler.join()
    stats = emulator.ask("stats")
    polls = sorted(stats["gets"].values())
    return {
        "wall_s": wall,
        "cpu_s": (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
        "rss_growth_mib": (peak[0] - rss_before) / MIB,
        "errors": sum(1 for s in statuses if s != "success"),
        "token_requests": len(stats["token_statuses"]),
        "token_429s": sum(1 for s in stats["token_statuses"] if s == 429),
        "connections": stats["connections"],
        "emulator_cpu_s": stats["emulator_cpu_s"],
        "median_polls": polls[len(polls) // 2] if polls else 0,
    }


def _one_client_per_trigger() -> None:
    """The baseline: every trigger builds (and closes) its own client, as before client sharing."""
    from airflow_provider_atlasflex.hooks import shared_clients

    def lease(settings: Any) -> Any:
        shared_clients._created += 1
        return shared_clients._build(settings)

    async def release(settings: Any, client: Any) -> None:
        await client.aclose()

    shared_clients.lease = lease  # type: ignore[assignment]
    shared_clients.release = release  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-client-per-trigger baseline")
    args = parser.parse_args(argv)
    import airflow.triggers.base  # noqa: F401 - the triggerer has Airflow loaded before any trigger runs
    import httpx  # noqa: F401

    import airflow_provider_atlasflex.hooks.atlas_flex_async
    import airflow_provider_atlasflex.triggers.restore_job  # noqa: F401 - a triggerer imports the class before run()

    emulator = Emulator(args.waits)
    os.environ["AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT"] = json.dumps(emulator.info["connection"])
    try:
        with tempfile.TemporaryDirectory() as workdir:
            shared = run_once(emulator, args.waits, os.path.join(workdir, "tokens-shared"))
            baseline: dict[str, float] | None = None
            if not args.no_baseline:
                _one_client_per_trigger()
                baseline = run_once(emulator, args.waits, os.path.join(workdir, "tokens-baseline"))
    finally:
        emulator.stop()
    rows: list[Row] = []
    for name, fmt in (
        ("wall_s", "{:.2f} s"),
        ("cpu_s", "{:.2f} s"),
        ("rss_growth_mib", "{:.0f} MiB"),
        ("errors", "{:.0f}"),
        ("token_requests", "{:.0f}"),
        ("token_429s", "{:.0f}"),
        ("connections", "{:.0f}"),
        ("emulator_cpu_s", "{:.2f} s"),
        ("median_polls", "{:.0f}"),
    ):
        figure = shared[name]
        base = "-" if baseline is None else fmt.format(baseline[name])
        target = TARGETS.get(name)
        verdict = "-" if target is None else ("PASS" if figure <= target else "FAIL")
        rows.append(
            (f"triggerer {args.waits} waits: {name}", fmt.format(figure), base, "-" if target is None else f"<= {target:g}", verdict)
        )
    return rows


@benchmark("triggerer_scale")
def triggerer_scale_benchmark(settings: Settings) -> list[Row]:
    """``make bench`` rows: 500 waits against the client-per-trigger baseline (smoke: 20 waits, no verdicts)."""
    table = main(["--waits", "20"] if settings.smoke else [])
    return [
        TableRow(
            goal=what,
            figure=figure,
            baseline=f"client per trigger: {baseline}",
            ratio=_ratio(figure, baseline),
            target=target,
            passed=None if settings.smoke or verdict == "-" else verdict == "PASS",
        )
        for what, figure, baseline, target, verdict in table
    ]


def _ratio(figure: str, baseline: str) -> float | None:
    try:
        ours, theirs = float(figure.split()[0]), float(baseline.split()[0])
    except (ValueError, IndexError):
        return None
    return ours / theirs if theirs else None


if __name__ == "__main__":
    table = main()
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    header = ("what", "figure", "baseline (client per trigger)", "target", "verdict")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    for row in (header, *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    sys.exit(1 if any(row[4] == "FAIL" for row in table) else 0)
