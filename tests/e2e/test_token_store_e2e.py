"""Real Airflow, real task processes and a real triggerer, with a token store directory squatted by another user.

Issue 7 items 12 and 13: the LocalExecutor runs every task in its own process and the triggerer
runs the deferred sensors; the configured store directory was pre-created by another local user.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_atlasflex.testing.airflow_sandbox import emulator_connection
from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.e2e.airflow_runs import CLUSTERS, RESTORE_SECONDS, RUN_DATE, task_log_files
from tests.e2e.conftest import DAG_ID
from tests.reliability.registry import reliability


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to create a directory owned by another user")
@reliability(
    "hostile",
    "real Airflow (LocalExecutor, a task process per task, a real triggerer for the deferred sensors) with the "
    "token store directory pre-created by another local user (uid 65534, mode 0777)",
    "every task process and the triggerer refuse it, warn, and share one token through the private fallback "
    "directory; the trigger does not repeat the sensor's poke",
    "the run succeeds; a WARNING naming the directory and the fix in the task logs; at most 2 token requests "
    "and 2 active tokens; nothing written in the squatted directory",
)
def test_squatted_store_in_real_airflow_still_shares_one_token(sandbox, tmp_path: Path) -> None:
    squatted = tmp_path / "squatted-tokens"
    squatted.mkdir()
    squatted.chmod(0o777)
    os.chown(squatted, 65534, 65534)
    cache = tmp_path / "airflow-user-cache"
    with AtlasEmulator(clusters=CLUSTERS, snapshot_size=500_000, restore_duration=RESTORE_SECONDS) as emu:
        result = sandbox.dags_test(
            DAG_ID,
            logical_date=RUN_DATE,
            conf={"clusters": list(CLUSTERS), "destination_root": (tmp_path / "exports").as_uri()},
            connections={"mongodb_atlas_default": emulator_connection(emu, "service_account")},
            env={
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "ATLAS_FLEX_POLL_SECONDS": "1",
                "ATLASFLEX_TOKEN_DIR": str(squatted),
                "XDG_CACHE_HOME": str(cache),
            },
            use_executor=True,
            triggerer=True,
            timeout=240,
        )
        assert result.succeeded, result.tail()
        client = emu.service_account.client_id
        assert emu.token_requests(client) <= 2
        assert emu.active_token_count(client) <= 2
    assert list(squatted.iterdir()) == []
    assert (cache / "airflow-provider-atlasflex" / "tokens").is_dir()
    logs = "\n".join(p.read_text(errors="replace") for paths in task_log_files(sandbox).values() for p in paths)
    assert str(squatted) in logs and "ATLASFLEX_TOKEN_DIR" in logs and "owned by uid 65534" in logs
