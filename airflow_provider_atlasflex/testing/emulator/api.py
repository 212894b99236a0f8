"""The Atlas Admin API operations (flex cluster + flex backup), end to end.

Order of checks mirrors a real gateway: authenticate, negotiate the versioned
media type, apply injected faults, validate parameters, authorise the role, look
the resources up, validate the body, act, and render (envelope/pretty).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .auth import PROJECT_OWNER, DigestAuthenticator, Principal, TokenStore
from .errors import ApiErrorResponse
from .faults import Fault, FaultSet
from .routing import (
    HEX24,
    ParsedRequest,
    Reply,
    Route,
    parse_bool,
    parse_int,
    validate_path_params,
)
from .state import ProjectState

__all__ = ["ATLAS_MEDIA_TYPE", "SUCCESS_CONTENT_TYPE", "AdminApi", "render_json"]

API_VERSION = "2024-11-13"
ATLAS_MEDIA_TYPE = f"application/vnd.atlas.{API_VERSION}+json"
SUCCESS_CONTENT_TYPE = f"{ATLAS_MEDIA_TYPE};charset=utf-8"
RATE_LIMIT = 1200
TARGET_NAME_MAX = 64

# Roles allowed to call each write operation (x-rolesRequirements + Project Owner).
_WRITE_ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    "downloadGroupFlexClusterBackup": (
        (PROJECT_OWNER, "GROUP_BACKUP_EXPORT_OPERATOR"),
        "Project Backup Export Operator",
    ),
    "createGroupFlexClusterBackupRestoreJob": (
        (PROJECT_OWNER, "GROUP_BACKUP_RECOVERY_OPERATOR"),
        "Project Backup Recovery Operator",
    ),
}

_FAULT_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "USER_CANNOT_ACCESS_RESOURCE",
    404: "RESOURCE_NOT_FOUND",
    409: "CONFLICT",
    429: "RATE_LIMITED_TOKEN_BUCKET",
    500: "UNEXPECTED_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def render_json(obj: Any, pretty: bool) -> bytes:
    """Serialise like Atlas: sorted keys, compact unless ``pretty``."""
    if pretty:
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def fault_error(fault: Fault) -> ApiErrorResponse:
    """The ApiError an injected fault answers with."""
    status = fault.status or 500
    code = fault.error_code or _FAULT_CODES.get(status, "UNEXPECTED_ERROR")
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(round(fault.retry_after))
    detail = fault.detail
    if detail is None:
        if status == 429:
            wait = round(fault.retry_after) if fault.retry_after is not None else 60
            detail = f"Please retry after {wait} seconds. Request capacity: 10. Refill rate: 5 per 60 seconds."
        elif status == 401:
            detail = "You are not authorized for this resource."
        elif status >= 500:
            detail = "Unexpected error."
        else:
            detail = f"Injected fault ({status})."
    return ApiErrorResponse(status, code, detail, headers=headers)


def _media_types(header: str) -> list[str]:
    return [part.split(";", 1)[0].strip().lower() for part in header.split(",") if part.strip()]


class _RateCounter:
    """Sliding one-minute call counter per principal, for RateLimit-* headers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, who: str) -> int:
        now = self._clock()
        with self._lock:
            q = self._calls.setdefault(who, deque())
            while q and now - q[0] >= 60:
                q.popleft()
            q.append(now)
            return max(0, RATE_LIMIT - len(q))


