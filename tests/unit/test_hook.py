"""AtlasFlexHook against requests-mock: auth, headers, retries, pagination, envelope, errors."""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qs

import pytest
import requests

from airflow_provider_atlasflex.exceptions import (
    AtlasApiError,
    AtlasAuthenticationError,
    AtlasFlexConfigError,
    AtlasNoCompletedSnapshotError,
    AtlasNotFoundError,
    AtlasPermissionError,
    AtlasRateLimitError,
)
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from tests.unit.conftest import (
    BASE,
    CLUSTER,
    CLUSTER_URL,
    GROUP,
    JOB,
    JSON_HEADERS,
    PRIVATE_KEY,
    SA_ID,
    SA_SECRET,
    SNAP,
    SNAP_OLD,
    api_error,
    job,
    set_connection,
)

MEDIA = "application/vnd.atlas.2024-11-13+json"
TOKEN_URL = f"{BASE}/api/oauth/token"
CHALLENGE = {
    "WWW-Authenticate": 'Digest realm="MMS Public API", domain="", nonce="abc123", algorithm=MD5, qop="auth", stale=false',
    "Content-Type": "application/json",
}


def token_response(token: str = "tok-1", expires_in: int = 3600) -> dict:
    return {"json": {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}}


class TestDigestAuth:
    def test_answers_the_digest_challenge_and_sends_versioned_accept(self, requests_mock, digest_conn):
        requests_mock.get(
            CLUSTER_URL,
            [
                {"status_code": 401, "headers": CHALLENGE, "json": {"error": 401, "errorCode": "UNAUTHORIZED"}},
                {"json": {"name": CLUSTER, "stateName": "IDLE"}, "headers": JSON_HEADERS},
            ],
        )
        assert AtlasFlexHook().get_flex_cluster(CLUSTER)["name"] == CLUSTER
        first, second = requests_mock.request_history
        assert "Authorization" not in first.headers
        assert second.headers["Authorization"].startswith('Digest username="pubkey01", realm="MMS Public API"')
        assert 'qop="auth"' in second.headers["Authorization"] or "qop=auth" in second.headers["Authorization"]
        assert PRIVATE_KEY not in second.headers["Authorization"]
        assert all(r.headers["Accept"] == MEDIA for r in requests_mock.request_history)

    def test_post_sends_versioned_content_type_and_body(self, requests_mock, digest_conn):
        requests_mock.post(f"{CLUSTER_URL}/backup/download", json=job("PENDING", url=False), headers=JSON_HEADERS)
        result = AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)
        assert result["id"] == JOB
        sent = requests_mock.last_request
        assert sent.headers["Content-Type"] == MEDIA and sent.headers["Accept"] == MEDIA
        assert sent.json() == {"snapshotId": SNAP}

    def test_wrong_keys_say_which_credential_failed(self, requests_mock, digest_conn, caplog):
        requests_mock.get(CLUSTER_URL, status_code=401, headers=CHALLENGE, json={"error": 401, "errorCode": "UNAUTHORIZED"})
        with pytest.raises(AtlasAuthenticationError) as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert "API key 'pubkey01'" in str(err.value) and err.value.status == 401
        assert PRIVATE_KEY not in str(err.value) + caplog.text


