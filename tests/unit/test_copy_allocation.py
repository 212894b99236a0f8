"""The copy loop reuses its buffers: a 256 MiB copy allocates nothing per chunk but one receive's bytes.

A regression test, not a timing. Two observable signs: tracemalloc's peak during the copy stays
within the pipeline's fixed buffers, one receive and 1 MiB (the old loop peaked at 23.8 MiB with its
default 8 MiB chunks: a pending bytearray, unconsumed_tail copies, 1 MiB inflate outputs; urllib3's
public ``read1`` returns each receive as new bytes, at most ``RECEIVE_BYTES``, freed before the
next), and the
process takes almost no minor page faults per MiB copied (old loop: 648 per MiB, from large
buffers mapped and unmapped on every chunk; now about 4). The file comes over real loopback HTTP
from a sendfile server in another process, so only the copy's own work is measured.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

from airflow_provider_atlasflex.transfers.link_response import RECEIVE_BYTES
from airflow_provider_atlasflex.transfers.resumable_download import DEFAULT_CHUNK_SIZE, SLOTS, ResumableDownload
from benchmarks.snapshot_files import snapshot_file

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def test_copy_loop_does_not_allocate_per_chunk(tmp_path):
    served = tmp_path / "served"
    big = snapshot_file(served, "incompressible", 256 * MIB)
    small = snapshot_file(served, "incompressible", MIB)
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "sendfile_server.py"), str(served)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        out = tmp_path / "copy.tgz"

        def copy(path: Path) -> str:
            download = ResumableDownload(
                f"{base}/{path.name}?Signature=alloc-test", lambda: out.open("wb"), allow_insecure_http=True
            )
            return download.run().sha256

        copy(small)  # first use: imports, the masker's patterns, the session's adapters
        tracemalloc.start()
        try:
            sha256 = copy(big)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        copy(big)
        faults_per_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 256
    finally:
        server.terminate()
        server.wait(10)
    digest = hashlib.sha256()
    with big.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    assert sha256 == digest.hexdigest()
    buffers = SLOTS * DEFAULT_CHUNK_SIZE + RECEIVE_BYTES
    assert peak < buffers + MIB, (
        f"the copy allocated {(peak - buffers) / MIB:.1f} MiB beyond its {SLOTS} buffers and one receive"
    )
    assert faults_per_mib < 64, f"{faults_per_mib:.0f} minor page faults per MiB copied: buffers are not reused"
