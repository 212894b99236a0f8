"""Nightly export of every listed Atlas flex cluster's newest backup snapshot.

For each cluster (dynamic task mapping): request the newest COMPLETED snapshot's download link,
wait for it (deferrable when ``[operators] default_deferrable`` is on: no worker slot is held),
then stream the .tgz to ``<destination_root>/<cluster>/<date>/<snapshotId>.tgz``.

Connection: ``mongodb_atlas_default`` (see the provider README). Params can be changed when
triggering the DAG by hand; the defaults below are used by the nightly schedule.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

# How often to ask Atlas whether the link is ready; a flex download usually takes minutes.
POLL_SECONDS = float(os.environ.get("ATLAS_FLEX_POLL_SECONDS", "60"))

with DAG(
    dag_id="atlas_flex_nightly_export",
    description="Copy each Atlas flex cluster's newest backup snapshot to storage we control",
    schedule="30 3 * * *",  # nightly, after Atlas' daily flex snapshot
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # Alerts: add "email": [...] with "email_on_failure": True, or an on_failure_callback notifier
    # (e.g. SlackNotifier); every failure message names the cluster and snapshot.
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "clusters": Param(
            ["alpha", "beta"],
            type="array",
            items={"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9-]*$"},
            minItems=1,
            description="Flex cluster names in the connection's project",
        ),
        "destination_root": Param(
            "file:///tmp/atlas-flex-exports",
            type="string",
            description="Where exports go: file:///dir, s3://bucket/prefix, gs://...",
        ),
    },
    tags=["mongodb-atlas", "backup"],
) as dag:

    @task
    def clusters_to_export(params: dict | None = None) -> list[str]:
        """The cluster list from the run's params, duplicates removed, order kept."""
        clusters = list(dict.fromkeys((params or {})["clusters"]))
        if not clusters:
            raise ValueError("params.clusters is empty: list at least one flex cluster name.")
        return clusters

    @task_group
    def export_cluster(cluster_name: str) -> None:
        request_link = AtlasFlexSnapshotDownloadOperator(
            task_id="request_link",
            cluster_name=cluster_name,
            execution_timeout=timedelta(minutes=15),
        )
        wait_for_link = AtlasFlexSnapshotUrlSensor(
            task_id="wait_for_link",
            cluster_name=cluster_name,
            restore_job_id=request_link.output["restore_job_id"],
            poke_interval=POLL_SECONDS,
            timeout=timedelta(hours=3),
        )
        copy_to_storage = AtlasFlexSnapshotToStorageOperator(
            task_id="copy_to_storage",
            cluster_name=cluster_name,
            restore_job_id=request_link.output["restore_job_id"],
            dst="{{ params.destination_root }}/{cluster_name}/{date}/{snapshot_id}.tgz",
            # A hung copy is stopped and retried (from a fresh link if needed) rather than left running.
            execution_timeout=timedelta(hours=2),
            # Copies are bandwidth-bound: a few at a time, however many clusters there are.
            max_active_tis_per_dagrun=4,
        )
        request_link >> wait_for_link >> copy_to_storage

    export_cluster.expand(cluster_name=clusters_to_export())
