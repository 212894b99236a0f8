"""Digest answers one challenge per hook session, then reuses the nonce with an increasing nonce count.

Proved with the emulator's request log, which keeps every exchange (401 challenge legs included)
and the Authorization header each request carried. Also fixes the number of requests an export
costs with each auth type (published in docs/performance.md, "Requests per export").
"""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.testing.emulator.auth import parse_digest
from tests.reliability.test_secrets import run_export

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


def test_one_challenge_per_hook_session_then_increasing_nonce_count(emu, atlas_conn):
    atlas_conn(emu, "digest")
    hook = AtlasFlexHook()
    try:
        snapshot = hook.get_newest_completed_snapshot("alpha")["id"]
        hook.get_flex_cluster("alpha")
        job = hook.request_snapshot_download("alpha", snapshot)
        hook.get_restore_job("alpha", job["id"])
        hook.list_restore_jobs("beta")
    finally:
        hook.close()
    exchanges = emu.requests.snapshot()
    assert [x.status for x in exchanges] == [401, 200, 200, 200, 200, 200]
    answers = [parse_digest(x.headers["Authorization"]) for x in exchanges if x.headers.get("Authorization")]
    assert len({a["nonce"] for a in answers}) == 1
    assert [a["nc"] for a in answers] == [f"{n:08x}" for n in range(1, 6)]


def test_a_new_session_is_challenged_again(emu, atlas_conn):
    atlas_conn(emu, "digest")
    for _ in range(2):
        hook = AtlasFlexHook()
        hook.get_flex_cluster("alpha")
        hook.get_flex_cluster("alpha")
        hook.close()
    assert [x.status for x in emu.requests] == [401, 200, 200, 401, 200, 200]


@pytest.mark.parametrize(
    "auth, expected_total, expected_extra",
    # Three tasks (request link, wait, copy), each one hook session: digest pays one 401 leg per task,
    # a service account one token request per export (the token is shared by the three tasks).
    [("digest", 10, {"401": 3}), ("service_account", 8, {"oauthToken": 1})],
)
def test_requests_per_export(emu, atlas_conn, tmp_path, auth, expected_total, expected_extra):
    atlas_conn(emu, auth, sharing_scope="process")
    run_export(tmp_path)
    exchanges = emu.requests.snapshot()
    challenges = sum(1 for x in exchanges if x.status == 401)
    tokens = sum(1 for x in exchanges if x.operation == "oauthToken")
    assert {"401": challenges, "oauthToken": tokens}.items() >= expected_extra.items()
    assert len(exchanges) == expected_total, Counter((x.operation, x.status) for x in exchanges)
