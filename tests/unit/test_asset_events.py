"""Asset events for each export (one Asset per cluster, through an AssetAlias) and OpenLineage datasets."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import types
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_atlasflex.get_provider_info import get_provider_info
from airflow_provider_atlasflex.transfers import asset_events
from airflow_provider_atlasflex.transfers.asset_events import (
    EXPORT_ALIAS,
    cluster_asset,
    normalize_asset_uri,
    openlineage_facets,
    record_export,
)
from tests.unit.conftest import CLUSTER, CLUSTER_URL, GROUP, JOB, SNAP, job
from tests.unit.fake_context import make_context
from tests.unit.test_transfer import JOB_URL, LINK, TGZ, transfer

SUMMARY = {
    "path": f"s3://backups/atlas/{CLUSTER}/2026-11-28/{SNAP}.tgz",
    "bytes": 1234,
    "sha256": "ab" * 32,
    "snapshot_id": SNAP,
    "restore_job_id": JOB,
    "cluster_name": CLUSTER,
    "group_id": GROUP,
    "exported_at": "2026-11-28T04:00:00+00:00",
    "seconds": 1.5,
}


class FakeOperator:
    def __init__(self, outlets: list[Any]) -> None:
        self.outlets = outlets
        self.dst_conn_id = None
        self.log = types.SimpleNamespace(info=lambda *a: None, debug=lambda *a: None)


def mock_atlas(requests_mock: Any, tgz: bytes = TGZ) -> None:
    """The restore job, the snapshot's metadata (read for the manifest on branches that write one) and the file."""
    requests_mock.get(JOB_URL, json=job())
    requests_mock.get(
        f"{CLUSTER_URL}/backup/snapshots/{SNAP}",
        json={"id": SNAP, "status": "COMPLETED", "mongoDBVersion": "8.0.4", "finishTime": "2026-11-28T01:00:00Z"},
    )
    requests_mock.get(LINK, content=tgz, headers={"Content-Length": str(len(tgz))})


def alias_events(events: OutletEventAccessors, alias: AssetAlias) -> list[Any]:
    return list(events[alias].asset_alias_events)


# ---- the URI scheme ---------------------------------------------------------------------------------


