"""What an Atlas Admin API exchange looks like, independent of the HTTP library.

The sync hook (requests) and the async hook (httpx) both drive :func:`exchange`, a generator
that decides what to send, how long to wait, when to refresh a token and when to give up. Each
hook only performs the steps, so retries, envelope handling and error messages exist once.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_atlasflex.exceptions import (
    AtlasApiError,
    AtlasAuthenticationError,
    AtlasBadRequestError,
    AtlasMissingRoleError,
    AtlasNotFoundError,
    AtlasPermissionError,
    AtlasRateLimitError,
)
from airflow_provider_atlasflex.hooks.answers import check_shape, check_success_type, redirect_error, unexpected_answer

API_VERSION = "2024-11-13"
ATLAS_MEDIA_TYPE = f"application/vnd.atlas.{API_VERSION}+json"
API_PREFIX = "/api/atlas/v2"
TOKEN_PATH = "/api/oauth/token"
REVOKE_PATH = "/api/oauth/revoke"
MAX_DETAIL_CHARS = 300

# Which role each operation needs, to say so when Atlas answers 403.
ROLE_NEEDED = {
    "getGroupFlexCluster": "Project Read Only",
    "downloadGroupFlexClusterBackup": "Project Backup Export Operator (or Project Owner)",
    "listGroupFlexClusterBackupRestoreJobs": "Project Read Only",
    "getGroupFlexClusterBackupRestoreJob": "Project Read Only",
    "listGroupFlexClusterBackupSnapshots": "Project Read Only",
    "getGroupFlexClusterBackupSnapshot": "Project Read Only",
    "listGroupFlexClusters": "Project Read Only",
    "listGroups": "Organization Member (or Project Read Only on each project)",
    "createGroupFlexClusterBackupRestoreJob": "Project Backup Recovery Operator (or Project Owner)",
}


SNAPSHOT_GONE_HINT = "Flex snapshots are kept 8 days; list the current ones or omit snapshot_id to use the newest."


def media_type(version: str) -> str:
    """The versioned media type of one API version (each operation names its own in the spec)."""
    return f"application/vnd.atlas.{version}+json"


@dataclass(frozen=True)
class ApiCall:
    """One logical Admin API call; ``cluster``/``group_id``/``subject`` only feed error messages."""

    operation: str
    method: str
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json_body: Mapping[str, Any] | None = None
    group_id: str | None = None
    cluster: str | None = None
    subject: str | None = None
    # What to do when Atlas answers 404 for ``subject`` (a gone snapshot and an unknown job need different advice).
    not_found_hint: str = SNAPSHOT_GONE_HINT
    # The spec's x-xgen-version of this operation (listGroups is 2023-01-01, the flex ones 2024-11-13).
    version: str = API_VERSION

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD")

    @property
    def where(self) -> str:
        """" on cluster 'x' in project y", for messages ("" when the call names neither)."""
        if self.cluster and self.group_id:
            return f" on cluster {self.cluster!r} in project {self.group_id}"
        if self.group_id:
            return f" in project {self.group_id}"
        return ""

    def headers(self) -> dict[str, str]:
        media = media_type(self.version)
        # identity: an answer is small JSON, and a compressed one would be inflated whole per network read
        # before the 16 MiB cap on its body could refuse it (a hostile host's deflate bomb).
        headers = {"Accept": media, "Accept-Encoding": "identity"}
        if self.json_body is not None:
            headers["Content-Type"] = media
        return headers

    def body(self) -> bytes | None:
        return None if self.json_body is None else json.dumps(self.json_body).encode()


@dataclass(frozen=True)
class Response:
    """What came back: status, headers (keys lower-cased) and the raw body."""

    status: int
    headers: Mapping[str, str]
    content: bytes

    @classmethod
    def of(cls, status: int, headers: Mapping[str, str], content: bytes) -> Response:
        return cls(status, {k.lower(): v for k, v in headers.items()}, content)


@dataclass(frozen=True)
class TransportFailure:
    """No response. ``maybe_sent`` is False only when the connection was never established."""

    error: str
    maybe_sent: bool


Outcome = Response | TransportFailure


@dataclass(frozen=True)
class Send:
    """Step: send the call (with fresh authentication) and answer with an :data:`Outcome`."""


@dataclass(frozen=True)
class Sleep:
    """Step: wait ``seconds`` before the next attempt; ``reason`` says why, for the log."""

    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class RefreshToken:
    """Step: drop the cached bearer token so the next Send fetches a new one."""


@dataclass(frozen=True)
class Reconcile:
    """Step: a non-idempotent call may have been acted on; answer with its result if it was, else None."""


Step = Send | Sleep | RefreshToken | Reconcile


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter that never waits less than the server's Retry-After."""

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wait = self.backoff(attempt)
        return wait if retry_after is None else max(retry_after, 0.0) + wait / 2


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def exchange(
    call: ApiCall, policy: RetryPolicy, credential_label: str, *, bearer: bool
) -> Generator[Step, Outcome | Any, Any]:
    """Drive one call to a decoded result, or raise a typed :class:`AtlasApiError`.

    Retries 429, 5xx and transport errors. A redirect is an error (never followed: credentials stay
    with the configured host), and a success must be JSON of the shape the spec declares. A POST is re-sent only when the server cannot have
    acted (connection never made, 429) or after :class:`Reconcile` found no trace of it.
    A 401 with a bearer token refreshes the token once; a 401 saying a Digest nonce is stale
    (``stale=true``: the keys are right, the nonce expired) is re-challenged and answered once.
    """
    attempt = 0
    refreshed = False
    while True:
        outcome = yield Send()
        if isinstance(outcome, Response):
            if 300 <= outcome.status < 400:
                raise redirect_error(call, outcome.status, outcome.headers)
            success = 200 <= outcome.status < 300
            if success:
                check_success_type(call, outcome.status, outcome.headers, outcome.content)
            try:
                status, payload = unwrap_envelope(outcome, strict=success)
            except ValueError:
                raise unexpected_answer(call, "a body that is not JSON", outcome.status) from None
            if 200 <= status < 300:
                check_shape(call, payload, status)
                return payload
            if status == 401 and bearer and not refreshed:
                refreshed = True
                yield RefreshToken()
                continue
            if status == 401 and not bearer and not refreshed and stale_digest_nonce(outcome.headers):
                refreshed = True
                continue
            retryable = status == 429 or status >= 500
            retry_after = parse_retry_after(outcome.headers)
            if not retryable or attempt >= policy.max_retries:
                raise api_error(call, status, outcome.headers, payload, credential_label, attempts=attempt + 1)
            if retry_after is not None and retry_after > policy.retry_after_max:
                raise api_error(call, status, outcome.headers, payload, credential_label, attempts=attempt + 1)
            ambiguous = not call.idempotent and status != 429
            why = f"HTTP {status}" + (f", Retry-After {retry_after:g} s" if retry_after is not None else "")
        else:
            if attempt >= policy.max_retries:
                raise AtlasApiError(
                    f"Could not reach Atlas for {call.operation}{_where(call)} after {attempt + 1} attempts: "
                    f"{outcome.error}. Check the connection host, proxies and network access.",
                    operation=call.operation,
                )
            retry_after = None
            ambiguous = not call.idempotent and outcome.maybe_sent
            why = str(outcome.error)
        attempt += 1
        reason = f"{call.operation}{_where(call)}: {why}; attempt {attempt + 1} of {policy.max_retries + 1}"
        yield Sleep(policy.delay(attempt, retry_after), reason)
        if ambiguous:
            found = yield Reconcile()
            if found is not None:
                return found


