"""Exceptions raised by the provider.

They carry what a person needs to act at 3 a.m. (which cluster, which credential, which role),
and never a secret: messages are built from ids, names and Atlas' own error fields only.
"""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
    )


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AtlasApiError",
    "AtlasAuthenticationError",
    "AtlasBadRequestError",
    "AtlasFlexConfigError",
    "AtlasFlexError",
    "AtlasMissingRoleError",
    "AtlasNoCompletedSnapshotError",
    "AtlasNotFoundError",
    "AtlasPermissionError",
    "AtlasRateLimitError",
    "AtlasRedirectError",
    "AtlasUnexpectedAnswerError",
    "RestoreJobFailedError",
    "SnapshotLinkExpiredError",
    "SnapshotTransferError",
    "StaleSnapshotError",
]


class AtlasFlexError(AirflowException):
    """Base class of every error this provider raises."""


class AtlasFlexConfigError(AtlasFlexError, ValueError, AirflowFailException):
    """Bad input (a parameter, a connection field) found before any network call.

    Like every class that also derives from ``AirflowFailException``, it fails the task without
    Airflow's retries: running the same task again cannot fix it, and retrying for minutes would
    hold the slot and delay the alert.
    """


class AtlasApiError(AtlasFlexError):
    """The Atlas Admin API answered with an error, or could not be reached at all.

    ``status`` is the HTTP status (``None`` when no response arrived); ``error_code`` comes from
    the body's ``errorCode`` or the ``X-Error-Code`` header.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        detail: str | None = None,
        reason: str | None = None,
        parameters: list[Any] | None = None,
        operation: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.detail = detail
        self.reason = reason
        self.parameters = list(parameters or [])
        self.operation = operation
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields would be lost by the default pickling (used by Airflow's
        # triggerer/XCom paths and by multiprocessing); rebuild them explicitly.
        return (
            _rebuild_api_error,
            (
                type(self),
                str(self),
                {
                    "status": self.status,
                    "error_code": self.error_code,
                    "detail": self.detail,
                    "reason": self.reason,
                    "parameters": self.parameters,
                    "operation": self.operation,
                    "retry_after": self.retry_after,
                },
            ),
        )


def _rebuild_api_error(cls: type[AtlasApiError], message: str, fields: dict[str, Any]) -> AtlasApiError:
    return cls(message, **fields)


class AtlasAuthenticationError(AtlasApiError, AirflowFailException):
    """Atlas refused the credentials (401 after the one token refresh), or the OAuth token endpoint did."""


class AtlasPermissionError(AtlasApiError):
    """The credentials are valid but Atlas refused the call (403): a missing role, or the token cap."""


class AtlasMissingRoleError(AtlasPermissionError, AirflowFailException):
    """403 for a missing project role or API access-list entry: someone must grant it, a retry cannot."""


class AtlasNotFoundError(AtlasApiError, AirflowFailException):
    """The project, cluster, snapshot or restore job does not exist (404)."""


class AtlasBadRequestError(AtlasApiError, AirflowFailException):
    """Atlas refused the request as invalid (400), e.g. a cluster that is not a flex cluster."""


class AtlasRedirectError(AtlasApiError, AirflowFailException):
    """The Admin API answered with a redirect, which is never followed (credentials stay with the configured host)."""


class AtlasUnexpectedAnswerError(AtlasApiError):
    """A success status whose body is not what the spec promises (HTML, wrong shape, too large).

    Not a fail-fast error: a proxy's maintenance page may be gone by the next try.
    """


class AtlasNoCompletedSnapshotError(AtlasApiError):
    """The cluster has no COMPLETED snapshot yet; one may appear later, so task retries stay on."""


class AtlasRateLimitError(AtlasApiError):
    """Rate limits outlasted the retry budget (429)."""


class RestoreJobFailedError(AtlasFlexError, AirflowFailException):
    """The DOWNLOAD restore job ended FAILED, is not a DOWNLOAD job, or its link expired.

    Retrying the waiting task cannot help (a new job must be requested), so Airflow's task
    retries are skipped and the run fails at once with this message.
    """


class StaleSnapshotError(AtlasFlexError, AirflowFailException):
    """The snapshot a restore drill would restore is older than the drill allows.

    Atlas takes one flex snapshot a day: when the newest is too old, a day was missed, and a task
    retry minutes later cannot fix that; the drill fails at once so the alert goes out.
    """


class SnapshotTransferError(AtlasFlexError):
    """The snapshot file could not be copied and verified; nothing was committed at the destination."""


class SnapshotLinkExpiredError(SnapshotTransferError):
    """The pre-signed link was refused (403) or its expirationDate passed."""


class DestinationMissingError(SnapshotTransferError, AirflowFailException):
    """The destination's bucket does not exist: no retry can create it, so the task fails before downloading."""
