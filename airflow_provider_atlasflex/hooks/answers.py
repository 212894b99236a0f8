"""Is an Admin API answer what the spec promises? Checked before anything reads it.

A proxy's HTML page, a hostile responder or a wrong Host can answer 200 with anything. Reading
such a body leniently turned it into ``restore_job_id=None`` or "no snapshot yet"; reading it
whole cost memory without bound. The sync and async hooks both call these checks, so a rule
exists once: bodies are capped while they stream in, a success must be JSON, and each
operation's result must have the shape the OpenAPI spec declares (only the fields we rely on).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_atlasflex.exceptions import AtlasRedirectError, AtlasUnexpectedAnswerError

if TYPE_CHECKING:
    from airflow_provider_atlasflex.hooks.api_protocol import ApiCall

# Admin API bodies are kilobytes (a full page of 500 restore jobs is ~1 MiB); 16 MiB leaves room
# and still bounds what a hostile answer costs.
MAX_API_BODY_BYTES = 16 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024
# Longest text an answer's field may hold. Ids, names, states, dates and versions are tens of characters;
# a pre-signed snapshotUrl (signature, session token) a few KiB. Every field we keep from a listing is
# capped, so what a listing costs per item is bounded too (hooks/listings.py).
MAX_TEXT_CHARS = 256
MAX_LINK_CHARS = 8 * 1024
_OBJECT_ID = re.compile(r"^[a-f0-9]{24}$")
# The text fields of each resource the provider reads (type and length checked when present).
RESTORE_JOB_TEXT = (
    "status", "deliveryType", "expirationDate", "restoreScheduledDate", "restoreFinishedDate",
    "snapshotFinishedDate", "instanceName", "targetDeploymentItemName",
)
SNAPSHOT_TEXT = ("status", "finishTime", "startTime", "scheduledTime", "expiration", "mongoDBVersion")
CLUSTER_TEXT = ("name", "stateName", "createDate")
_HINT = (
    "A proxy, a captive portal or a wrong Host may be answering instead of Atlas: check the connection's Host "
    "(e.g. https://cloud.mongodb.com) and proxies."
)


class CappedBody:
    """Collects a streamed body and stops (raises) as soon as it passes ``limit`` bytes."""

    def __init__(self, call: ApiCall, headers: Mapping[str, str], limit: int = MAX_API_BODY_BYTES) -> None:
        self._call = call
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        declared = {k.lower(): v for k, v in headers.items()}.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > limit:
            raise self._too_large(f"announces {int(declared)} bytes")

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise self._too_large(f"passed {self._limit} bytes")
        self._parts.append(chunk)

    def content(self) -> bytes:
        return b"".join(self._parts)

    def _too_large(self, how: str) -> AtlasUnexpectedAnswerError:
        return unexpected_answer(
            self._call,
            f"a body that {how}, more than the {self._limit // (1024 * 1024)} MiB any Admin API answer needs; "
            "reading stopped there",
        )


def unexpected_answer(call: ApiCall, problem: str, status: int | None = None) -> AtlasUnexpectedAnswerError:
    """The error for an answer that is not what the spec promises; never echoes the body (it may hold a link)."""
    return AtlasUnexpectedAnswerError(
        f"Atlas answered {call.operation}{call.where}" + (f" with HTTP {status}" if status else "")
        + f" but sent {problem}. {_HINT}",
        status=status,
        operation=call.operation,
    )


def redirect_error(call: ApiCall, status: int, headers: Mapping[str, str]) -> AtlasRedirectError:
    """A 30x from the Admin API is refused, naming where it pointed (scheme and host only, never the query)."""
    location = {k.lower(): v for k, v in headers.items()}.get("location", "").strip()
    try:
        parts = urlsplit(location)
        target = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        parts, target = None, ""
    if parts is None or not parts.hostname:
        where = "a path on the same host" if location.startswith("/") else "an unreadable location"
    else:
        where = f"{target!r}"
    return AtlasRedirectError(
        f"Atlas answered {call.operation}{call.where} with a redirect (HTTP {status}) to {where}. The provider never "
        "follows redirects from the Admin API, so no credential or request is sent anywhere but the configured host. "
        "Set the connection's Host to the Atlas API base URL itself (https://cloud.mongodb.com, with https) and "
        "check that no proxy rewrites the answers.",
        status=status,
        operation=call.operation,
    )


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/vnd.atlas.2024-11-13+json``."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_success_type(call: ApiCall, status: int, headers: Mapping[str, str], content: bytes) -> None:
    """A 2xx with a body must declare JSON (an absent Content-Type is judged by the shape check)."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if content and content_type.strip() and not is_json_media_type(content_type):
        media = content_type.split(";", 1)[0].strip()[:80]
        raise unexpected_answer(call, f"a {media!r} body, not JSON", status)


