"""Operator that finds the flex clusters to export tonight, and says why the others are skipped."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_MAX_SNAPSHOT_AGE,
    DEFAULT_NEW_CLUSTER_GRACE,
)
from airflow_provider_atlasflex.exceptions import (
    AtlasBadRequestError,
    AtlasFlexConfigError,
    AtlasNotFoundError,
    AtlasUnexpectedAnswerError,
)
from airflow_provider_atlasflex.validation import (
    require_bool,
    require_cluster_name,
    require_connection_id,
    require_object_id,
    require_positive_timedelta,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_atlasflex.freshness import Freshness
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

__all__ = ["ALL_PROJECTS", "AtlasFlexClusterDiscoveryOperator", "not_exportable_reason"]

ALL_PROJECTS = "*"
# A pattern may hold what a cluster name holds plus the glob characters * ? [ ] !
_PATTERN = r"^[a-zA-Z0-9*?\[\]!-]{1,64}$"  # compiled on first use (re caches it), not on every DAG parse
_GLOB_CHARS = set("*?[]")
# States in which Atlas cannot serve a backup: being provisioned, or going away.
UNEXPORTABLE_STATES = {
    "CREATING": "the cluster is still being created (state CREATING)",
    "DELETING": "the cluster is being deleted (state DELETING)",
}


def not_exportable_reason(cluster: Mapping[str, Any]) -> str | None:
    """Why a listed flex cluster cannot be exported tonight, from its description alone (None: it can)."""
    backup = cluster.get("backupSettings")
    if isinstance(backup, Mapping) and backup.get("enabled") is False:
        return "backup is disabled for this cluster (backupSettings.enabled is false)"
    return UNEXPORTABLE_STATES.get(str(cluster.get("stateName")))


class AtlasFlexClusterDiscoveryOperator(BaseOperator):
    """List the flex clusters of one, several or every project, pick the ones to export, and judge
    whether each is protected by a fresh snapshot (its recovery point).

    A cluster is exportable when its name matches ``include`` and not ``exclude`` (glob patterns,
    e.g. ``"prod-*"``), backup is enabled, it is not CREATING or DELETING, and it has a COMPLETED
    snapshot. Every other cluster gets one log line saying why it is skipped. An ``include`` entry
    without glob characters that names no cluster is reported as ``missing`` (a typo must not
    pass silently).

    Freshness: a cluster whose newest COMPLETED snapshot is older than ``max_snapshot_age``, that
    has FAILED snapshots newer than it, or that has no COMPLETED snapshot although it was created
    more than ``new_cluster_grace`` ago, is ``stale``: backups have stopped, and the night's report
    fails naming it, the snapshot and its age. A stale cluster that still has a COMPLETED snapshot
    stays exportable (a copy of what exists is still worth keeping). Only a cluster younger than
    ``new_cluster_grace`` without a snapshot is ``skipped`` ("no COMPLETED snapshot yet").

    One cluster's trouble never fails the whole discovery: a cluster deleted between the cluster
    listing and its snapshot listing (404) is ``skipped`` ("deleted after it was listed"); a cluster
    Atlas answers nonsense about (an invalid name, a malformed or refused snapshot listing, a
    snapshot dated in the future) is ``failed`` with the reason. All reach the night's report; the
    other clusters are exported. Problems that concern every cluster (credentials, an unreachable
    API) still fail the task.

    Returns ``{"exportable": [{"cluster_name", "group_id"}...], "recovery_points": [...],
    "stale": [...], "skipped": [...], "failed": [...], "missing": [...], "excluded": [...]}``.
    ``recovery_points[i]`` describes ``exportable[i]``'s newest COMPLETED snapshot
    (``snapshot_id``, ``finished_at``, ``age_hours``); ``stale`` entries add the ``reason``.
    ``exportable``, ``skipped`` and ``stale`` are also pushed as XCom keys, so a mapped export can
    ``expand_kwargs`` over ``exportable``.

    :param group_ids: project ids (templated); ``"*"``: every project the credentials can see;
        omitted: the connection's ``group_id`` extra.
    :param include: glob patterns of cluster names to export (templated; default every cluster).
    :param exclude: glob patterns of cluster names never to export (templated).
    :param require_completed_snapshot: list each cluster's snapshots to check it has a COMPLETED one
        and judge its freshness (one request per cluster; default True). False skips both.
    :param max_snapshot_age: the recovery point objective (timedelta or seconds; default 36 hours).
    :param new_cluster_grace: how long a new cluster may go without its first snapshot before it is
        stale (timedelta or seconds; default 26 hours: Atlas' first snapshot comes ~24 h after creation).
    :param atlas_conn_id: ``mongodb_atlas`` connection id (templated).
    """

    template_fields: Sequence[str] = ("group_ids", "include", "exclude", "atlas_conn_id")
    ui_color = "#c3e6cb"

    def __init__(
        self,
        *,
        group_ids: str | Sequence[str] | None = None,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        require_completed_snapshot: bool = True,
        max_snapshot_age: timedelta | float = DEFAULT_MAX_SNAPSHOT_AGE,
        new_cluster_grace: timedelta | float = DEFAULT_NEW_CLUSTER_GRACE,
        atlas_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.group_ids = group_ids
        self.include = include
        self.exclude = exclude
        self.require_completed_snapshot = require_completed_snapshot
        self.max_snapshot_age = max_snapshot_age
        self.new_cluster_grace = new_cluster_grace
        self.atlas_conn_id = atlas_conn_id

    def execute(self, context: Context) -> dict[str, list[Any]]:
        found = self.discover()
        for key in ("exportable", "skipped", "stale"):
            context["ti"].xcom_push(key=key, value=found[key])
        return found

    def discover(self) -> dict[str, list[Any]]:
        """The discovery result (see the class docstring); operators built on discovery call this."""
        # Everything is checked before the first request.
        groups = _checked_group_ids(self.group_ids)
        include = _checked_patterns(self.include, "include", allow_empty=False)
        exclude = _checked_patterns(self.exclude, "exclude", allow_empty=True)
        require_bool(self.require_completed_snapshot, "require_completed_snapshot")
        self._max_age = require_positive_timedelta(self.max_snapshot_age, "max_snapshot_age")
        self._grace = require_positive_timedelta(self.new_cluster_grace, "new_cluster_grace")
        from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook

        hook = AtlasFlexHook(require_connection_id(self.atlas_conn_id))
        exportable: list[dict[str, str]] = []
        recovery_points: list[dict[str, Any]] = []
        stale: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        excluded: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        matched: set[str] = set()
        try:
            if groups == ALL_PROJECTS:
                projects = [str(g["id"]) for g in hook.list_groups() if isinstance(g, Mapping) and g.get("id")]
                self.log.info("The credentials see %d project(s): %s", len(projects), ", ".join(projects))
            elif groups is None:
                projects = [hook.resolve_group_id(hook.config, None)]
            else:
                projects = list(groups)
            for group_id in projects:
                clusters = hook.list_flex_clusters(group_id)
                self.log.info("Project %s has %d flex cluster(s)", group_id, len(clusters))
                for cluster in clusters:
                    name = str(cluster.get("name"))
                    where = {"cluster_name": name, "group_id": group_id}
                    if not any(fnmatch.fnmatchcase(name, p) for p in include):
                        excluded.append({**where, "reason": "not matched by include"})
                        self.log.info(
                            "Not exporting %s (project %s): not matched by include %s", name, group_id, include
                        )
                        continue
                    matched.update(p for p in include if fnmatch.fnmatchcase(name, p))
                    hit = next((p for p in exclude if fnmatch.fnmatchcase(name, p)), None)
                    if hit is not None:
                        excluded.append({**where, "reason": f"matched by exclude {hit!r}"})
                        self.log.info("Not exporting %s (project %s): matched by exclude %r", name, group_id, hit)
                        continue
                    try:
                        reason, point = self._judge(hook, cluster, group_id)
                    except _ClusterFailed as problem:
                        failed.append({**where, "reason": str(problem)})
                        self.log.error("Cannot export %r (project %s): %s", name, group_id, problem)
                        continue
                    if point is not None and point.stale:
                        stale.append({**where, **point.as_dict()})
                        self.log.error("%s (project %s) is NOT protected: %s", name, group_id, point.reason)
                    if reason is not None:
                        skipped.append({**where, "reason": reason})
                        self.log.warning("Skipping %s (project %s): %s", name, group_id, reason)
                        continue
                    if point is not None and point.snapshot_id is None:
                        continue  # stale without any COMPLETED snapshot: nothing to copy
                    exportable.append(where)
                    recovery_points.append({**where, **(point.as_dict() if point else {})})
        finally:
            hook.close()
        missing = [
            {"cluster_name": p, "reason": f"no flex cluster named {p!r} in project(s) {', '.join(projects)}"}
            for p in include
            if not _GLOB_CHARS & set(p) and p not in matched
        ]
        for entry in missing:
            self.log.error("Cannot export %s: %s", entry["cluster_name"], entry["reason"])
        self.log.info(
            "%d cluster(s) to export, %d stale, %d skipped, %d failed, %d excluded, %d missing",
            len(exportable),
            len(stale),
            len(skipped),
            len(failed),
            len(excluded),
            len(missing),
        )
        return {
            "exportable": exportable,
            "recovery_points": recovery_points,
            "stale": stale,
            "skipped": skipped,
            "failed": failed,
            "missing": missing,
            "excluded": excluded,
        }

    def _judge(
        self, hook: AtlasFlexHook, cluster: Mapping[str, Any], group_id: str
    ) -> tuple[str | None, Freshness | None]:
        """Why this cluster is skipped tonight (None: export it) and its recovery point (None: not judged).

        Raises :class:`_ClusterFailed` when Atlas' answer about it is bad.
        """
        try:
            name = require_cluster_name(cluster.get("name"), "the listed cluster name")
        except AtlasFlexConfigError as exc:
            raise _ClusterFailed(f"Atlas listed an invalid cluster name: {exc}") from None
        reason = not_exportable_reason(cluster)
        if reason is not None or not self.require_completed_snapshot:
            return reason, None
        try:
            snapshots = hook.list_snapshots(name, group_id)
        except AtlasNotFoundError as exc:
            return f"the cluster was deleted after it was listed (404 on its snapshot listing: {exc})", None
        except (AtlasUnexpectedAnswerError, AtlasBadRequestError, AtlasFlexConfigError) as exc:
            raise _ClusterFailed(f"Atlas gave a bad answer about its snapshots: {exc}") from None
        from airflow_provider_atlasflex.freshness import judge_cluster
        from airflow_provider_atlasflex.restore_jobs import utcnow

        point = judge_cluster(
            cluster, snapshots, now=utcnow(), max_age=self._max_age, new_cluster_grace=self._grace
        )
        if point.untrusted:
            raise _ClusterFailed(f"Atlas gave a bad answer about its snapshots: {point.reason}")
        if point.new:
            return point.reason, point
        return None, point


class _ClusterFailed(Exception):
    """Atlas' answer about one cluster is unusable: that cluster fails tonight, the others go on."""


def _checked_group_ids(value: Any) -> str | list[str] | None:
    if value is None or value == ALL_PROJECTS:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        # One id is accepted as a list of one; anything else (a comma list, a rendered "None") is refused.
        if "," in value:
            ids = ", ".join(repr(part.strip()) for part in value.split(","))
            raise AtlasFlexConfigError(
                f"group_ids is one string of comma-separated ids, {value!r}; pass a list instead: [{ids}]."
            )
        return [require_object_id(value, "group_ids")]
    if not isinstance(value, (list, tuple)) or not value:
        raise AtlasFlexConfigError(
            f"group_ids must be None (the connection's project), '*' (every project the credentials can see) or a "
            f"non-empty list of 24-hex project ids, got {type(value).__name__} {value!r}."
        )
    return list(dict.fromkeys(require_object_id(v, "each of group_ids") for v in value))


def _checked_patterns(value: Any, what: str, *, allow_empty: bool) -> list[str]:
    if isinstance(value, str):
        raise AtlasFlexConfigError(
            f"{what} must be a list of glob patterns such as ['prod-*'], got the string {value!r}: wrap it in a list."
        )
    if not isinstance(value, (list, tuple)) or (not value and not allow_empty):
        need = "a list" if allow_empty else "a non-empty list"
        raise AtlasFlexConfigError(
            f"{what} must be {need} of cluster-name glob patterns (e.g. ['*'] for every cluster), got "
            f"{type(value).__name__} {value!r}."
        )
    for pattern in value:
        if not isinstance(pattern, str) or not re.fullmatch(_PATTERN, pattern):
            raise AtlasFlexConfigError(
                f"{what} pattern {pattern!r} is not valid: use cluster-name characters (letters, digits, hyphens) "
                "and the glob characters * ? [ ] !, at most 64 characters."
            )
    return list(dict.fromkeys(value))
