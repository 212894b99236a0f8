"""The night's report: one table saying, per cluster, what the nightly export did.

Built by :func:`build_night_report` from the discovery result and each mapped export's XCom (pure
functions, tested as units), and published by :class:`AtlasFlexNightReportOperator`, which runs
whatever happened upstream (``trigger_rule="all_done"``), logs the table, pushes it to XCom and
fails the run when any cluster is not protected (``failed`` or ``stale``), so one alert carries
the whole night and names every cluster at risk, its snapshot and that snapshot's age.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_atlasflex.defaults import DEFAULT_MAX_SNAPSHOT_AGE
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError
from airflow_provider_atlasflex.validation import require_positive_timedelta

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "BACKFILLED",
    "EXPORTED",
    "FAILED",
    "SKIPPED",
    "STALE",
    "UNCHANGED",
    "UNPROTECTED",
    "AtlasFlexNightReportOperator",
    "build_night_report",
    "render_table",
]

EXPORTED, UNCHANGED, BACKFILLED = "exported", "unchanged", "backfilled"
STALE, SKIPPED, FAILED = "stale", "skipped", "failed"
# The outcomes that fail the night: the cluster is not protected by a fresh copy.
UNPROTECTED = (STALE, FAILED)
SHA_PREFIX = 12
_COLUMNS = (
    ("cluster", "cluster_name"),
    ("project", "group_id"),
    ("outcome", "outcome"),
    ("snapshot", "snapshot_id"),
    ("finished", "finished_at"),
    ("age", "age_hours"),
    ("bytes", "bytes"),
    ("sha256", "sha256_prefix"),
    ("seconds", "seconds"),
    ("reason", "reason"),
)


def build_night_report(
    discovery: Mapping[str, Any] | None,
    exports: Sequence[Mapping[str, Any] | None],
    *,
    export_task_id: str = "export_cluster.copy_to_storage",
    task_states: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    max_snapshot_age: timedelta | None = None,
    plan: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per cluster: what happened to it tonight, and whether it is protected now.

    ``exported`` (copied tonight) or ``unchanged`` (the archive already held that snapshot) with
    bytes, sha256 prefix and seconds; ``stale`` (its newest snapshot is too old, newer ones
    FAILED, or it has none any more: backups stopped), ``skipped`` or ``failed`` with a reason.
    Every row names the snapshot, its finish time and its age (at ``now``); a snapshot older than
    ``max_snapshot_age`` now is ``stale`` even if discovery found it fresh hours ago.

    ``exports[i]`` is the XCom of the export mapped over ``discovery["exportable"][i]``, or over
    ``plan["exports"][i]`` when the night was planned by :class:`AtlasFlexExportPlanOperator` (None
    when that export did not finish). With a plan, snapshots the archive already held are
    ``unchanged``, older ones copied to fill the archive's holes are ``backfilled`` rows, and the
    backlog left for later nights is named on its cluster's row. ``task_states`` (Airflow's ``get_task_states`` of the run, keys
    ``"<task_id>_<map_index>"``), when known, names the task that failed in the reason.
    """
    if not isinstance(discovery, Mapping):
        return [_row({}, FAILED, reason="cluster discovery did not finish: see the discovery task's log")]
    from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

    now = now or datetime.now(timezone.utc)
    stale = {_key(e): e for e in _entries(discovery, "stale")}
    points = {_key(e): e for e in _entries(discovery, "recovery_points")}
    targets = _entries(plan, "exports") if isinstance(plan, Mapping) else _entries(discovery, "exportable")
    rows: list[dict[str, Any]] = []
    backfills: list[dict[str, Any]] = []
    for index, target in enumerate(targets):
        result = exports[index] if index < len(exports) else None
        point = points.get(_key(target), {})
        backfill = bool(target.get("backfill"))
        if isinstance(result, Mapping) and result.get("sha256"):
            row = _row(
                target,
                BACKFILLED if backfill else UNCHANGED if result.get("already_present") else EXPORTED,
                bytes=result.get("bytes"),
                sha256_prefix=str(result["sha256"])[:SHA_PREFIX],
                seconds=result.get("seconds"),
                path=result.get("path"),
                snapshot_id=result.get("snapshot_id"),
            )
        else:
            reason = _why_not_finished(export_task_id, index, task_states or {})
            snapshot_id = target.get("snapshot_id") or point.get("snapshot_id")
            row = _row(target, FAILED, reason=f"backfill of snapshot {snapshot_id}: {reason}" if backfill else reason,
                       snapshot_id=snapshot_id)
        if backfill:
            row["finished_at"] = target.get("finished_at")
            finished = parse_atlas_time(row["finished_at"])
            row["age_hours"] = round((now - finished).total_seconds() / 3600, 1) if finished else None
            backfills.append(row)
        else:
            rows.append(_judged(row, point, stale.get(_key(target)), now, max_snapshot_age))
    for held in _entries(plan, "held") if isinstance(plan, Mapping) else []:
        row = _row(held, UNCHANGED, bytes=held.get("bytes"), sha256_prefix=str(held.get("sha256"))[:SHA_PREFIX],
                   path=held.get("path"), snapshot_id=held.get("snapshot_id"))
        rows.append(_judged(row, points.get(_key(held), {}), stale.get(_key(held)), now, max_snapshot_age))
    _note_backlog(rows, _entries(plan, "backlog") if isinstance(plan, Mapping) else [])
    rows += backfills
    for entry in stale.values():
        if _key(entry) not in points:  # no COMPLETED snapshot at all: nothing was exported
            rows.append(_row(entry, STALE, reason=entry.get("reason")))
    for entry in _entries(discovery, "skipped"):
        rows.append(_row(entry, SKIPPED, reason=entry.get("reason")))
    for entry in [*_entries(discovery, "failed"), *_entries(discovery, "missing")]:
        rows.append(_row(entry, FAILED, reason=entry.get("reason")))
    return rows


