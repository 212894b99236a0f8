"""Weekly scrub of the exports, then retention: prove every export, and only then delete old ones.

``scrub`` re-reads every export under the destination root (sha256, gzip, tar listing) and compares
it with its sidecars; any damaged, mismatched or unproven file fails it, and then ``retention`` does
not run, so nothing is deleted while a copy is in doubt. ``retention`` keeps the newest ``keep_last``
exports per cluster and everything younger than ``keep_days`` days (never the newest verified one),
and deletes the rest with their sidecars.

What gets deleted is deployment configuration, never run ``conf``: Airflow lets anyone who may
trigger a DAG override its params, so a ``root`` or ``keep_last`` param would let them delete
nearly every backup. The root and the policy come from the same Airflow Variables as the nightly
export DAG (only users allowed to edit Variables can change them):

* ``atlasflex_destination_root`` / ``atlasflex_destination_conn_id``: where the nightly DAG writes
  (default ``file://$AIRFLOW_HOME/atlas-flex-exports``, as in the nightly DAG);
* ``atlasflex_retention_keep_last``: newest exports kept per cluster (default 14);
* ``atlasflex_retention_keep_days``: exports younger than this many days are kept (default 35);
* ``atlasflex_retention_dry_run``: ``true`` makes every run only report what it would delete.

The one param, ``dry_run``, can only switch a dry run ON when triggering by hand (``{"dry_run":
true}``, a good first run); ``false`` never overrides the Variable.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Param, task

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator

DESTINATION_ROOT_VARIABLE = "atlasflex_destination_root"
DESTINATION_CONN_VARIABLE = "atlasflex_destination_conn_id"
KEEP_LAST_VARIABLE = "atlasflex_retention_keep_last"
KEEP_DAYS_VARIABLE = "atlasflex_retention_keep_days"
DRY_RUN_VARIABLE = "atlasflex_retention_dry_run"
DEFAULT_KEEP_LAST = 14
DEFAULT_KEEP_DAYS = 35.0


def _variable_number(name: str, default: float, *, whole: bool) -> float:
    """A Variable holding a positive number (a whole one for counts), or ``default`` when unset."""
    from airflow.sdk import Variable

    text = (Variable.get(name, default=None) or "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = 0
    if not value > 0:
        kind = "a whole number of 1 or more" if whole else "a number of days above 0"
        raise AtlasFlexConfigError(f"Variable {name} must be {kind}, got {text!r}; fix it with 'airflow variables set'.")
    return value


def _variable_flag(name: str) -> bool:
    from airflow.sdk import Variable

    text = (Variable.get(name, default=None) or "false").strip().lower()
    if text not in ("true", "false"):
        raise AtlasFlexConfigError(f"Variable {name} must be 'true' or 'false', got {text!r}.")
    return text == "true"


with DAG(
    dag_id="atlas_flex_weekly_scrub",
    description="Verify every Atlas flex export against its sidecars, then apply the retention policy",
    schedule="0 5 * * 0",  # Sundays 05:00 UTC, clear of the nightly export at 03:30
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={
        "dry_run": Param(
            False,
            type="boolean",
            description="Only log what retention would delete (can switch a dry run on, never off)",
        ),
    },
    tags=["mongodb-atlas", "backup"],
) as dag:

    @task(multiple_outputs=True)
    def retention_policy(params: dict | None = None) -> dict:
        """Root and policy from deployment configuration (Variables); conf may only turn dry_run on."""
        from airflow.sdk import Variable

        default_root = (Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "atlas-flex-exports").as_uri()
        policy = {
            "root": (Variable.get(DESTINATION_ROOT_VARIABLE, default=None) or default_root).rstrip("/"),
            "dst_conn_id": Variable.get(DESTINATION_CONN_VARIABLE, default=None) or None,
            "keep_last": int(_variable_number(KEEP_LAST_VARIABLE, DEFAULT_KEEP_LAST, whole=True)),
            "keep_days": _variable_number(KEEP_DAYS_VARIABLE, DEFAULT_KEEP_DAYS, whole=False),
            "dry_run": _variable_flag(DRY_RUN_VARIABLE) or (params or {}).get("dry_run") is True,
        }
        print(f"Scrub and retention policy: {policy}")
        return policy

    policy = retention_policy()
    # [START howto_operator_export_verify]
    scrub = AtlasFlexExportVerifyOperator(
        task_id="scrub",
        root=policy["root"],
        dst_conn_id=policy["dst_conn_id"],
        execution_timeout=timedelta(hours=6),  # it reads every byte of every export
    )
    # [END howto_operator_export_verify]
    # [START howto_operator_export_retention]
    retention = AtlasFlexExportRetentionOperator(
        task_id="retention",
        root=policy["root"],
        dst_conn_id=policy["dst_conn_id"],
        keep_last=policy["keep_last"],
        keep_days=policy["keep_days"],
        dry_run=policy["dry_run"],
        execution_timeout=timedelta(hours=1),
    )
    # [END howto_operator_export_retention]
    scrub >> retention
