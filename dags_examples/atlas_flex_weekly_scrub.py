"""Weekly scrub of the exports, then retention: prove every export, and only then delete old ones.

``scrub`` re-reads every export under ``root`` (sha256, gzip, tar listing) and compares it with
its sidecars; any damaged, mismatched or unproven file fails it, and then ``retention`` does not
run, so nothing is deleted while a copy is in doubt. ``retention`` keeps the newest ``keep_last``
exports per cluster and everything younger than ``keep_days`` days (never the newest verified one),
and deletes the rest with their sidecars. Trigger it by hand with ``dry_run: true`` first.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param

from airflow_provider_atlasflex.operators.export_retention import AtlasFlexExportRetentionOperator
from airflow_provider_atlasflex.operators.export_verify import AtlasFlexExportVerifyOperator

with DAG(
    dag_id="atlas_flex_weekly_scrub",
    description="Verify every Atlas flex export against its sidecars, then apply the retention policy",
    schedule="0 5 * * 0",  # Sundays 05:00 UTC, clear of the nightly export at 03:30
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # keep_last/keep_days/dry_run render as numbers and booleans
    params={
        "root": Param(
            "file:///tmp/atlas-flex-exports",
            type="string",
            description="Where the nightly DAG puts exports: file:///dir, s3://bucket/prefix, ...",
        ),
        "keep_last": Param(14, type="integer", minimum=1, description="Newest exports kept per cluster"),
        "keep_days": Param(35, type="number", exclusiveMinimum=0, description="Exports younger than this are kept"),
        "dry_run": Param(False, type="boolean", description="Only log what retention would delete"),
    },
    tags=["mongodb-atlas", "backup"],
) as dag:
    scrub = AtlasFlexExportVerifyOperator(
        task_id="scrub",
        root="{{ params.root }}",
        execution_timeout=timedelta(hours=6),  # it reads every byte of every export
    )
    retention = AtlasFlexExportRetentionOperator(
        task_id="retention",
        root="{{ params.root }}",
        keep_last="{{ params.keep_last }}",
        keep_days="{{ params.keep_days }}",
        dry_run="{{ params.dry_run }}",
        execution_timeout=timedelta(hours=1),
    )
    scrub >> retention