def _note_backlog(rows: list[dict[str, Any]], backlog: Sequence[Mapping[str, Any]]) -> None:
    """Say on each cluster's row which older snapshots still wait to be backfilled (the archive's holes)."""
    waiting: dict[tuple[Any, Any], list[str]] = {}
    for entry in backlog:
        waiting.setdefault(_key(entry), []).append(str(entry.get("snapshot_id")))
    for row in rows:
        ids = waiting.get(_key(row))
        if ids:
            note = f"{len(ids)} older snapshot(s) missing from the archive wait for the next nights: {', '.join(ids)}"
            row["reason"] = f"{row['reason']}; {note}" if row["reason"] else note


def _judged(
    row: dict[str, Any],
    point: Mapping[str, Any],
    stale: Mapping[str, Any] | None,
    now: datetime,
    max_age: timedelta | None,
) -> dict[str, Any]:
    """The row with its snapshot's finish time and age now, turned ``stale`` where it is not protected."""
    if point.get("snapshot_id") != row["snapshot_id"]:
        return row  # the export took a snapshot newer than discovery saw: fresher, nothing more to judge
    from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

    finished = parse_atlas_time(point.get("finished_at"))
    row["finished_at"] = point.get("finished_at")
    if finished is not None:
        row["age_hours"] = round((now - finished).total_seconds() / 3600, 1)
    why = stale.get("reason") if stale else None
    if why is None and max_age is not None and finished is not None and now - finished > max_age:
        why = (
            f"snapshot {row['snapshot_id']} is {row['age_hours']} h old now (finished {row['finished_at']}), "
            f"older than max_snapshot_age {max_age.total_seconds() / 3600:g} h"
        )
    if why is None:
        return row
    if row["outcome"] == FAILED:
        row["reason"] = f"{row['reason']}; and it is stale: {why}"
    else:
        row["outcome"], row["reason"] = STALE, f"{why} (that snapshot is in the archive: {row['outcome']})"
    return row


