"""A local, faithful emulator of the Atlas Admin API flex-backup endpoints.

Use it in tests and demos instead of real Atlas::

    from airflow_provider_atlasflex.testing.emulator import AtlasEmulator

    with AtlasEmulator(clusters=("alpha",), snapshot_size=1_000_000) as emu:
        ...  # emu.base_url, emu.group_id, emu.api_key, emu.service_account, emu.faults

Or from a shell: ``python -m airflow_provider_atlasflex.testing.emulator --help``.
"""

from __future__ import annotations

from .auth import PROJECT_OWNER, PROJECT_READ_ONLY, ApiKey, ServiceAccount
from .emulator import AtlasEmulator
from .faults import API_OPERATIONS, EXTRA_OPERATIONS, OPERATIONS, Fault, FaultSet
from .recording import RecordedExchange, RequestLog
from .tgz import SnapshotArchive, minimum_snapshot_size

__all__ = [
    "API_OPERATIONS",
    "EXTRA_OPERATIONS",
    "OPERATIONS",
    "PROJECT_OWNER",
    "PROJECT_READ_ONLY",
    "ApiKey",
    "AtlasEmulator",
    "Fault",
    "FaultSet",
    "RecordedExchange",
    "RequestLog",
    "ServiceAccount",
    "SnapshotArchive",
    "minimum_snapshot_size",
]
