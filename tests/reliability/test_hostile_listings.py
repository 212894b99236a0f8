"""Listings that never end or are not lists of objects (issue 15, item 6).

A scripted host pages on for ever: pages larger than the ``itemsPerPage`` asked for, the same
items again, ``totalCount`` 10^12, or fresh full pages without end. Each listing (projects, flex
clusters, snapshots, restore jobs) must stop within a bounded number of requests, with an error
naming the operation, and hold only the fields the provider reads. The host stops by itself
after ``CEILING`` requests (a short last page), so the code before the fix ends too: it then
returns everything it was sent, which is what these tests catch.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_atlasflex.exceptions import AtlasUnexpectedAnswerError
from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.listings import MAX_LISTED_ITEMS
from airflow_provider_atlasflex.operators.cluster_discovery import AtlasFlexClusterDiscoveryOperator
from tests.reliability.hostile_server import Answer, HostileServer, Seen
from tests.reliability.registry import reliability
from tests.reliability.test_hostile_api import ATLAS_JSON, GROUP, SNAP, connect, token_or
from tests.unit.fake_context import make_context

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")

CEILING = 30  # listing requests the host answers before it ends the listing itself
WHEN = "2026-11-28T01:00:00Z"


def hex_id(n: int) -> str:
    return f"{n:024x}"


def links(n: int, count: int = 1) -> list[dict[str, str]]:
    return [{"href": f"https://cloud.mongodb.com/api/atlas/v2/groups/{GROUP}/r/{n}/{i}", "rel": "self"} for i in range(count)]


def a_project(n: int) -> dict[str, Any]:
    return {"id": hex_id(n), "name": f"project-{n}", "orgId": hex_id(0), "clusterCount": 1, "created": WHEN,
            "links": links(n)}


def a_cluster(n: int, bulk: int = 1) -> dict[str, Any]:
    return {
        "name": f"cluster-{n}", "id": hex_id(n), "groupId": GROUP, "stateName": "IDLE", "createDate": WHEN,
        "backupSettings": {"enabled": True}, "mongoDBVersion": "8.0.4", "clusterType": "REPLICASET",
        "providerSettings": {"backingProviderName": "AWS", "providerName": "FLEX", "regionName": "US_EAST_1"},
        "connectionStrings": {"standardSrv": f"mongodb+srv://cluster-{n}.abcde.mongodb.net"},
        "links": links(n, bulk), "tags": [], "terminationProtectionEnabled": False, "versionReleaseSystem": "LTS",
    }


def a_snapshot(n: int) -> dict[str, Any]:
    return {"id": hex_id(n), "status": "COMPLETED", "finishTime": WHEN, "startTime": WHEN, "scheduledTime": WHEN,
            "expiration": WHEN, "mongoDBVersion": "8.0.4", "links": links(n)}


def a_restore_job(n: int) -> dict[str, Any]:
    return {
        "id": hex_id(n), "snapshotId": SNAP, "deliveryType": "DOWNLOAD", "status": "COMPLETED",
        "snapshotUrl": f"https://restore.example.net/{n}.tgz?Signature=s", "expirationDate": WHEN,
        "restoreScheduledDate": WHEN, "restoreFinishedDate": WHEN, "snapshotFinishedDate": WHEN,
        "instanceName": "alpha", "projectId": GROUP, "targetDeploymentItemName": "alpha", "targetProjectId": GROUP,
        "links": links(n),
    }


# operation -> (path suffix it is served at, item maker, the hook call that reads the whole listing)
LISTINGS: dict[str, tuple[str, Callable[[int], dict[str, Any]], Callable[[AtlasFlexHook], list[Any]]]] = {
    "listGroups": ("/api/atlas/v2/groups", a_project, lambda hook: hook.list_groups()),
    "listGroupFlexClusters": ("/flexClusters", a_cluster, lambda hook: hook.list_flex_clusters()),
    "listGroupFlexClusterBackupSnapshots": ("/backup/snapshots", a_snapshot, lambda hook: hook.list_snapshots("alpha")),
    "listGroupFlexClusterBackupRestoreJobs": (
        "/backup/restoreJobs", a_restore_job, lambda hook: hook.list_restore_jobs("alpha")
    ),
}


def endless(suffix: str, item: Callable[[int], dict[str, Any]], how: str, count: list[int]) -> Callable[[Seen], Answer]:
    """A listing at ``suffix`` that pages on in the way ``how`` says, until CEILING requests."""

    def serve(seen: Seen) -> Answer:
        url = urlsplit(seen.path)
        if not url.path.endswith(suffix):
            return Answer(404, {"Content-Type": "application/json"}, b'{"error": 404, "errorCode": "NOT_FOUND"}')
        count[0] += 1
        query = parse_qs(url.query)
        page, asked = int(query["pageNum"][0]), int(query["itemsPerPage"][0])
        body: dict[str, Any] = {"links": [], "results": []}
        if count[0] <= CEILING:
            first = 0 if how == "repeated" else (page - 1) * asked
            size = asked + 100 if how == "oversized" else asked
            body["results"] = [item(first + i) for i in range(size)]
            if how == "huge-total":
                body["totalCount"] = 10**12
        return Answer(200, ATLAS_JSON, json.dumps(body).encode())

    return token_or(serve)


@reliability(
    "hostile",
    "A listing (projects, flex clusters, snapshots, restore jobs) that pages on for ever: pages larger than the "
    "itemsPerPage asked for, the same items on every page, or totalCount 10^12",
    "Stopped at the first page that proves it (page 1, or page 2 for a repeat) instead of reading up to 1000 "
    "pages and holding them all",
    "AtlasUnexpectedAnswerError naming the operation and what was wrong ('a page of 600 snapshots (page 1), more "
    "than the itemsPerPage=500 asked for', 'page 2 lists only snapshots listed before', 'a totalCount of 1000000000000')",
)
@pytest.mark.parametrize("operation", list(LISTINGS))
@pytest.mark.parametrize(
    "how, requests, expected",
    [
        ("oversized", 1, "more than the itemsPerPage=500 asked for"),
        ("repeated", 2, "page 2 lists only"),
        ("huge-total", 1, f"a totalCount of {10**12}"),
    ],
)
def test_a_listing_that_pages_on_for_ever_stops_at_once(monkeypatch, operation, how, requests, expected):
    suffix, item, read = LISTINGS[operation]
    count = [0]
    with HostileServer(endless(suffix, item, how, count)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        with pytest.raises(AtlasUnexpectedAnswerError) as failed:
            read(AtlasFlexHook())
    assert count[0] == requests
    assert operation in str(failed.value) and expected in str(failed.value)


@reliability(
    "hostile",
    "Discovery meets a flex-cluster listing that never ends, each cluster described with 20 links (~1.3 MiB a "
    "page): pages of 600 for 500 asked, the same 500 names on every page, totalCount 10^12, or fresh full pages "
    "without a totalCount",
    f"Stopped at page 1, page 2, page 1, or after {MAX_LISTED_ITEMS} clusters (21 requests of 500) keeping 5 "
    "fields of each; the memory it grew by stayed small (tracemalloc peak under 24 MiB; 15 MiB after 27 MiB of "
    "pages)",
    "The task fails: AtlasUnexpectedAnswerError naming listGroupFlexClusters and the project, e.g. 'more than "
    f"{MAX_LISTED_ITEMS} flex clusters (page 21), more than the 10000 the provider reads from one listing "
    "(MAX_LISTED_ITEMS)'",
)
@pytest.mark.parametrize(
    "how, requests, expected",
    [
        ("oversized", 1, "a page of 600 flex clusters (page 1), more than the itemsPerPage=500 asked for"),
        ("repeated", 2, "page 2 lists only flex clusters listed before (name 'cluster-0' again"),
        ("huge-total", 1, f"a totalCount of {10**12} flex clusters"),
        ("endless", MAX_LISTED_ITEMS // 500 + 1, f"more than {MAX_LISTED_ITEMS} flex clusters (page 21)"),
    ],
)
def test_discovery_of_an_endless_cluster_listing_stops_with_bounded_memory(monkeypatch, capsys, how, requests, expected):
    count = [0]
    with HostileServer(endless("/flexClusters", lambda n: a_cluster(n, bulk=20), how, count)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        operator = AtlasFlexClusterDiscoveryOperator(task_id="discover_clusters", require_completed_snapshot=False)
        tracemalloc.start()
        try:
            with pytest.raises(AtlasUnexpectedAnswerError) as failed:
                operator.execute(make_context())  # type: ignore[arg-type]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        sent = atlas.bytes_sent
    with capsys.disabled():
        print(f"\n{how} cluster listing: {count[0]} requests, {sent / 2**20:.1f} MiB read, "
              f"tracemalloc peak {peak / 2**20:.1f} MiB")
    assert count[0] == requests
    assert f"listGroupFlexClusters in project {GROUP}" in str(failed.value) and expected in str(failed.value)
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    if how == "endless":
        assert sent > 20 * 2**20


@reliability(
    "hostile",
    "Items of a listing carry fields nobody reads (links, connection strings, provider settings, tags)",
    "Kept only the fields the provider reads (clusters: name, id, stateName, createDate, backupSettings.enabled; "
    "snapshots and restore jobs: every field but links; projects: id), so an item costs a bounded amount",
    "Nothing: the listing reads as before",
)
@pytest.mark.parametrize("operation", list(LISTINGS))
def test_listed_items_keep_only_the_fields_the_provider_reads(monkeypatch, operation):
    _, item, read = LISTINGS[operation]

    def serve(seen: Seen) -> Answer:
        body = {"results": [item(1), item(2)], "totalCount": 2}
        return Answer(200, ATLAS_JSON, json.dumps(body).encode())

    with HostileServer(token_or(serve)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        listed = read(AtlasFlexHook())
    full = item(1)
    kept = {
        "listGroups": {"id"},
        "listGroupFlexClusters": {"name", "id", "stateName", "createDate", "backupSettings"},
    }.get(operation, set(full) - {"links"})
    assert [set(x) for x in listed] == [kept, kept]
    assert listed[0] == {k: full[k] for k in kept}


@reliability(
    "hostile",
    "A listed item holds an overlong field: a restore job's snapshotUrl of 9 KiB, a snapshot's finishTime of 1 MiB",
    "Refused the listing instead of keeping the field (each kept field is capped: 256 characters, 8 KiB for a "
    "snapshotUrl), so what a kept item costs stays bounded",
    "AtlasUnexpectedAnswerError: 'a restore job whose 'snapshotUrl' is 9216 characters long, more than the 8192 it "
    "can need (item 0 of the page)'",
)
@pytest.mark.parametrize(
    "operation, field, size",
    [("listGroupFlexClusterBackupRestoreJobs", "snapshotUrl", 9 * 1024),
     ("listGroupFlexClusterBackupSnapshots", "finishTime", 2**20)],
    ids=["link", "date"],
)
def test_an_overlong_field_of_a_listed_item_is_refused(monkeypatch, operation, field, size):
    _, item, read = LISTINGS[operation]

    def serve(seen: Seen) -> Answer:
        body = {"results": [item(1) | {field: "x" * size}], "totalCount": 1}
        return Answer(200, ATLAS_JSON, json.dumps(body).encode())

    with HostileServer(token_or(serve)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        with pytest.raises(AtlasUnexpectedAnswerError) as failed:
            read(AtlasFlexHook())
    assert f"{field!r} is {size} characters long" in str(failed.value) and operation in str(failed.value)


BAD_CLUSTER_LISTINGS = [
    ({"results": ["alpha", 1, None]}, "a cluster description that is a JSON string, not an object (item 0"),
    ({"results": "alpha"}, "a list page whose 'results' is not a list"),
    ({"results": [{"stateName": "IDLE"}]}, "a cluster description without a 'name' string (item 0"),
    ({"results": [{"name": "alpha", "stateName": 5}]}, "'stateName' is a int, not a string"),
    ({"results": [{"name": "alpha", "backupSettings": "on"}]}, "'backupSettings' is a JSON string, not an object"),
    ({"results": [{"name": "alpha", "backupSettings": {"enabled": "no"}}]}, "'backupSettings.enabled' is a JSON"),
]


@reliability(
    "hostile",
    "The flex-cluster listing's 'results' is a list of strings/numbers/nulls, not a list, or holds a cluster "
    "without a name or with a field of the wrong type (stateName a number, backupSettings not an object)",
    "Discovery failed the task at once with a clear error instead of an AttributeError (or exporting a cluster "
    "whose state it could not read)",
    "AtlasUnexpectedAnswerError: 'Atlas answered listGroupFlexClusters in project <id> but sent a cluster "
    "description that is a JSON string, not an object (item 0 of the page)'",
)
@pytest.mark.parametrize(
    "body, expected", BAD_CLUSTER_LISTINGS, ids=["not-objects", "not-a-list", "no-name", "state", "backup", "enabled"]
)
def test_discovery_refuses_a_cluster_listing_that_is_not_a_list_of_clusters(monkeypatch, body, expected):
    def serve(seen: Seen) -> Answer:
        return Answer(200, ATLAS_JSON, json.dumps({**body, "totalCount": 1}).encode())

    with HostileServer(token_or(serve)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        operator = AtlasFlexClusterDiscoveryOperator(task_id="discover_clusters")
        with pytest.raises(AtlasUnexpectedAnswerError) as failed:
            operator.execute(make_context())  # type: ignore[arg-type]
        listed = [s for s in atlas.seen if urlsplit(s.path).path.endswith("/flexClusters")]
    assert f"listGroupFlexClusters in project {GROUP}" in str(failed.value) and expected in str(failed.value)
    assert len(listed) == 1 and not [s for s in atlas.seen if "/backup/" in s.path]


@reliability(
    "hostile",
    "One cluster's snapshot listing repeats the same snapshots on every page (an endless listing) while the other "
    "cluster's is fine",
    "Discovery stopped that listing at page 2 and recorded the cluster as failed; the other cluster is exportable",
    "'Cannot export beta (project <id>): Atlas gave a bad answer about its snapshots: ... page 2 lists only "
    "snapshots listed before' and the night's report fails the run naming beta",
)
def test_discovery_fails_only_the_cluster_whose_snapshot_listing_never_ends(monkeypatch):
    count = [0]
    repeating = endless("/flexClusters/beta/backup/snapshots", a_snapshot, "repeated", count)

    def serve(seen: Seen) -> Answer:
        path = urlsplit(seen.path).path
        if path.endswith("/flexClusters"):
            return Answer(200, ATLAS_JSON, json.dumps({"results": [a_cluster(0) | {"name": n} for n in ("alpha", "beta")],
                                                       "totalCount": 2}).encode())
        if path.endswith("/flexClusters/alpha/backup/snapshots"):
            return Answer(200, ATLAS_JSON, json.dumps({"results": [a_snapshot(1)], "totalCount": 1}).encode())
        return repeating(seen)

    with HostileServer(token_or(serve)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        found = AtlasFlexClusterDiscoveryOperator(task_id="discover_clusters").execute(make_context())  # type: ignore[arg-type]
    assert [c["cluster_name"] for c in found["exportable"]] == ["alpha"]
    [failed] = found["failed"]
    assert failed["cluster_name"] == "beta" and "page 2 lists only snapshots listed before" in failed["reason"]
    assert count[0] == 2


def test_an_item_shifted_onto_the_next_page_is_listed_once(monkeypatch):
    """Real pagination drift: a cluster created between two page reads pushes the last item of page 1 onto page 2."""
    pages = {
        1: [a_cluster(n) | {"name": f"c{n}"} for n in range(3)],
        2: [a_cluster(2) | {"name": "c2"}, a_cluster(3) | {"name": "c3"}],
    }

    def serve(seen: Seen) -> Answer:
        page = int(parse_qs(urlsplit(seen.path).query).get("pageNum", ["1"])[0])
        return Answer(200, ATLAS_JSON, json.dumps({"results": pages.get(page, [])}).encode())

    with HostileServer(token_or(serve)) as atlas:
        connect(monkeypatch, atlas.base_url, "service_account")
        names = [c["name"] for c in AtlasFlexHook().list_flex_clusters(GROUP, items_per_page=3)]
    assert names == ["c0", "c1", "c2", "c3"]
