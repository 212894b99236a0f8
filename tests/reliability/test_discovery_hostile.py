"""Discovery when a cluster vanishes mid-listing or the server lies about one (review finding 7).

One cluster's trouble must not fail the night: it becomes a skipped or failed row of the night's
report, with a reason, and every other cluster is still exported.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_provider_atlasflex.exceptions import AtlasNotFoundError, AtlasUnexpectedAnswerError
from airflow_provider_atlasflex.hooks import atlas_flex
from airflow_provider_atlasflex.hooks import operations as ops
from airflow_provider_atlasflex.operators import cluster_discovery
from airflow_provider_atlasflex.operators.night_report import FAILED, SKIPPED, build_night_report
from tests.reliability.registry import reliability
from tests.unit.fake_context import make_context

GROUP = "5f1b2c3d4e5f60718293a4b5"
SNAPSHOT = {"id": "6a1b2c3d4e5f60718293a4b6", "status": "COMPLETED", "finishTime": "2026-11-28T01:00:00Z"}


class ListingHook:
    """Lists ``clusters``; ``list_snapshots`` builds the real request (its checks run) then answers or raises."""

    clusters: ClassVar[list[dict[str, Any]]] = []
    failures: ClassVar[dict[str, Exception]] = {}
    config = None

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def resolve_group_id(self, config: Any, group_id: Any) -> str:
        return GROUP

    def list_flex_clusters(self, group_id: str) -> list[dict[str, Any]]:
        return list(self.clusters)

    def list_snapshots(self, name: str, group_id: str) -> list[dict[str, Any]]:
        ops.list_snapshots(group_id, name, 1, 100)  # the hook's own input checks
        if name in self.failures:
            raise self.failures[name]
        return [SNAPSHOT]

    def close(self) -> None:
        pass


def discover(monkeypatch, clusters: list[dict[str, Any]], failures: dict[str, Exception]) -> dict[str, Any]:
    hook = type("Hook", (ListingHook,), {"clusters": clusters, "failures": failures})
    monkeypatch.setattr(atlas_flex, "AtlasFlexHook", hook)  # looked up there when execute() runs
    operator = cluster_discovery.AtlasFlexClusterDiscoveryOperator(task_id="discover_clusters")
    return operator.execute(make_context())  # type: ignore[arg-type]


@reliability(
    "hostile",
    "A cluster is deleted between the cluster listing and its snapshot listing (404 on listSnapshots)",
    "Discovery recorded it as skipped (deleted since it was listed) and went on; the other clusters were exported",
    "One line 'Skipping beta (project <id>): the cluster was deleted after it was listed (404 ...)'; the night's "
    "report shows beta skipped with that reason",
)
def test_a_cluster_deleted_mid_discovery_is_skipped_not_fatal(monkeypatch):
    gone = AtlasNotFoundError("No cluster named 'beta'", status=404, operation="listGroupFlexClusterBackupSnapshots")
    found = discover(
        monkeypatch, [{"name": n, "stateName": "IDLE"} for n in ("alpha", "beta", "gamma")], {"beta": gone}
    )
    assert [c["cluster_name"] for c in found["exportable"]] == ["alpha", "gamma"]
    [skipped] = found["skipped"]
    assert skipped["cluster_name"] == "beta" and "deleted after it was listed" in skipped["reason"]
    rows = build_night_report(found, [{"sha256": "a" * 64, "bytes": 1}] * 2)
    assert {r["cluster_name"]: r["outcome"] for r in rows}["beta"] == SKIPPED


@reliability(
    "hostile",
    "The API lists a cluster with a malformed name ('../etc') and answers another cluster's snapshot listing "
    "with garbage",
    "Discovery recorded both as failed with the reason and went on; the other clusters were exported; the "
    "night's report fails the run naming them",
    "'Cannot export ../etc (project <id>): Atlas listed an invalid cluster name: ...' and the report's failed rows",
)
def test_a_lying_answer_about_one_cluster_fails_only_that_cluster(monkeypatch):
    garbage = AtlasUnexpectedAnswerError("not JSON", status=200, operation="listGroupFlexClusterBackupSnapshots")
    listed = [{"name": n, "stateName": "IDLE"} for n in ("alpha", "../etc", "delta")]
    found = discover(monkeypatch, listed, {"delta": garbage})
    assert [c["cluster_name"] for c in found["exportable"]] == ["alpha"]
    reasons = {f["cluster_name"]: f["reason"] for f in found["failed"]}
    assert set(reasons) == {"../etc", "delta"}
    assert "invalid cluster name" in reasons["../etc"] and "not JSON" in reasons["delta"]
    rows = build_night_report(found, [{"sha256": "a" * 64, "bytes": 1}])
    outcomes = {r["cluster_name"]: r["outcome"] for r in rows}
    assert outcomes["../etc"] == FAILED and outcomes["delta"] == FAILED