class TestServiceAccount:
    def test_token_is_fetched_once_and_reused(self, requests_mock, sa_conn):
        requests_mock.post(TOKEN_URL, **token_response("tok-1"))
        requests_mock.get(CLUSTER_URL, json={"name": CLUSTER}, headers=JSON_HEADERS)
        hook = AtlasFlexHook()
        for _ in range(3):
            hook.get_flex_cluster(CLUSTER)
        AtlasFlexHook().get_flex_cluster(CLUSTER)  # a second hook in the process shares the token
        token_calls = [r for r in requests_mock.request_history if r.url == TOKEN_URL]
        assert len(token_calls) == 1
        sent = token_calls[0]
        assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{SA_ID}:{SA_SECRET}".encode()).decode()
        assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert parse_qs(sent.text) == {"grant_type": ["client_credentials"]}
        api_calls = [r for r in requests_mock.request_history if r.url != TOKEN_URL]
        assert {r.headers["Authorization"] for r in api_calls} == {"Bearer tok-1"}

    def test_token_is_refreshed_once_on_401(self, requests_mock, sa_conn):
        requests_mock.post(TOKEN_URL, [token_response("old"), token_response("new")])
        requests_mock.get(
            CLUSTER_URL,
            [api_error(401, "UNAUTHORIZED", "token revoked"), {"json": {"name": CLUSTER}, "headers": JSON_HEADERS}],
        )
        assert AtlasFlexHook().get_flex_cluster(CLUSTER)["name"] == CLUSTER
        auths = [r.headers.get("Authorization") for r in requests_mock.request_history if r.url != TOKEN_URL]
        assert auths == ["Bearer old", "Bearer new"]

    def test_second_401_after_refresh_is_an_error(self, requests_mock, sa_conn):
        requests_mock.post(TOKEN_URL, [token_response("a"), token_response("b")])
        requests_mock.get(CLUSTER_URL, **api_error(401, "UNAUTHORIZED"))
        with pytest.raises(AtlasAuthenticationError, match="service account 'mdb_sa_id_"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert len([r for r in requests_mock.request_history if r.url == TOKEN_URL]) == 2

    def test_token_close_to_expiry_is_replaced_and_revoked(self, requests_mock, sa_conn, monkeypatch):
        import time

        requests_mock.post(TOKEN_URL, [token_response("first"), token_response("next")])
        revoke = requests_mock.post(f"{BASE}/api/oauth/revoke", text="")
        requests_mock.get(CLUSTER_URL, json={"name": CLUSTER}, headers=JSON_HEADERS)
        hook = AtlasFlexHook()
        hook.get_flex_cluster(CLUSTER)
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600 - 60)  # one minute before expiry
        hook.get_flex_cluster(CLUSTER)
        auths = [r.headers.get("Authorization") for r in requests_mock.request_history if r.url == CLUSTER_URL]
        assert auths == ["Bearer first", "Bearer next"]
        assert revoke.call_count == 1 and parse_qs(revoke.last_request.text)["token"] == ["first"]

    def test_rejected_client_secret(self, requests_mock, sa_conn, caplog):
        requests_mock.post(TOKEN_URL, status_code=401, json={"error": "invalid_client"})
        with pytest.raises(AtlasAuthenticationError) as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert err.value.error_code == "invalid_client"
        assert SA_SECRET not in str(err.value) + caplog.text

    def test_token_cap_reached_is_explained(self, requests_mock, sa_conn):
        requests_mock.post(
            TOKEN_URL, status_code=403, json={"error": "access_denied", "error_description": "Access Token limit reached"}
        )
        with pytest.raises(AtlasPermissionError, match="cap of 100 active access tokens"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)

    def test_token_endpoint_429_is_retried(self, requests_mock, sa_conn, no_sleep):
        requests_mock.post(
            TOKEN_URL, [{**api_error(429, "RATE_LIMITED"), "headers": {"Retry-After": "4"}}, token_response("t")]
        )
        requests_mock.get(CLUSTER_URL, json={"name": CLUSTER}, headers=JSON_HEADERS)
        AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert no_sleep and no_sleep[0] >= 4


