"""Download operator and URL sensor: execute with a context, TaskDeferred, execute_complete."""

from __future__ import annotations

import time

import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_atlasflex.compat import AirflowSensorTimeout
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError, AtlasFlexError, RestoreJobFailedError
from airflow_provider_atlasflex.operators.snapshot_download import AtlasFlexSnapshotDownloadOperator
from airflow_provider_atlasflex.sensors.snapshot_url import AtlasFlexSnapshotUrlSensor
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger
from tests.airflow_compat import TaskDeferred
from tests.unit.conftest import CLUSTER, CLUSTER_URL, JOB, JSON_HEADERS, SNAP, SNAP_OLD, job
from tests.unit.fake_context import make_context

SNAPSHOTS = {
    "results": [
        {"id": SNAP, "status": "COMPLETED", "finishTime": "2026-11-28T01:10:00Z"},
        {"id": SNAP_OLD, "status": "COMPLETED", "finishTime": "2026-11-27T01:10:00Z"},
    ],
    "totalCount": 2,
}


class TestDownloadOperator:
    def test_newest_snapshot_is_requested_and_ids_pushed(self, requests_mock, digest_conn):
        requests_mock.get(f"{CLUSTER_URL}/backup/snapshots", json=SNAPSHOTS, headers=JSON_HEADERS)
        requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [], "totalCount": 0})
        post = requests_mock.post(f"{CLUSTER_URL}/backup/download", json=job("PENDING", url=False))
        context = make_context()
        result = AtlasFlexSnapshotDownloadOperator(task_id="t", cluster_name=CLUSTER).execute(context)
        assert post.last_request.json() == {"snapshotId": SNAP}
        assert result["id"] == JOB and result["status"] == "PENDING"
        assert context["ti"].pushed == {"restore_job_id": JOB, "snapshot_id": SNAP}

    def test_retry_reuses_a_live_job_instead_of_creating_another(self, requests_mock, digest_conn):
        requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [job("COMPLETED")], "totalCount": 1})
        post = requests_mock.post(f"{CLUSTER_URL}/backup/download", json=job("PENDING", url=False))
        result = AtlasFlexSnapshotDownloadOperator(task_id="t", cluster_name=CLUSTER, snapshot_id=SNAP).execute(
            make_context()
        )
        assert post.call_count == 0 and result["id"] == JOB

    @pytest.mark.parametrize(
        "existing",
        [
            job("FAILED", url=False),
            job("COMPLETED", expires="2020-01-01T00:00:00Z"),
            job("COMPLETED", snapshotId=SNAP_OLD),
            job("COMPLETED", deliveryType="RESTORE"),
        ],
        ids=["failed", "expired", "other-snapshot", "restore-job"],
    )
    def test_unusable_jobs_are_not_reused(self, requests_mock, digest_conn, existing):
        requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [existing], "totalCount": 1})
        post = requests_mock.post(f"{CLUSTER_URL}/backup/download", json=job("PENDING", url=False))
        AtlasFlexSnapshotDownloadOperator(task_id="t", cluster_name=CLUSTER, snapshot_id=SNAP).execute(make_context())
        assert post.call_count == 1

    def test_xcom_never_holds_the_link_credential(self, requests_mock, digest_conn):
        requests_mock.get(f"{CLUSTER_URL}/backup/restoreJobs", json={"results": [job("COMPLETED")], "totalCount": 1})
        result = AtlasFlexSnapshotDownloadOperator(task_id="t", cluster_name=CLUSTER, snapshot_id=SNAP).execute(
            make_context()
        )
        assert "sig-secret-123" not in repr(result) and result["snapshotUrl"].endswith("?<redacted>")

    def test_templated_fields_are_assigned_verbatim_and_checked_in_execute(self, requests_mock, digest_conn):
        op = AtlasFlexSnapshotDownloadOperator(task_id="t", cluster_name="{{ params.c }}", snapshot_id="{{ x }}")
        assert op.cluster_name == "{{ params.c }}"  # no validation at parse time
        with pytest.raises(AtlasFlexConfigError, match="cluster name"):
            op.execute(make_context())
        assert requests_mock.call_count == 0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"cluster_name": "x/../y"}, "not a valid Atlas cluster name"),
            ({"cluster_name": None}, "non-empty string"),
            ({"cluster_name": CLUSTER, "snapshot_id": "ABC"}, "snapshot_id"),
            ({"cluster_name": CLUSTER, "group_id": "g"}, "group_id"),
            ({"cluster_name": CLUSTER, "atlas_conn_id": ""}, "atlas_conn_id"),
            ({"cluster_name": CLUSTER, "min_link_validity": "soon"}, "min_link_validity"),
        ],
    )
    def test_bad_input_fails_before_network(self, requests_mock, digest_conn, kwargs, message):
        with pytest.raises(AtlasFlexConfigError, match=message):
            AtlasFlexSnapshotDownloadOperator(task_id="t", **kwargs).execute(make_context())
        assert requests_mock.call_count == 0


