"""Helpers shared by the emulator tests (sessions, tokens, a fake clock)."""

from __future__ import annotations

import os
from typing import Any

import requests
from requests.auth import HTTPDigestAuth

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator

MEDIA = "application/vnd.atlas.2024-11-13+json"


class FakeClock:
    """Manually advanced wall clock, so expiry tests need no sleeping."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def digest_session(emu: AtlasEmulator, key: Any = None) -> requests.Session:
    """A session that authenticates like the Atlas SDKs do with an API key."""
    key = key or emu.api_key
    s = requests.Session()
    s.auth = HTTPDigestAuth(key.public_key, key.private_key)
    s.headers["Accept"] = MEDIA
    return s


def bearer_session(emu: AtlasEmulator, token: str) -> requests.Session:
    s = requests.Session()
    s.headers.update({"Accept": MEDIA, "Authorization": f"Bearer {token}"})
    return s


def get_token(emu: AtlasEmulator, account: Any = None) -> requests.Response:
    account = account or emu.service_account
    return requests.post(
        f"{emu.base_url}/api/oauth/token",
        auth=(account.client_id, account.client_secret),
        data={"grant_type": "client_credentials"},
        headers={"Accept": "application/json"},
    )


def post_json(session: requests.Session, url: str, body: Any) -> requests.Response:
    return session.post(url, json=body, headers={"Content-Type": MEDIA})


def current_rss() -> int | None:
    """Resident set size of this process in bytes (Linux /proc), else ``None``."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