def check_shape(call: ApiCall, payload: Any, status: int | None = None) -> None:
    """Raise when ``payload`` lacks what the spec promises for ``call.operation`` (and we rely on)."""
    checker = _SHAPES.get(call.operation)
    problem = checker(payload) if checker is not None else None
    if problem:
        raise unexpected_answer(call, problem, status)


def _object_id(value: Any) -> bool:
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None


def _strings(item: Mapping[str, Any], what: str, keys: tuple[str, ...], limit: int = MAX_TEXT_CHARS) -> str | None:
    for key in keys:
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return f"{what} whose {key!r} is a {type(value).__name__}, not a string"
        if len(value) > limit:
            return f"{what} whose {key!r} is {len(value)} characters long, more than the {limit} it can need"
    return None


def _object_ids(item: Mapping[str, Any], what: str, keys: tuple[str, ...]) -> str | None:
    """Optional 24-hex ids: absent or null is fine, anything else must be an id."""
    for key in keys:
        if item.get(key) is not None and not _object_id(item[key]):
            return f"{what} whose {key!r} is not a 24-hex id"
    return None


def _restore_job(job: Any) -> str | None:
    what = "a restore job"
    if not isinstance(job, dict):
        return f"{what} that is a JSON {_json_kind(job)}, not an object"
    if not _object_id(job.get("id")):
        return f"{what} without a 24-hex 'id'"
    return (
        _object_ids(job, what, ("snapshotId", "projectId", "targetProjectId"))
        or _strings(job, what, ("snapshotUrl",), MAX_LINK_CHARS)
        or _strings(job, what, RESTORE_JOB_TEXT)
    )


def _snapshot(snapshot: Any) -> str | None:
    if not isinstance(snapshot, dict):
        return f"a snapshot that is a JSON {_json_kind(snapshot)}, not an object"
    if not _object_id(snapshot.get("id")):
        return "a snapshot without a 24-hex 'id'"
    return _strings(snapshot, "a snapshot", SNAPSHOT_TEXT)


def _cluster(cluster: Any) -> str | None:
    what = "a cluster description"
    if not isinstance(cluster, dict):
        return f"{what} that is a JSON {_json_kind(cluster)}, not an object"
    backup = cluster.get("backupSettings")
    if backup is not None and not isinstance(backup, dict):
        return f"{what} whose 'backupSettings' is a JSON {_json_kind(backup)}, not an object"
    if backup is not None and backup.get("enabled") is not None and not isinstance(backup["enabled"], bool):
        return f"{what} whose 'backupSettings.enabled' is a JSON {_json_kind(backup['enabled'])}, not a boolean"
    return _object_ids(cluster, what, ("id",)) or _strings(cluster, what, CLUSTER_TEXT)


def _listed_cluster(cluster: Any) -> str | None:
    """A cluster in listGroupFlexClusters: its name is what the provider acts on, so it must be there."""
    if isinstance(cluster, dict) and not isinstance(cluster.get("name"), str):
        return "a cluster description without a 'name' string"
    return _cluster(cluster)


def _group(group: Any) -> str | None:
    if not isinstance(group, dict):
        return f"a project that is a JSON {_json_kind(group)}, not an object"
    if not _object_id(group.get("id")):
        return "a project without a 24-hex 'id'"
    return _strings(group, "a project", ("name", "orgId"))


def _token(body: Any) -> str | None:
    if not isinstance(body, dict):
        return f"a token answer that is a JSON {_json_kind(body)}, not an object"
    return None


def _page_of(item: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def check(body: Any) -> str | None:
        if not isinstance(body, dict):
            return f"a list page that is a JSON {_json_kind(body)}, not an object"
        results = body.get("results")
        if not isinstance(results, list):
            return "a list page whose 'results' is not a list"
        total = body.get("totalCount")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            return "a list page whose 'totalCount' is not a whole number"
        for index, entry in enumerate(results):
            problem = item(entry)
            if problem:
                return f"{problem} (item {index} of the page)"
        return None

    return check


def _json_kind(value: Any) -> str:
    if value is None:
        return "null (or an empty body)"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), type(value).__name__
    )


_SHAPES: dict[str, Callable[[Any], str | None]] = {
    "getGroupFlexCluster": _cluster,
    "downloadGroupFlexClusterBackup": _restore_job,
    "getGroupFlexClusterBackupRestoreJob": _restore_job,
    "listGroupFlexClusterBackupRestoreJobs": _page_of(_restore_job),
    "getGroupFlexClusterBackupSnapshot": _snapshot,
    "listGroupFlexClusterBackupSnapshots": _page_of(_snapshot),
    "listGroupFlexClusters": _page_of(_listed_cluster),
    "listGroups": _page_of(_group),
    "oauthToken": _token,
}
