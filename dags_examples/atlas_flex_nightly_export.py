"""Nightly export of every Atlas flex cluster's newest backup snapshot, with the night's report.

1. ``discover_clusters`` lists the project's flex clusters (or every project's, with the
   ``all_projects`` param) and keeps the exportable ones: backup enabled, not CREATING/DELETING,
   a COMPLETED snapshot. The others are skipped with one log line each. It also judges each
   cluster's recovery point: a newest snapshot older than ``MAX_SNAPSHOT_AGE``, newer FAILED
   snapshots, or no snapshot at all for a cluster older than a day make it ``stale``.
2. ``plan_exports`` scans the archive once: a cluster's newest snapshot already archived is not
   copied again (``unchanged``); older COMPLETED snapshots the archive lacks since its series began
   (after an outage) are backfilled, oldest first, at most ``MAX_BACKFILL`` a night.
3. For each planned copy (dynamic task mapping, each mapped instance labelled with its cluster):
   request that snapshot's download link, wait for it (deferrable when
   ``[operators] default_deferrable`` is on), stream the .tgz to
   ``<destination root>/<cluster>/<date>/<snapshotId>.tgz`` (``<date>``: the run's date).
4. ``night_report`` always runs: one table of exported / unchanged / backfilled / stale / skipped /
   failed clusters with each snapshot's id, finish time and age, returned as XCom; it fails the run if
   any cluster is stale or failed, so one alert names every cluster that is not protected.

Where backups go is deployment configuration, never run ``conf``: Airflow lets anyone who may
trigger a DAG override its params, so a ``destination_root`` param would let them send a database
backup to a path or bucket of their choosing. The destination is read from Airflow Variables,
which only users allowed to edit Variables can change:

* ``atlasflex_destination_root``: e.g. ``s3://backups/atlas`` or ``file:///srv/atlas-exports``
  (default: ``file://$AIRFLOW_HOME/atlas-flex-exports``, private to the Airflow user; never the
  shared temp directory);
* ``atlasflex_destination_conn_id``: the connection for that filesystem (e.g. an AWS connection
  for s3://); unset: the filesystem's default credentials.

Params (may be changed when triggering by hand): ``clusters`` (names or glob patterns; empty =
every flex cluster), ``exclude`` (glob patterns), ``all_projects``. Connection:
``mongodb_atlas_default`` (see the provider's documentation, "The connection").
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from airflow_provider_atlasflex.operators.export_plan import AtlasFlexExportPlanOperator
from airflow_provider_atlasflex.operators.night_report import AtlasFlexNightReportOperator
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.transfers.snapshot_to_storage import AtlasFlexSnapshotToStorageOperator

# How often to ask Atlas whether a link is ready (nightly) or a restore is done (drill), in seconds; the same
# in every example DAG. Atlas takes minutes for either, so a one-minute poll finishes a wait at most a minute
# late and sends half the requests of a 30-second one (ATLAS_FLEX_POLL_SECONDS overrides it, e.g. in tests).
POLL_SECONDS = float(os.environ.get("ATLAS_FLEX_POLL_SECONDS", "60"))
DESTINATION_ROOT_VARIABLE = "atlasflex_destination_root"
DESTINATION_CONN_VARIABLE = "atlasflex_destination_conn_id"
CLUSTER_PATTERN = "^[a-zA-Z0-9*?\\[\\]!-]{1,64}$"
# The recovery point objective: a cluster whose newest backup snapshot is older than this is `stale`
# and fails the night (Atlas takes one flex snapshot a day, so 36 h leaves a night's margin).
MAX_SNAPSHOT_AGE = timedelta(hours=36)
# Older snapshots copied per night to fill the archive's holes after an outage (0: no backfill).
MAX_BACKFILL = 16
# Each mapped instance shows its cluster in the UI instead of 0, 1, 2...
BY_CLUSTER = "{{ task.cluster_name }}"

with DAG(
    dag_id="atlas_flex_nightly_export",
    description="Copy each Atlas flex cluster's newest backup snapshot to storage we control",
    schedule="30 3 * * *",  # nightly, after Atlas' daily flex snapshot
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # Alerts: add "email": [...] with "email_on_failure": True, or an on_failure_callback notifier
    # (e.g. SlackNotifier) on night_report: it fails once per night, naming every failed cluster.
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "clusters": Param(
            [],
            type="array",
            items={"type": "string", "pattern": CLUSTER_PATTERN},
            description="Flex cluster names or glob patterns to export; empty: every flex cluster",
        ),
        "exclude": Param(
            ["restore-drill*"],
            type="array",
            items={"type": "string", "pattern": CLUSTER_PATTERN},
            description="Glob patterns of clusters never to export (default: the restore drill's scratch clusters)",
        ),
        "all_projects": Param(False, type="boolean", description="Every project the credentials can see"),
    },
    tags=["mongodb-atlas", "backup"],
) as dag:

    @task(multiple_outputs=True)
    def export_selection(params: dict | None = None) -> dict:
        """Which projects and clusters to look at (the run's params, validated by their JSON schema)."""
        params = params or {}
        return {
            "group_ids": "*" if params.get("all_projects") else None,
            "include": list(dict.fromkeys(params.get("clusters") or ["*"])),
            "exclude": list(dict.fromkeys(params.get("exclude") or [])),
        }

    @task(multiple_outputs=True)
    def destination() -> dict:
        """Where exports go, from deployment configuration (Airflow Variables), never from run conf."""
        from airflow.sdk import Variable

        default_root = (Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "atlas-flex-exports").as_uri()
        root = Variable.get(DESTINATION_ROOT_VARIABLE, default=None) or default_root
        conn_id = Variable.get(DESTINATION_CONN_VARIABLE, default=None) or None
        print(f"Exports go to {root} (connection: {conn_id or 'the filesystem default'})")
        root = root.rstrip("/")
        return {"root": root, "dst": root + "/{cluster_name}/{date}/{snapshot_id}.tgz", "dst_conn_id": conn_id}

    selection = export_selection()
    where = destination()

    # [START howto_operator_cluster_discovery]
    discover = AtlasFlexClusterDiscoveryOperator(
        task_id="discover_clusters",
        group_ids=selection["group_ids"],
        include=selection["include"],
        exclude=selection["exclude"],
        max_snapshot_age=MAX_SNAPSHOT_AGE,
        execution_timeout=timedelta(minutes=15),
    )
    # [END howto_operator_cluster_discovery]

    # [START howto_operator_export_plan]
    plan = AtlasFlexExportPlanOperator(
        task_id="plan_exports",
        discovery=discover.output,
        archive_root=where["root"],
        archive_conn_id=where["dst_conn_id"],
        max_backfill=MAX_BACKFILL,
        execution_timeout=timedelta(minutes=15),
    )
    # [END howto_operator_export_plan]

    @task_group
    def export_cluster(cluster_name: str, group_id: str, snapshot_id: str) -> None:
        # [START howto_operator_snapshot_download]
        request_link = AtlasFlexSnapshotDownloadOperator(
            task_id="request_link",
            cluster_name=cluster_name,
            group_id=group_id,
            snapshot_id=snapshot_id,
            execution_timeout=timedelta(minutes=15),
            map_index_template=BY_CLUSTER,
        )
        # [END howto_operator_snapshot_download]
        # [START howto_sensor_snapshot_url]
        wait_for_link = AtlasFlexSnapshotUrlSensor(
            task_id="wait_for_link",
            cluster_name=cluster_name,
            group_id=group_id,
            restore_job_id=request_link.output["restore_job_id"],
            poke_interval=POLL_SECONDS,
            timeout=timedelta(hours=3),
            map_index_template=BY_CLUSTER,
        )
        # [END howto_sensor_snapshot_url]
        # [START howto_transfer_snapshot_to_storage]
        copy_to_storage = AtlasFlexSnapshotToStorageOperator(
            task_id="copy_to_storage",
            cluster_name=cluster_name,
            group_id=group_id,
            restore_job_id=request_link.output["restore_job_id"],
            dst=where["dst"],
            dst_conn_id=where["dst_conn_id"],
            # A hung copy is stopped and retried (from a fresh link if needed) rather than left running.
            execution_timeout=timedelta(hours=2),
            # Copies are bandwidth-bound: a few at a time, however many clusters there are.
            max_active_tis_per_dagrun=4,
            map_index_template=BY_CLUSTER,
        )
        # [END howto_transfer_snapshot_to_storage]
        request_link >> wait_for_link >> copy_to_storage

    @task
    def clusters_to_export(planned: dict) -> list[dict]:
        """Tonight's planned copies, as keyword arguments of export_cluster (one mapped group each)."""
        return [
            {"cluster_name": e["cluster_name"], "group_id": e["group_id"], "snapshot_id": e["snapshot_id"]}
            for e in planned["exports"]
        ]

    exports = export_cluster.expand_kwargs(clusters_to_export(plan.output))

    # [START howto_operator_night_report]
    report = AtlasFlexNightReportOperator(
        task_id="night_report",
        discovery_task_id="discover_clusters",
        export_task_id="export_cluster.copy_to_storage",
        plan_task_id="plan_exports",
        max_snapshot_age=MAX_SNAPSHOT_AGE,
        retries=0,
    )
    # [END howto_operator_night_report]
    [discover, plan, exports] >> report
