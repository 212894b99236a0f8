"""Faults injected into full nightly runs in real Airflow; each run must still succeed, byte-identical.

The DAG runs through ``airflow dags test --use-executor`` (LocalExecutor: each task in its own
supervised process, against a real Execution API server; a real triggerer when deferrable), so
retries, token refreshes and resumed downloads happen across real task processes and the host-wide
token store, not inside one test process. See ``tests/e2e/airflow_runs.py``.
"""

from __future__ import annotations

import threading
import time

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import CLUSTERS, RESTORE_SECONDS, assert_exported_identically, run_nightly, task_log_files
from tests.e2e.conftest import read_xcoms
from tests.reliability.registry import reliability

DOWNLOAD_POST = "downloadGroupFlexClusterBackup"
JOB_GET = "getGroupFlexClusterBackupRestoreJob"


def one_restore_job_per_cluster(emu: AtlasEmulator) -> None:
    counts = {c: len(emu.restore_jobs(c)) for c in CLUSTERS}
    assert counts == {c: 1 for c in CLUSTERS}, f"restore jobs per cluster: {counts}"


@reliability(
    "fault-survived",
    "In a real nightly run (LocalExecutor, API key): the download POST of each cluster answers 429 with "
    "Retry-After: 1, then 503 after it created the restore job; the restore-job GET answers 429 with "
    "Retry-After: 1, then 503",
    "Waited the Retry-After, backed off on the 503s, found the job the failed POST had created instead of "
    "requesting another, and polled on",
    "The run succeeds with byte-identical files and one restore job per cluster; the task logs show "
    "'Retrying Atlas request in ... s'",
)
def test_429_and_503_on_the_download_post_and_the_restore_job_get(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=2.0) as emu:
        faults = []
        for cluster in CLUSTERS:
            faults += [
                emu.faults.add(operation=DOWNLOAD_POST, cluster=cluster, status=429, retry_after=1, nth=1),
                emu.faults.add(operation=DOWNLOAD_POST, cluster=cluster, status=503, nth=2, after_effect=True),
                emu.faults.add(operation=JOB_GET, cluster=cluster, status=429, retry_after=1, nth=1),
                emu.faults.add(operation=JOB_GET, cluster=cluster, status=503, nth=2),
            ]
        result = run_nightly(sandbox, emu, exports, auth="digest", deferrable=False)
        assert result.succeeded, result.tail()
        assert [f.fired for f in faults] == [1] * len(faults), "a fault never fired: nothing was proven"
        assert_exported_identically(emu, exports)
        one_restore_job_per_cluster(emu)
        for cluster in CLUSTERS:
            posts = [x for x in emu.requests.by_operation(DOWNLOAD_POST) if x.principal and f"/flexClusters/{cluster}/" in x.path]
            assert [x.status for x in posts] == [429, 503], "the POST was re-sent after the job existed"
            limited, acted = posts
            assert acted.started_at - (limited.started_at + limited.duration) >= 1.0, "Retry-After not waited"
            gets = [x.status for x in emu.requests.by_operation(JOB_GET) if x.principal and f"/flexClusters/{cluster}/" in x.path]
            assert gets[:3] == [429, 503, 200], gets
    logs = {key: "".join(p.read_text() for p in paths) for key, paths in task_log_files(sandbox).items()}
    assert all("Retrying Atlas request in" in logs[("export_cluster.request_link", i)] for i in range(len(CLUSTERS)))


@reliability(
    "fault-survived",
    "In a real nightly run (LocalExecutor, service account, sensor deferred to a real triggerer): every "
    "bearer token is revoked in Atlas right after both restore jobs were requested",
    "The next task process or trigger got 401 for the token in the host's shared store, dropped it, "
    "fetched one new token and repeated the call",
    "The run succeeds with byte-identical files and one restore job per cluster; no more than a few tokens issued",
)
def test_bearer_tokens_revoked_mid_run(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=2_000_000, restore_duration=RESTORE_SECONDS) as emu:
        revoked_at: list[float] = []
        stop = threading.Event()

        def revoke_once_both_jobs_exist() -> None:
            while not stop.wait(0.05):
                if all(emu.restore_jobs(c) for c in CLUSTERS):
                    emu.revoke_all_tokens()
                    revoked_at.append(time.time())
                    return

        watcher = threading.Thread(target=revoke_once_both_jobs_exist, daemon=True)
        watcher.start()
        try:
            result = run_nightly(sandbox, emu, exports, auth="service_account", deferrable=True)
        finally:
            stop.set()
            watcher.join(5)
        assert result.succeeded, result.tail()
        assert revoked_at, "the tokens were never revoked: nothing was proven"
        assert_exported_identically(emu, exports)
        one_restore_job_per_cluster(emu)
        after = [x for x in emu.requests if x.started_at >= revoked_at[0] and x.operation not in (None, "snapshotFile")]
        refused = [x for x in after if x.status == 401 and x.operation != "oauthToken"]
        assert refused, "no call was made with the revoked token: nothing was proven"
        tokens = emu.issued_tokens()
        assert 2 <= len(tokens) <= 4, f"{len(tokens)} tokens issued"
        # after each refusal the same operation succeeded with a fresh token
        for x in refused:
            later = [y for y in after if y.operation == x.operation and y.path == x.path and y.started_at > x.started_at]
            assert any(y.status == 200 for y in later), f"{x.operation} never succeeded after its 401"


@reliability(
    "fault-survived",
    "In a real nightly run (LocalExecutor, API key): each cluster's 20 MB download connection is cut twice "
    "part-way, 9 MB into each response",
    "Resumed each time with 'Range: bytes=N-' from the last byte it had written (whole 8 MiB chunks)",
    "The run succeeds with byte-identical files; each copy reports attempts=3, resumes=2; one restore job per cluster",
)
def test_download_cut_twice_in_a_real_run(sandbox, tmp_path):
    exports = tmp_path / "exports"
    size, cut = 20_000_000, 9_000_000  # the operator writes 8 MiB chunks: a cut must come after one
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=size, restore_duration=2.0) as emu:
        faults = [
            emu.faults.add(operation="snapshotFile", cluster=c, cut_after_bytes=cut, nth=n) for c in CLUSTERS for n in (1, 2)
        ]
        result = run_nightly(sandbox, emu, exports, auth="digest", deferrable=False)
        assert result.succeeded, result.tail()
        assert [f.fired for f in faults] == [1] * len(faults), "a cut never happened: nothing was proven"
        assert_exported_identically(emu, exports)
        one_restore_job_per_cluster(emu)
        for cluster in CLUSTERS:
            gets = [x for x in emu.requests.by_operation("snapshotFile") if f"/{cluster}-" in x.path and x.method == "GET"]
            assert len(gets) == 3 and gets[0].headers.get("Range") is None
            assert [x.response_body_length for x in gets[:2]] == [cut, cut]
            offsets = [int(x.headers["Range"].removeprefix("bytes=").removesuffix("-")) for x in gets[1:]]
            received = 0
            for offset, before in zip(offsets, gets[:2]):
                received += before.response_body_length
                assert 0 < offset <= received, f"resumed at {offset} after receiving {received} bytes"
            assert offsets[0] < offsets[1] and gets[2].status == 206
            assert gets[2].response_body_length == size - offsets[1]
    copies = read_xcoms(sandbox, "export_cluster.copy_to_storage")
    assert sorted(copies) == [0, 1]
    assert all((c["attempts"], c["resumes"], c["restarts"]) == (3, 2, 0) for c in copies.values()), copies
