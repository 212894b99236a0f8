"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Kept import-light: Airflow calls this while discovering providers.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_atlasflex.version import __version__

__all__ = ["get_provider_info"]


# The connection form's extra fields (Airflow >= 3.2 reads these; older versions get the same fields
# as wtforms widgets from the hook classes, built from this table by hooks/connection_form.py).
# Every type admits null: Airflow's form marks a field whose type does not as required and blocks Save
# while it is empty, and each of these may be left empty (the connection config then uses the default).
# No name may contain a word Airflow treats as secret (token, secret, password, api_key, proxy, ...;
# `sensitive_var_conn_names`): the form would show and save "***" for it. `proxies` is the one exception
# on purpose: a proxy URL may hold a password (docs/connection-form.md).
# Airflow's form shows no placeholder for an extra field on any minor: examples go in the description.
CONN_FIELDS: dict[str, Any] = {
    "auth_type": {
        "label": "Auth type",
        "schema": {"type": ["string", "null"], "enum": ["service_account", "digest"], "default": "service_account"},
        "description": "service_account: OAuth client credentials (recommended; Login = client id mdb_sa_id_..., "
        "Password = client secret). digest: a legacy API key pair (Login = public key, Password = private key). "
        "Empty: inferred from the Login.",
    },
    "group_id": {
        "label": "Default project id",
        "schema": {"type": ["string", "null"], "pattern": "^([a-f0-9]{24})$"},
        "description": "Optional. The 24-hex Atlas project (group) id used when a task does not pass group_id, "
        "e.g. 5f1b2c3d4e5f60718293a4b5 (Atlas UI: Project Settings).",
    },
    "timeout": {
        "label": "Request timeout (seconds, at most 3600)",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 0.001, "maximum": 3600},
        "description": "Connect and read timeout of each request to Atlas and of each read of the download. "
        "Empty: 60.",
    },
    "max_retries": {
        "label": "Max retries (0 to 100)",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0, "maximum": 100},
        "description": "Retries of one request after 429, 5xx or a network error (exponential backoff, honours "
        "Retry-After). Errors no retry can fix (404, 401, 403, bad input) fail at once. Empty: 5.",
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Keep on. Off accepts any certificate (only for a local test server).",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Optional. Path of a PEM file (or directory) of trusted CAs, present on every worker and "
        "triggerer, e.g. /etc/ssl/certs/corporate-ca.pem for a TLS-inspecting proxy. Empty: the system's CA "
        "certificates.",
    },
    "sharing_scope": {
        # Was "token_sharing" (still read, with a warning): Airflow masks any field whose name contains "token".
        "label": "Token sharing (service accounts)",
        "schema": {"type": ["string", "null"], "enum": ["auto", "host", "deployment", "process"], "default": "auto"},
        "description": "Who shares one access token (Atlas allows 10 token requests a minute); API keys ignore "
        "it. auto: host with the Local executor, deployment with Celery or Kubernetes. host: the task processes "
        "on a machine; deployment: every worker, through an encrypted Airflow Variable; process: none, each "
        "process keeps its own and revokes it on exit.",
    },
    "allow_insecure_http": {
        "label": "Allow plain http (tests only)",
        "schema": {"type": ["boolean", "null"], "default": False},
        "description": "Accept an http:// Base URL and snapshot links. Secrets and backups would travel in clear "
        "text: only for a local emulator or test server.",
    },
    "proxies": {
        "label": "Proxies (JSON)",
        "schema": {"type": ["object", "null"]},
        "description": 'Optional. Scheme to proxy URL, e.g. {"https": "http://proxy:3128"}. Airflow masks it once '
        "saved, as a proxy URL may hold a password; left masked, it is kept when the form is saved.",
    },
}

# Airflow renders placeholders for the standard fields only (host, login, password, schema, port,
# description), on every minor: tests/unit/test_connection_form.py keeps it that way.
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
                "python-modules": [
                    "airflow_provider_atlasflex.operators.snapshot_download",
                    "airflow_provider_atlasflex.operators.cluster_discovery",
                    "airflow_provider_atlasflex.operators.night_report",
                    "airflow_provider_atlasflex.operators.restore_snapshot",
                    "airflow_provider_atlasflex.operators.export_verify",
                    "airflow_provider_atlasflex.operators.export_retention",
                    "airflow_provider_atlasflex.operators.export_plan",
                    "airflow_provider_atlasflex.operators.protection_check",
                ],
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
        "asset-uris": [
            {"schemes": ["mongodb-atlas"], "handler": "airflow_provider_atlasflex.transfers.asset_events.normalize_asset_uri"}
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
