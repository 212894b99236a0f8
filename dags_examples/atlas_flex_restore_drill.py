"""Weekly restore drill: prove this week's backups restore, into a scratch flex cluster.

For each cluster to drill, restores its newest COMPLETED snapshot into the scratch cluster (one
cluster at a time) and waits until Atlas reports the restore COMPLETED, then logs the outcome.
A backup nobody has restored is a hope, not a backup. A passing run means, for every cluster:

* this run started its own restore (a run never passes on an earlier run's restore job);
* the snapshot restored finished less than 36 hours ago (``max_snapshot_age``): a drill of a
  stale snapshot fails and names the snapshot, its finish time and age;
* the restore went into a cluster whose name matches ``restore-drill*`` (``target_pattern``),
  never into the source itself.

What is drilled and where it goes is deployment configuration, never run ``conf``: Airflow lets
anyone who may trigger a DAG override its params, so a ``source_cluster`` param would let them copy
any cluster's data into a scratch cluster they can read, and a ``scratch_cluster`` param would let
them pick which cluster is overwritten. Both come from Airflow Variables, which only users allowed
to edit Variables can change:

* ``atlasflex_drill_source_clusters`` (required): the cluster(s) to drill, a JSON list such as
  ``["prod-a", "prod-b"]`` or a single name;
* ``atlasflex_drill_scratch_cluster``: the scratch flex cluster restored into (its data is replaced;
  default ``restore-drill-scratch``). Create it once (Atlas UI or CLI) and keep it for drills.

Scheduled weekly (Sunday 05:00 UTC, after the nightly export). To drill every new export
instead, schedule it on the cluster's Asset, ``Asset("mongodb-atlas://<group_id>/<cluster>")``,
which each export's copy task updates.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, task

from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator

# How often to ask Atlas whether a link is ready (nightly) or a restore is done (drill), in seconds; the same
# in every example DAG. Atlas takes minutes for either, so a one-minute poll finishes a wait at most a minute
# late and sends half the requests of a 30-second one (ATLAS_FLEX_POLL_SECONDS overrides it, e.g. in tests).
POLL_SECONDS = float(os.environ.get("ATLAS_FLEX_POLL_SECONDS", "60"))
SOURCES_VARIABLE = "atlasflex_drill_source_clusters"
SCRATCH_VARIABLE = "atlasflex_drill_scratch_cluster"
DEFAULT_SCRATCH = "restore-drill-scratch"

with DAG(
    dag_id="atlas_flex_restore_drill",
    description="Restore each drilled cluster's newest flex backup snapshot into a scratch cluster, weekly",
    schedule="0 5 * * 0",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["mongodb-atlas", "backup", "restore-drill"],
) as dag:

    @task
    def drill_plan() -> list[dict]:
        """Which clusters to drill and where to restore them, from Airflow Variables (never run conf)."""
        import json

        from airflow.sdk import Variable

        raw = (Variable.get(SOURCES_VARIABLE, default=None) or "").strip()
        if not raw:
            raise ValueError(
                f"Set the Airflow Variable {SOURCES_VARIABLE} to the flex cluster(s) whose backups the drill restores: "
                'a JSON list such as ["prod-a", "prod-b"], or a single name.'
            )
        try:
            value = json.loads(raw) if raw[0] in '[{"' else raw
        except ValueError:
            value = None
        sources = [value] if isinstance(value, str) else value
        if not isinstance(sources, list) or not sources or not all(isinstance(n, str) and n.strip() for n in sources):
            raise ValueError(f"{SOURCES_VARIABLE} must be a JSON list of cluster names or one name, got {raw!r}.")
        scratch = (Variable.get(SCRATCH_VARIABLE, default=None) or "").strip() or DEFAULT_SCRATCH
        sources = list(dict.fromkeys(name.strip() for name in sources))
        print(f"Drilling {', '.join(sources)} into {scratch}")
        return [{"cluster_name": name, "target_cluster_name": scratch} for name in sources]

    # [START howto_operator_restore_snapshot]
    restore = AtlasFlexRestoreSnapshotOperator.partial(
        task_id="restore_into_scratch",
        max_snapshot_age=timedelta(hours=36),
        target_pattern="restore-drill*",
        poll_interval=POLL_SECONDS,
        timeout=timedelta(hours=2),
        retries=2,
        retry_delay=timedelta(minutes=5),
        # One restore into the scratch cluster at a time; each mapped instance shows its cluster.
        max_active_tis_per_dagrun=1,
        map_index_template="{{ task.cluster_name }}",
    ).expand_kwargs(drill_plan())
    # [END howto_operator_restore_snapshot]

    @task
    def drill_outcome(jobs: list) -> list[dict]:
        """One line per drilled cluster for the history: which snapshot was restored where, and when."""
        outcomes = []
        for job in jobs:
            outcome = {
                "restore_job_id": job.get("id"),
                "snapshot_id": job.get("snapshotId"),
                "snapshot_finished": job.get("snapshotFinishedDate"),
                "source_cluster": job.get("instanceName"),
                "scratch_cluster": job.get("targetDeploymentItemName"),
                "status": job.get("status"),
                "finished": job.get("restoreFinishedDate"),
            }
            print(
                f"Restore drill passed: snapshot {outcome['snapshot_id']} of {outcome['source_cluster']} (taken "
                f"{outcome['snapshot_finished']}) restored into {outcome['scratch_cluster']} (job "
                f"{outcome['restore_job_id']}, finished {outcome['finished']})"
            )
            outcomes.append(outcome)
        return outcomes

    drill_outcome(restore.output)
