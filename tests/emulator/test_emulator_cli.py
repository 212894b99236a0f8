"""The CLI starts, announces itself (text + JSON + ready file), serves, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from requests.auth import HTTPDigestAuth

REPO = Path(__file__).resolve().parents[2]
MEDIA = "application/vnd.atlas.2024-11-13+json"


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_atlasflex.testing.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _wait_for(path: Path, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = _start(
        "--port", "0", "--seed", "demo", "--clusters", "alpha,beta",
        "--snapshot-size", "1048576", "--restore-duration", "3", "--ready-file", str(ready),
    )  # fmt: skip
    try:
        info = _wait_for(ready)
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert set(info["clusters"]) == {"alpha", "beta"}
        key = info["api_key"]
        url = f"{info['base_url']}/api/atlas/v2/groups/{info['group_id']}/flexClusters/alpha"
        r = requests.get(url, auth=HTTPDigestAuth(key["public_key"], key["private_key"]), headers={"Accept": MEDIA})
        assert r.status_code == 200 and r.json()["name"] == "alpha"
        sa = info["service_account"]
        assert sa["client_id"].startswith("mdb_sa_id_")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    json_lines = [line for line in out.splitlines() if line.startswith("ATLAS_EMULATOR_JSON ")]
    assert len(json_lines) == 1
    announced = json.loads(json_lines[0][len("ATLAS_EMULATOR_JSON ") :])
    assert announced == info
    assert "group id:" in out and info["read_only_api_key"]["public_key"] in out
    assert info["clusters"]["alpha"]["newest_snapshot_id"] in out
    assert not ready.exists()


def test_cli_sigint_and_bad_size(tmp_path: Path) -> None:
    ready = tmp_path / "r.json"
    proc = _start("--ready-file", str(ready), "--snapshot-size", "200000")
    try:
        _wait_for(ready)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    bad = _start("--snapshot-size", "10")
    _, err = bad.communicate(timeout=30)
    assert bad.returncode == 2 and "minimum is" in err
