"""Admin API answers are asked for uncompressed.

An answer is small JSON. A compressed one is inflated by the HTTP client a whole network read at a
time, before the hooks' 16 MiB cap on a body can refuse it: a hostile host's deflate bomb of 64 KiB
would become ~64 MiB in memory first. Both hooks therefore send ``Accept-Encoding: identity`` on
every Admin API call (the snapshot download already does).
"""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
from airflow_provider_atlasflex.hooks.atlas_flex_async import AtlasFlexAsyncHook
from tests.reliability.registry import reliability

pytestmark = pytest.mark.usefixtures("fresh_tokens", "fast_retries")


@reliability(
    "hostile",
    "An Admin API host that compresses its answers (a deflate bomb inflates ~1000:1, a whole network read at a time)",
    "Both hooks ask for identity encoding on every call, so an honest host sends plain JSON; the 16 MiB cap on "
    "a body still refuses anything bigger",
    "nothing: answers are small JSON either way",
)
@pytest.mark.parametrize("auth", ["digest", "service_account"])
def test_both_hooks_ask_for_uncompressed_answers(emu, atlas_conn, auth):
    atlas_conn(emu, auth)
    hook = AtlasFlexHook()
    snapshot_id = hook.list_snapshots("alpha")[0]["id"]
    job = hook.request_snapshot_download("alpha", snapshot_id)

    async def poll() -> None:
        async_hook = AtlasFlexAsyncHook()
        try:
            await async_hook.get_restore_job("alpha", job["id"])
        finally:
            await async_hook.aclose()

    asyncio.run(poll())
    api_calls = [x for x in emu.requests if "/api/atlas/v2/" in x.path]
    assert api_calls and {x.operation for x in api_calls} >= {"getGroupFlexClusterBackupRestoreJob"}
    assert {x.headers.get("Accept-Encoding") for x in api_calls} == {"identity"}
