"""Suite-wide isolation: each test gets its own host token store and an empty in-process token cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE

# The export signing key unit tests sign and verify with, given the way a deployment may give one:
# AIRFLOW_VAR_ environment variables, read by Variable.get (Variable.set needs a running task).
# The e2e sandboxes drop AIRFLOW_VAR_*: real Airflow runs create their key in the metadata database.
TEST_SIGNING_KEY_ID = "unittests"
TEST_SIGNING_SECRET = "unit-tests-signing-key-0123456789abcdef"
SIGNING_ENV = {
    "AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID": TEST_SIGNING_KEY_ID,
    f"AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_{TEST_SIGNING_KEY_ID.upper()}": TEST_SIGNING_SECRET,
}


@pytest.fixture(autouse=True)
def _signing_key() -> Iterator[None]:
    # Its own MonkeyPatch: a test's monkeypatch.undo() must not take the key away mid-test.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SIGNING_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def _isolated_token_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store = tmp_path_factory.mktemp("tokens")
    store.chmod(0o700)
    monkeypatch.setenv("ATLASFLEX_TOKEN_DIR", str(store))
    # The private fallback for a refused store lives under $XDG_CACHE_HOME: never the real home in tests.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    TOKEN_CACHE.clear()
    yield store
    TOKEN_CACHE.clear()
