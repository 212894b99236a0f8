"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Kept import-light: Airflow calls this while discovering providers.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_atlasflex.version import __version__

__all__ = ["get_provider_info"]


CONN_FIELDS: dict[str, Any] = {
    "auth_type": {
        "label": "Auth type",
        "schema": {"type": ["string", "null"], "enum": ["service_account", "digest", None]},
        "description": "service_account (OAuth client credentials) or digest (API keys). "
        "Leave empty to infer it from the login (mdb_sa_id_... means service account).",
    },
    "group_id": {
        "label": "Default project id",
        "schema": {"type": ["string", "null"], "pattern": "^([a-f0-9]{24})$"},
        "description": "24-hex Atlas project (group) id used when a task does not pass group_id.",
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "max_retries": {
        "label": "Max retries",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
        "description": "Retries for 429, 5xx and connection errors (exponential backoff, honours Retry-After).",
    },
    "proxies": {
        "label": "Proxies (JSON)",
        "schema": {"type": ["object", "null"]},
        "description": 'e.g. {"https": "http://proxy:3128"}',
    },
    "verify": {
        "label": "Verify TLS",
        "schema": {"type": ["boolean", "string", "null"], "default": True},
        "description": "true, false, or the path of a CA bundle.",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {
        "login": "Public key / client id",
        "password": "Private key / client secret",
        "host": "Base URL",
    },
    "placeholders": {
        "login": "API public key, or service account client id (mdb_sa_id_...)",
        "password": "API private key, or service account client secret",
        "host": "https://cloud.mongodb.com",
        "extra": '{"group_id": "<24-hex project id>", "auth_type": "service_account"}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers`` and the UI show; same keys as Airflow's own providers where they fit.

    Not carried, because the provider has none: ``extra-links`` (operator links), ``asset-uris``
    (Asset schemes), ``config`` (Airflow options), ``notifications``.
    """
    return {
        "package-name": "airflow-provider-atlasflex",
        "name": "MongoDB Atlas Flex Backup",
        "description": "Nightly exports of MongoDB Atlas flex-cluster backup snapshots to storage you control.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "MongoDB Atlas",
                "external-doc-url": "https://www.mongodb.com/docs/atlas/backup/cloud-backup/flex-cluster-backup/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "MongoDB Atlas",
                "python-modules": [
                    "airflow_provider_atlasflex.hooks.atlas_flex",
                    "airflow_provider_atlasflex.hooks.atlas_flex_async",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "MongoDB Atlas",
                "python-modules": ["airflow_provider_atlasflex.operators.snapshot_download"],
            }
        ],
        "sensors": [
            {"integration-name": "MongoDB Atlas", "python-modules": ["airflow_provider_atlasflex.sensors.snapshot_url"]}
        ],
        "triggers": [
            {"integration-name": "MongoDB Atlas", "python-modules": ["airflow_provider_atlasflex.triggers.restore_job"]}
        ],
        "transfers": [
            {
                "source-integration-name": "MongoDB Atlas",
                # Airflow's name for ObjectStoragePath destinations (apache-airflow-providers-common-io).
                "target-integration-name": "Common IO",
                "python-module": "airflow_provider_atlasflex.transfers.snapshot_to_storage",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_atlasflex.hooks.atlas_flex.AtlasFlexHook",
                "hook-name": "MongoDB Atlas",
                "connection-type": "mongodb_atlas",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
