"""Airflow names the tests use whose import path differs between the supported minors (3.1 to 3.3).

The provider's own fallbacks live in ``airflow_provider_atlasflex.compat``; these are the ones only
tests need (they catch what Airflow raises, so they must be Airflow's class on every minor).
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined]

__all__ = ["TaskDeferred"]
