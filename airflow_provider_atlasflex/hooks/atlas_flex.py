"""Hook for the Atlas Admin API's flex-cluster backup operations (sync, ``requests``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from requests.auth import AuthBase, HTTPDigestAuth

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import (
    AirflowNotFoundException,
    AtlasFlexConfigError,
    AtlasFlexError,
    AtlasNoCompletedSnapshotError,
    AtlasNotFoundError,
    AtlasPermissionError,
)
from airflow_provider_atlasflex.hooks import connection_check, connection_form
from airflow_provider_atlasflex.hooks import operations as ops
from airflow_provider_atlasflex.hooks.answers import MAX_API_BODY_BYTES, READ_CHUNK_BYTES, CappedBody
from airflow_provider_atlasflex.hooks.api_protocol import (
    ApiCall,
    Outcome,
    Reconcile,
    RefreshToken,
    Response,
    RetryPolicy,
    Send,
    Sleep,
    TransportFailure,
    exchange,
)
from airflow_provider_atlasflex.hooks.connection_config import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    AtlasConnectionConfig,
)
from airflow_provider_atlasflex.hooks.deployment_tokens import deployment_store
from airflow_provider_atlasflex.hooks.listings import read_listing
from airflow_provider_atlasflex.hooks.service_account import (
    TOKEN_CACHE,
    CachedToken,
    FormCall,
    basic_authorization,
    parse_token,
    revoke_call,
    token_call,
)
from airflow_provider_atlasflex.restore_jobs import (
    DEFAULT_MIN_LINK_VALIDITY,
    is_reusable_download,
    newest_completed_snapshot,
    utcnow,
)
from airflow_provider_atlasflex.restore_targets import newest_restore_into
from airflow_provider_atlasflex.validation import require_connection_id, require_object_id, require_timedelta

__all__ = ["AtlasFlexHook", "AtlasFlexHookBase"]

USER_AGENT = "airflow-provider-atlasflex"


class AtlasFlexHookBase(BaseHook):
    """Connection handling shared by the sync and async hooks."""

    conn_name_attr = "atlas_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "MongoDB Atlas"

    def __init__(
        self,
        atlas_conn_id: str = DEFAULT_CONN_ID,
        *,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.atlas_conn_id = require_connection_id(atlas_conn_id)
        self._retry_policy = retry_policy
        self._sent_token: str | None = None  # the bearer token of the last request, to invalidate on 401

    def _missing_connection(self) -> AtlasFlexConfigError:
        return AtlasFlexConfigError(
            f"Connection {self.atlas_conn_id!r} is not defined: create a connection of type {CONN_TYPE!r} with "
            f"that id (Admin > Connections, or the AIRFLOW_CONN_{self.atlas_conn_id.upper()} environment "
            "variable), or set atlas_conn_id to an existing one."
        )

    def _config_from(self, conn: Any) -> AtlasConnectionConfig:
        config = AtlasConnectionConfig.from_connection(conn)
        mask_secret(config.secret)
        return config

    def _policy_for(self, config: AtlasConnectionConfig) -> RetryPolicy:
        return self._retry_policy or RetryPolicy(max_retries=config.max_retries)

    @staticmethod
    def resolve_group_id(config: AtlasConnectionConfig, group_id: str | None) -> str:
        """The explicit ``group_id``, else the connection's default project."""
        if group_id is not None:
            # "" is refused, not read as "use the default": a template that rendered empty must not
            # silently switch project.
            return require_object_id(group_id, "group_id")
        chosen = config.group_id
        if not chosen:
            raise AtlasFlexConfigError(
                f"No Atlas project id: pass group_id=... or set the 'group_id' extra on connection {config.conn_id!r}."
            )
        return require_object_id(chosen, "group_id")


def revoke_token(config: AtlasConnectionConfig, token: str) -> None:
    """Revoke one access token (one attempt; used at process exit and by ``close``)."""
    call = revoke_call(token)
    response = requests.post(
        config.base_url + call.path,
        data=call.body(),
        headers={**call.headers(), "Authorization": basic_authorization(config.principal, config.secret)},
        timeout=min(config.timeout, 10.0),
        proxies=config.proxies,
        verify=config.verify,
        allow_redirects=False,  # the client secret goes to the configured host only
        stream=True,  # the body is never needed: closing unread bounds what a hostile answer costs
    )
    try:
        response.raise_for_status()
        if response.is_redirect:
            raise requests.HTTPError(f"token revocation answered with a redirect (HTTP {response.status_code})")
    finally:
        response.close()


