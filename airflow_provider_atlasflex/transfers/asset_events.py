"""Data-aware scheduling and lineage for exports: one Airflow Asset per cluster, and OpenLineage datasets.

Each cluster is the Asset ``mongodb-atlas://<group_id>/<cluster_name>``. Airflow 3 accepts any URI
scheme that is not ``airflow`` (``x-`` schemes skip normalisation); the provider registers
``mongodb-atlas`` under ``asset-uris`` in its provider info with :func:`normalize_asset_uri`, so a
malformed URI (not a 24-hex project id, not one cluster name) is refused where it is written.

Clusters are often known only at run time (mapped tasks, discovery), so the transfer declares the
:data:`EXPORT_ALIAS` AssetAlias as its outlet and, after each committed export, attaches an event for
its cluster's Asset through ``outlet_events[alias].add(asset, extra=...)``. The event's ``extra``
holds the path, sha256, bytes and snapshot id. Downstream DAGs schedule on the alias (any cluster)
or on one cluster's Asset (the Asset exists once it has had an event).

Nothing of OpenLineage is imported here at module level; :func:`openlineage_facets` imports it when
the OpenLineage listener (``apache-airflow-providers-openlineage``) asks for lineage.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

from airflow.sdk import Asset, AssetAlias

from airflow_provider_atlasflex.defaults import EXPORT_ALIAS_NAME

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

ASSET_SCHEME = "mongodb-atlas"
EXPORT_ALIAS = AssetAlias(name=EXPORT_ALIAS_NAME)
_GROUP_ID = re.compile(r"^[a-f0-9]{24}$")
_CLUSTER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$")
# What an Asset event carries, from the transfer's summary.
EVENT_FIELDS = ("path", "sha256", "bytes", "snapshot_id", "cluster_name", "group_id", "restore_job_id", "exported_at")
_LAST_EXPORT_ATTR = "_atlasflex_last_export"


def cluster_asset_uri(group_id: str, cluster_name: str) -> str:
    return f"{ASSET_SCHEME}://{group_id}/{cluster_name}"


def cluster_asset(group_id: str, cluster_name: str) -> Asset:
    """The Asset of one flex cluster's exports (schedule a DAG on it for that cluster only)."""
    return Asset(uri=cluster_asset_uri(group_id, cluster_name))


def normalize_asset_uri(parts: SplitResult) -> SplitResult:
    """Airflow's ``asset-uris`` handler for ``mongodb-atlas://<24-hex project id>/<cluster name>``."""
    group_id = parts.netloc.lower()
    cluster = parts.path.removeprefix("/")
    if not _GROUP_ID.fullmatch(group_id):
        raise ValueError(
            f"{ASSET_SCHEME}:// URIs name the project (24-hex group id) as host, got {parts.netloc!r}: "
            f"write {ASSET_SCHEME}://<group_id>/<cluster_name>."
        )
    if not _CLUSTER.fullmatch(cluster):
        raise ValueError(
            f"{ASSET_SCHEME}:// URIs end with one flex cluster name, got path {parts.path!r}: "
            f"write {ASSET_SCHEME}://<group_id>/<cluster_name>."
        )
    if parts.query:
        raise ValueError(f"{ASSET_SCHEME}:// URIs take no query string, got {parts.query!r}.")
    return parts._replace(netloc=group_id, path=f"/{cluster}", query="", fragment="")


def record_export(operator: Any, context: Any, summary: dict[str, Any]) -> None:
    """After a committed export: the Asset event for its cluster, and what lineage will report.

    The event goes to every AssetAlias among the task's outlets, and onto the cluster's own Asset
    if that is declared as an outlet. A task with neither emits nothing (a debug line says so).
    """
    setattr(operator, _LAST_EXPORT_ATTR, dict(summary))
    asset = cluster_asset(summary["group_id"], summary["cluster_name"])
    extra = {key: summary[key] for key in EVENT_FIELDS if key in summary}
    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is None:
        return
    emitted = False
    for outlet in getattr(operator, "outlets", None) or ():
        if isinstance(outlet, AssetAlias):
            events[outlet].add(asset, extra=extra)
            emitted = True
        elif isinstance(outlet, Asset) and outlet.uri == asset.uri:
            events[outlet].extra.update(extra)
            emitted = True
    if emitted:
        operator.log.info(
            "Asset event for %s: snapshot %s, %s bytes", asset.uri, summary["snapshot_id"], summary["bytes"]
        )
    else:
        operator.log.debug("No Asset event: the task has no AssetAlias outlet and no outlet for %s", asset.uri)


def openlineage_facets(operator: Any) -> OperatorLineage:
    """Input: the cluster's snapshot in Atlas; output: the committed file (empty before an export committed)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import ObjectStoragePath

    summary = getattr(operator, _LAST_EXPORT_ATTR, None)
    if not summary:
        return OperatorLineage()
    source = Dataset(namespace=f"{ASSET_SCHEME}://{summary['group_id']}", name=summary["cluster_name"])
    path = ObjectStoragePath(summary["path"], conn_id=getattr(operator, "dst_conn_id", None))
    return OperatorLineage(inputs=[source], outputs=[Dataset(namespace=path.namespace, name=path.key)])
