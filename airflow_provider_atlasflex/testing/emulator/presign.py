"""Pre-signed snapshot download URLs, in the style of an object-store signed link.

Why: Atlas hands out a ``snapshotUrl`` that needs no Atlas credentials and stops
working when it expires or is altered; the provider must treat it as an opaque,
time-limited secret (never log it, re-request it when it has expired).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

__all__ = ["DOWNLOAD_PREFIX", "UrlSigner"]

DOWNLOAD_PREFIX = "/backup-download/"


class UrlSigner:
    """HMAC-SHA256 over ``path + "\\n" + expires`` with a per-emulator secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    @staticmethod
    def path_for(restore_job_id: str, cluster_name: str, snapshot_id: str) -> str:
        return f"{DOWNLOAD_PREFIX}{restore_job_id}/{quote(cluster_name)}-{snapshot_id}.tgz"

    def signature(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base_url: str, restore_job_id: str, cluster_name: str, snapshot_id: str, expires: int) -> str:
        path = self.path_for(restore_job_id, cluster_name, snapshot_id)
        return f"{base_url}{path}?Expires={expires}&Signature={self.signature(path, expires)}"

    def verify(self, path: str, expires: str | None, signature: str | None) -> bool:
        """True when the signature matches (expiry is checked by the caller)."""
        if not expires or not signature or not expires.isdigit():
            return False
        return hmac.compare_digest(self.signature(path, int(expires)), signature.lower())
