"""Each committed export emits an Asset event, recorded in the metadata database by real Airflow."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import DAG_ID

CLUSTERS = ("alpha", "beta")
RUN_DATE = "2026-11-20"


def asset_events(database: Path) -> list[tuple[str, dict, list[str]]]:
    """(asset uri, event extra, aliases it came through) of every Asset event."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT asset.uri, asset_event.extra, asset_event.id FROM asset_event "
            "JOIN asset ON asset.id = asset_event.asset_id ORDER BY asset.uri"
        ).fetchall()
        found = []
        for uri, extra, event_id in rows:
            aliases = [
                name
                for (name,) in db.execute(
                    "SELECT asset_alias.name FROM asset_alias_asset_event JOIN asset_alias "
                    "ON asset_alias.id = asset_alias_asset_event.alias_id WHERE asset_alias_asset_event.event_id = ?",
                    (event_id,),
                )
            ]
            found.append((uri, json.loads(extra) if isinstance(extra, str) else extra, aliases))
    return found


def test_nightly_export_records_one_asset_event_per_cluster(sandbox, tmp_path):
    exports = tmp_path / "exports"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=500_000, restore_duration=1.0) as emu:
        result = sandbox.dags_test(
            DAG_ID,
            logical_date=RUN_DATE,
            conf={"clusters": list(CLUSTERS)},
            connections={"mongodb_atlas_default": emulator_connection(emu, "digest")},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
                "ATLAS_FLEX_POLL_SECONDS": "1",
                # The destination is deployment configuration (a Variable), not run conf.
                "AIRFLOW_VAR_ATLASFLEX_DESTINATION_ROOT": exports.as_uri(),
            },
            timeout=240,
        )
        assert result.succeeded, result.tail()
        events = asset_events(sandbox.home / "airflow.db")
        assert [uri for uri, _, _ in events] == [f"mongodb-atlas://{emu.group_id}/{c}" for c in CLUSTERS]
        for (uri, extra, aliases), cluster in zip(events, CLUSTERS):
            snapshot_id = emu.newest_completed_snapshot_id(cluster)
            path = exports / cluster / RUN_DATE / f"{snapshot_id}.tgz"
            assert aliases == ["atlasflex-exports"]
            assert extra["snapshot_id"] == snapshot_id and extra["cluster_name"] == cluster
            assert extra["path"] == f"file://{path}"
            assert extra["bytes"] == path.stat().st_size
            assert extra["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == emu.expected_sha256(snapshot_id)