class TestRetries:
    def test_429_honours_retry_after(self, requests_mock, digest_conn, no_sleep):
        limited = api_error(429, "RATE_LIMITED_TOKEN_BUCKET", "Please retry after 7 seconds.")
        limited["headers"]["Retry-After"] = "7"
        requests_mock.get(CLUSTER_URL, [limited, {"json": {"name": CLUSTER}, "headers": JSON_HEADERS}])
        assert AtlasFlexHook().get_flex_cluster(CLUSTER)["name"] == CLUSTER
        assert len(no_sleep) == 1 and 7 <= no_sleep[0] <= 7 + 1

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_5xx_on_get_is_retried(self, requests_mock, digest_conn, no_sleep, status):
        requests_mock.get(
            CLUSTER_URL, [api_error(status, "UNEXPECTED_ERROR"), {"json": {"name": CLUSTER}, "headers": JSON_HEADERS}]
        )
        assert AtlasFlexHook().get_flex_cluster(CLUSTER)["name"] == CLUSTER
        assert len(no_sleep) == 1

    def test_backoff_grows_and_gives_up_with_attempt_count(self, requests_mock, digest_conn, no_sleep):
        requests_mock.get(CLUSTER_URL, **api_error(500, "UNEXPECTED_ERROR"))
        with pytest.raises(AtlasApiError, match="after 4 attempts") as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert err.value.status == 500 and len(requests_mock.request_history) == 4
        assert no_sleep[0] <= 1.0 < no_sleep[2] <= 4.0  # exponential, jittered

    def test_rate_limit_that_outlasts_the_budget(self, requests_mock, digest_conn, no_sleep):
        limited = api_error(429, "RATE_LIMITED_TOKEN_BUCKET")
        limited["headers"]["Retry-After"] = "1"
        requests_mock.get(CLUSTER_URL, **limited)
        with pytest.raises(AtlasRateLimitError, match="kept rate-limiting"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)

    def test_retry_after_beyond_the_bound_is_not_waited_for(self, requests_mock, digest_conn, no_sleep):
        limited = api_error(429, "RATE_LIMITED_TOKEN_BUCKET")
        limited["headers"]["Retry-After"] = "3600"
        requests_mock.get(CLUSTER_URL, **limited)
        with pytest.raises(AtlasRateLimitError) as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert no_sleep == [] and err.value.retry_after == 3600

    def test_connection_errors_are_retried(self, requests_mock, digest_conn, no_sleep):
        requests_mock.get(
            CLUSTER_URL, [{"exc": requests.ConnectionError("boom")}, {"json": {"name": CLUSTER}, "headers": JSON_HEADERS}]
        )
        assert AtlasFlexHook().get_flex_cluster(CLUSTER)["name"] == CLUSTER

    def test_unreachable_host_gives_a_clear_error(self, requests_mock, digest_conn, no_sleep):
        requests_mock.get(CLUSTER_URL, exc=requests.ConnectTimeout("nope"))
        with pytest.raises(AtlasApiError, match="Could not reach Atlas .* after 4 attempts: ConnectTimeout"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)


class TestDownloadIsNotBlindlyResent:
    def test_5xx_after_post_reuses_the_job_atlas_created(self, requests_mock, digest_conn, no_sleep):
        post = requests_mock.post(f"{CLUSTER_URL}/backup/download", **api_error(500, "UNEXPECTED_ERROR"))
        requests_mock.get(
            f"{CLUSTER_URL}/backup/restoreJobs",
            json={"results": [job("PENDING", url=False)], "totalCount": 1},
            headers=JSON_HEADERS,
        )
        assert AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)["id"] == JOB
        assert post.call_count == 1

    def test_5xx_with_no_trace_of_a_job_sends_again(self, requests_mock, digest_conn, no_sleep):
        post = requests_mock.post(
            f"{CLUSTER_URL}/backup/download",
            [api_error(503, "SERVICE_UNAVAILABLE"), {"json": job("PENDING", url=False), "headers": JSON_HEADERS}],
        )
        requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [], "totalCount": 0}, headers=JSON_HEADERS)
        assert AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)["id"] == JOB
        assert post.call_count == 2

    def test_429_is_resent_without_looking(self, requests_mock, digest_conn, no_sleep):
        post = requests_mock.post(
            f"{CLUSTER_URL}/backup/download",
            [api_error(429, "RATE_LIMITED"), {"json": job("PENDING", url=False), "headers": JSON_HEADERS}],
        )
        listing = requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": []})
        AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)
        assert post.call_count == 2 and listing.call_count == 0

    def test_refused_connection_is_resent_without_looking(self, requests_mock, digest_conn, no_sleep):
        from urllib3.exceptions import NewConnectionError

        refused = requests.ConnectionError(NewConnectionError(None, "refused"))
        post = requests_mock.post(
            f"{CLUSTER_URL}/backup/download", [{"exc": refused}, {"json": job("PENDING", url=False)}]
        )
        listing = requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": []})
        AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)
        assert post.call_count == 2 and listing.call_count == 0


