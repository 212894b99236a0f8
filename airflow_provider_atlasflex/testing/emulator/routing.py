"""Request/response value types and the route table (path -> operationId).

Why separate: matching and parameter validation follow the OpenAPI spec closely
and are easiest to check (and reuse in tests) when they are plain data + regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from ._util import Headers
from .errors import ApiErrorResponse

__all__ = ["ParsedRequest", "Reply", "Route", "match_route", "parse_bool", "parse_int"]

GROUPS_PATH = "/api/atlas/v2/groups"
API_PREFIX = GROUPS_PATH + "/{groupId}/flexClusters/{name}"
# Each operation has its own version in the spec (x-xgen-version); most of ours are 2024-11-13.
FLEX_VERSION = "2024-11-13"
HEX24 = re.compile(r"^([a-f0-9]{24})$")
CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*$")
PARAM_PATTERNS: dict[str, re.Pattern[str]] = {
    "groupId": HEX24,
    "name": CLUSTER_NAME,
    "snapshotId": HEX24,
    "restoreJobId": HEX24,
}


@dataclass
class ParsedRequest:
    """What the handlers need from an HTTP request."""

    method: str
    target: str  # raw request-target as sent (path?query), used by Digest
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes


@dataclass
class Reply:
    """A response to write: either ``body`` or a ``stream`` of ``length`` bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    length: int | None = None
    cut_after: int | None = None  # close the connection after this many body bytes
    delay: float = 0.0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    template: str
    regex: re.Pattern[str]
    params: tuple[str, ...]
    paginated: bool = False
    version: str = FLEX_VERSION

    @property
    def media_type(self) -> str:
        return f"application/vnd.atlas.{self.version}+json"


def _route(
    operation: str,
    method: str,
    suffix: str,
    paginated: bool = False,
    *,
    prefix: str = API_PREFIX,
    version: str = FLEX_VERSION,
) -> Route:
    template = prefix + suffix
    params = tuple(re.findall(r"{(\w+)}", template))
    pattern = (
        "^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$"
    )
    return Route(operation, method, template, re.compile(pattern), params, paginated, version)


ROUTES: tuple[Route, ...] = (
    _route("getGroupFlexCluster", "GET", ""),
    _route("downloadGroupFlexClusterBackup", "POST", "/backup/download"),
    _route("listGroupFlexClusterBackupRestoreJobs", "GET", "/backup/restoreJobs", paginated=True),
    _route("createGroupFlexClusterBackupRestoreJob", "POST", "/backup/restoreJobs"),
    _route("getGroupFlexClusterBackupRestoreJob", "GET", "/backup/restoreJobs/{restoreJobId}"),
    _route("listGroupFlexClusterBackupSnapshots", "GET", "/backup/snapshots", paginated=True),
    _route("getGroupFlexClusterBackupSnapshot", "GET", "/backup/snapshots/{snapshotId}"),
    # Discovery: the project's flex clusters, and the projects the credentials can see.
    _route("listGroupFlexClusters", "GET", "/{groupId}/flexClusters", paginated=True, prefix=GROUPS_PATH),
    _route("listGroups", "GET", "", paginated=True, prefix=GROUPS_PATH, version="2023-01-01"),
)


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, raw path params, path_exists_with_other_method)."""
    other_method = False
    for route in ROUTES:
        m = route.regex.match(path)
        if m is None:
            continue
        if route.method != method:
            other_method = True
            continue
        return route, {k: unquote(v) for k, v in m.groupdict().items()}, False
    return None, {}, other_method


def validate_path_params(params: dict[str, str]) -> None:
    """400 VALIDATION_ERROR when a path parameter breaks its spec pattern."""
    for name, value in params.items():
        pattern = PARAM_PATTERNS.get(name)
        if pattern is not None and not pattern.match(value):
            raise ApiErrorResponse(
                400,
                "VALIDATION_ERROR",
                f"Invalid path parameter {name}: {value!r} does not match {pattern.pattern}.",
                [name, value],
                fields=[{"field": name, "description": f"must match {pattern.pattern}"}],
            )


def parse_bool(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    raise ApiErrorResponse(
        400,
        "VALIDATION_ERROR",
        f"Invalid query parameter {name}: {raw!r} is not a boolean.",
        [name, raw],
        fields=[{"field": name, "description": "must be true or false"}],
    )


def parse_int(query: dict[str, str], name: str, default: int, lo: int, hi: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
        ok = raw.strip().lstrip("+-").isdigit() and value >= lo and (hi is None or value <= hi)
    except ValueError:
        ok = False
    if not ok:
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ApiErrorResponse(
            400,
            "VALIDATION_ERROR",
            f"Invalid query parameter {name}: {raw!r} must be an integer {bound}.",
            [name, raw],
            fields=[{"field": name, "description": f"must be an integer {bound}"}],
        )
    return value
