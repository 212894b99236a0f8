"""``emu.issued_tokens()``: the bearer tokens the emulator handed out, for secret-leak checks."""

from __future__ import annotations

import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import get_token


def test_issued_tokens_lists_every_token_oldest_first(emu: AtlasEmulator) -> None:
    assert emu.issued_tokens() == []
    first = get_token(emu).json()["access_token"]
    second = get_token(emu).json()["access_token"]
    other = get_token(emu, emu.read_only_service_account).json()["access_token"]

    assert emu.issued_tokens() == [first, second, other]
    assert emu.issued_tokens(emu.service_account.client_id) == [first, second]
    assert emu.issued_tokens(emu.read_only_service_account.client_id) == [other]


def test_revoked_and_expired_tokens_stay_listed(emu: AtlasEmulator) -> None:
    token = get_token(emu).json()["access_token"]
    requests.post(
        f"{emu.base_url}/api/oauth/revoke",
        auth=(emu.service_account.client_id, emu.service_account.client_secret),
        data={"token": token, "token_type_hint": "access_token"},
    ).raise_for_status()
    later = get_token(emu).json()["access_token"]
    emu.expire_all_tokens()

    assert emu.issued_tokens() == [token, later]
    assert emu.active_token_count(emu.service_account.client_id) == 0


def test_refused_token_requests_issue_nothing(emu: AtlasEmulator) -> None:
    r = requests.post(
        f"{emu.base_url}/api/oauth/token",
        auth=(emu.service_account.client_id, "wrong-secret"),
        data={"grant_type": "client_credentials"},
    )
    assert r.status_code == 401
    assert emu.issued_tokens() == []
