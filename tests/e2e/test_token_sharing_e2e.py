"""sharing_scope 'deployment' in real Airflow: two workers that share no host token store use one token.

Each ``airflow dags test`` run is its own process with its own ``ATLASFLEX_TOKEN_DIR`` (as two
Celery workers or pods would be); they share only the deployment's metadata database, where the
token lives in an encrypted Variable written through the Task SDK.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from airflow_provider_atlasflex.hooks.deployment_tokens import VARIABLE_PREFIX
from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.conftest import DAG_ID
from tests.reliability.registry import reliability


@reliability(
    "hostile",
    "two workers that share no host token store (separate ATLASFLEX_TOKEN_DIR, separate processes) export "
    "with sharing_scope 'deployment' in real Airflow",
    "the first worker stores its token in an encrypted Airflow Variable through the Task SDK; the second reads it",
    "both runs succeed with 1 token request in all; the Variable holds only ciphertext; no token in the task output",
)
def test_two_workers_without_a_shared_host_store_use_one_token(sandbox, tmp_path: Path) -> None:
    with AtlasEmulator(clusters=("alpha",), snapshot_size=200_000, restore_duration=1.0) as emu:
        connection = emulator_connection(emu, "service_account", sharing_scope="deployment")
        outputs = []
        for worker, date in (("worker-a", "2026-11-20"), ("worker-b", "2026-11-21")):
            token_dir = tmp_path / worker
            token_dir.mkdir(mode=0o700)
            result = sandbox.dags_test(
                DAG_ID,
                logical_date=date,
                conf={"clusters": ["alpha"], "destination_root": (tmp_path / "exports").as_uri()},
                connections={"mongodb_atlas_default": connection},
                env={"ATLASFLEX_TOKEN_DIR": str(token_dir), "ATLAS_FLEX_POLL_SECONDS": "1"},
                timeout=240,
            )
            assert result.succeeded, result.tail()
            outputs.append(result.output)
        client = emu.service_account.client_id
        issued = emu.issued_tokens(client)
        assert emu.token_requests(client) == 1
        assert not [t for t in issued if any(t in output for output in outputs)]
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        rows = db.execute("SELECT key, val FROM variable WHERE key LIKE ?", (VARIABLE_PREFIX + "%",)).fetchall()
    assert len(rows) == 1
    assert not any(t in str(rows[0][1]) for t in issued)