class _BoundedDigestAuth(HTTPDigestAuth):
    """requests' Digest auth, except that a challenge's body is read no further than MAX_API_BODY_BYTES.

    requests reads the whole body of a 401 before answering its challenge (``r.content``); a
    hostile host could make that any size. The body is not needed to answer, so it is dropped
    here first, up to the cap, with urllib3's public ``read``; past the cap the connection is
    closed, and requests then finds nothing left to read.
    """

    def handle_401(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        if 400 <= r.status_code < 500 and "digest" in r.headers.get("www-authenticate", "").lower():
            _drop_body(r.raw)
        return super().handle_401(r, **kwargs)


def _drop_body(raw: Any) -> None:
    """Read and drop a response's body up to the cap; a longer one has its connection closed instead."""
    dropped = 0
    while dropped <= MAX_API_BODY_BYTES:
        chunk = raw.read(READ_CHUNK_BYTES, decode_content=False)
        if not chunk:
            return  # read to its end: the connection can carry the answer to the challenge
        dropped += len(chunk)
    raw.close()  # never read further, and never return a half-read connection to the pool


class _BearerAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class AtlasFlexHook(AtlasFlexHookBase):
    """Calls the Atlas Admin API flex backup endpoints with retries and actionable errors.

    :param atlas_conn_id: connection of type ``mongodb_atlas`` (login/password = API key pair or
        service-account client id/secret; extras: auth_type, group_id, timeout, max_retries, proxies, verify).
    """

    # Airflow < 3.2 reads the form only from the hook class's own __dict__: keep these two here.
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabels, placeholders and hidden fields of the connection form (Airflow < 3.2)."""
        return connection_form.ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Typed, defaulted extra fields of the connection form (Airflow < 3.2)."""
        return connection_form.connection_form_widgets()

    @cached_property
    def config(self) -> AtlasConnectionConfig:
        try:
            conn = self.get_connection(self.atlas_conn_id)
        except AirflowNotFoundException:
            raise self._missing_connection() from None
        return self._config_from(conn)

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        if self.config.proxies:
            session.proxies.update(self.config.proxies)
        session.verify = self.config.verify
        return session

    @cached_property
    def _digest_auth(self) -> HTTPDigestAuth:
        """One Digest state per hook session: the first call answers a challenge, later calls reuse its
        nonce with an increasing nonce count (requests keeps that state per thread inside the object),
        and a new challenge is answered only when Atlas says the nonce is stale."""
        return _BoundedDigestAuth(self.config.principal, self.config.secret)

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        """Close the HTTP session. Service-account tokens stay cached for other hooks (see TokenCache)."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]
        self.__dict__.pop("_digest_auth", None)

    # ---- the operations -------------------------------------------------------------------

    def get_flex_cluster(self, cluster_name: str, group_id: str | None = None) -> dict[str, Any]:
        return self.run(ops.get_flex_cluster(self._group(group_id), cluster_name))

    def get_restore_job(self, cluster_name: str, restore_job_id: str, group_id: str | None = None) -> dict[str, Any]:
        return self.run(ops.get_restore_job(self._group(group_id), cluster_name, restore_job_id))

    def get_snapshot(self, cluster_name: str, snapshot_id: str, group_id: str | None = None) -> dict[str, Any]:
        return self.run(ops.get_snapshot(self._group(group_id), cluster_name, snapshot_id))

    def list_restore_jobs(
        self, cluster_name: str, group_id: str | None = None, items_per_page: int = ops.MAX_ITEMS_PER_PAGE
    ) -> list[dict[str, Any]]:
        """Every restore job of the cluster, all pages."""
        group = self._group(group_id)
        return self._pages(lambda page: ops.list_restore_jobs(group, cluster_name, page, items_per_page))

    def list_snapshots(
        self, cluster_name: str, group_id: str | None = None, items_per_page: int = ops.MAX_ITEMS_PER_PAGE
    ) -> list[dict[str, Any]]:
        """Every snapshot of the cluster, all pages."""
        group = self._group(group_id)
        return self._pages(lambda page: ops.list_snapshots(group, cluster_name, page, items_per_page))

    def get_newest_completed_snapshot(self, cluster_name: str, group_id: str | None = None) -> dict[str, Any]:
        """The newest COMPLETED snapshot; a clear error when the cluster has none yet."""
        group = self._group(group_id)
        newest = newest_completed_snapshot(self.list_snapshots(cluster_name, group))
        if newest is None:
            # Not a fail-fast error: a snapshot in progress completes within minutes, so task retries may help.
            raise AtlasNoCompletedSnapshotError(
                f"Cluster {cluster_name!r} in project {group} has no COMPLETED backup snapshot yet. Atlas takes "
                "the first flex snapshot about 24 hours after the cluster is created; check backups are enabled.",
                status=None,
                operation="listGroupFlexClusterBackupSnapshots",
            )
        return dict(newest)

    def find_reusable_download_job(
        self,
        cluster_name: str,
        snapshot_id: str,
        group_id: str | None = None,
        min_validity: timedelta = DEFAULT_MIN_LINK_VALIDITY,
    ) -> dict[str, Any] | None:
        """The newest live DOWNLOAD job for ``snapshot_id`` whose link has ``min_validity`` left, if any."""
        require_object_id(snapshot_id, "snapshot_id")
        min_validity = require_timedelta(min_validity, "min_validity")
        now = utcnow()
        for job in self.list_restore_jobs(cluster_name, group_id):
            if is_reusable_download(job, snapshot_id, now, min_validity):
                return job
        return None

    def request_snapshot_download(
        self, cluster_name: str, snapshot_id: str, group_id: str | None = None
    ) -> dict[str, Any]:
        """POST .../backup/download and return the new DOWNLOAD restore job.

        If the POST fails in a way where Atlas may still have created the job (a 5xx or a lost
        response), the existing jobs are checked before the POST is sent again.
        """
        group = self._group(group_id)
        call = ops.download_snapshot(group, cluster_name, snapshot_id)
        return self.run(
            call, reconcile=lambda: self.find_reusable_download_job(cluster_name, snapshot_id, group)
        )

    def list_flex_clusters(
        self, group_id: str | None = None, items_per_page: int = ops.MAX_ITEMS_PER_PAGE
    ) -> list[dict[str, Any]]:
        """Every flex cluster of the project (listGroupFlexClusters), all pages."""
        group = self._group(group_id)
        return self._pages(lambda page: ops.list_flex_clusters(group, page, items_per_page))

    def list_groups(self, items_per_page: int = ops.MAX_ITEMS_PER_PAGE) -> list[dict[str, Any]]:
        """Every project the credentials can see (listGroups, API version 2023-01-01), all pages."""
        return self._pages(lambda page: ops.list_groups(page, items_per_page))

    def find_restore_job(
        self,
        cluster_name: str,
        snapshot_id: str,
        target_cluster_name: str,
        target_group_id: str,
        group_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The newest live RESTORE job of ``snapshot_id`` into the target, if one exists (not FAILED)."""
        require_object_id(snapshot_id, "snapshot_id")
        require_object_id(target_group_id, "target_group_id")
        jobs = self.list_restore_jobs(cluster_name, group_id)
        found = newest_restore_into(jobs, snapshot_id, target_cluster_name, target_group_id)
        return None if found is None else dict(found)

    def request_restore(
        self,
        cluster_name: str,
        snapshot_id: str,
        target_cluster_name: str,
        target_group_id: str | None = None,
        group_id: str | None = None,
        *,
        existing_job_ids: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """POST .../backup/restoreJobs and return the new RESTORE job.

        As for downloads, a POST that may have been acted on (5xx, lost answer) is not sent again
        before the jobs are checked for a new one restoring the same snapshot into the same target.
        Only a job that was not there before the POST counts (``existing_job_ids``, the ids the
        caller already listed; None: this method lists them first), so an older restore, say
        last week's, is never taken for the one just asked for.
        """
        group = self._group(group_id)
        target_group = group if target_group_id is None else require_object_id(target_group_id, "target_group_id")
        call = ops.create_restore_job(group, cluster_name, snapshot_id, target_cluster_name, target_group)  # validates
        if existing_job_ids is None:
            existing_job_ids = {str(j.get("id")) for j in self.list_restore_jobs(cluster_name, group)}
        before = frozenset(existing_job_ids)

        def reconcile() -> dict[str, Any] | None:
            jobs = self.list_restore_jobs(cluster_name, group)
            found = newest_restore_into(jobs, snapshot_id, target_cluster_name, target_group, excluding=before)
            return None if found is None else dict(found)

        return self.run(call, reconcile=reconcile)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button (and ``airflow connections test``): :meth:`probe_connection`, answered within
        ``TEST_DEADLINE_SECONDS`` (10 s) whatever the host does (see :mod:`.connection_check`)."""
        return connection_check.answer_in_time(self)

    def probe_connection(self) -> tuple[bool, str]:
        """What the Test checks (unbounded: call :meth:`test_connection`); always authenticates against Atlas.

        Sends: the token request (service account), ``listGroups`` (needs no project, so a wrong key
        fails even without ``group_id``), and with a default project two probes that cannot change
        anything: a GET of a cluster that does not exist (404 = may read the project) and a download
        POST for that cluster and an all-zero snapshot id (403 = no export role; 404 = allowed).
        """
        try:
            config = self.config
            if config.auth_type == "service_account":
                # Prove the client id and secret now, not a token cached earlier.
                token = self._fetch_token(config)
                TOKEN_CACHE.put(
                    self._token_key, token, lambda value: revoke_token(config, value), shared=config.share_tokens
                )
            who = f"Authenticated to {config.base_url} as {config.credential_label}"
            try:
                page = self.run(ops.list_groups(1, ops.MAX_ITEMS_PER_PAGE))
                projects = [g["id"] for g in page["results"]]
                seen = f"; it can see {page.get('totalCount', len(projects))} project(s)"
            except AtlasPermissionError:  # authenticated (not 401), but without an organization role
                projects, seen = [], "; it may not list projects (no organization role)"
            if not config.group_id:
                listed = f": {', '.join(projects[:5])}" + (" ..." if len(projects) > 5 else "") if projects else ""
                return True, (
                    f"{who}{seen}{listed}. Set the group_id extra to the project to export from, then Test again to "
                    "check the credential may read its backups and request downloads."
                )
            return self._test_project_access(config.group_id, f"{who}{seen}")
        except AtlasFlexError as exc:
            return False, str(exc)

    def _test_project_access(self, group_id: str, who: str) -> tuple[bool, str]:
        probe = "airflow-connection-test"
        try:
            self.get_flex_cluster(probe, group_id)
        except AtlasNotFoundError as exc:
            if exc.error_code != "CLUSTER_NOT_FOUND":
                return False, f"{who}, but project {group_id} (the group_id extra) was not found or is not visible: {exc}"
        except AtlasPermissionError as exc:
            return False, f"{who}, but it may not read project {group_id}: {exc}"
        try:
            self.run(ops.download_snapshot(group_id, probe, "0" * 24))
        except AtlasNotFoundError:
            pass  # past the role check: the made-up cluster does not exist, nothing was created
        except AtlasPermissionError:
            return False, (
                f"{who}. In project {group_id} it can read backups but can NOT request downloads: grant it the "
                "Project Backup Export Operator role (or Project Owner) for nightly exports; as it is, only "
                "waiting for existing jobs (the sensor) works."
            )
        return True, f"{who}. In project {group_id} it can read backups and request downloads."

    # ---- the engine -----------------------------------------------------------------------

    def _group(self, group_id: str | None) -> str:
        return self.resolve_group_id(self.config, group_id)

    def _pages(self, call_for_page: Callable[[int], ApiCall]) -> list[dict[str, Any]]:
        """Every item of a listing, bounded (see :mod:`.listings`)."""
        return read_listing(self.run, call_for_page)

    def run(self, call: ApiCall, reconcile: Callable[[], Any] | None = None) -> Any:
        """Drive ``call`` through :func:`exchange`: send, sleep, refresh the token, reconcile."""
        config = self.config
        bearer = config.auth_type == "service_account" and not isinstance(call, FormCall)
        steps = exchange(call, self._policy_for(config), config.credential_label, bearer=bearer)
        answer: Any = None
        try:
            while True:
                step = steps.send(answer)
                answer = None
                if isinstance(step, Send):
                    answer = self._send(call)
                elif isinstance(step, Sleep):
                    self._sleep(step.seconds, step.reason)
                elif isinstance(step, RefreshToken):
                    # Only the token Atlas refused: another task may already have stored a new one.
                    TOKEN_CACHE.invalidate(self._token_key, self._sent_token, deployment_store(config))
                elif isinstance(step, Reconcile) and reconcile is not None:
                    answer = reconcile()
        except StopIteration as done:
            return done.value

    def _sleep(self, seconds: float, reason: str = "") -> None:
        import time

        self.log.info("Retrying Atlas request in %.1f s (%s)", seconds, reason)
        time.sleep(seconds)

    def _send(self, call: ApiCall) -> Outcome:
        config = self.config
        headers = call.headers()
        auth: AuthBase | None
        if isinstance(call, FormCall):
            headers["Authorization"] = basic_authorization(config.principal, config.secret)
            auth = None
        elif config.auth_type == "service_account":
            self._sent_token = self._bearer_token()
            auth = _BearerAuth(self._sent_token)
        else:
            auth = self._digest_auth
        try:
            response = self.session.request(
                call.method,
                config.base_url + call.path,
                params=dict(call.params) or None,
                data=call.body(),
                headers=headers,
                auth=auth,
                timeout=config.timeout,
                # Per request, not only on the session: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE and
                # HTTPS_PROXY in the environment win over session.verify and session.proxies (psf/requests#3829),
                # which would silently turn on a connection's verify=false or replace its ca_bundle or proxies.
                verify=config.verify,
                proxies=dict(config.proxies) if config.proxies else None,
                # Never follow: on a cross-host 30x, requests' Digest auth would answer the other host's
                # challenge with our key. exchange() turns the 30x into an error naming the target.
                allow_redirects=False,
                stream=True,  # read through CappedBody: a hostile body costs at most MAX_API_BODY_BYTES
            )
        except requests.RequestException as exc:
            return TransportFailure(_describe_transport_error(exc), maybe_sent=not _never_connected(exc))
        try:
            body = CappedBody(call, response.headers)
            for chunk in response.iter_content(READ_CHUNK_BYTES):
                body.add(chunk)
        except requests.RequestException as exc:
            return TransportFailure(_describe_transport_error(exc), maybe_sent=True)
        finally:
            response.close()
        return Response.of(response.status_code, response.headers, body.content())

    @property
    def _token_key(self) -> str:
        return TOKEN_CACHE.key(self.config.base_url, self.config.principal, self.config.secret)

    def _bearer_token(self) -> str:
        config = self.config
        shared = config.share_tokens
        cached = TOKEN_CACHE.get(self._token_key, shared=shared)
        if cached is None:
            cached = TOKEN_CACHE.acquire(
                self._token_key,
                lambda: self._fetch_token(config),
                lambda value: revoke_token(config, value),
                shared=shared,
                deployment=deployment_store(config),
            )
        return cached.access_token

    def _fetch_token(self, config: AtlasConnectionConfig) -> CachedToken:
        token = parse_token(self.run(token_call()), config.credential_label)
        self.log.info("Obtained an Atlas access token for %s", config.credential_label)
        return token


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, NameResolutionError)):
            return True
        reason = getattr(current, "reason", None)
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = reason if isinstance(reason, BaseException) else nested or current.__cause__ or current.__context__
    return False


def _describe_transport_error(exc: BaseException) -> str:
    """Class names only: exception texts can embed full URLs."""
    inner = exc.__cause__ or exc.__context__
    described = type(exc).__name__ + (f" ({type(inner).__name__})" if inner is not None else "")
    if isinstance(exc, requests.exceptions.SSLError):
        described += (
            ": the host's TLS certificate was not accepted by the connection's verify / ca_bundle extras (the "
            "environment's REQUESTS_CA_BUNDLE applies only when verify is true and no ca_bundle is set)"
        )
    return described
