"""Suite-wide isolation: each test gets its own host token store and an empty in-process token cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_atlasflex.hooks.service_account import TOKEN_CACHE


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
