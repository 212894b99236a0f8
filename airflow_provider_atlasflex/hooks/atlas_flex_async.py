"""Async hook for the triggerer: same calls, auth, retries and errors as the sync hook, over httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from airflow_provider_atlasflex.exceptions import AirflowNotFoundException
from airflow_provider_atlasflex.hooks import connection_form, shared_clients
from airflow_provider_atlasflex.hooks import operations as ops
from airflow_provider_atlasflex.hooks.answers import MAX_API_BODY_BYTES, CappedBody
from airflow_provider_atlasflex.hooks.api_protocol import (
    ApiCall,
    Outcome,
    Reconcile,
    RefreshToken,
    Response,
    Send,
    Sleep,
    TransportFailure,
    exchange,
)
from airflow_provider_atlasflex.hooks.atlas_flex import USER_AGENT, AtlasFlexHookBase, revoke_token
from airflow_provider_atlasflex.hooks.connection_config import AtlasConnectionConfig
from airflow_provider_atlasflex.hooks.deployment_tokens import deployment_store
from airflow_provider_atlasflex.hooks.service_account import (
    TOKEN_CACHE,
    CachedToken,
    FormCall,
    basic_authorization,
    parse_token,
    token_call,
)
from airflow_provider_atlasflex.hooks.shared_clients import ClientSettings

# How long triggers reuse a connection read by another trigger (a changed connection is seen after this).
CONFIG_TTL_SECONDS = 30.0
_configs: dict[tuple[int, str], tuple[float, asyncio.Task[AtlasConnectionConfig]]] = {}

__all__ = ["AtlasFlexAsyncHook"]


class AtlasFlexAsyncHook(AtlasFlexHookBase):
    """What the trigger needs, without blocking the triggerer's event loop.

    The connection is read with ``aget_connection`` (or in a worker thread on Airflow versions
    without it), never with a blocking call inside the loop.
    """

    def __init__(self, atlas_conn_id: str = AtlasFlexHookBase.default_conn_name, **kwargs: Any) -> None:
        super().__init__(atlas_conn_id, **kwargs)
        self._config: AtlasConnectionConfig | None = None
        self._client: httpx.AsyncClient | None = None
        self._client_settings: ClientSettings | None = None
        # One Digest state per hook (a trigger's whole wait): the first poll answers a challenge, later polls
        # reuse its nonce with an increasing nonce count; httpx answers a new challenge when Atlas sends one.
        self._digest: _BoundedDigestAuth | None = None
        self._urls: dict[tuple[str, str, tuple[tuple[str, Any], ...]], httpx.URL] = {}

    # Airflow < 3.2 reads the form only from the hook class's own __dict__ (see hooks/connection_form.py).
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabels, placeholders and hidden fields of the connection form (Airflow < 3.2)."""
        return connection_form.ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Typed, defaulted extra fields of the connection form (Airflow < 3.2)."""
        return connection_form.connection_form_widgets()

    async def aconfig(self) -> AtlasConnectionConfig:
        """The connection, read once per loop and ``CONFIG_TTL_SECONDS`` for all the triggers that use it.

        500 triggers of one connection would otherwise each make a round trip to the API server
        (and a thread hop) before their first poll.
        """
        if self._config is None:
            loop = asyncio.get_running_loop()
            key = (id(loop), self.atlas_conn_id)
            cached = _configs.get(key)
            if (
                cached is None
                or cached[1].get_loop() is not loop  # an id reused by a later loop
                or cached[0] < time.monotonic()
                or (cached[1].done() and (cached[1].cancelled() or cached[1].exception() is not None))
            ):
                for stale in [k for k, (_, task) in _configs.items() if task.get_loop().is_closed()]:
                    del _configs[stale]
                cached = _configs[key] = (time.monotonic() + CONFIG_TTL_SECONDS, loop.create_task(self._read_config()))
            self._config = await asyncio.shield(cached[1])
        return self._config

    async def _read_config(self) -> AtlasConnectionConfig:
        getter = getattr(self, "aget_connection", None)
        try:
            if getter is not None:
                conn = await getter(self.atlas_conn_id)
            else:  # Airflow 3.0
                from asgiref.sync import sync_to_async

                conn = await sync_to_async(self.get_connection)(self.atlas_conn_id)
        except AirflowNotFoundException:
            raise self._missing_connection() from None
        return self._config_from(conn)

    async def client(self) -> httpx.AsyncClient:
        """This loop's client for the connection's settings, shared with every other hook (trigger) using them."""
        if self._client is None:
            config = await self.aconfig()
            if self._client is None:  # again: another call of this hook may have leased one during the await
                proxy = (config.proxies or {}).get("https") or (config.proxies or {}).get("http")
                self._client_settings = ClientSettings(config.base_url, config.verify, proxy, config.timeout, USER_AGENT)
                self._client = shared_clients.lease(self._client_settings)
        return self._client

    async def aclose(self) -> None:
        """Give the shared client back (it stays open for other triggers until idle)."""
        if self._client is not None and self._client_settings is not None:
            await shared_clients.release(self._client_settings, self._client)
        self._client = None

    async def get_restore_job(
        self, cluster_name: str, restore_job_id: str, group_id: str | None = None
    ) -> dict[str, Any]:
        config = await self.aconfig()
        return await self.run(ops.get_restore_job(self.resolve_group_id(config, group_id), cluster_name, restore_job_id))

    async def get_flex_cluster(self, cluster_name: str, group_id: str | None = None) -> dict[str, Any]:
        config = await self.aconfig()
        return await self.run(ops.get_flex_cluster(self.resolve_group_id(config, group_id), cluster_name))

    async def run(self, call: ApiCall) -> Any:
        """Drive ``call`` through the shared :func:`exchange` (GETs only: nothing to reconcile)."""
        config = await self.aconfig()
        bearer = config.auth_type == "service_account" and not isinstance(call, FormCall)
        steps = exchange(call, self._policy_for(config), config.credential_label, bearer=bearer)
        answer: Any = None
        try:
            while True:
                step = steps.send(answer)
                answer = None
                if isinstance(step, Send):
                    answer = await self._send(call)
                elif isinstance(step, Sleep):
                    self.log.info("Retrying Atlas request in %.1f s (%s)", step.seconds, step.reason)
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, RefreshToken):
                    # Only the token Atlas refused: another task may already have stored a new one.
                    await asyncio.to_thread(
                        TOKEN_CACHE.invalidate, self._token_key(config), self._sent_token, deployment_store(config)
                    )
                elif isinstance(step, Reconcile):
                    answer = None
        except StopIteration as done:
            return done.value

    async def _send(self, call: ApiCall) -> Outcome:
        config = await self.aconfig()
        client = await self.client()
        headers = call.headers()
        auth: httpx.Auth | None = None
        if isinstance(call, FormCall):
            headers["Authorization"] = basic_authorization(config.principal, config.secret)
        elif config.auth_type == "service_account":
            self._sent_token = await self._bearer_token(config)
            headers["Authorization"] = f"Bearer {self._sent_token}"
        else:
            if self._digest is None:
                self._digest = _BoundedDigestAuth(httpx.DigestAuth(config.principal, config.secret))
            auth = self._digest
        assert self._client_settings is not None
        request = client.build_request(call.method, self._url(config, call), content=call.body(), headers=headers)
        try:
            async with shared_clients.gate(self._client_settings, client):
                # Redirects are never followed (exchange() reports them); the body is read through CappedBody,
                # in the pieces the connection delivers (no re-chunking: an Admin API answer is one or two).
                response = await client.send(request, auth=auth, follow_redirects=False, stream=True)
                try:
                    received = dict(response.headers.items())  # keys lower-cased, read once
                    body = CappedBody(call, received)
                    async for chunk in response.aiter_bytes():
                        body.add(chunk)
                finally:
                    await response.aclose()
        except httpx.HTTPError as exc:
            never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            return TransportFailure(type(exc).__name__, maybe_sent=not never_sent)
        return Response(response.status_code, received, body.content())

    def _url(self, config: AtlasConnectionConfig, call: ApiCall) -> httpx.URL:
        """The call's URL, parsed once per hook: a trigger polls the same job URL for its whole wait."""
        key = (config.base_url, call.path, tuple(sorted(call.params.items())))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= 64:  # a hook paging through a long list keeps only recent pages' URLs
                self._urls.clear()
            url = self._urls[key] = httpx.URL(config.base_url + call.path, params=dict(call.params) or None)
        return url

    @staticmethod
    def _token_key(config: AtlasConnectionConfig) -> str:
        return TOKEN_CACHE.key(config.base_url, config.principal, config.secret)

    async def _bearer_token(self, config: AtlasConnectionConfig) -> str:
        """One token for all the triggers of this triggerer (single flight across loops, threads and the host)."""

        async def fetch() -> CachedToken:
            token = parse_token(await self.run(token_call()), config.credential_label)
            self.log.info("Obtained an Atlas access token for %s", config.credential_label)
            return token

        token = await TOKEN_CACHE.aacquire(
            self._token_key(config),
            fetch,
            lambda value: revoke_token(config, value),
            shared=config.share_tokens,
            deployment=deployment_store(config),
        )
        return token.access_token


class _BoundedDigestAuth(httpx.Auth):
    """httpx's Digest auth, except that a challenge's body is read no further than MAX_API_BODY_BYTES.

    httpx reads the whole body of a 401 before it sends the answer to the challenge
    (``response.aread()``), and a hostile host could make that body any size, in the triggerer's
    memory. The answer needs only the headers, so the challenge's stream is cut at the cap: its
    connection is closed (never returned half-read to the pool) and the answer goes out on a new one.
    """

    requires_response_body = False

    def __init__(self, digest: httpx.DigestAuth) -> None:
        self._digest = digest  # one instance per hook: its nonce count carries across requests

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._digest.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if response.status_code == 401:
                response.stream = _CappedStream(response.stream, MAX_API_BODY_BYTES)
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return


class _CappedStream(httpx.AsyncByteStream):
    """A response body that ends after ``limit`` bytes, closing the rest of it unread."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        remaining = self._limit
        async for chunk in self._inner:
            yield chunk[:remaining]
            remaining -= len(chunk)
            if remaining <= 0:
                await self._inner.aclose()
                return

    async def aclose(self) -> None:
        await self._inner.aclose()
