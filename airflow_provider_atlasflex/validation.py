"""Input checks that run before any network call, and URL redaction for log lines.

Every check raises :class:`AtlasFlexConfigError` whose message says what is wrong and how to fix
it, so a bad DAG fails in seconds instead of after a round trip to Atlas.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

# Compiled on first use (re caches them), not on every DAG parse.
OBJECT_ID_PATTERN = r"^[a-f0-9]{24}$"
CLUSTER_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9-]*$"
# Atlas caps flex cluster names at 64 characters; the spec's pattern alone has no bound.
CLUSTER_NAME_MAX_LENGTH = 64


def require_object_id(value: Any, what: str) -> str:
    """Return ``value`` if it is a 24-hex Atlas id; ``what`` names it in the error (e.g. "snapshot_id")."""
    if not isinstance(value, str):
        hint = _rendered_hint(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = " (an id is text: pass it as a string, in quotes in JSON)"
        raise AtlasFlexConfigError(
            f"{what} must be a 24-character hexadecimal string (e.g. '32b6e34b3d91647abb20e7b8'), "
            f"got {type(value).__name__} {_preview(value)}{hint}."
        )
    if not re.fullmatch(OBJECT_ID_PATTERN, value):
        hint = " (Atlas ids are lower-case)" if re.fullmatch(OBJECT_ID_PATTERN, value.lower()) else _rendered_hint(value)
        raise AtlasFlexConfigError(
            f"{what} must be 24 lower-case hexadecimal characters (e.g. 32b6e34b3d91647abb20e7b8), "
            f"got {_preview(value)}{hint}."
        )
    return value


def optional_object_id(value: Any, what: str, omitted: str) -> str | None:
    """``None`` (left out) or a 24-hex id; an empty string is refused rather than read as "left out".

    ``omitted`` says what leaving it out means (e.g. "the newest COMPLETED snapshot"): a template
    that rendered "" must not silently switch to that default.
    """
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise AtlasFlexConfigError(
            f"{what} is an empty string{_rendered_hint(value)}: pass a 24-hex id, or leave {what} out (None) "
            f"to use {omitted}."
        )
    return require_object_id(value, what)


def require_cluster_name(value: Any, what: str = "cluster_name") -> str:
    """Return ``value`` if it is a valid flex cluster name (also safe as one path segment)."""
    if not isinstance(value, str) or not value:
        raise AtlasFlexConfigError(
            f"{what} must be a non-empty string naming an Atlas flex cluster, got {type(value).__name__} "
            f"{_preview(value)}{_rendered_hint(value)}."
        )
    if value == "None":
        raise AtlasFlexConfigError(f"{what} is the string 'None'{_rendered_hint(value)}; pass the flex cluster's name.")
    if len(value) > CLUSTER_NAME_MAX_LENGTH or not re.fullmatch(CLUSTER_NAME_PATTERN, value):
        raise AtlasFlexConfigError(
            f"{what} {_preview(value)} is not a valid Atlas cluster name: use letters, digits and hyphens, "
            f"starting with a letter or digit, at most {CLUSTER_NAME_MAX_LENGTH} characters."
        )
    return value


def require_positive_number(value: Any, what: str, *, allow_zero: bool = False, unit: str = "seconds") -> float:
    """Return ``value`` as a float if it is a positive number (bools are refused); ``unit`` is for the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AtlasFlexConfigError(
            f"{what} must be a number of {unit}, got {type(value).__name__} {_preview(value)}"
            f"{_text_hint(value)}."
        )
    if not math.isfinite(value):
        raise AtlasFlexConfigError(f"{what} must be a finite number of {unit}, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise AtlasFlexConfigError(f"{what} must be {bound}, got {value!r}.")
    return float(value)


def redact_url(url: str) -> str:
    """Drop the query string and fragment of a URL: a pre-signed link's query is a credential."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def require_bool(value: Any, what: str) -> bool:
    """Return ``value`` if it is True or False: a string such as "False" would otherwise count as true."""
    if not isinstance(value, bool):
        raise AtlasFlexConfigError(f"{what} must be True or False, got {type(value).__name__} {_preview(value)}.")
    return value


def _rendered_hint(value: Any) -> str:
    """Point at the usual cause when a templated field rendered to nothing."""
    if value in ("", "None") or value is None:
        return " (if it is templated, the template rendered empty or None: check the XCom, param or variable it reads)"
    return ""


def _text_hint(value: Any) -> str:
    """Why a number arrived as text, when it did: a templated field renders to a string."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (pass a number, not text; a templated field renders text unless the DAG sets render_template_as_native_obj=True)"


def _preview(value: Any, limit: int = 60) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"  # not timedelta(days=-1, seconds=86100) for minus five minutes
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_connection_id(
    value: Any, what: str = "atlas_conn_id", kind: str = "of type 'mongodb_atlas' (e.g. 'mongodb_atlas_default')"
) -> str:
    """Return ``value`` if it can name an Airflow connection (``kind`` says which, for the message)."""
    if not isinstance(value, str) or not value.strip() or value == "None":
        raise AtlasFlexConfigError(
            f"{what} must name an Airflow connection {kind}, got {_preview(value)}{_rendered_hint(value)}."
        )
    return value


def require_timedelta(value: Any, what: str) -> timedelta:
    """Accept a timedelta or a number of seconds (as templated values often are)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AtlasFlexConfigError(
            f"{what} must be a timedelta or a number of seconds (e.g. timedelta(minutes=30) or 1800), got "
            f"{type(value).__name__} {_preview(value)}{_text_hint(value)}."
        )
    else:
        seconds = require_positive_number(value, what, allow_zero=True)
    if seconds < 0:
        raise AtlasFlexConfigError(f"{what} must not be negative, got {_preview(value)}.")
    return timedelta(seconds=seconds)


def require_positive_timedelta(value: Any, what: str) -> timedelta:
    """A timedelta (or seconds) greater than zero: an age limit of zero would fail every cluster."""
    found = require_timedelta(value, what)
    if not found:
        raise AtlasFlexConfigError(f"{what} must be longer than zero (e.g. timedelta(hours=36)), got {_preview(value)}.")
    return found