class AdminApi:
    """Answers one Admin API request (already routed) with a :class:`Reply`."""

    def __init__(
        self,
        state: ProjectState,
        digest: DigestAuthenticator,
        tokens: TokenStore,
        faults: FaultSet,
        *,
        string_error_parameters: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state = state
        self.digest = digest
        self.tokens = tokens
        self.faults = faults
        self.string_error_parameters = string_error_parameters
        self._sleep = sleep
        self._rate = _RateCounter(state.clock)

    # ---------------------------------------------------------------- render
    def error_reply(self, err: ApiErrorResponse, pretty: bool = False, remaining: int | None = None) -> Reply:
        body = dict(err.body)
        if not self.string_error_parameters:
            # The published spec types ApiError.parameters items as objects, while
            # the live service sends strings; spec-strict mode drops them.
            body["parameters"] = [p for p in body.get("parameters", []) if isinstance(p, dict)]
        headers = [("Content-Type", "application/json"), ("X-Error-Code", err.error_code)]
        if remaining is not None:
            headers += [("RateLimit-Limit", str(RATE_LIMIT)), ("RateLimit-Remaining", str(remaining))]
        headers += list(err.headers.items())
        return Reply(err.status, headers, render_json(body, pretty))

    def _ok(
        self, body: Any, pretty: bool, envelope: bool, is_list: bool, remaining: int, media: str = ATLAS_MEDIA_TYPE
    ) -> Reply:
        if envelope:
            body = {**body, "status": 200} if is_list else {"content": body, "status": 200}
        headers = [
            ("Content-Type", f"{media};charset=utf-8"),
            ("RateLimit-Limit", str(RATE_LIMIT)),
            ("RateLimit-Remaining", str(remaining)),
        ]
        return Reply(200, headers, render_json(body, pretty))

    # ------------------------------------------------------------- pipeline
    def authenticate(self, req: ParsedRequest) -> Principal:
        header = req.headers.get("Authorization", "")
        scheme = header.split(" ", 1)[0].lower()
        if scheme == "digest":
            return self.digest.authenticate(header, req.method, req.target)
        if scheme == "bearer":
            return self.tokens.authenticate(header.split(" ", 1)[1].strip() if " " in header else "")
        raise self.digest.unauthorized("You are not authorized for this resource.")

    def handle(
        self, req: ParsedRequest, route: Route, params: dict[str, str]
    ) -> tuple[Reply, Principal | None, list[int]]:
        """Run the whole pipeline; returns the reply, who called, and fired fault ids."""
        pretty_hint = req.query.get("pretty", "").lower() == "true"
        principal: Principal | None = None
        fired: list[int] = []
        remaining: int | None = None
        try:
            principal = self.authenticate(req)
            remaining = self._rate.hit(principal.name)
            accept = req.headers.get("Accept", "")
            if route.media_type not in _media_types(accept):
                raise ApiErrorResponse(406, "INVALID_VERSION_DATE", "Invalid accept header or version date.")
            plan = self.faults.on_call(route.operation, params.get("name"))
            fired = [f.id for f in plan.fired]
            if plan.delay:
                self._sleep(plan.delay)
            if plan.before is not None:
                raise self._fault_error(plan.before)
            reply = self._dispatch(req, route, params, principal, remaining)
            if plan.after is not None:
                raise self._fault_error(plan.after)
            return reply, principal, fired
        except ApiErrorResponse as err:
            return self.error_reply(err, pretty_hint, remaining), principal, fired

    def _fault_error(self, fault: Fault) -> ApiErrorResponse:
        err = fault_error(fault)
        if err.status == 401:
            # Like a revoked credential: Digest clients get a fresh challenge to answer.
            err.headers.setdefault("WWW-Authenticate", self.digest.challenge())
        return err

    def _dispatch(
        self, req: ParsedRequest, route: Route, params: dict[str, str], who: Principal, remaining: int
    ) -> Reply:
        validate_path_params(params)
        envelope = parse_bool(req.query, "envelope", False)
        pretty = parse_bool(req.query, "pretty", False)
        include_count, items_per_page, page_num = True, 100, 1
        if route.paginated:
            include_count = parse_bool(req.query, "includeCount", True)
            items_per_page = parse_int(req.query, "itemsPerPage", 100, 1, 500)
            page_num = parse_int(req.query, "pageNum", 1, 1, None)
        st = self.state
        op = route.operation
        body: Any
        if op in ("listGroups", "listGroupFlexClusters"):
            if op == "listGroups":
                items = st.groups_json()
            else:
                st.require_group(params["groupId"])
                items = st.flex_clusters_json(params["groupId"])
            body = self._page(req, items, include_count, items_per_page, page_num)
            return self._ok(body, pretty, envelope, True, remaining, route.media_type)
        group_id, name = params["groupId"], params["name"]
        if group_id != st.group_id:
            st.require_cluster(group_id, name)  # raises GROUP_NOT_FOUND
        needed = _WRITE_ROLES.get(route.operation)
        if needed is not None and not set(who.roles) & set(needed[0]):
            raise ApiErrorResponse(
                403,
                "USER_CANNOT_ACCESS_RESOURCE",
                f"The API credentials used do not have the required role(s) to access this resource: "
                f"{needed[1]} or Project Owner.",
                [needed[1]],
            )
        st.require_cluster(group_id, name)
        if op == "getGroupFlexCluster":
            return self._ok(st.cluster_json(name), pretty, envelope, False, remaining)
        if op == "listGroupFlexClusterBackupSnapshots":
            items = [s.to_json(st.base_url, st.group_id) for s in st.snapshots(name)]
            body = self._page(req, items, include_count, items_per_page, page_num)
            return self._ok(body, pretty, envelope, True, remaining)
        if op == "getGroupFlexClusterBackupSnapshot":
            snap = st.snapshot(name, params["snapshotId"])
            return self._ok(snap.to_json(st.base_url, st.group_id), pretty, envelope, False, remaining)
        if op == "listGroupFlexClusterBackupRestoreJobs":
            items = [st.job_json(j) for j in st.jobs(name)]
            body = self._page(req, items, include_count, items_per_page, page_num)
            return self._ok(body, pretty, envelope, True, remaining)
        if op == "getGroupFlexClusterBackupRestoreJob":
            job = st.job(name, params["restoreJobId"])
            return self._ok(st.job_json(job), pretty, envelope, False, remaining)
        if op == "downloadGroupFlexClusterBackup":
            payload = self._json_body(req, allowed={"snapshotId"}, required=("snapshotId",))
            self._check_hex(payload, "snapshotId")
            job = st.create_download(name, payload["snapshotId"])
            return self._ok(st.job_json(job), pretty, envelope, False, remaining)
        if op == "createGroupFlexClusterBackupRestoreJob":
            payload = self._json_body(
                req,
                allowed={"snapshotId", "targetDeploymentItemName", "targetProjectId"},
                required=("snapshotId", "targetDeploymentItemName"),
            )
            self._check_hex(payload, "snapshotId")
            if "targetProjectId" in payload:
                self._check_hex(payload, "targetProjectId")
            target = payload["targetDeploymentItemName"]
            if not isinstance(target, str) or not 1 <= len(target) <= TARGET_NAME_MAX:
                raise ApiErrorResponse.validation(
                    "targetDeploymentItemName", f"must be a string of 1 to {TARGET_NAME_MAX} characters"
                )
            job = st.create_restore(name, payload["snapshotId"], target, payload.get("targetProjectId"))
            return self._ok(st.job_json(job), pretty, envelope, False, remaining)
        raise AssertionError(f"unhandled operation {op}")  # pragma: no cover

    # --------------------------------------------------------------- helpers
    def _page(
        self, req: ParsedRequest, items: list[Any], include_count: bool, per_page: int, page: int
    ) -> dict[str, Any]:
        start = (page - 1) * per_page
        results = items[start : start + per_page]
        base = f"{self.state.base_url}{req.path}"

        def href(n: int) -> str:
            return f"{base}?pageNum={n}&itemsPerPage={per_page}"

        links = [{"href": href(page), "rel": "self"}]
        if page > 1:
            links.append({"href": href(page - 1), "rel": "previous"})
        if start + per_page < len(items):
            links.append({"href": href(page + 1), "rel": "next"})
        body: dict[str, Any] = {"links": links, "results": results}
        if include_count:
            body["totalCount"] = len(items)
        return body

    @staticmethod
    def _json_body(req: ParsedRequest, allowed: set[str], required: tuple[str, ...]) -> dict[str, Any]:
        ctype = req.headers.get("Content-Type")
        if not req.body and ctype is None:
            raise ApiErrorResponse(
                400,
                "VALIDATION_ERROR",
                "A request body is required.",
                fields=[{"field": "body", "description": "is required"}],
            )
        media = (ctype or "").split(";", 1)[0].strip().lower()
        if media != ATLAS_MEDIA_TYPE:
            raise ApiErrorResponse(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"Unsupported Content-Type {ctype!r}; send {ATLAS_MEDIA_TYPE}.",
                [ctype or ""],
            )
        try:
            payload = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiErrorResponse(400, "INVALID_JSON", "Received JSON is malformed.") from None
        if not isinstance(payload, dict):
            raise ApiErrorResponse(400, "INVALID_JSON", "Received JSON does not match the expected format.")
        unknown = sorted(set(payload) - allowed)
        if unknown:
            raise ApiErrorResponse(
                400,
                "INVALID_ATTRIBUTE",
                f"Invalid attribute {unknown[0]} specified.",
                [unknown[0]],
                fields=[{"field": f, "description": "is not a writable attribute"} for f in unknown],
            )
        missing = [f for f in required if f not in payload or payload[f] is None]
        if missing:
            raise ApiErrorResponse(
                400,
                "VALIDATION_ERROR",
                f"The required attribute {missing[0]} was not specified.",
                [missing[0]],
                fields=[{"field": f, "description": "must not be null"} for f in missing],
            )
        return payload

    @staticmethod
    def _check_hex(payload: dict[str, Any], field: str) -> None:
        value = payload.get(field)
        if not isinstance(value, str) or not HEX24.match(value):
            raise ApiErrorResponse.validation(field, f"must match {HEX24.pattern}")