class TestPagingAndEnvelope:
    def test_lists_every_page(self, requests_mock, digest_conn):
        pages = {
            "1": {"results": [{"id": "a" * 24}, {"id": "b" * 24}], "totalCount": 3},
            "2": {"results": [{"id": "c" * 24}], "totalCount": 3},
        }
        requests_mock.get(
            f"{CLUSTER_URL}/backup/snapshots",
            json=lambda request, context: pages[request.qs["pagenum"][0]],
            headers=JSON_HEADERS,
        )
        ids = [s["id"] for s in AtlasFlexHook().list_snapshots(CLUSTER, items_per_page=2)]
        assert ids == ["a" * 24, "b" * 24, "c" * 24]
        assert [r.qs["pagenum"] for r in requests_mock.request_history] == [["1"], ["2"]]
        assert all(r.qs["itemsperpage"] == ["2"] for r in requests_mock.request_history)

    def test_single_resource_envelope_is_unwrapped(self, requests_mock, digest_conn):
        requests_mock.get(CLUSTER_URL, json={"status": 200, "content": {"name": CLUSTER}}, headers=JSON_HEADERS)
        assert AtlasFlexHook().get_flex_cluster(CLUSTER) == {"name": CLUSTER}

    def test_list_envelope_keeps_results(self, requests_mock, digest_conn):
        requests_mock.get(
            f"{CLUSTER_URL}/backup/restoreJobs", json={"status": 200, "results": [job()], "totalCount": 1}
        )
        assert [j["id"] for j in AtlasFlexHook().list_restore_jobs(CLUSTER)] == [JOB]

    def test_enveloped_error_is_an_error(self, requests_mock, digest_conn):
        requests_mock.get(
            CLUSTER_URL,
            json={"status": 404, "content": {"error": 404, "errorCode": "CLUSTER_NOT_FOUND", "detail": "No cluster"}},
        )
        with pytest.raises(AtlasNotFoundError) as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert err.value.status == 404 and err.value.error_code == "CLUSTER_NOT_FOUND"

    def test_newest_completed_snapshot(self, requests_mock, digest_conn):
        requests_mock.get(
            f"{CLUSTER_URL}/backup/snapshots",
            json={
                "results": [
                    {"id": "c" * 24, "status": "RUNNING", "startTime": "2026-11-28T01:00:00Z"},
                    {"id": SNAP, "status": "COMPLETED", "finishTime": "2026-11-27T01:10:00Z"},
                    {"id": SNAP_OLD, "status": "COMPLETED", "finishTime": "2026-11-26T01:10:00Z"},
                ],
                "totalCount": 3,
            },
        )
        assert AtlasFlexHook().get_newest_completed_snapshot(CLUSTER)["id"] == SNAP

    def test_no_completed_snapshot_is_explained(self, requests_mock, digest_conn):
        requests_mock.get(f"{CLUSTER_URL}/backup/snapshots", json={"results": [], "totalCount": 0})
        with pytest.raises(AtlasNoCompletedSnapshotError, match="no COMPLETED backup snapshot yet"):
            AtlasFlexHook().get_newest_completed_snapshot(CLUSTER)


