"""A minimal task context: enough for execute() without a metadata database."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


class RecordingTI:
    """Stands in for the task instance; records what the operator pushes to XCom."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}
        self.map_index = -1
        self.try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def make_context(logical_date: datetime | None = datetime(2026, 11, 28, 3, 30, tzinfo=timezone.utc)) -> dict[str, Any]:
    return {"ti": RecordingTI(), "logical_date": logical_date, "dag_run": None}


class PullingTI(RecordingTI):
    """A task instance whose XCom pulls answer from ``values`` keyed by (task_ids, map_indexes)."""

    def __init__(self, values: dict[tuple[str, int], Any]) -> None:
        super().__init__()
        self.values = values

    def xcom_pull(self, task_ids: str, map_indexes: int) -> Any:
        return self.values.get((task_ids, map_indexes))
