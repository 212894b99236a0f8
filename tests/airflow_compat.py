"""Airflow names the tests use whose import path differs between the supported minors (3.1 to 3.3).

The provider's own fallbacks live in ``airflow_provider_atlasflex.compat``; these are the ones only
tests need (they catch what Airflow raises, so they must be Airflow's class on every minor).
"""

from __future__ import annotations

import json
from typing import Any

import airflow

AIRFLOW_MINOR = tuple(int(part) for part in airflow.__version__.split(".")[:2])

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined]

from airflow.sdk.execution_time import task_runner

# The class the task runner catches to fail a task without retries (3.1 imports it inside a function).
NO_RETRY_EXCEPTION: type[BaseException] = getattr(task_runner, "AirflowFailException", None) or __import__(
    "airflow.exceptions", fromlist=["AirflowFailException"]
).AirflowFailException

__all__ = ["AIRFLOW_MINOR", "NO_RETRY_EXCEPTION", "TaskDeferred", "airflow_drops_connection_with_extra"]


def airflow_drops_connection_with_extra(extra: Any) -> bool:
    """Before 3.2, Airflow's own Connection model refuses an Extra that is not a JSON object, and its
    secrets lookup then reports the connection as not defined: the provider never sees it."""
    if AIRFLOW_MINOR >= (3, 2) or not isinstance(extra, str):
        return False
    try:
        return not isinstance(json.loads(extra), dict)
    except ValueError:
        return True