class TestErrorShapes:
    def test_cluster_not_found_names_cluster_and_project(self, requests_mock, digest_conn):
        requests_mock.get(
            CLUSTER_URL,
            **api_error(404, "CLUSTER_NOT_FOUND", f"No cluster named {CLUSTER} exists in group {GROUP}.", parameters=[CLUSTER, GROUP]),
        )
        with pytest.raises(AtlasNotFoundError) as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        e = err.value
        assert f"No cluster named '{CLUSTER}' exists in project {GROUP}" in str(e)
        assert (e.status, e.error_code, e.parameters, e.reason) == (404, "CLUSTER_NOT_FOUND", [CLUSTER, GROUP], "x")
        assert e.detail.startswith("No cluster named")

    def test_forbidden_names_the_role_needed(self, requests_mock, digest_conn):
        requests_mock.post(f"{CLUSTER_URL}/backup/download", **api_error(403, "USER_CANNOT_ACCESS_RESOURCE"))
        with pytest.raises(AtlasPermissionError, match="Project Backup Export Operator"):
            AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)

    def test_error_code_from_header_when_body_is_not_json(self, requests_mock, digest_conn):
        requests_mock.get(CLUSTER_URL, status_code=404, text="<html>gone</html>", headers={"X-Error-Code": "GROUP_NOT_FOUND"})
        with pytest.raises(AtlasNotFoundError, match=f"Project {GROUP} was not found") as err:
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert err.value.error_code == "GROUP_NOT_FOUND"

    def test_non_flex_cluster(self, requests_mock, digest_conn):
        requests_mock.get(CLUSTER_URL, **api_error(400, "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API"))
        with pytest.raises(AtlasApiError, match="is not a flex cluster"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)

    def test_validation_error_lists_fields(self, requests_mock, digest_conn):
        body = api_error(400, "VALIDATION_ERROR", "bad", badRequestDetail={"fields": [{"field": "snapshotId", "description": "bad id"}]})
        requests_mock.post(f"{CLUSTER_URL}/backup/download", **body)
        with pytest.raises(AtlasApiError, match="snapshotId: bad id"):
            AtlasFlexHook().request_snapshot_download(CLUSTER, SNAP)

    def test_api_error_survives_pickling(self):
        import pickle

        err = AtlasNotFoundError("m", status=404, error_code="X", parameters=["a"])
        copy = pickle.loads(pickle.dumps(err))
        assert (type(copy), str(copy), copy.status, copy.error_code, copy.parameters) == (
            AtlasNotFoundError, "m", 404, "X", ["a"],
        )


