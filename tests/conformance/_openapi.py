"""Validate recorded HTTP exchanges against the official Atlas OpenAPI spec subset.

Why a shared helper: both the emulator's responses and the provider's requests
must be judged by the same spec with the same rules.  Import it from any test:

    from tests.conformance._openapi import load_spec, validate_exchange

``validate_exchange`` accepts anything shaped like
``airflow_provider_atlasflex.testing.emulator.RecordedExchange`` (operation,
method, path, query, headers, body, status, response_headers, response_body).

The spec file is *not* vendored (licence): it is read from ``$ATLAS_OPENAPI_SPEC``
or ``<repo root>/../shared/atlas-openapi-flex-backup.yaml``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = [
    "SPEC_ENV",
    "SPEC_HOST",
    "ConformanceError",
    "ExchangeLike",
    "declared_statuses",
    "exclusion_reason",
    "load_spec",
    "spec_path",
    "to_openapi_request",
    "to_openapi_response",
    "validate_exchange",
    "validate_request",
    "validate_response",
]

SPEC_ENV = "ATLAS_OPENAPI_SPEC"
SPEC_FILE = "atlas-openapi-flex-backup.yaml"
SPEC_HOST = "https://cloud.mongodb.com"  # the spec's only server; local URLs are mapped onto it
API_PREFIX = "/api/atlas/v2/groups/{groupId}/flexClusters/{name}"
NON_SPEC_OPERATIONS = {
    "oauthToken": "the OAuth token endpoint is not part of the Admin API spec",
    "oauthRevoke": "the OAuth revoke endpoint is not part of the Admin API spec",
    "snapshotFile": "the pre-signed snapshot download is served by the storage host, not the Admin API",
    None: "no spec operation matches this path/method",
}


class ExchangeLike(Protocol):
    """The fields of a recorded exchange this module reads."""

    operation: str | None
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    status: int
    response_headers: Mapping[str, str]
    response_body: bytes


class ConformanceError(AssertionError):
    """A request or response that the spec rejects (message says what and why)."""


def spec_path() -> Path:
    """Where the spec is expected: ``$ATLAS_OPENAPI_SPEC`` or ``<repo>/../shared/...``."""
    env = os.environ.get(SPEC_ENV)
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / SPEC_FILE


def _json_loads(value: bytes, **_params: Any) -> Any:
    """JSON deserializer; openapi-core also passes media-type parameters (charset=...)."""
    return json.loads(value)


def _versioned_media_types(path: str) -> set[str]:
    """Every ``application/vnd.atlas.*+json`` media type the spec mentions."""
    text = Path(path).read_text(encoding="utf-8")
    return set(re.findall(r"application/vnd\.atlas\.[0-9-]+\+json", text))


@lru_cache(maxsize=4)
def _load(path: str) -> OpenAPI:
    # openapi-core only knows application/json; Atlas versions its JSON media type.
    deserializers: dict[str, Callable[[bytes], Any]] = {media: _json_loads for media in _versioned_media_types(path)}
    return OpenAPI.from_file_path(path, config=Config(extra_media_type_deserializers=deserializers))


def load_spec() -> OpenAPI:
    """The parsed spec (cached); ``FileNotFoundError`` says where to put the file."""
    path = spec_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"Atlas OpenAPI spec not found at {path}. Put {SPEC_FILE} in <repo root>/../shared/ "
            f"or point ${SPEC_ENV} at it."
        )
    return _load(str(path))


# ---------------------------------------------------------------- adapters
def _lower_ctype(headers: Mapping[str, str]) -> str:
    for k, v in headers.items():
        if k.lower() == "content-type":
            return v.lower()
    return ""


class _Request:
    """openapi-core ``Request`` protocol over a recorded exchange."""

    def __init__(self, exchange: ExchangeLike) -> None:
        self._x = exchange
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(exchange.query.items())),
            header=Headers(list(exchange.headers.items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return SPEC_HOST

    @property
    def path(self) -> str:
        return urlsplit(self._x.path).path

    @property
    def method(self) -> str:
        return self._x.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._x.body or None

    @property
    def content_type(self) -> str:
        return _lower_ctype(self._x.headers)


class _Response:
    """openapi-core ``Response`` protocol over a recorded exchange."""

    def __init__(self, exchange: ExchangeLike, data: bytes | None = None) -> None:
        self._x = exchange
        self._data = exchange.response_body if data is None else data

    @property
    def status_code(self) -> int:
        return int(self._x.status)

    @property
    def content_type(self) -> str:
        return _lower_ctype(self._x.response_headers)

    @property
    def headers(self) -> Headers:
        return Headers(list(self._x.response_headers.items()))

    @property
    def data(self) -> bytes | None:
        return self._data


def to_openapi_request(exchange: ExchangeLike) -> _Request:
    return _Request(exchange)


def to_openapi_response(exchange: ExchangeLike, data: bytes | None = None) -> _Response:
    return _Response(exchange, data)


# ------------------------------------------------------------------ checks
def _operation_node(spec: OpenAPI, operation_id: str) -> tuple[str, str, Any]:
    for template, item in (spec.spec / "paths").items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item and (item / method)["operationId"] == operation_id:
                return str(template), method, item / method
    raise KeyError(operation_id)


def declared_statuses(spec: OpenAPI, operation_id: str) -> set[int]:
    """HTTP statuses the spec declares for an operation."""
    _, _, node = _operation_node(spec, operation_id)
    return {int(code) for code in (node / "responses").keys() if code.isdigit()}  # noqa: SIM118 - SchemaPath


def exclusion_reason(spec: OpenAPI, exchange: ExchangeLike) -> str | None:
    """Why the spec cannot judge this response, or ``None`` when it can."""
    if exchange.operation in NON_SPEC_OPERATIONS or exchange.operation is None:
        return NON_SPEC_OPERATIONS.get(exchange.operation, NON_SPEC_OPERATIONS[None])
    try:
        statuses = declared_statuses(spec, exchange.operation)
    except KeyError:
        return f"operation {exchange.operation} is not in the spec subset"
    if exchange.status not in statuses:
        return f"status {exchange.status} is not declared for {exchange.operation} (declared: {sorted(statuses)})"
    return None


def _describe(exchange: ExchangeLike) -> str:
    q = "&".join(f"{k}={v}" for k, v in exchange.query.items())
    return f"{exchange.method} {exchange.path}{'?' + q if q else ''} [{exchange.operation}] -> {exchange.status}"


def _causes(exc: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 6:
        detail = str(seen) or type(seen).__name__
        errors = getattr(seen, "schema_errors", None)
        if errors:
            detail += " | schema errors: " + "; ".join(
                f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
            )
        parts.append(f"{type(seen).__name__}: {detail}")
        seen = seen.__cause__ or seen.__context__
    return "\n    caused by ".join(parts)


def validate_request(spec: OpenAPI, exchange: ExchangeLike) -> None:
    """Raise :class:`ConformanceError` unless the request the client sent fits the spec.

    Beyond openapi-core (path/query parameters, body schema, body media type) this
    checks that ``Accept`` names a media type the operation's 200 response declares,
    since the versioned media type is how Atlas selects the API version.
    """
    if exchange.operation in NON_SPEC_OPERATIONS:
        raise ConformanceError(f"{_describe(exchange)}: not a spec operation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openapi-core warns on the oauth2 scheme it cannot check
        try:
            spec.validate_request(to_openapi_request(exchange))
        except Exception as exc:
            raise ConformanceError(f"request {_describe(exchange)} violates the spec:\n    {_causes(exc)}") from exc
    _, _, node = _operation_node(spec, str(exchange.operation))
    produced = set((node / "responses" / "200" / "content").keys())
    accept = next((v for k, v in exchange.headers.items() if k.lower() == "accept"), "")
    offered = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    if not produced & offered:
        raise ConformanceError(
            f"request {_describe(exchange)} sends Accept {accept!r}; the spec produces {sorted(produced)}"
        )


def _response_data_for_validation(exchange: ExchangeLike, allow_string_error_parameters: bool) -> bytes:
    data = exchange.response_body
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        return data
    changed = False
    if (
        exchange.status == 200
        and exchange.query.get("envelope", "").lower() == "true"
        and isinstance(doc, dict)
        and set(doc) == {"content", "status"}
    ):
        # envelope=true wraps a single resource as {"status", "content"}: the spec only
        # models the resource, so judge the content.
        doc = doc["content"]
        changed = True
    if (
        allow_string_error_parameters
        and exchange.status >= 400
        and isinstance(doc, dict)
        and isinstance(doc.get("parameters"), list)
        and any(not isinstance(p, dict) for p in doc["parameters"])
    ):
        # Known spec/live divergence: ApiError.parameters items are typed `object` in the
        # spec, but live Atlas sends strings (e.g. ["cluster-833", "<groupId>"]).
        doc = {**doc, "parameters": [p if isinstance(p, dict) else {"value": p} for p in doc["parameters"]]}
        changed = True
    return json.dumps(doc).encode() if changed else data


def validate_response(spec: OpenAPI, exchange: ExchangeLike, *, allow_string_error_parameters: bool = True) -> None:
    """Raise :class:`ConformanceError` unless the response fits the spec for its status.

    Checks status is declared, the Content-Type matches the declared media type,
    the body matches the schema, and documented headers have the declared types.
    """
    reason = exclusion_reason(spec, exchange)
    if reason is not None:
        raise ConformanceError(f"response {_describe(exchange)} cannot be judged by the spec: {reason}")
    data = _response_data_for_validation(exchange, allow_string_error_parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spec.validate_response(to_openapi_request(exchange), to_openapi_response(exchange, data))
        except Exception as exc:
            body = exchange.response_body[:600].decode("utf-8", "replace")
            raise ConformanceError(
                f"response {_describe(exchange)} violates the spec:\n    {_causes(exc)}\n    body: {body}"
            ) from exc


def validate_exchange(
    spec: OpenAPI,
    exchange: ExchangeLike,
    *,
    check_request: bool = True,
    check_response: bool = True,
    allow_string_error_parameters: bool = True,
) -> list[str]:
    """Validate both sides of one exchange; raises :class:`ConformanceError` with details.

    Safe to call on every recorded exchange: parts the spec cannot judge are skipped
    and described in the returned list (empty = everything was validated):
    OAuth and snapshot-file exchanges entirely, and responses whose status the
    operation does not declare (e.g. 406, 503).  A request that matches no spec
    operation at all (``operation is None``) is an error, not a skip.
    """
    if exchange.operation is None:
        raise ConformanceError(f"{_describe(exchange)}: no spec operation matches this method and path")
    if exchange.operation in NON_SPEC_OPERATIONS:
        return [f"{_describe(exchange)}: skipped, {NON_SPEC_OPERATIONS[exchange.operation]}"]
    skipped: list[str] = []
    if check_request:
        validate_request(spec, exchange)
    if check_response:
        reason = exclusion_reason(spec, exchange)
        if reason is not None:
            skipped.append(f"{_describe(exchange)}: response skipped, {reason}")
        else:
            validate_response(spec, exchange, allow_string_error_parameters=allow_string_error_parameters)
    return skipped
