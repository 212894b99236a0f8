"""Reading a paginated Admin API listing with bounded time and memory.

A listing is read page by page until a short page (or ``totalCount``) says it ended. A host that
never says so (full pages for ever, the same items again, ``totalCount`` 10^12) would otherwise be
read until memory ran out, each page of up to 16 MiB kept whole. So a listing here stops with
:class:`AtlasUnexpectedAnswerError` at a page larger than the ``itemsPerPage`` asked for, at a
page holding only items seen before, or past :data:`MAX_LISTED_ITEMS` (an item seen before is
skipped: a real listing shifts when an item is created between two page reads); and of each item only the fields the provider
reads are kept (each type- and length-checked by :mod:`.answers`), so memory grows by a bounded
amount per item, not by what the host chose to send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.hooks.answers import unexpected_answer

if TYPE_CHECKING:
    from airflow_provider_atlasflex.exceptions import AtlasUnexpectedAnswerError
    from airflow_provider_atlasflex.hooks.api_protocol import ApiCall

__all__ = ["LISTINGS", "MAX_LISTED_ITEMS", "Listing", "read_listing"]

# Far above any real project (8 daily snapshots a cluster, a restore job per export): a listing this long is
# a host that does not stop, and reading on would only cost memory and requests.
MAX_LISTED_ITEMS = 10_000


@dataclass(frozen=True)
class Listing:
    """What one listing holds: nouns for messages, the ``key`` no two items share, the fields kept."""

    noun: str
    one: str
    key: str
    fields: tuple[str, ...]
    inner: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kept fields of a kept object

    def keep(self, item: Mapping[str, Any]) -> dict[str, Any]:
        kept = {name: item[name] for name in self.fields if name in item}
        for name, inner in self.inner.items():
            value = kept.get(name)
            if isinstance(value, Mapping):
                kept[name] = {sub: value[sub] for sub in inner if sub in value}
        return kept


# Every field any caller reads (discovery, the operators, the sensor, the trigger, the transfer, the restore
# drill and what they return as XCom); only ``links`` and fields nobody reads are dropped.
LISTINGS: dict[str, Listing] = {
    "listGroups": Listing("projects", "project", "id", ("id",)),
    "listGroupFlexClusters": Listing(
        "flex clusters",
        "flex cluster",
        "name",
        ("name", "id", "stateName", "createDate", "backupSettings"),
        {"backupSettings": ("enabled",)},
    ),
    "listGroupFlexClusterBackupSnapshots": Listing(
        "snapshots",
        "snapshot",
        "id",
        ("id", "status", "finishTime", "startTime", "scheduledTime", "expiration", "mongoDBVersion"),
    ),
    "listGroupFlexClusterBackupRestoreJobs": Listing(
        "restore jobs",
        "restore job",
        "id",
        (
            "id", "snapshotId", "deliveryType", "status", "snapshotUrl", "expirationDate", "restoreScheduledDate",
            "restoreFinishedDate", "snapshotFinishedDate", "instanceName", "projectId", "targetDeploymentItemName",
            "targetProjectId",
        ),
    ),
}


def read_listing(
    run: Callable[[ApiCall], Any], call_for_page: Callable[[int], ApiCall], limit: int = MAX_LISTED_ITEMS
) -> list[dict[str, Any]]:
    """Every item of a listing, page after page; ``run`` sends one call and returns its shape-checked body."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    page = 0
    while True:
        page += 1
        call = call_for_page(page)
        listing = LISTINGS[call.operation]
        asked = int(call.params["itemsPerPage"])
        body = run(call)
        results, total = body["results"], body.get("totalCount")
        del body  # only the kept fields outlive this page
        if len(results) > asked:
            raise unexpected_answer(
                call, f"a page of {len(results)} {listing.noun} (page {page}), more than the itemsPerPage={asked} asked for"
            )
        if isinstance(total, int) and total > limit:
            raise _too_long(call, listing, limit, f"a totalCount of {total} {listing.noun}")
        new = 0
        for item in results:
            key = item[listing.key]
            if key in seen:
                # An item created between two page reads shifts the next page: what it pushes over comes
                # again. Skipped here; a page of nothing but repeats is a listing that never ends.
                continue
            if len(items) >= limit:
                raise _too_long(call, listing, limit, f"more than {limit} {listing.noun} (page {page})")
            seen.add(key)
            items.append(listing.keep(item))
            new += 1
        if results and not new:
            raise unexpected_answer(
                call,
                f"page {page} lists only {listing.noun} listed before ({listing.key} {results[0][listing.key]!r} "
                "again...): a listing that repeats itself may never end, so reading stopped",
            )
        count = len(results)
        del results  # not held while the next page is read
        if count < asked or (isinstance(total, int) and len(items) >= total):
            return items


def _too_long(call: ApiCall, listing: Listing, limit: int, what: str) -> AtlasUnexpectedAnswerError:
    return unexpected_answer(
        call,
        f"{what}, more than the {limit} the provider reads from one listing (MAX_LISTED_ITEMS); reading "
        f"stopped instead of holding an endless listing of {listing.noun} in memory",
    )
