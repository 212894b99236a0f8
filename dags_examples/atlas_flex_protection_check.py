"""Hourly protection check: is every Atlas flex cluster covered by a recent export of ours?

Independent of the nightly export DAG on purpose: when that DAG is paused, broken or deleted it
reports nothing, and this one fails instead. ``check_protection`` lists the clusters as the
nightly discovery does (same include/exclude rules, same freshness rules), scans the archive once,
and fails naming every cluster for which Atlas finished a snapshot more than ``MAX_EXPORT_LAG``
ago that the archive holds neither it nor anything newer of (no nightly copy happened), or whose
backups stopped in Atlas itself. Put an alert on its failure (an ``on_failure_callback`` notifier
or ``email_on_failure``).

The archive is read from the same Airflow Variables as the nightly DAG, never from run conf:
``atlasflex_destination_root`` (default ``file://$AIRFLOW_HOME/atlas-flex-exports``) and
``atlasflex_destination_conn_id``. Clusters the nightly DAG never exports (its default exclude,
the restore drill's scratch clusters) are excluded here too.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_provider_atlasflex.operators.protection_check import AtlasFlexProtectionCheckOperator

DESTINATION_ROOT_VARIABLE = "atlasflex_destination_root"
DESTINATION_CONN_VARIABLE = "atlasflex_destination_conn_id"
# How long a finished snapshot may wait for its nightly copy: a daily schedule misses a snapshot by up
# to a day, plus the time the copies take.
MAX_EXPORT_LAG = timedelta(hours=26)
# Atlas' own freshness rule, as in the nightly DAG (MAX_SNAPSHOT_AGE there).
MAX_SNAPSHOT_AGE = timedelta(hours=36)

with DAG(
    dag_id="atlas_flex_protection_check",
    description="Fail when any Atlas flex cluster lacks a recent export in the archive",
    schedule="17 * * * *",  # hourly
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # No retries: the next hourly run is the retry, and a failing check should alert at once.
    default_args={"retries": 0},
    tags=["mongodb-atlas", "backup"],
) as dag:

    @task(multiple_outputs=True)
    def archive() -> dict:
        """The archive the nightly DAG writes to, from deployment configuration (Airflow Variables)."""
        from airflow.sdk import Variable

        default_root = (Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "atlas-flex-exports").as_uri()
        root = Variable.get(DESTINATION_ROOT_VARIABLE, default=None) or default_root
        return {"root": root.rstrip("/"), "conn_id": Variable.get(DESTINATION_CONN_VARIABLE, default=None) or None}

    where = archive()
    # [START howto_operator_protection_check]
    AtlasFlexProtectionCheckOperator(
        task_id="check_protection",
        archive_root=where["root"],
        archive_conn_id=where["conn_id"],
        exclude=["restore-drill*"],
        max_snapshot_age=MAX_SNAPSHOT_AGE,
        max_export_lag=MAX_EXPORT_LAG,
        execution_timeout=timedelta(minutes=20),
    )
    # [END howto_operator_protection_check]