_STALE = re.compile(r'(?:^|[\s,])stale\s*=\s*"?true\b', re.IGNORECASE)


def stale_digest_nonce(headers: Mapping[str, str]) -> bool:
    """True when a 401's Digest challenge says only the nonce was stale (RFC 7616), not the keys."""
    challenge = headers.get("www-authenticate", "")
    return challenge.lstrip().lower().startswith("digest") and _STALE.search(challenge) is not None


def unwrap_envelope(response: Response, *, strict: bool = False) -> tuple[int, Any]:
    """Decode JSON and undo ``envelope=true`` wrapping; returns the effective status and payload.

    A body that is not JSON raises ``ValueError`` when ``strict`` (a success must be JSON); an
    error answer's text is kept (clipped) as its detail.
    """
    payload: Any = None
    if response.content:
        try:
            payload = json.loads(response.content)
        except ValueError:
            if strict:
                raise
            payload = {"detail": response.content[:MAX_DETAIL_CHARS].decode("utf-8", "replace")}
    status = response.status
    if isinstance(payload, dict) and isinstance(payload.get("status"), int) and status == 200:
        status = payload["status"]
        if set(payload) == {"status", "content"}:
            payload = payload["content"]
        else:
            payload = {k: v for k, v in payload.items() if k != "status"}
    return status, payload


