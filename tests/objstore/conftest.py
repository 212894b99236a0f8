"""A real S3-compatible server for the object-store tests: moto server, an AWS connection, a bucket.

No AWS account or credentials are needed or used: the connection carries dummy keys and points
at the loopback server, and the environment is stripped of every AWS setting, so botocore can
neither find real credentials nor call the instance metadata service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The emulator, Atlas connection and fast back-off fixtures of the reliability tests, shared here.
from tests.reliability.conftest import atlas_conn, fast_retries, fresh_tokens, make_emulator  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
S3_CONN_ID = "atlasflex_test_s3"
_DUMMY_KEYS = {"aws_access_key_id": "atlasflex-test-key", "aws_secret_access_key": "atlasflex-test-secret"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # a test that talks to the S3 server is end-to-end
        if "moto_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", **_DUMMY_KEYS  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server in its own process on a free loopback port, for the whole session."""
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.objstore.moto_process"],
        cwd=REPO,
        env=_aws_free_environment(os.environ),
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise RuntimeError(f"moto server did not start (see {log.name})")
    server = S3Server(f"http://127.0.0.1:{int(line)}", process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def s3_conn(moto_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """An AWS connection (dummy keys, ``endpoint_url`` in extra) in this process and its children."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in _aws_free_environment({}).items():
        monkeypatch.setenv(name, value)
    conn = {
        "conn_type": "aws",
        "login": _DUMMY_KEYS["aws_access_key_id"],
        "password": _DUMMY_KEYS["aws_secret_access_key"],
        "extra": {"endpoint_url": moto_server.endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(conn))
    return S3_CONN_ID


@pytest.fixture
def bucket(moto_server: S3Server, s3_conn: str) -> str:
    """A new, empty bucket for one test."""
    name = f"atlasflex-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=name)
    return name


def _aws_free_environment(base: Any) -> dict[str, str]:
    """``base`` without AWS settings, with config files and the metadata service out of reach."""
    env = {k: v for k, v in dict(base).items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env
