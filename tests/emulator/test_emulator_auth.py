"""Digest API keys, OAuth service accounts, token limits and roles."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import MEDIA, FakeClock, bearer_session, digest_session, get_token, post_json


def _challenge(r: requests.Response) -> dict[str, str]:
    value = r.headers["WWW-Authenticate"]
    assert value.startswith("Digest ")
    return requests.utils.parse_dict_header(value[len("Digest ") :])  # type: ignore[attr-defined]


def _digest_header(key: object, method: str, uri: str, nonce: str, nc: int, realm: str = "MMS Public API") -> str:
    user, password = key.public_key, key.private_key  # type: ignore[attr-defined]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce = "0a4f113b"
    ncs = f"{nc:08x}"
    resp = hashlib.md5(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5, '
        f'qop=auth, nc={ncs}, cnonce="{cnonce}", response="{resp}"'
    )


def test_unauthenticated_gets_digest_challenge(emu: AtlasEmulator) -> None:
    r = requests.get(emu.cluster_url("alpha"), headers={"Accept": MEDIA})
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/json" and r.headers["X-Error-Code"] == "UNAUTHORIZED"
    assert r.json() == {
        "detail": "You are not authorized for this resource.",
        "error": 401,
        "errorCode": "UNAUTHORIZED",
        "parameters": [],
        "reason": "Unauthorized",
    }
    ch = _challenge(r)
    assert ch["realm"] == "MMS Public API" and ch["qop"] == "auth" and ch["algorithm"] == "MD5"
    assert len(ch["nonce"]) >= 16
    # The documented Atlas challenge: no domain, and no stale flag unless the nonce was stale.
    assert "domain" not in ch and "stale" not in ch
    assert r.headers["WWW-Authenticate"] == (
        f'Digest realm="MMS Public API", nonce="{ch["nonce"]}", algorithm=MD5, qop="auth"'
    )


def test_requests_digest_auth(emu: AtlasEmulator) -> None:
    s = digest_session(emu)
    for _ in range(3):
        assert s.get(emu.cluster_url("alpha")).status_code == 200
    # one challenge, then the nonce is reused with an increasing nc
    statuses = [x.status for x in emu.requests]
    assert statuses == [401, 200, 200, 200]


def test_httpx_digest_auth(emu: AtlasEmulator) -> None:
    auth = httpx.DigestAuth(emu.api_key.public_key, emu.api_key.private_key)
    with httpx.Client(auth=auth, headers={"Accept": MEDIA}) as client:
        for _ in range(3):
            assert client.get(emu.cluster_url("alpha")).status_code == 200
        sid = emu.newest_completed_snapshot_id("alpha")
        r = client.post(
            emu.cluster_url("alpha") + "/backup/download",
            json={"snapshotId": sid},
            headers={"Content-Type": MEDIA},
        )
        assert r.status_code == 200


def test_wrong_password_and_unknown_user(emu: AtlasEmulator) -> None:
    bad = type(emu.api_key)(emu.api_key.public_key, "wrong")
    assert digest_session(emu, bad).get(emu.cluster_url("alpha")).status_code == 401
    ghost = type(emu.api_key)("nobody", "x")
    assert digest_session(emu, ghost).get(emu.cluster_url("alpha")).status_code == 401


def test_nonce_must_be_ours_and_nc_must_increase(emu: AtlasEmulator) -> None:
    url = emu.cluster_url("alpha")
    uri = url[len(emu.base_url) :]
    forged = _digest_header(emu.api_key, "GET", uri, "not-issued-by-server", 1)
    r = requests.get(url, headers={"Accept": MEDIA, "Authorization": forged})
    assert r.status_code == 401
    nonce = _challenge(requests.get(url, headers={"Accept": MEDIA}))["nonce"]
    ok = _digest_header(emu.api_key, "GET", uri, nonce, 1)
    assert requests.get(url, headers={"Accept": MEDIA, "Authorization": ok}).status_code == 200
    replay = requests.get(url, headers={"Accept": MEDIA, "Authorization": ok})
    assert replay.status_code == 401 and _challenge(replay)["stale"] == "true"
    nxt = _digest_header(emu.api_key, "GET", uri, nonce, 2)
    assert requests.get(url, headers={"Accept": MEDIA, "Authorization": nxt}).status_code == 200
    # the digest must cover this request's URI
    other = _digest_header(emu.api_key, "GET", "/somewhere/else", nonce, 3)
    assert requests.get(url, headers={"Accept": MEDIA, "Authorization": other}).status_code == 401


def test_stale_nonce(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    url = emu.cluster_url("alpha")
    uri = url[len(emu.base_url) :]
    nonce = _challenge(requests.get(url, headers={"Accept": MEDIA}))["nonce"]
    assert (
        requests.get(
            url, headers={"Accept": MEDIA, "Authorization": _digest_header(emu.api_key, "GET", uri, nonce, 1)}
        ).status_code
        == 200
    )
    clock.advance(301)
    r = requests.get(url, headers={"Accept": MEDIA, "Authorization": _digest_header(emu.api_key, "GET", uri, nonce, 2)})
    assert r.status_code == 401 and _challenge(r)["stale"] == "true"
    # both client libraries recover transparently from a stale nonce
    s = digest_session(emu)
    assert s.get(url).status_code == 200
    clock.advance(301)
    assert s.get(url).status_code == 200
    with httpx.Client(
        auth=httpx.DigestAuth(emu.api_key.public_key, emu.api_key.private_key), headers={"Accept": MEDIA}
    ) as c:
        assert c.get(url).status_code == 200
        clock.advance(301)
        assert c.get(url).status_code == 200


def test_oauth_token_and_bearer(emu: AtlasEmulator) -> None:
    r = get_token(emu)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3600 and len(tok["access_token"]) > 30
    assert get_token(emu).json()["access_token"] != tok["access_token"]
    s = bearer_session(emu, tok["access_token"])
    assert s.get(emu.cluster_url("alpha")).status_code == 200
    sid = emu.newest_completed_snapshot_id("alpha")
    assert post_json(s, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid}).status_code == 200
    assert emu.token_requests(emu.service_account.client_id) == 2
    assert emu.active_token_count(emu.service_account.client_id) == 2


def test_oauth_bad_requests(emu: AtlasEmulator) -> None:
    sa = emu.service_account
    url = f"{emu.base_url}/api/oauth/token"
    r = requests.post(url, auth=(sa.client_id, "nope"), data={"grant_type": "client_credentials"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(url, data={"grant_type": "client_credentials"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(url, auth=(sa.client_id, sa.client_secret), data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = requests.post(url, auth=(sa.client_id, sa.client_secret), json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert requests.get(url).status_code == 405


def test_bearer_expired_revoked_unknown(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    url = emu.cluster_url("alpha")
    token = get_token(emu).json()["access_token"]
    assert bearer_session(emu, token).get(url).status_code == 200
    clock.advance(3600)
    r = bearer_session(emu, token).get(url)
    assert r.status_code == 401 and r.json()["errorCode"] == "UNAUTHORIZED" and "expired" in r.json()["detail"]
    assert emu.active_token_count(emu.service_account.client_id) == 0
    token = get_token(emu).json()["access_token"]
    sa = emu.service_account
    rv = requests.post(
        f"{emu.base_url}/api/oauth/revoke",
        auth=(sa.client_id, sa.client_secret),
        data={"token": token, "token_type_hint": "access_token"},
    )
    assert rv.status_code == 200
    assert bearer_session(emu, token).get(url).status_code == 401
    assert bearer_session(emu, "made-up").get(url).status_code == 401
    token = get_token(emu).json()["access_token"]
    emu.revoke_all_tokens()
    assert bearer_session(emu, token).get(url).status_code == 401
    bad = requests.post(f"{emu.base_url}/api/oauth/revoke", auth=(sa.client_id, "x"), data={"token": token})
    assert bad.status_code == 401


def test_token_rate_limit(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    for _ in range(10):
        assert get_token(emu).status_code == 200
    r = get_token(emu)
    assert r.status_code == 429
    assert r.json()["errorCode"] == "RATE_LIMITED" and r.json()["error"] == 429
    # Like every real Atlas error, the token endpoint's 429 names its code in a header too.
    assert r.headers["X-Error-Code"] == "RATE_LIMITED" and r.headers["Content-Type"] == "application/json"
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    clock.advance(61)
    assert get_token(emu).status_code == 200
    assert emu.token_requests(emu.service_account.client_id) == 12


def test_active_token_limit(clocked: AtlasEmulator, clock: FakeClock) -> None:
    emu = clocked
    cid = emu.service_account.client_id
    for i in range(100):
        if i and i % 10 == 0:
            clock.advance(60)  # stay under the per-minute request limit
        assert get_token(emu).status_code == 200
    clock.advance(60)
    r = get_token(emu)
    assert r.status_code == 403
    assert r.json() == {"error": "access_denied", "error_description": "Access Token limit reached"}
    assert emu.active_token_count(cid) == 100
    emu.revoke_all_tokens()
    assert emu.active_token_count(cid) == 0
    assert get_token(emu).status_code == 200


def test_token_limits_can_be_disabled() -> None:
    with AtlasEmulator(snapshot_size=10_000, enforce_token_limits=False) as emu:
        for _ in range(15):
            assert get_token(emu).status_code == 200


@pytest.mark.parametrize("creds", ["api_key", "service_account"])
def test_read_only_role(emu: AtlasEmulator, creds: str) -> None:
    if creds == "api_key":
        s = digest_session(emu, emu.read_only_api_key)
    else:
        s = bearer_session(emu, get_token(emu, emu.read_only_service_account).json()["access_token"])
    sid = emu.newest_completed_snapshot_id("alpha")
    assert s.get(emu.cluster_url("alpha")).status_code == 200
    assert s.get(emu.cluster_url("alpha") + "/backup/snapshots").status_code == 200
    assert s.get(emu.cluster_url("alpha") + "/backup/restoreJobs").status_code == 200
    r = post_json(s, emu.cluster_url("alpha") + "/backup/download", {"snapshotId": sid})
    assert r.status_code == 403 and r.headers["X-Error-Code"] == "USER_CANNOT_ACCESS_RESOURCE"
    assert "Project Backup Export Operator" in r.json()["detail"]
    r = post_json(
        s, emu.cluster_url("alpha") + "/backup/restoreJobs", {"snapshotId": sid, "targetDeploymentItemName": "beta"}
    )
    assert r.status_code == 403 and "Project Backup Recovery Operator" in r.json()["detail"]
    assert emu.restore_jobs("alpha") == []


def test_injected_token_endpoint_429_carries_x_error_code(emu: AtlasEmulator) -> None:
    emu.faults.add(operation="oauthToken", status=429, retry_after=2, times=1)
    r = get_token(emu)
    assert r.status_code == 429 and r.headers["X-Error-Code"] == "RATE_LIMITED" == r.json()["errorCode"]
    assert r.headers["Retry-After"] == "2"
    # OAuth-shaped errors ({"error": "invalid_client"}) have no Atlas code, so no header.
    bad = requests.post(
        f"{emu.base_url}/api/oauth/token", auth=(emu.service_account.client_id, "wrong"), data={"grant_type": "client_credentials"}
    )
    assert bad.status_code == 401 and "X-Error-Code" not in bad.headers
