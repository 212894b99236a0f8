"""Files planted in the destination that would make a re-read unbounded: symlinks, FIFOs, huge sparse files.

Each case plants one hostile file beside a real export, then runs the scrub (or retention, or the
copy's "already present" check) in a fresh process with a generous wall-clock bound (the work
itself must take well under 2 s). The process reports what it read from its own ``/proc/self/io``:
the bound is on bytes, not on a tight timing. At 65ffb71 each case reads ``/dev/zero`` for ever,
blocks on the FIFO, or reads 64 GiB of zeros, and is stopped by the timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_atlasflex.archive.manifest import build_manifest, sidecar_paths, write_sidecars
from tests.reliability.registry import case, reliability
from tests.unit.export_fixtures import WHEN, commit_export, make_tgz, nights

REPO = Path(__file__).resolve().parents[2]
KIND = "hostile-at-rest"
MIB = 1 << 20
SPARSE_SIZE = 64 << 30
PROCESS_TIMEOUT = 60  # the process is killed past this (unbounded reads at 65ffb71)
WORK_BOUND = 10.0  # seconds the operator itself may take: generous for "under 2 s" on a loaded machine
READ_BOUND = 64 * MIB  # bytes the work may read (file reads, imports excluded)

RUNNER = """
import json, sys, time
from tests.unit.fake_context import make_context

def rchar():
    with open("/proc/self/io") as handle:
        return int(dict(line.split(": ") for line in handle.read().splitlines())["rchar"])

job = json.loads(sys.argv[1])
outcome, results = "passed", None
context = make_context()
if job["what"] == "scrub":
    from airflow_provider_atlasflex.operators.export_verify import RESULTS_XCOM_KEY, AtlasFlexExportVerifyOperator
    operator = AtlasFlexExportVerifyOperator(task_id="scrub", root=job["root"])
elif job["what"] == "retention":
    from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
    operator = AtlasFlexExportRetentionOperator(task_id="retention", root=job["root"], keep_last=14, verify="full")
else:
    from airflow.sdk import ObjectStoragePath
    from airflow_provider_atlasflex.archive.commit import refuse_unsafe_destination
    from airflow_provider_atlasflex.archive.keys import KeyRing
    from airflow_provider_atlasflex.archive.proof import prove_export
    operator = None
started, read_before = time.monotonic(), rchar()
try:
    if operator is not None:
        results = operator.execute(context)
    else:
        dst = ObjectStoragePath(job["dst"])
        refuse_unsafe_destination(dst)
        proof = prove_export(
            dst, snapshot_id=job["snapshot_id"], cluster_name="alpha", group_id=job["group_id"], keys=KeyRing()
        )
        results = {"proven": proof.proven, "reason": proof.reason}
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
    results = context["ti"].pushed.get("results")
