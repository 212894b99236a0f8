"""Shared fixtures for the reliability tests: an emulator factory, connections, fast back-off, secret checks.

Nothing here is autouse: a module opts in (``pytestmark = pytest.mark.usefixtures(...)``), so
tests that want the provider's real back-off keep it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_atlasflex.hooks.api_protocol import RetryPolicy
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHookBase
from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.transfers import resumable_download


def reset_token_cache() -> None:
    """Forget every cached service-account token (without revoking: each test has its own emulator)."""
    clear = getattr(TOKEN_CACHE, "clear", None)
    if callable(clear):
        clear()
    else:  # pragma: no cover - older TokenCache
        TOKEN_CACHE._tokens.clear()
        TOKEN_CACHE._revokers.clear()


@pytest.fixture
def fresh_tokens() -> Iterator[None]:
    reset_token_cache()
    yield
    reset_token_cache()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off of milliseconds instead of seconds; a server's Retry-After is still waited for in full.

    The hook's policy keeps the connection's max_retries; the download's pause between attempts
    shrinks to ~10 ms.
    """

    def policy(self: AtlasFlexHookBase, config: Any) -> RetryPolicy:
        return self._retry_policy or RetryPolicy(max_retries=config.max_retries, backoff_base=0.01, backoff_max=0.05)

    monkeypatch.setattr(AtlasFlexHookBase, "_policy_for", policy)
    monkeypatch.setattr(resumable_download, "random", SimpleNamespace(uniform=lambda low, high: 0.01))


class FakeClock:
    """A wall clock that starts now and moves only when told (Atlas dates stay realistic)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., AtlasEmulator]]:
    """Start emulators with any settings; all are stopped after the test."""
    started: list[AtlasEmulator] = []

    def make(**kwargs: Any) -> AtlasEmulator:
        kwargs.setdefault("clusters", ("alpha", "beta"))
        kwargs.setdefault("snapshot_size", 400_000)
        kwargs.setdefault("restore_duration", 0.0)
        kwargs.setdefault("seed", "reliability")
        emu = AtlasEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., AtlasEmulator]) -> AtlasEmulator:
    """Two flex clusters (alpha, beta), 400 kB snapshots, restore jobs ready at once."""
    return make_emulator()


@pytest.fixture
def atlas_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``atlas_conn(emu, auth, **extra)`` points mongodb_atlas_default at the emulator."""

    def connect(
        emulator: AtlasEmulator,
        auth: str = "digest",
        *,
        login: str | None = None,
        password: str | None = None,
        **extra: Any,
    ) -> None:
        fields = emulator_connection(emulator, auth, **extra)
        if login is not None:
            fields["login"] = login
        if password is not None:
            fields["password"] = password
        monkeypatch.setenv("AIRFLOW_CONN_MONGODB_ATLAS_DEFAULT", json.dumps(fields))

    return connect


def secrets_of(emulator: AtlasEmulator, *extra: str) -> list[str]:
    """Every credential the run could have leaked: keys, client secrets, bearer tokens, link queries."""
    found = [
        emulator.api_key.private_key,
        emulator.read_only_api_key.private_key,
        emulator.service_account.client_secret,
        emulator.read_only_service_account.client_secret,
        "Signature=",
        *extra,
    ]
    for exchange in emulator.requests:
        authorization = exchange.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            found.append(authorization.split(" ", 1)[1])
        if exchange.operation == "oauthToken" and exchange.status == 200:
            found.append(exchange.json()["access_token"])
        if exchange.operation == "snapshotFile":
            found.append(exchange.query.get("Signature", ""))
    for cluster in emulator.clusters:
        for job in emulator.restore_jobs(cluster):
            if job.get("snapshotUrl"):
                found.append(urlsplit(job["snapshotUrl"]).query)
    return sorted({s for s in found if s})


@pytest.fixture
def no_secret_leaked(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """``no_secret_leaked(emu, exc, *extra_secrets)``: asserts no secret is in the error, the logs or the output.

    Provider logs reach ``caplog`` (stdlib logging) or stdout (Airflow's structlog); both are read.
    The emulator's own request log (the "server side") is left out. Returns the combined text.
    """
    caplog.set_level(logging.INFO)

    def check(emulator: AtlasEmulator, exc: BaseException | None = None, *extra: str) -> str:
        out = capsys.readouterr()
        logs = "\n".join(
            r.getMessage() for r in caplog.records if not r.name.startswith("airflow_provider_atlasflex.testing")
        )
        texts = {"exception": str(exc) if exc is not None else "", "logs": logs, "stdout": out.out, "stderr": out.err}
        for secret in secrets_of(emulator, *extra):
            for where, text in texts.items():
                assert secret not in text, f"a secret ({secret[:6]}...) leaked into the {where}"
        return "\n".join(texts.values())

    return check


def files_under(root: Any) -> list[str]:
    """Every file below ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