def _entries(discovery: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [e for e in discovery.get(key) or [] if isinstance(e, Mapping)]


def _key(entry: Mapping[str, Any]) -> tuple[Any, Any]:
    return entry.get("cluster_name"), entry.get("group_id")


def _why_not_finished(export_task_id: str, index: int, task_states: Mapping[str, Any]) -> str:
    """Which tasks of the mapped export did not succeed (from the run's task states), else where to look."""
    group = export_task_id.rsplit(".", 1)[0] + "." if "." in export_task_id else ""
    suffix = f"_{index}"
    unhappy = [
        f"{key[: -len(suffix)]} {state}"
        for key, state in task_states.items()
        if key.startswith(group) and key.endswith(suffix) and state not in ("success", None)
    ]
    if unhappy:
        return f"export did not finish: {', '.join(sorted(unhappy))} (map index {index}; see that task's log)"
    return f"export did not finish: see the log of {export_task_id} [{index}]"


def _row(where: Mapping[str, Any], outcome: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cluster_name": where.get("cluster_name"),
        "group_id": where.get("group_id"),
        "outcome": outcome,
        "snapshot_id": None,
        "finished_at": None,
        "age_hours": None,
        "bytes": None,
        "sha256_prefix": None,
        "seconds": None,
        "reason": None,
    }
    row.update(fields)
    return row


def render_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table (fixed-width columns) and a one-line summary under it."""
    rows = list(rows)
    cells = [[title for title, _ in _COLUMNS]]
    for row in rows:
        cells.append([_cell(key, row.get(key)) for _, key in _COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(summary(rows))
    return "\n".join(lines)


def summary(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    outcomes = (EXPORTED, UNCHANGED, BACKFILLED, STALE, SKIPPED, FAILED)
    count = {o: sum(1 for r in rows if r.get("outcome") == o) for o in outcomes}
    total = sum(int(r.get("bytes") or 0) for r in rows if r.get("outcome") in (EXPORTED, BACKFILLED))
    backfilled = f", {count[BACKFILLED]} backfilled" if count[BACKFILLED] else ""
    return (
        f"{count[EXPORTED]} exported{backfilled} ({total:,} bytes), {count[UNCHANGED]} unchanged, "
        f"{count[STALE]} stale, {count[SKIPPED]} skipped, {count[FAILED]} failed"
    )


def unprotected_message(rows: Sequence[Mapping[str, Any]], shown: int = 20) -> str:
    """One alert line: which clusters are not protected tonight and why (stale first, with their age)."""
    parts = []
    for outcome in (STALE, FAILED):
        hits = [r for r in rows if r.get("outcome") == outcome]
        if not hits:
            continue
        names = [f"{r.get('cluster_name') or 'discovery'} ({r.get('reason')})" for r in hits[:shown]]
        more = f" and {len(hits) - shown} more" if len(hits) > shown else ""
        parts.append(f"{len(hits)} cluster(s) {outcome} tonight: {'; '.join(names)}{more}")
    return f"{'. '.join(parts)}. {summary(rows)}; see the table above."


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "bytes":
        return f"{int(value):,}"
    if key == "seconds":
        return f"{float(value):.1f}"
    if key == "age_hours":
        return f"{float(value):.1f} h"
    if key == "finished_at":
        return str(value)[:16].replace("T", " ")
    return str(value)


class AtlasFlexNightReportOperator(BaseOperator):
    """Log and return the night's table; fail when any cluster is not protected (failed or stale).

    Runs with ``trigger_rule="all_done"`` (the default here) so it reports failed exports too. The
    table is pushed as XCom key ``report`` before the task fails, and returned when it does not.

    :param discovery_task_id: task id of :class:`AtlasFlexClusterDiscoveryOperator`.
    :param export_task_id: task id of the mapped export (its XCom per map index is one export's result).
    :param max_snapshot_age: a cluster whose exported snapshot is older than this when the report runs
        is ``stale`` (timedelta or seconds; default 36 hours; set the same value as discovery's).
    :param plan_task_id: task id of :class:`AtlasFlexExportPlanOperator` when the export is mapped over
        its ``exports`` (None: mapped over discovery's ``exportable``).
    """

    template_fields: Sequence[str] = ("discovery_task_id", "export_task_id", "plan_task_id")
    ui_color = "#ffe8a1"

    def __init__(
        self,
        *,
        discovery_task_id: str = "discover_clusters",
        export_task_id: str = "export_cluster.copy_to_storage",
        max_snapshot_age: timedelta | float = DEFAULT_MAX_SNAPSHOT_AGE,
        plan_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.discovery_task_id = discovery_task_id
        self.export_task_id = export_task_id
        self.max_snapshot_age = max_snapshot_age
        self.plan_task_id = plan_task_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        for name in ("discovery_task_id", "export_task_id", "plan_task_id"):
            value = getattr(self, name)
            if value is None and name == "plan_task_id":
                continue
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise AtlasFlexConfigError(
                    f"{name} must name a task of this DAG (e.g. 'discover_clusters' or "
                    f"'export_cluster.copy_to_storage'), got {value!r}."
                )
        max_age = require_positive_timedelta(self.max_snapshot_age, "max_snapshot_age")
        ti = context["ti"]
        discovery = ti.xcom_pull(task_ids=self.discovery_task_id, map_indexes=-1)
        plan = ti.xcom_pull(task_ids=self.plan_task_id, map_indexes=-1) if self.plan_task_id else None
        if self.plan_task_id and not isinstance(plan, Mapping):
            # No plan: no export ran; each exportable cluster's row points at the plan task's log.
            plan = {"exports": (discovery or {}).get("exportable") or [] if isinstance(discovery, Mapping) else []}
            export_task_id = self.plan_task_id
        else:
            export_task_id = self.export_task_id
        source = plan.get("exports") if isinstance(plan, Mapping) else (
            discovery.get("exportable") if isinstance(discovery, Mapping) else None
        )
        # One pull per map index: the i-th mapped export ran for source[i] (same on every Airflow 3 minor).
        exports = [ti.xcom_pull(task_ids=export_task_id, map_indexes=i) for i in range(len(source or []))]
        states = self._task_states(ti) if len(exports) > sum(1 for e in exports if e) else {}
        rows = build_night_report(
            discovery,
            exports,
            export_task_id=export_task_id,
            task_states=states,
            max_snapshot_age=max_age,
            plan=plan if isinstance(plan, Mapping) else None,
        )
        self.log.info("The night's exports:\n%s", render_table(rows))
        ti.xcom_push(key="report", value=rows)
        if any(r["outcome"] in UNPROTECTED for r in rows):
            raise AtlasFlexError(unprotected_message(rows))
        return rows

    def _task_states(self, ti: Any) -> dict[str, Any]:
        """The run's task states, to say which task of a failed export failed; {} where Airflow cannot tell."""
        getter = getattr(ti, "get_task_states", None)
        if getter is None or "." not in self.export_task_id:
            return {}
        try:
            found = getter(
                dag_id=ti.dag_id, run_ids=[ti.run_id], task_group_id=self.export_task_id.rsplit(".", 1)[0]
            )
        except Exception as exc:  # noqa: BLE001 - a nicer reason is not worth failing the report over
            self.log.info("Could not read the run's task states (%s); the report points at the logs instead", exc)
            return {}
        states = found.get(ti.run_id) if isinstance(found, Mapping) else None
        return dict(states) if isinstance(states, Mapping) else {}
