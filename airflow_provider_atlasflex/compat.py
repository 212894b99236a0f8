"""The few Airflow names whose import path moved between 3.1 (the floor) and 3.3, in one place.

Why the floor is 3.1 and not 3.0: see constraints/README.md.
"""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk.exceptions import AirflowSensorTimeout
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowSensorTimeout  # type: ignore[no-redef,attr-defined]

__all__ = ["AirflowSensorTimeout", "default_deferrable", "mask_secret"]


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when an operator is built (not at import)."""
    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf  # type: ignore[no-redef,assignment]
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def mask_secret(secret: Any) -> None:
    """Register ``secret`` with Airflow's log masker so it is redacted wherever it is printed."""
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret as _mask
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret as _mask  # type: ignore[no-redef]
    _mask(secret)