seconds, read = time.monotonic() - started, rchar() - read_before
print(json.dumps({"outcome": outcome, "results": results, "seconds": seconds, "read": read}, default=str))
"""


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter; fail (not hang) if it does not finish in time."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, json.dumps(job)],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{job['what']} did not finish in {PROCESS_TIMEOUT} s: it read without bound or blocked")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["seconds"] < WORK_BOUND, report
    assert report["read"] < READ_BOUND, report
    return report


def claim(path: ObjectStoragePath, size: int, *, night: int = 0) -> None:
    """Sidecars for ``path`` saying it holds ``size`` bytes (a planted manifest: they are not signed)."""
    manifest = build_manifest(
        file_name=path.name,
        cluster_name="alpha",
        group_id="5f1b2c3d4e5f60718293a4b5",
        snapshot_id=f"{night:024x}",
        snapshot={"finishTime": nights(1)[0].strftime("%Y-%m-%dT%H:%M:%SZ")},
        restore_job_id="7a1b2c3d4e5f60718293a4b7",
        size=size,
        sha256=hashlib.sha256(b"\0" * size).hexdigest(),
    )
    write_sidecars(path, manifest)


def plant(root: ObjectStoragePath, kind: str) -> ObjectStoragePath:
    """A real export, plus one hostile file named like an export (with a manifest claiming 1 MiB, or not)."""
    commit_export(root, "alpha", WHEN, night=1)
    path = root / "alpha" / "2026-12-01" / "planted.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dev-zero":
        os.symlink("/dev/zero", path.path)
    elif kind == "fifo":
        os.mkfifo(path.path)
    elif kind.startswith("sparse"):
        with open(path.path, "wb") as handle:
            handle.truncate(SPARSE_SIZE)  # truncate -s 64G: no disk used, 64 GiB of zeros to read
    elif kind == "fifo-manifest":
        path.write_bytes(make_tgz(seed=7))
        os.mkfifo(sidecar_paths(path).manifest.path)
        return path
    if kind != "sparse-unproven":
        claim(path, MIB)
    return path


def planted(kind: str, injected: str, did: str, sees: str, status: str, fragment: str) -> Any:
    return case(
        "test_scrub_never_reads_a_planted_file_without_bound", kind, KIND, injected, did, sees, kind, status, fragment
    )


@pytest.mark.parametrize(
    ("kind", "status", "fragment"),
    [
        planted(
            "dev-zero",
            "A symlink to /dev/zero planted as <name>.tgz, with a manifest saying 1 MiB",
            "The scrub refused to open it (O_NOFOLLOW after lstat): nothing read; the real export was verified",
            "'<path>: unreadable: could not be read: not a regular file (a symbolic link): not opened'; the task "
            "fails without retries",
            "unreadable",
            "not a regular file (a symbolic link)",
        ),
        planted(
            "fifo",
            "A FIFO planted as <name>.tgz, with a manifest saying 1 MiB",
            "The scrub refused to open it (no blocking open): nothing read; the real export was verified",
            "'<path>: unreadable: could not be read: not a regular file (a FIFO (named pipe)): not opened'",
            "unreadable",
            "not a regular file (a FIFO (named pipe))",
        ),
        planted(
            "sparse",
            "A 64 GiB sparse file (truncate -s 64G) planted as <name>.tgz, with a manifest saying 1 MiB",
            "The scrub read 1 MiB + 1 byte (the recorded size plus one) and stopped",
            "'<path>: mismatch: ...; bytes: the manifest says 1048576, the file has 68719476736 (reading stopped "
            "after 1048577 bytes)'",
            "mismatch",
            "the file has 68719476736 (reading stopped after 1048577 bytes)",
        ),
        planted(
            "sparse-unproven",
            "A 64 GiB sparse file planted as <name>.tgz with no manifest",
            "The scrub stopped the unproven file at its first damage (byte 0: no gzip signature)",
            "'<path>: damaged: not a complete .tgz: the file does not start with the gzip signature (not a .tgz) "
            "(reading stopped there: no manifest); no manifest sidecar ...: the file is unproven'",
            "damaged",
            "does not start with the gzip signature (not a .tgz) (reading stopped there: no manifest)",
        ),
        planted(
            "fifo-manifest",
            "A FIFO planted as the <name>.tgz.json manifest of a real export",
            "The scrub refused to open the FIFO (no blocking open) and checked the export as unproven",
            "'<path>: unproven: the manifest sidecar cannot be used: ... cannot be read (not a regular file (a FIFO "
            "(named pipe)): not opened)'",
            "unproven",
            "not a regular file (a FIFO (named pipe))",
        ),
    ],
)
def test_scrub_never_reads_a_planted_file_without_bound(tmp_path, kind, status, fragment):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    path = plant(root, kind)
    report = run({"what": "scrub", "root": str(root)})
    assert report["outcome"].startswith("ExportVerificationError: 1 of 2 export(s)"), report
    by_path = {result["path"]: result for result in report["results"]}
    assert [r["status"] for p, r in by_path.items() if p != str(path)] == ["verified"]
    planted_result = by_path[str(path)]
    assert planted_result["status"] == status, planted_result
    assert fragment in "; ".join(planted_result["problems"]), planted_result
    assert planted_result.get("bytes_read", 0) <= 8 * MIB


@reliability(
    KIND,
    "A symlink to /dev/zero, a FIFO and a 64 GiB sparse file planted as the newest exports of a cluster, each "
    "with a manifest saying 1 MiB; retention runs with verify='full'",
    "Retention's scan followed no symlink and opened no FIFO; the full re-read of each candidate was bounded; "
    "the real (older) export stayed the protected one",
    "A green retention task; its log says each planted file is not verified ('unreadable: ... not a regular "
    "file' / 'mismatch: ...') and that an older export stays protected",
)
def test_retention_never_reads_a_planted_file_without_bound(tmp_path):
    root = ObjectStoragePath(f"file://{tmp_path}/exports")
    real = commit_export(root, "alpha", WHEN, night=1)
    for night, kind in enumerate(("dev-zero", "fifo", "sparse"), start=2):
        path = root / "alpha" / f"2026-12-0{night}" / f"{kind}.tgz"
        path.parent.mkdir(parents=True)
        if kind == "dev-zero":
            os.symlink("/dev/zero", path.path)
        elif kind == "fifo":
            os.mkfifo(path.path)
        else:
            with open(path.path, "wb") as handle:
                handle.truncate(SPARSE_SIZE)
        claim(path, MIB, night=night)
    report = run({"what": "retention", "root": str(root)})
    assert report["outcome"] == "passed", report
    assert real.exists() and report["results"]["deleted"] == []


@reliability(
    KIND,
    "A FIFO planted as the <file>.json sidecar of an existing dst before a copy (overwrite=False)",
    "The copy's 'already present' check refused to open the FIFO and treated dst as unproven (never blocked)",
    "The copy goes on to a temporary file and compares, as for any unproven dst",
)
def test_already_present_check_never_blocks_on_a_planted_sidecar(tmp_path):
    dst = commit_export(ObjectStoragePath(f"file://{tmp_path}/exports"), "alpha", WHEN)
    manifest = json.loads(sidecar_paths(dst).manifest.read_text())
    sidecar_paths(dst).manifest.unlink()
    os.mkfifo(sidecar_paths(dst).manifest.path)
    report = run(
        {"what": "prove", "dst": str(dst), "snapshot_id": manifest["snapshot_id"], "group_id": manifest["group_id"]}
    )
    assert report["results"] == {
        "proven": False,
        "reason": f"{sidecar_paths(dst).manifest} cannot be read (not a regular file (a FIFO (named pipe)): not opened)",
    }, report
