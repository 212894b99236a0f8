"""The connection Test (UI button, ``airflow connections test``) against the emulator.

It must always authenticate (a wrong key fails even without a default project) and say what the
credential can and cannot do in the default project.
"""

from __future__ import annotations

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_wrong_secret_fails_even_without_a_default_project(emu, atlas_conn, auth):
    atlas_conn(emu, auth, password="mdb_sa_sk_wrong" if auth == "service_account" else "wrong", group_id="")
    ok, message = AtlasFlexHook().test_connection()
    assert not ok and "rejected" in message
    assert any(x.status == 401 for x in emu.requests)


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_without_a_default_project_lists_the_projects_it_can_see(emu, atlas_conn, auth):
    atlas_conn(emu, auth, group_id="")
    ok, message = AtlasFlexHook().test_connection()
    assert ok, message
    assert "can see 1 project(s)" in message and emu.group_id in message and "Set the group_id extra" in message
    groups = emu.requests.by_operation("listGroups")
    assert groups[-1].status == 200 and groups[-1].headers["Accept"] == "application/vnd.atlas.2023-01-01+json"


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_owner_may_read_and_request_downloads(emu, atlas_conn, auth):
    atlas_conn(emu, auth)
    ok, message = AtlasFlexHook().test_connection()
    assert ok, message
    assert f"In project {emu.group_id} it can read backups and request downloads." in message
    assert all(not jobs for jobs in (emu.restore_jobs(c) for c in emu.clusters)), "the probe created a job"


@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_read_only_credential_is_told_it_cannot_request_downloads(emu, atlas_conn, auth):
    if auth == "digest":
        key = emu.read_only_api_key
        atlas_conn(emu, auth, login=key.public_key, password=key.private_key)
    else:
        account = emu.read_only_service_account
        atlas_conn(emu, auth, login=account.client_id, password=account.client_secret)
    ok, message = AtlasFlexHook().test_connection()
    assert not ok
    assert "can read backups but can NOT request downloads" in message
    assert "Project Backup Export Operator" in message


def test_unknown_default_project_is_reported(emu, atlas_conn):
    atlas_conn(emu, "digest", group_id="0" * 24)
    ok, message = AtlasFlexHook().test_connection()
    assert not ok and "0" * 24 in message and "not found" in message