def test_cluster_asset_uri_is_accepted_and_normalised_by_airflow():
    asset = Asset(uri=f"mongodb-atlas://{GROUP.upper()}/{CLUSTER}/")
    assert asset.uri == cluster_asset(GROUP, CLUSTER).uri == f"mongodb-atlas://{GROUP}/{CLUSTER}"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"mongodb-atlas://not-a-project/{CLUSTER}", "name the project (24-hex group id) as host"),
        (f"mongodb-atlas://{GROUP}/team/{CLUSTER}", "end with one flex cluster name"),
        (f"mongodb-atlas://{GROUP}/", "end with one flex cluster name"),
        (f"mongodb-atlas://{GROUP}/{CLUSTER}?x=1", "take no query string"),
    ],
)
def test_malformed_cluster_asset_uri_is_refused(uri, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_asset_uri(urlsplit(uri))
    with pytest.raises(ValueError, match=re.escape(message)):  # through Airflow: the provider registers the handler
        Asset(uri=uri)


def test_provider_info_registers_the_scheme():
    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["mongodb-atlas"]
    module, _, name = entry["handler"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is normalize_asset_uri


# ---- the events ------------------------------------------------------------------------------------


def test_alias_outlet_gets_an_event_for_the_cluster_asset_with_its_extra():
    events = OutletEventAccessors()
    record_export(FakeOperator([EXPORT_ALIAS]), {"outlet_events": events}, SUMMARY)
    (event,) = alias_events(events, EXPORT_ALIAS)
    assert event.dest_asset_key.uri == f"mongodb-atlas://{GROUP}/{CLUSTER}"
    assert event.source_alias_name == "atlasflex-exports"
    assert event.extra == {k: SUMMARY[k] for k in asset_events.EVENT_FIELDS}
    assert {"path", "sha256", "bytes", "snapshot_id"} <= set(event.extra)


def test_declared_cluster_asset_gets_the_extra_and_other_assets_do_not():
    events = OutletEventAccessors()
    mine, other = cluster_asset(GROUP, CLUSTER), cluster_asset(GROUP, "beta")
    record_export(FakeOperator([mine, other]), {"outlet_events": events}, SUMMARY)
    assert events[mine].extra["sha256"] == SUMMARY["sha256"]
    assert events[other].extra == {}


def test_no_outlets_no_events():
    events = OutletEventAccessors()
    record_export(FakeOperator([]), {"outlet_events": events}, SUMMARY)
    assert len(events) == 0


def test_transfer_emits_the_event_after_a_committed_export(requests_mock, digest_conn, tmp_path):
    mock_atlas(requests_mock)
    operator = transfer(tmp_path)
    assert operator.outlets == [EXPORT_ALIAS]  # the default: no DAG change needed
    context = {**make_context(), "outlet_events": OutletEventAccessors()}
    result = operator.execute(context)
    (event,) = alias_events(context["outlet_events"], EXPORT_ALIAS)
    assert event.dest_asset_key.uri == f"mongodb-atlas://{GROUP}/{CLUSTER}"
    assert event.extra["path"] == result["path"]
    assert (event.extra["bytes"], event.extra["sha256"]) == (len(TGZ), hashlib.sha256(TGZ).hexdigest())
    assert event.extra["snapshot_id"] == SNAP


def test_failed_transfer_emits_nothing(requests_mock, digest_conn, tmp_path):
    mock_atlas(requests_mock, b"<html>not a tgz</html>")
    context = {**make_context(), "outlet_events": OutletEventAccessors()}
    with pytest.raises(Exception, match="gzip"):
        transfer(tmp_path, max_download_attempts=1).execute(context)
    assert alias_events(context["outlet_events"], EXPORT_ALIAS) == []


def test_user_outlets_replace_the_default(tmp_path):
    mine = AssetAlias(name="team-backups")
    assert transfer(tmp_path, outlets=[mine]).outlets == [mine]


# ---- OpenLineage -----------------------------------------------------------------------------------


def test_nothing_of_openlineage_is_imported_with_the_transfer():
    """Only what Airflow itself loads (a provider's metadata); no OpenLineage client, facet or extractor."""
    code = (
        "import sys; import airflow.sdk; before = set(sys.modules);"
        "import airflow_provider_atlasflex.transfers.snapshot_to_storage, airflow_provider_atlasflex.transfers.asset_events;"
        "print(sorted(m for m in set(sys.modules) - before if 'openlineage' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_lineage_with_the_openlineage_provider_installed(requests_mock, digest_conn, tmp_path):
    pytest.importorskip("airflow.providers.openlineage", reason="apache-airflow-providers-openlineage not installed")
    mock_atlas(requests_mock)
    operator = transfer(tmp_path)
    result = operator.execute(make_context())
    lineage = operator.get_openlineage_facets_on_complete(task_instance=None)
    (source,) = lineage.inputs
    (target,) = lineage.outputs
    assert (source.namespace, source.name) == (f"mongodb-atlas://{GROUP}", CLUSTER)
    assert target.namespace == "file" and "/" + target.name == result["path"].removeprefix("file://")


def test_lineage_with_the_openlineage_imports_mocked(monkeypatch):
    """Runs everywhere: the method builds datasets from the last export through the provider's classes."""
    made: list[tuple[str, dict[str, Any]]] = []

    class Dataset:
        def __init__(self, **kwargs: Any) -> None:
            made.append(("Dataset", kwargs))
            self.__dict__.update(kwargs)

    class OperatorLineage:
        def __init__(self, inputs: list[Any] | None = None, outputs: list[Any] | None = None) -> None:
            self.inputs, self.outputs = inputs or [], outputs or []

    facet = types.ModuleType("airflow.providers.common.compat.openlineage.facet")
    facet.Dataset = Dataset  # type: ignore[attr-defined]
    extractors = types.ModuleType("airflow.providers.openlineage.extractors")
    extractors.OperatorLineage = OperatorLineage  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, facet.__name__, facet)
    monkeypatch.setitem(sys.modules, extractors.__name__, extractors)
    operator = FakeOperator([])
    assert openlineage_facets(operator).inputs == []  # before an export: nothing to report
    record_export(operator, {}, SUMMARY)
    lineage = openlineage_facets(operator)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(f"mongodb-atlas://{GROUP}", CLUSTER)]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("s3://backups", f"atlas/{CLUSTER}/2026-11-28/{SNAP}.tgz")
    ]
