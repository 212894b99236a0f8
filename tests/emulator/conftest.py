"""Shared fixtures for the emulator's own tests (real HTTP via ``requests``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_atlasflex.testing.emulator import AtlasEmulator
from tests.emulator._helpers import FakeClock, digest_session


@pytest.fixture
def emu() -> Iterator[AtlasEmulator]:
    with AtlasEmulator(snapshot_size=50_000, restore_duration=0.0, seed="unit") as e:
        yield e


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked(clock: FakeClock) -> Iterator[AtlasEmulator]:
    """An emulator on a fake clock (restore jobs take 10 s of fake time)."""
    with AtlasEmulator(
        snapshot_size=50_000, restore_duration=10.0, token_ttl=3600, seed="clocked", clock=clock, nonce_ttl=300
    ) as e:
        yield e


@pytest.fixture
def owner(emu: AtlasEmulator) -> requests.Session:
    return digest_session(emu)
