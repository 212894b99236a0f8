"""Which snapshot links may be fetched: https to a public host, and redirects only within that host.

Why: ``snapshotUrl`` comes from an API answer. A lying or compromised answer could point the
worker at plain http (the link's signature and the backup in clear text), at a cloud metadata
address or another internal service, or at ``file://``. The connection's ``allow_insecure_http``
flag (set for the local emulator) is the one explicit opt-out, for http and for local hosts.
Messages never echo the link's query string: it is a credential.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urljoin, urlsplit

from airflow_provider_atlasflex.exceptions import SnapshotTransferError
from airflow_provider_atlasflex.validation import redact_url

OPT_OUT = "allow_insecure_http"
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def check_snapshot_link(url: object, *, allow_insecure_http: bool = False) -> str:
    """Return ``url`` if the download may fetch it; raise :class:`SnapshotTransferError` saying why not."""
    if not isinstance(url, str) or not url:
        raise SnapshotTransferError(f"the snapshot link is not a URL (got {type(url).__name__}); nothing was fetched")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SnapshotTransferError(f"the snapshot link {shown} is not a valid URL; nothing was fetched") from None
    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_insecure_http:
        raise SnapshotTransferError(
            f"the snapshot link {shown} is plain http: its signature and the backup would cross the network "
            f"unencrypted. Atlas links are https; for a local test server set the connection extra {OPT_OUT}: true."
        )
    if scheme not in ("http", "https"):
        raise SnapshotTransferError(
            f"the snapshot link {shown} has scheme {scheme or '(none)'!r}; only https links are fetched"
        )
    if parts.username is not None or parts.password is not None:
        raise SnapshotTransferError(f"the snapshot link {shown} carries credentials before its host; refused")
    host = parts.hostname or ""
    if not host:
        raise SnapshotTransferError(f"the snapshot link {shown} has no host; nothing was fetched")
    if not allow_insecure_http:
        address = literal_address(host)
        if host.rstrip(".").lower() in _LOCAL_NAMES or host.rstrip(".").lower().endswith(".localhost"):
            raise _local_host(shown, host)
        if address is not None and not is_public(address):
            raise _local_host(shown, host)
    return url


def check_peer(address: str | None, url: str, *, allow_insecure_http: bool = False) -> None:
    """Refuse a connection that a host name resolved to a loopback, private or link-local address."""
    if allow_insecure_http or not address:
        return
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return
    if not is_public(ip):
        raise SnapshotTransferError(
            f"the snapshot link {redact_url(url)} resolved to the non-public address {ip}; refused (Atlas links "
            f"point at public storage; for a local test server set the connection extra {OPT_OUT}: true)"
        )


def redirect_target(url: str, location: str | None, *, allow_insecure_http: bool = False) -> str:
    """The URL a redirect points to, if it stays on the same scheme, host and port; else raise."""
    if not location:
        raise SnapshotTransferError(f"the snapshot link {redact_url(url)} answered a redirect without a Location")
    target = urljoin(url, location)
    if _origin(urlsplit(url)) != _origin(urlsplit(target)):
        raise SnapshotTransferError(
            f"the snapshot link {redact_url(url)} redirected to another host ({redact_url(target)}); redirects "
            "are followed only within the link's own host, so nothing was fetched from it. Check for a proxy "
            "between this worker and the storage host that rewrites answers (the connection's proxies extra, "
            "HTTPS_PROXY)"
        )
    return check_snapshot_link(target, allow_insecure_http=allow_insecure_http)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names without DNS: dotted, bracketed IPv6, and legacy forms such as 2130706433."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:  # what the resolver also accepts: "127.1", "0x7f.0.0.1", "2130706433"
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except (OSError, ValueError):
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


def _local_host(shown: str, host: str) -> SnapshotTransferError:
    return SnapshotTransferError(
        f"the snapshot link {shown} points at {host}, a loopback, private or link-local host; refused (Atlas "
        f"links point at public storage; for a local test server set the connection extra {OPT_OUT}: true)"
    )


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)