def api_error(
    call: ApiCall,
    status: int,
    headers: Mapping[str, str],
    payload: Any,
    credential_label: str,
    *,
    attempts: int = 1,
) -> AtlasApiError:
    """Build the typed exception with a message that says what to do about it."""
    body = payload if isinstance(payload, dict) else {}
    code = body.get("errorCode") or headers.get("x-error-code")
    if not code and isinstance(body.get("error"), str):  # OAuth errors: {"error": "invalid_client", ...}
        code = body["error"]
    detail = _clip(body.get("detail") or body.get("error_description"))
    reason = body.get("reason")
    parameters = body.get("parameters") if isinstance(body.get("parameters"), list) else []
    fields = _bad_fields(body)
    retry_after = parse_retry_after(headers)
    where = _where(call)
    summary = f"HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
    cls: type[AtlasApiError] = AtlasApiError
    if status == 401:
        cls = AtlasAuthenticationError
        if credential_label.startswith("service account"):
            check = (
                "Check the connection's Login (the client id, mdb_sa_id_...) and Password (the client secret), "
                "and that the secret has not expired (Atlas UI: Organization > Access Manager > Service Accounts)."
            )
        else:
            check = (
                "Check the connection's Login (the API public key) and Password (the private key), and that the "
                "key still exists (Atlas UI: Organization > Access Manager > API Keys)."
            )
        message = f"Atlas rejected the {credential_label} for {call.operation}{where} ({summary}). {check}"
    elif status == 403:
        cls = AtlasMissingRoleError
        if detail and "token limit" in detail.lower():
            cls = AtlasPermissionError  # tokens expire within the hour: a later retry can succeed
            message = (
                f"The {credential_label} has reached Atlas' cap of 100 active access tokens ({summary}). "
                "Revoke unused tokens in the Atlas UI or wait for them to expire (1 hour)."
            )
        else:
            role = ROLE_NEEDED.get(call.operation, "a suitable project role")
            message = (
                f"The {credential_label} may not call {call.operation}{where} ({summary}). Grant it the {role} "
                "role on the project, and check the API access list includes this worker's IP address."
            )
    elif status == 404:
        cls = AtlasNotFoundError
        message = _not_found_message(call, code, summary)
    elif status == 429:
        cls = AtlasRateLimitError
        message = (
            f"Atlas kept rate-limiting {call.operation}{where} after {attempts} attempts ({summary}). "
            "Run fewer exports at once (pool or max_active_tis_per_dag) or raise the connection's max_retries."
        )
    elif code == "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API":
        cls = AtlasBadRequestError
        message = (
            f"Cluster {call.cluster!r} in project {call.group_id} is not a flex cluster ({summary}). This provider "
            "exports flex-cluster backups only; dedicated clusters use the Cloud Backup API."
        )
    else:
        if status == 400:
            cls = AtlasBadRequestError
        message = f"Atlas {call.operation}{where} failed ({summary})"
        if fields:
            message += f"; invalid fields: {fields}"
        if status >= 500:
            message += f" after {attempts} attempts; Atlas may be having an incident, the task can be retried"
        message += "."
    return cls(
        message,
        status=status,
        error_code=code,
        detail=detail,
        reason=reason,
        parameters=parameters,
        operation=call.operation,
        retry_after=retry_after,
    )


def _not_found_message(call: ApiCall, code: str | None, summary: str) -> str:
    if code == "CLUSTER_NOT_FOUND":
        return (
            f"No cluster named {call.cluster!r} exists in project {call.group_id} ({summary}). Check cluster_name "
            "and the project id (group_id parameter or the connection's group_id extra)."
        )
    if code == "GROUP_NOT_FOUND":
        return (
            f"Project {call.group_id} was not found, or the credentials cannot see it ({summary}). Check the "
            "group_id (the 24-hex project id shown in the Atlas project settings)."
        )
    if call.subject:
        return (
            f"{call.subject} of cluster {call.cluster!r} in project {call.group_id} was not found ({summary}). "
            f"{call.not_found_hint}"
        )
    return f"Atlas {call.operation}{_where(call)} found nothing ({summary})."


def _where(call: ApiCall) -> str:
    return call.where


def _bad_fields(body: Mapping[str, Any]) -> str:
    detail = body.get("badRequestDetail")
    fields = detail.get("fields") if isinstance(detail, dict) else None
    if not isinstance(fields, list):
        return ""
    return "; ".join(f"{f.get('field')}: {f.get('description')}" for f in fields if isinstance(f, dict))


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."
