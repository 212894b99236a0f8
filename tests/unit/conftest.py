"""Fixtures for tests that need no emulator and no metadata database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

BASE = "https://atlas.test"
GROUP = "5f1b2c3d4e5f60718293a4b5"
SNAP = "6a1b2c3d4e5f60718293a4b6"
SNAP_OLD = "6a1b2c3d4e5f60718293a4b0"
JOB = "7a1b2c3d4e5f60718293a4b7"
CLUSTER = "alpha"
CLUSTER_URL = f"{BASE}/api/atlas/v2/groups/{GROUP}/flexClusters/{CLUSTER}"
SA_ID = "mdb_sa_id_0123456789abcdef01234567"
SA_SECRET = "mdb_sa_sk_s3cr3t-value-never-logged"
PRIVATE_KEY = "private-key-7d4f0c2a-never-logged"


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = "mongodb_atlas_default", **fields: Any) -> None:
    """Define an Airflow connection through its environment variable (no metadata database)."""
    conn = {"conn_type": "mongodb_atlas", "host": BASE, "extra": {"group_id": GROUP}}
    conn.update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def digest_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, login="pubkey01", password=PRIVATE_KEY, extra={"group_id": GROUP, "max_retries": 3})


@pytest.fixture
def sa_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, login=SA_ID, password=SA_SECRET, extra={"group_id": GROUP, "max_retries": 3})


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the hook's and the download's back-off delays instead of sleeping."""
    delays: list[float] = []
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.transfers import resumable_download

    monkeypatch.setattr(AtlasFlexHook, "_sleep", lambda self, seconds, reason="": delays.append(seconds))
    monkeypatch.setattr(resumable_download.time, "sleep", lambda seconds: delays.append(seconds))
    return delays


def job(status: str = "COMPLETED", *, url: bool = True, expires: str = "2099-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": JOB,
        "snapshotId": SNAP,
        "deliveryType": "DOWNLOAD",
        "status": status,
        "instanceName": CLUSTER,
        "projectId": GROUP,
    }
    if url:
        body["snapshotUrl"] = f"https://download.test/{JOB}.tgz?Signature=sig-secret-123&Expires=4102444800"
        body["expirationDate"] = expires
    body.update(extra)
    return body


JSON_HEADERS = {"Content-Type": "application/vnd.atlas.2024-11-13+json;charset=utf-8"}


def api_error(status: int, code: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    body = {"error": status, "errorCode": code, "detail": detail, "reason": "x", "parameters": []}
    body.update(extra)
    return {"status_code": status, "json": body, "headers": {"Content-Type": "application/json", "X-Error-Code": code}}


Responder = Callable[..., Any]
