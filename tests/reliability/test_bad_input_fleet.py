"""Bad input to the fleet operators (discovery, night report, restore) and the new hook calls, refused before any network call.

Same harness as ``test_bad_input.py``: the exact exception, a message naming the parameter and the
fix, no request reaching the running emulator, no socket connect or DNS lookup, nothing written.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from airflow_provider_atlasflex.operators.restore_snapshot import AtlasFlexRestoreSnapshotOperator
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from airflow_provider_atlasflex.triggers.restore_job import AtlasFlexRestoreJobTrigger
from tests.reliability.registry import case
from tests.reliability.test_bad_input import NetworkGuard, assert_refused, connect_default
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

KIND = "bad-input"
HEX = "5f1b2c3d4e5f60718293a4b5"
AT_EXECUTE = "Refused at the start of execute(), before the connection is read: no request, nothing written"
AT_CONNECTION_READ = "Refused after reading the connection, before the first request: no request"
AT_CALL = "Refused before the hook builds a request: no request"
AT_TRIGGER = "Refused when the trigger is built, before run() sends anything"


def row(test: str, case_id: str, injected: str, fragment: str, did: str, *values: Any) -> Any:
    says = f"AtlasFlexConfigError: \u201c\u2026{fragment}\u2026\u201d"
    return case(test, case_id, KIND, injected, did, says, *values, fragment)


@pytest.fixture
def guard(emu: AtlasEmulator, monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    network = NetworkGuard()
    network.install(monkeypatch)
    return network


# ---- AtlasFlexClusterDiscoveryOperator -----------------------------------------------------------

T = "test_discovery_operator_refuses_bad_input"
DISCOVERY_ROWS = [
    row(T, "include-string", "include='prod-*' (a string, not a list: it would be read letter by letter)",
        "include must be a list of glob patterns such as ['prod-*'], got the string 'prod-*'", AT_EXECUTE,
        {"include": "prod-*"}),
    row(T, "include-empty", "include=[] (would export nothing, silently)",
        "include must be a non-empty list of cluster-name glob patterns", AT_EXECUTE, {"include": []}),
    row(T, "include-slash", "include=['team/alpha']",
        "include pattern 'team/alpha' is not valid: use cluster-name characters", AT_EXECUTE,
        {"include": ["team/alpha"]}),
    row(T, "exclude-none-item", "exclude=[None] (a template that rendered None)",
        "exclude pattern None is not valid", AT_EXECUTE, {"exclude": [None]}),
    row(T, "exclude-string", "exclude='beta'",
        "exclude must be a list of glob patterns such as ['prod-*'], got the string 'beta'", AT_EXECUTE,
        {"exclude": "beta"}),
    row(T, "group-ids-comma-list", "group_ids='a,b' (one string holding two ids)",
        f"group_ids is one string of comma-separated ids, '{HEX},{HEX}'; pass a list instead: ['{HEX}', '{HEX}']",
        AT_EXECUTE, {"group_ids": f"{HEX},{HEX}"}),
    row(T, "group-ids-empty-list", "group_ids=[]",
        "group_ids must be None (the connection's project), '*' (every project", AT_EXECUTE, {"group_ids": []}),
    row(T, "group-ids-bad-item", "group_ids=['ABC']",
        "each of group_ids must be 24 lower-case hexadecimal characters", AT_EXECUTE, {"group_ids": ["ABC"]}),
    row(T, "require-snapshot-string", "require_completed_snapshot='False'",
        "require_completed_snapshot must be True or False, got str 'False'", AT_EXECUTE,
        {"require_completed_snapshot": "False"}),
    row(T, "conn-id-rendered-none", "atlas_conn_id='None'",
        "atlas_conn_id must name an Airflow connection of type 'mongodb_atlas'", AT_EXECUTE,
        {"atlas_conn_id": "None"}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), DISCOVERY_ROWS)
def test_discovery_operator_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    context = make_context()
    with pytest.raises(Exception) as exc:
        AtlasFlexClusterDiscoveryOperator(task_id="discover", **kwargs).execute(context)
    assert_refused(exc, fragment, emu, guard, tmp_path)
    assert context["ti"].pushed == {}


# ---- AtlasFlexRestoreSnapshotOperator ------------------------------------------------------------

T = "test_restore_operator_refuses_bad_input"
RESTORE_ROWS = [
    row(T, "over-source", "target_cluster_name equal to cluster_name (would overwrite the live cluster)",
        "Refusing to restore cluster 'alpha' over itself", AT_CONNECTION_READ, {"target_cluster_name": "alpha"}),
    row(T, "over-source-same-explicit-project", "target = source, target_group_id = group_id given explicitly",
        "Refusing to restore cluster 'alpha' over itself", AT_CONNECTION_READ,
        {"target_cluster_name": "alpha", "group_id": HEX, "target_group_id": HEX}),
    row(T, "target-rendered-empty", "target_cluster_name='' (a template that rendered empty)",
        "target_cluster_name must be a non-empty string naming an Atlas flex cluster", AT_EXECUTE,
        {"target_cluster_name": ""}),
    row(T, "target-dotdot", "target_cluster_name='../beta'",
        "target_cluster_name '../beta' is not a valid Atlas cluster name", AT_EXECUTE,
        {"target_cluster_name": "../beta"}),
    row(T, "snapshot-id-uppercase", "snapshot_id in upper case",
        "snapshot_id must be 24 lower-case hexadecimal characters", AT_EXECUTE, {"snapshot_id": HEX.upper()}),
    row(T, "target-group-rendered-empty", "target_group_id=''",
        "leave target_group_id out (None) to use the source project", AT_EXECUTE, {"target_group_id": ""}),
    row(T, "allow-over-source-string", "allow_restore_over_source='False' (a string, which Python reads as true)",
        "allow_restore_over_source must be True or False, got str 'False'", AT_EXECUTE,
        {"allow_restore_over_source": "False"}),
    row(T, "deferrable-string", "deferrable='True'",
        "deferrable must be True or False, got str 'True'", AT_EXECUTE, {"deferrable": "True"}),
    row(T, "poll-zero", "poll_interval=0 (would poll Atlas in a tight loop)",
        "poll_interval must be greater than zero, got 0", AT_EXECUTE, {"poll_interval": 0}),
    row(T, "timeout-zero", "timeout=timedelta(0)",
        "timeout must be greater than zero", AT_EXECUTE, {"timeout": timedelta(0)}),
    row(T, "timeout-nan", "timeout=nan",
        "timeout must be a finite number of seconds, got nan", AT_EXECUTE, {"timeout": math.nan}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), RESTORE_ROWS)
def test_restore_operator_refuses_bad_input(emu, guard, monkeypatch, tmp_path, kwargs, fragment):
    connect_default(monkeypatch, emu)
    context = make_context()
    arguments = {"cluster_name": "alpha", "target_cluster_name": "restore-drill-scratch", "deferrable": False, **kwargs}
    with pytest.raises(Exception) as exc:
        AtlasFlexRestoreSnapshotOperator(task_id="restore", **arguments).execute(context)
    assert_refused(exc, fragment, emu, guard, tmp_path)
    assert context["ti"].pushed == {}


# ---- AtlasFlexNightReportOperator ---------------------------------------------------------------

T = "test_night_report_refuses_bad_input"
REPORT_ROWS = [
    row(T, "discovery-task-id-empty", "discovery_task_id='' (a template that rendered empty)",
        "discovery_task_id must name a task of this DAG", "Refused before any XCom is read", {"discovery_task_id": ""}),
    row(T, "export-task-id-none", "export_task_id=None",
        "export_task_id must name a task of this DAG", "Refused before any XCom is read", {"export_task_id": None}),
]


class NoPullTI:
    """A task instance whose XComs must not be read."""

    def xcom_pull(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("XCom was read before the arguments were checked")

    def xcom_push(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("XCom was pushed for bad input")


@pytest.mark.parametrize(("kwargs", "fragment"), REPORT_ROWS)
def test_night_report_refuses_bad_input(emu, guard, tmp_path, kwargs, fragment):
    from airflow_provider_atlasflex.operators.night_report import AtlasFlexNightReportOperator

    with pytest.raises(Exception) as exc:
        AtlasFlexNightReportOperator(task_id="night_report", **kwargs).execute({"ti": NoPullTI()})
    assert_refused(exc, fragment, emu, guard, tmp_path)


# ---- the hook's new calls ------------------------------------------------------------------------

T = "test_fleet_hook_calls_refuse_bad_input"
HOOK_ROWS = [
    row(T, "list-clusters-group-none-string", "list_flex_clusters(group_id='None')",
        "group_id must be 24 lower-case hexadecimal characters", AT_CALL,
        lambda: AtlasFlexHook().list_flex_clusters("None")),
    row(T, "list-clusters-page-size-zero", "list_flex_clusters(items_per_page=0)",
        "items_per_page must be a whole number from 1 to 500, got 0", AT_CALL,
        lambda: AtlasFlexHook().list_flex_clusters(items_per_page=0)),
    row(T, "list-groups-page-size-bool", "list_groups(items_per_page=True)",
        "items_per_page must be a whole number from 1 to 500, got True", AT_CALL,
        lambda: AtlasFlexHook().list_groups(items_per_page=True)),
    row(T, "restore-target-slash", "request_restore(target_cluster_name='a/b')",
        "target_cluster_name 'a/b' is not a valid Atlas cluster name", AT_CALL,
        lambda: AtlasFlexHook().request_restore("alpha", HEX, "a/b")),
    row(T, "restore-target-group-short", "request_restore(target_group_id='abc')",
        "target_group_id must be 24 lower-case hexadecimal characters", AT_CALL,
        lambda: AtlasFlexHook().request_restore("alpha", HEX, "beta", "abc")),
]


@pytest.mark.parametrize(("call", "fragment"), HOOK_ROWS)
def test_fleet_hook_calls_refuse_bad_input(emu, guard, monkeypatch, tmp_path, call, fragment):
    connect_default(monkeypatch, emu)
    with pytest.raises(Exception) as exc:
        call()
    assert_refused(exc, fragment, emu, guard, tmp_path)


T = "test_restore_trigger_refuses_bad_wait_for"
TRIGGER_ROWS = [
    row(T, "wait-for-unknown", "AtlasFlexRestoreJobTrigger(wait_for='done')",
        "wait_for must be one of ('snapshot_url', 'completed'), got 'done'", AT_TRIGGER, {"wait_for": "done"}),
]


@pytest.mark.parametrize(("kwargs", "fragment"), TRIGGER_ROWS)
def test_restore_trigger_refuses_bad_wait_for(emu, guard, tmp_path, kwargs, fragment):
    with pytest.raises(Exception) as exc:
        AtlasFlexRestoreJobTrigger(
            cluster_name="alpha", restore_job_id=HEX, group_id=None, atlas_conn_id="mongodb_atlas_default",
            poll_interval=1.0, end_time=2e9, **kwargs,
        )
    assert_refused(exc, fragment, emu, guard, tmp_path)
    assert exc.type is AtlasFlexConfigError
