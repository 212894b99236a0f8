"""Atlas ``ApiError`` bodies and the exception the handlers raise to produce them.

Why an exception: every layer (routing, auth, validation, state) can stop a request
with one ``raise ApiErrorResponse(...)`` and the server turns it into the exact wire
shape real Atlas uses (``application/json``, ``X-Error-Code`` header).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["ApiErrorResponse", "api_error_body"]


def api_error_body(
    status: int,
    error_code: str,
    detail: str | None,
    parameters: list[Any] | None = None,
    fields: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The ApiError JSON object (keys in the order real Atlas sends them)."""
    body: dict[str, Any] = {}
    if fields is not None:
        body["badRequestDetail"] = {"fields": fields}
    body["detail"] = detail
    body["error"] = status
    body["errorCode"] = error_code
    body["parameters"] = list(parameters or [])
    body["reason"] = HTTPStatus(status).phrase
    return body


class ApiErrorResponse(Exception):
    """Raised anywhere in request handling to answer with an Atlas ApiError."""

    def __init__(
        self,
        status: int,
        error_code: str,
        detail: str | None,
        parameters: list[Any] | None = None,
        *,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {detail}")
        self.status = status
        self.error_code = error_code
        self.body = api_error_body(status, error_code, detail, parameters, fields)
        self.headers = dict(headers or {})

    @classmethod
    def validation(cls, field: str, description: str, detail: str | None = None) -> ApiErrorResponse:
        """400 VALIDATION_ERROR naming the offending field."""
        return cls(
            400,
            "VALIDATION_ERROR",
            detail or f"Invalid value for {field}: {description}",
            [field],
            fields=[{"field": field, "description": description}],
        )
