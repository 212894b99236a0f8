"""Turn an Airflow connection of type ``mongodb_atlas`` into a checked, typed configuration.

All connection mistakes surface here, with the field to fix, before any request is sent.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from airflow_provider_atlasflex.defaults import DEFAULT_CONN_ID  # noqa: F401 (kept importable from here)
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError
from airflow_provider_atlasflex.hooks.connection_extras import (
    json_text,
    or_default,
    read_extras,
    renamed,
    warn_unknown_extras,
)
from airflow_provider_atlasflex.validation import require_object_id

if TYPE_CHECKING:
    from airflow.sdk import Connection


CONN_TYPE = "mongodb_atlas"
DEFAULT_BASE_URL = "https://cloud.mongodb.com"
SERVICE_ACCOUNT_PREFIX = "mdb_sa_id_"
AUTH_TYPES = ("digest", "service_account")
DEFAULT_TIMEOUT = 60.0
# Per-request (and per-read) timeout; larger values overflow the socket layer or hang a worker for days.
MAX_TIMEOUT = 3600.0
DEFAULT_MAX_RETRIES = 5
# A bound that still rides out a long incident (backoff caps at 60 s) but cannot retry for days.
MAX_RETRIES_LIMIT = 100
_HOSTNAME = re.compile(r"^[A-Za-z0-9._:-]+$")
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
# requests reads "http", "https", "all" and "<scheme>://<host>" keys; anything else is silently unused.
PROXY_KEYS = ("http", "https", "all")
AuthType = Literal["digest", "service_account"]


@dataclass(frozen=True)
class AtlasConnectionConfig:
    """Everything the hook needs from a connection; ``secret`` never appears in ``repr``."""

    conn_id: str
    base_url: str
    auth_type: AuthType
    principal: str
    secret: str = field(repr=False)
    group_id: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    proxies: dict[str, str] | None = None
    verify: bool | str = True
    share_tokens: bool = True
    # "process", "host" or "deployment" (see docs/tokens.md); share_tokens is True for the last two.
    token_sharing: str = "host"
    # Plain-http Atlas hosts and snapshot links are refused unless the connection opts in (the emulator does).
    allow_insecure_http: bool = False

    @property
    def credential_label(self) -> str:
        """Names the credential in messages without revealing it."""
        if self.auth_type == "service_account":
            return f"service account {self.principal!r}"
        return f"API key {self.principal!r}"

    @classmethod
    def from_connection(cls, conn: Connection) -> AtlasConnectionConfig:
        conn_id = conn.conn_id
        if conn.conn_type and conn.conn_type != CONN_TYPE:
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} has type {conn.conn_type!r}; the Atlas flex hooks need a "
                f"{CONN_TYPE!r} connection. Create one with conn_type {CONN_TYPE!r} (see the README)."
            )
        extras = read_extras(conn)
        warn_unknown_extras(conn_id, extras)
        principal = (conn.login or "").strip()
        secret = conn.password or ""
        auth_type = _auth_type(conn_id, extras.get("auth_type"), principal)
        if not principal:
            what = "service account client id" if auth_type == "service_account" else "API public key"
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} has an empty login: put the {what} in the Login field."
            )
        _check_login(conn_id, principal, auth_type)
        if not secret.strip():
            what = "service account client secret" if auth_type == "service_account" else "API private key"
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} has an empty password: put the {what} in the Password field."
            )
        group_id = extras.get("group_id")
        if group_id == "":
            group_id = None  # an empty form field: no default project
        if group_id is not None:
            require_object_id(group_id, f"extra 'group_id' of connection {conn_id!r}")
        allow_insecure_http = _flag(conn_id, extras, "allow_insecure_http", default=False)
        base_url = _base_url(conn_id, conn.host, conn.port, conn.schema)
        if base_url.startswith("http://") and not allow_insecure_http:
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} points at plain-http {base_url!r}: over http the "
                + ("service account client secret and its tokens" if auth_type == "service_account" else "Digest answers")
                + ", the API answers and the pre-signed backup links would travel in clear text. Use https (e.g. "
                f"{DEFAULT_BASE_URL}); only for a local emulator or test server, set the extra "
                '"allow_insecure_http": true to opt out.'
            )
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            auth_type=auth_type,
            principal=principal,
            secret=secret,
            group_id=group_id,
            timeout=_number(conn_id, extras, "timeout", DEFAULT_TIMEOUT, minimum=0.001, maximum=MAX_TIMEOUT),
            max_retries=int(
                _number(
                    conn_id, extras, "max_retries", DEFAULT_MAX_RETRIES, minimum=0, maximum=MAX_RETRIES_LIMIT, integer=True
                )
            ),
            proxies=_proxies(conn_id, extras.get("proxies")),
            verify=_verify_with_bundle(conn_id, or_default(extras.get("verify"), True), extras.get("ca_bundle")),
            share_tokens=_token_sharing(conn_id, renamed(conn_id, extras, "sharing_scope")) != "process",
            token_sharing=_token_sharing(conn_id, renamed(conn_id, extras, "sharing_scope")),
            allow_insecure_http=allow_insecure_http,
        )


def _auth_type(conn_id: str, value: Any, principal: str) -> AuthType:
    if value in (None, ""):
        return "service_account" if principal.startswith(SERVICE_ACCOUNT_PREFIX) else "digest"
    if value not in AUTH_TYPES:
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has extra auth_type={value!r}; use 'service_account' (OAuth client "
            "credentials, recommended) or 'digest' (API keys), or leave it out to infer it from the login."
        )
    return value


def _check_login(conn_id: str, principal: str, auth_type: str) -> None:
    # The login is never echoed: a login/password swap would put the secret in it.
    if any(ch.isspace() or not ch.isprintable() for ch in principal):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has a login containing spaces or control characters; put only the API "
            "public key or service account client id in the Login field."
        )
    if auth_type == "service_account" and not principal.startswith(SERVICE_ACCOUNT_PREFIX):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has extra auth_type='service_account' but its login is not a service account "
            f"client id (those start with {SERVICE_ACCOUNT_PREFIX!r}): put the client id in Login and the client "
            "secret in Password, or use auth_type 'digest' for an API key pair."
        )
    if auth_type == "digest" and principal.startswith(SERVICE_ACCOUNT_PREFIX):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has extra auth_type='digest' but its login is a service account client id "
            f"({SERVICE_ACCOUNT_PREFIX}...): set auth_type to 'service_account' (or leave it out), or put an API "
            "public key in Login."
        )


def _base_url(conn_id: str, host: str | None, port: Any, schema: str | None) -> str:
    if schema not in (None, "", "http", "https"):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has schema {schema!r}; leave it empty (or http/https) and put the full base "
            f"URL, e.g. {DEFAULT_BASE_URL}, in Host."
        )
    if port not in (None, "") and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has port {port!r}; use a port from 1 to 65535 or leave it empty."
        )
    host = (host or "").strip()
    if not host:
        if port not in (None, ""):
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} has port {port!r} but no Host; put the base URL with its port in Host "
                "(e.g. https://atlas.example:8443) or leave the port empty."
            )
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    try:
        parts = urlsplit(host)
        host_port = parts.port
    except ValueError:
        parts, host_port = None, None
    if "@" in host:  # also when the URL does not parse: the message must not echo it
        # Never echo it: the part before "@" is a user name and, usually, a password.
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has credentials in its Host field; put the key or client id in Login and "
            "the secret in Password, and only the base URL (e.g. https://cloud.mongodb.com) in Host."
        )
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not _HOSTNAME.fullmatch(parts.hostname):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} has host {host!r}; give the Atlas base URL, e.g. {DEFAULT_BASE_URL} "
            "(scheme http or https, a host name, optionally :port)."
        )
    netloc = parts.netloc
    if port not in (None, ""):
        if host_port is None:
            netloc = f"{netloc}:{port}"
        elif host_port != port:
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r} has port {port} in the Port field but {host_port} in Host; keep one "
                "(or make them equal)."
            )
    return f"{parts.scheme}://{netloc}"


def _number(
    conn_id: str,
    extras: dict[str, Any],
    key: str,
    default: float,
    *,
    minimum: float,
    maximum: float = math.inf,
    integer: bool = False,
) -> float:
    value = extras.get(key, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if (
        number is None
        or not math.isfinite(number)
        or not minimum <= number <= maximum
        or (integer and number != int(number))
    ):
        kind = "a whole number" if integer else "a number"
        bound = f"from {minimum:g} to {maximum:g}" if math.isfinite(maximum) else f"of at least {minimum:g}"
        raise AtlasFlexConfigError(f"Connection {conn_id!r} has extra {key}={value!r}; it must be {kind} {bound}.")
    return number


def _proxies(conn_id: str, value: Any) -> dict[str, str] | None:
    if isinstance(value, str):  # Airflow 3.1's form has a text box for it: the JSON as typed
        value = json_text(conn_id, "proxies must map scheme to proxy URL", value, '{"https": "http://proxy:3128"}')
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise AtlasFlexConfigError(
            f'Connection {conn_id!r}: extra proxies must map scheme to proxy URL, e.g. {{"https": "http://proxy:3128"}}.'
        )
    for key, url in value.items():
        if key not in PROXY_KEYS and "://" not in key:
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r}: extra proxies has key {key!r}; use 'https', 'http' or 'all' (the scheme of "
                'the request the proxy is for), e.g. {"https": "http://proxy:3128"}.'
            )
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in PROXY_SCHEMES or not parts.hostname:
            raise AtlasFlexConfigError(
                f"Connection {conn_id!r}: extra proxies[{key!r}] is not a proxy URL; write it as "
                f"scheme://host:port with scheme one of {', '.join(PROXY_SCHEMES)}, e.g. http://proxy:3128."
            )
    return value


TOKEN_SHARING_MODES = ("process", "host", "deployment")
# Executors whose tasks all run on the machine of the scheduler: the host store already shares one token.
_SINGLE_HOST_EXECUTORS = ("LocalExecutor", "SequentialExecutor", "DebugExecutor")


def _token_sharing(conn_id: str, value: Any) -> str:
    if value in (None, "", "auto"):
        return default_token_sharing()
    if value in TOKEN_SHARING_MODES:
        return str(value)
    raise AtlasFlexConfigError(
        f"Connection {conn_id!r} has extra sharing_scope={value!r}; use 'host' (one token shared by the task "
        "processes on a host), 'deployment' (one token for every worker, through an encrypted Airflow Variable), "
        "'process' (a token per process, revoked when it exits) or 'auto' (host with the LocalExecutor, "
        "deployment with Celery, Kubernetes and other distributed executors; also when left out)."
    )


@functools.lru_cache(maxsize=1)
def default_token_sharing() -> str:
    """'host' when every task runs on one machine (LocalExecutor), else 'deployment'."""
    try:
        try:
            from airflow.sdk import conf
        except ImportError:  # Airflow < 3.1
            from airflow.configuration import conf  # type: ignore[no-redef,assignment]
        executors = str(conf.get("core", "executor", fallback="LocalExecutor") or "LocalExecutor")
    except Exception:  # noqa: BLE001 - no readable configuration: the conservative default
        return "host"
    names = [part.split(":")[-1].strip().rsplit(".", 1)[-1] for part in executors.split(",") if part.strip()]
    return "host" if names and all(name in _SINGLE_HOST_EXECUTORS for name in names) else "deployment"


def _flag(conn_id: str, extras: dict[str, Any], name: str, *, default: bool) -> bool:
    """A true/false extra, as JSON or as the text a form or URI gives."""
    value = extras.get(name, default)
    if value is None or value == "":  # a form field left empty
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise AtlasFlexConfigError(f"Connection {conn_id!r}: extra {name} must be true or false, got {value!r}.")


def _verify_with_bundle(conn_id: str, verify: Any, ca_bundle: Any) -> bool | str:
    """``verify`` (true/false or, as before, a bundle path) combined with the form's ``ca_bundle`` field."""
    checked = _verify(conn_id, verify)
    if ca_bundle in (None, ""):
        return checked
    if not isinstance(ca_bundle, str) or not ca_bundle.strip():
        raise AtlasFlexConfigError(f"Connection {conn_id!r}: extra ca_bundle must be the path of a CA bundle.")
    if checked is False:
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r} sets both verify=false and a ca_bundle; turn verify on to use the CA bundle "
            "(or clear ca_bundle)."
        )
    path = ca_bundle.strip()
    if not os.path.exists(path):
        raise AtlasFlexConfigError(
            f"Connection {conn_id!r}: extra ca_bundle names {path!r}, which does not exist on this machine; give "
            "the path of a PEM file (or directory) present on every worker and triggerer, or leave it empty."
        )
    return path


def _verify(conn_id: str, value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        if value.strip():
            if not os.path.exists(value):
                raise AtlasFlexConfigError(
                    f"Connection {conn_id!r}: extra verify names a CA bundle {value!r} that does not exist on this "
                    "machine; give the path of a PEM file (or directory) present on every worker and triggerer, "
                    "or true to use the system's CA certificates."
                )
            return value  # a CA bundle path
    raise AtlasFlexConfigError(
        f"Connection {conn_id!r}: extra verify must be true, false or the path of a CA bundle, got {value!r}."
    )