def sensor(**kwargs) -> AtlasFlexSnapshotUrlSensor:
    kwargs.setdefault("deferrable", False)
    return AtlasFlexSnapshotUrlSensor(task_id="wait", cluster_name=CLUSTER, restore_job_id=JOB, **kwargs)


JOB_URL = f"{CLUSTER_URL}/backup/restoreJobs/{JOB}"


class TestSnapshotUrlSensor:
    def test_poke_waits_then_returns_the_job(self, requests_mock, digest_conn):
        requests_mock.get(JOB_URL, [{"json": job("RUNNING", url=False)}, {"json": job("COMPLETED")}])
        s = sensor()
        assert s.poke(make_context()).is_done is False
        done = s.poke(make_context())
        assert isinstance(done, PokeReturnValue) and done.is_done
        assert done.xcom_value["id"] == JOB and "sig-secret-123" not in repr(done.xcom_value)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (job("FAILED", url=False), "FAILED"),
            (job("COMPLETED", deliveryType="RESTORE"), "not DOWNLOAD"),
            (job("COMPLETED", expires="2020-01-01T00:00:00Z"), "expired"),
        ],
    )
    def test_fails_at_once_without_retries(self, requests_mock, digest_conn, body, message):
        requests_mock.get(JOB_URL, json=body)
        with pytest.raises(RestoreJobFailedError, match=message) as err:
            sensor().poke(make_context())
        from airflow_provider_atlasflex.exceptions import AirflowFailException

        assert isinstance(err.value, AirflowFailException)
        assert CLUSTER in str(err.value) and JOB in str(err.value)

    def test_deferrable_defers_to_the_trigger_with_a_deadline(self, requests_mock, digest_conn):
        requests_mock.get(JOB_URL, json=job("PENDING", url=False))
        with pytest.raises(TaskDeferred) as deferred:
            sensor(deferrable=True, poke_interval=5, timeout=600).execute(make_context())
        trigger = deferred.value.trigger
        assert isinstance(trigger, AtlasFlexRestoreJobTrigger)
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout.total_seconds() == 600
        classpath, kwargs = trigger.serialize()
        assert classpath == "airflow_provider_atlasflex.triggers.restore_job.AtlasFlexRestoreJobTrigger"
        assert kwargs["restore_job_id"] == JOB and kwargs["poll_interval"] == 5
        assert 590 < kwargs["end_time"] - time.time() <= 600
        # The poke just made was the first look: the trigger does not repeat it at once.
        assert 0 < kwargs["first_poll_at"] - time.time() <= 5
        assert AtlasFlexRestoreJobTrigger(**kwargs).serialize() == (classpath, kwargs)

    def test_deferrable_returns_at_once_when_already_ready(self, requests_mock, digest_conn):
        requests_mock.get(JOB_URL, json=job("COMPLETED"))
        assert sensor(deferrable=True).execute(make_context())["id"] == JOB

    def test_deferrable_defaults_to_the_airflow_setting(self, monkeypatch):
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
        assert AtlasFlexSnapshotUrlSensor(task_id="w", cluster_name=CLUSTER, restore_job_id=JOB).deferrable is True
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
        assert AtlasFlexSnapshotUrlSensor(task_id="w", cluster_name=CLUSTER, restore_job_id=JOB).deferrable is False

    def test_execute_complete(self):
        s = sensor()
        assert s.execute_complete(make_context(), {"status": "success", "job": {"id": JOB}}) == {"id": JOB}
        with pytest.raises(RestoreJobFailedError, match="boom"):
            s.execute_complete(make_context(), {"status": "failed", "message": "boom"})
        with pytest.raises(AirflowSensorTimeout, match="still"):
            s.execute_complete(make_context(), {"status": "timeout", "message": "still RUNNING"})
        with pytest.raises(AtlasFlexError, match="403"):
            s.execute_complete(make_context(), {"status": "error", "message": "HTTP 403"})

    def test_bad_restore_job_id_fails_before_network(self, requests_mock, digest_conn):
        with pytest.raises(AtlasFlexConfigError, match="restore_job_id"):
            AtlasFlexSnapshotUrlSensor(task_id="w", cluster_name=CLUSTER, restore_job_id="None", deferrable=True).execute(
                make_context()
            )
        assert requests_mock.call_count == 0
