"""Weekly restore drill: prove last night's backup restores, into a scratch flex cluster.

Restores the newest COMPLETED snapshot of ``source_cluster`` (the one the nightly export copied)
into ``scratch_cluster`` and waits until Atlas reports the restore COMPLETED, then logs the
outcome. A backup nobody has restored is a hope, not a backup.

Safety: the restore replaces the scratch cluster's data. The provider refuses to restore a
cluster over itself, and this DAG only accepts scratch clusters whose name starts with
``restore-drill`` (the param's pattern), so a manual trigger cannot point it at a production
cluster. Create the scratch flex cluster once (Atlas UI or CLI) and keep it for drills.

Scheduled weekly (Sunday 05:00 UTC, after the nightly export). To drill every new export
instead, schedule it on the cluster's Asset, ``Asset("mongodb-atlas://<group_id>/<cluster>")``,
which each export's copy task updates.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param, task

from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator

POLL_SECONDS = float(os.environ.get("ATLAS_FLEX_POLL_SECONDS", "30"))

with DAG(
    dag_id="atlas_flex_restore_drill",
    description="Restore the newest flex backup snapshot into a scratch cluster, weekly",
    schedule="0 5 * * 0",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={
        "source_cluster": Param(
            "alpha",
            type="string",
            pattern="^[a-zA-Z0-9][a-zA-Z0-9-]*$",
            description="Flex cluster whose backup is drilled",
        ),
        "scratch_cluster": Param(
            "restore-drill-scratch",
            type="string",
            pattern="^restore-drill[a-zA-Z0-9-]*$",
            description="Scratch flex cluster the snapshot is restored into (its data is replaced)",
        ),
    },
    tags=["mongodb-atlas", "backup", "restore-drill"],
) as dag:
    restore = AtlasFlexRestoreSnapshotOperator(
        task_id="restore_into_scratch",
        cluster_name="{{ params.source_cluster }}",
        target_cluster_name="{{ params.scratch_cluster }}",
        poll_interval=POLL_SECONDS,
        timeout=timedelta(hours=2),
        retries=2,
        retry_delay=timedelta(minutes=5),
    )

    @task
    def drill_outcome(job: dict) -> dict:
        """One line for the history: which snapshot was restored where, and when it finished."""
        outcome = {
            "restore_job_id": job.get("id"),
            "snapshot_id": job.get("snapshotId"),
            "source_cluster": job.get("instanceName"),
            "scratch_cluster": job.get("targetDeploymentItemName"),
            "status": job.get("status"),
            "finished": job.get("restoreFinishedDate"),
        }
        print(
            f"Restore drill passed: snapshot {outcome['snapshot_id']} of {outcome['source_cluster']} restored into "
            f"{outcome['scratch_cluster']} (job {outcome['restore_job_id']}, finished {outcome['finished']})"
        )
        return outcome

    drill_outcome(restore.output)