class TestBadInputBeforeNetwork:
    @pytest.mark.parametrize(
        ("call", "message"),
        [
            (lambda h: h.get_flex_cluster("../etc"), "not a valid Atlas cluster name"),
            (lambda h: h.get_flex_cluster("a/b"), "not a valid Atlas cluster name"),
            (lambda h: h.get_flex_cluster(""), "non-empty string"),
            (lambda h: h.get_flex_cluster(CLUSTER, group_id="xyz"), "group_id must be 24"),
            (lambda h: h.get_snapshot(CLUSTER, SNAP.upper()), "lower-case"),
            (lambda h: h.get_restore_job(CLUSTER, 12345), "restore_job_id must be a 24-character"),
            (lambda h: h.request_snapshot_download(CLUSTER, "nope"), "snapshot_id must be 24"),
        ],
    )
    def test_refused_without_a_request(self, requests_mock, digest_conn, call, message):
        with pytest.raises(AtlasFlexConfigError, match=message):
            call(AtlasFlexHook())
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"conn_type": "http", "login": "a", "password": "b"}, "type 'http'"),
            ({"login": "", "password": "b"}, "empty login: put the API public key"),
            ({"login": SA_ID, "password": " "}, "empty password: put the service account client secret"),
            ({"login": "a", "password": "b", "extra": {"auth_type": "kerberos"}}, "auth_type='kerberos'"),
            ({"login": "a", "password": "b", "extra": {"group_id": "123"}}, "group_id"),
            ({"login": "a", "password": "b", "extra": {"timeout": "soon"}}, "timeout='soon'"),
            ({"login": "a", "password": "b", "extra": {"max_retries": -1}}, "max_retries"),
            ({"login": "a", "password": "b", "extra": {"proxies": "http://p"}}, "proxies must map"),
            ({"login": "a", "password": "b", "extra": {"verify": 3}}, "verify must be"),
            ({"login": "a", "password": "b", "host": "ftp://atlas"}, "Atlas base URL"),
        ],
    )
    def test_bad_connection(self, requests_mock, monkeypatch, fields, message):
        set_connection(monkeypatch, **fields)
        with pytest.raises(AtlasFlexConfigError, match=message):
            AtlasFlexHook().get_flex_cluster(CLUSTER)
        assert requests_mock.call_count == 0

    def test_missing_project_id(self, requests_mock, monkeypatch):
        set_connection(monkeypatch, login="a", password="bbbbbb", extra={})
        with pytest.raises(AtlasFlexConfigError, match="No Atlas project id"):
            AtlasFlexHook().get_flex_cluster(CLUSTER)

    def test_missing_connection(self, requests_mock):
        from airflow.sdk.exceptions import AirflowRuntimeError

        with pytest.raises((AirflowRuntimeError, Exception), match="isn't defined|not found|not defined"):
            AtlasFlexHook("no_such_conn").get_flex_cluster(CLUSTER)


class TestConnectionParsing:
    def test_auth_type_inferred_from_service_account_login(self, sa_conn):
        assert AtlasFlexHook().config.auth_type == "service_account"

    def test_host_without_scheme_defaults_to_https(self, monkeypatch):
        set_connection(monkeypatch, login="a", password="bbbbbb", host="cloud.mongodb.com")
        assert AtlasFlexHook().config.base_url == "https://cloud.mongodb.com"

    def test_secret_not_in_repr(self, digest_conn):
        assert PRIVATE_KEY not in repr(AtlasFlexHook().config)

    def test_ui_field_behaviour(self):
        behaviour = AtlasFlexHook.get_ui_field_behaviour()
        assert "port" in behaviour["hidden_fields"] and behaviour["relabeling"]["login"]

    def test_test_connection_reports_success_and_failure(self, requests_mock, sa_conn):
        requests_mock.post(TOKEN_URL, **token_response())
        requests_mock.get(f"{BASE}/api/atlas/v2/groups", json={"results": [{"id": GROUP}], "totalCount": 1})
        probe = f"{BASE}/api/atlas/v2/groups/{GROUP}/flexClusters/airflow-connection-test"
        requests_mock.get(probe, **api_error(404, "CLUSTER_NOT_FOUND"))
        requests_mock.post(f"{probe}/backup/download", **api_error(404, "CLUSTER_NOT_FOUND"))
        ok, message = AtlasFlexHook().test_connection()
        assert ok and SA_ID in message
        requests_mock.post(TOKEN_URL, status_code=401, json={"error": "invalid_client"})
        from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE

        TOKEN_CACHE.clear()
        ok, message = AtlasFlexHook().test_connection()
        assert not ok and "rejected" in message and SA_SECRET not in message


def test_no_secret_reaches_the_logs(requests_mock, sa_conn, caplog, no_sleep):
    caplog.set_level(logging.DEBUG)
    requests_mock.post(TOKEN_URL, **token_response("bearer-secret-xyz"))
    requests_mock.get(CLUSTER_URL, [api_error(500, "UNEXPECTED_ERROR"), {"json": {"name": CLUSTER}}])
    AtlasFlexHook().get_flex_cluster(CLUSTER)
    for secret in (SA_SECRET, "bearer-secret-xyz"):
        assert secret not in caplog.text
