"""Hook for the Atlas Admin API's flex-cluster backup operations (sync, ``requests``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import cached_property
from typing import Any

import requests
from requests.auth import AuthBase, HTTPDigestAuth

from airflow.sdk import BaseHook
from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import (
    AirflowNotFoundException,
    AtlasFlexConfigError,
    AtlasFlexError,
    AtlasNotFoundError,
)
from airflow_provider_atlasflex.hooks import operations as ops
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
from airflow_provider_atlasflex.validation import require_connection_id, require_object_id, require_timedelta

__all__ = ["AtlasFlexHook", "AtlasFlexHookBase"]

USER_AGENT = "airflow-provider-atlasflex"
MAX_PAGES = 1000


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

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow < 3.2 (newer versions read the provider metadata)."""
        from airflow_provider_atlasflex.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

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
    requests.post(
        config.base_url + call.path,
        data=call.body(),
        headers={**call.headers(), "Authorization": basic_authorization(config.principal, config.secret)},
        timeout=min(config.timeout, 10.0),
        proxies=config.proxies,
        verify=config.verify,
    ).raise_for_status()


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

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        """Close the HTTP session. Service-account tokens stay cached for other hooks (see TokenCache)."""
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

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
        return list(self._pages(lambda page: ops.list_restore_jobs(group, cluster_name, page, items_per_page)))

    def list_snapshots(
        self, cluster_name: str, group_id: str | None = None, items_per_page: int = ops.MAX_ITEMS_PER_PAGE
    ) -> list[dict[str, Any]]:
        """Every snapshot of the cluster, all pages."""
        group = self._group(group_id)
        return list(self._pages(lambda page: ops.list_snapshots(group, cluster_name, page, items_per_page)))

    def get_newest_completed_snapshot(self, cluster_name: str, group_id: str | None = None) -> dict[str, Any]:
        """The newest COMPLETED snapshot; a clear error when the cluster has none yet."""
        group = self._group(group_id)
        newest = newest_completed_snapshot(self.list_snapshots(cluster_name, group))
        if newest is None:
            raise AtlasNotFoundError(
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

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: authenticates and, with a default project, reads it."""
        try:
            config = self.config
            if config.auth_type == "service_account":
                # Prove the client id and secret now, not a token cached earlier.
                token = self._fetch_token(config)
                TOKEN_CACHE.put(
                    self._token_key, token, lambda value: revoke_token(config, value), shared=config.share_tokens
                )
            if config.group_id:
                # A made-up cluster name: 404 CLUSTER_NOT_FOUND proves auth and project access.
                try:
                    self.get_flex_cluster("airflow-connection-test", config.group_id)
                except AtlasNotFoundError as exc:
                    if exc.error_code != "CLUSTER_NOT_FOUND":
                        raise
            elif config.auth_type == "digest":
                return True, "Connection parsed; set the group_id extra to test access to a project."
            return True, f"Authenticated to {config.base_url} as {config.credential_label}."
        except AtlasFlexError as exc:
            return False, str(exc)

    # ---- the engine -----------------------------------------------------------------------

    def _group(self, group_id: str | None) -> str:
        return self.resolve_group_id(self.config, group_id)

    def _pages(self, call_for_page: Callable[[int], ApiCall]) -> Iterator[dict[str, Any]]:
        seen = 0
        for page in range(1, MAX_PAGES + 1):
            call = call_for_page(page)
            body = self.run(call)
            results = (body.get("results") or []) if isinstance(body, dict) else []
            yield from results
            seen += len(results)
            total = body.get("totalCount") if isinstance(body, dict) else None
            per_page = int(call.params["itemsPerPage"])
            if not results or len(results) < per_page or (isinstance(total, int) and seen >= total):
                return

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
                    TOKEN_CACHE.invalidate(self._token_key, self._sent_token)
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
            auth = HTTPDigestAuth(config.principal, config.secret)
        try:
            response = self.session.request(
                call.method,
                config.base_url + call.path,
                params=dict(call.params) or None,
                data=call.body(),
                headers=headers,
                auth=auth,
                timeout=config.timeout,
            )
        except requests.RequestException as exc:
            return TransportFailure(_describe_transport_error(exc), maybe_sent=not _never_connected(exc))
        return Response.of(response.status_code, response.headers, response.content)

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
    return type(exc).__name__ + (f" ({type(inner).__name__})" if inner is not None else "")
