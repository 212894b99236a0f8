"""The Extra of a ``mongodb_atlas`` connection as saved: a JSON object whose keys are checked one by one.

What the connection form (or a JSON/URI connection) may leave there besides plain values: empty
fields (None or ""), JSON typed into a text box (Airflow 3.1's form), keys under an old name, and
typos. Each is read or named here; :mod:`.connection_config` checks the values.
"""

from __future__ import annotations

import difflib
import json
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)
# (connection id, extra key) already warned about in this process: hooks read the connection often.
_WARNED: set[tuple[str, str]] = set()
EXTRA_EXAMPLE = '{"group_id": "<24-hex project id>", "auth_type": "digest"}'
JSON_TYPE_NAMES: dict[type, str] = {
    list: "a JSON array", str: "a JSON string", int: "a number", float: "a number", bool: "true/false", type(None): "null"
}
# Extra keys that were renamed (old -> new): the old one is still read, with a warning once per process.
RENAMED_EXTRAS = {"token_sharing": "sharing_scope"}


def read_extras(conn: Connection) -> dict[str, Any]:
    raw = conn.extra
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError) as exc:
        raise AtlasFlexConfigError(
            f"Connection {conn.conn_id!r} has an Extra field that is not a JSON object ({exc.__class__.__name__}); "
            f"write it as e.g. {EXTRA_EXAMPLE}."
        ) from None
    if not isinstance(value, dict):
        found = JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise AtlasFlexConfigError(
            f"Connection {conn.conn_id!r}: Extra must be a JSON object, not {found}; write it as e.g. {EXTRA_EXAMPLE}."
        )
    return value


def warn_unknown_extras(conn_id: str, extras: dict[str, Any]) -> None:
    """One warning per unknown extra key and process, naming the nearest known key: a typo such as
    ``groupId`` must not be silently ignored (the default it leaves in place may be the wrong project)."""
    from airflow_provider_atlasflex.get_provider_info import CONN_FIELDS

    known = sorted(CONN_FIELDS)
    extras = {key: value for key, value in extras.items() if key not in RENAMED_EXTRAS}
    folded = {key.replace("_", "").lower(): key for key in known}
    for key in sorted(set(extras) - set(known)):
        if (conn_id, key) in _WARNED:
            continue
        _WARNED.add((conn_id, key))
        nearest = folded.get(str(key).replace("_", "").replace("-", "").lower()) or next(
            iter(difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)), None
        )
        hint = f"did you mean {nearest!r}?" if nearest else f"the known keys are {', '.join(known)}"
        log.warning("Connection %r has an unknown extra %r, which is ignored: %s", conn_id, key, hint)


def or_default(value: Any, default: Any) -> Any:
    """A form field left empty (None or "") means the default."""
    return default if value is None or value == "" else value


def renamed(conn_id: str, extras: dict[str, Any], key: str) -> Any:
    """The extra ``key``, else its old name (read for connections saved before the rename, warned about once)."""
    value = extras.get(key)
    old = next((old for old, new in RENAMED_EXTRAS.items() if new == key and old in extras), None)
    if old is None:
        return value
    if (conn_id, old) not in _WARNED:
        _WARNED.add((conn_id, old))
        used = "ignored: the new one is set" if value not in (None, "") else "still read"
        log.warning(
            "Connection %r uses the deprecated extra %r (%s); rename it to %r: Airflow masks any extra whose name "
            "contains 'token', so the connection form showed it as '***'.",
            conn_id, old, used, key,
        )
    return value if value not in (None, "") else extras[old]


def json_text(conn_id: str, what: str, text: str, example: str) -> Any:
    """A JSON extra given as text (a form's text box); the text is never echoed (a proxy URL may hold a password).

    ``what`` says what the extra must be ("proxies must map ..."): the error names it and where the JSON broke.
    """
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r}: extra {what}, as a JSON object such as {example}; its text is not JSON "
            f"(line {getattr(exc, 'lineno', '?')}, column {getattr(exc, 'colno', '?')})."
        ) from None


