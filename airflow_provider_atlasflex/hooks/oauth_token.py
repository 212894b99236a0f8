"""An Atlas OAuth access token: what the token endpoint answered, and until when it may be reused.

Why its own module: the token endpoint's answer, the token cache, the host store and the
deployment store (:mod:`.deployment_tokens`) all handle this one value, and they must agree on
when a token is too old to send (a token must never expire mid-request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import AtlasApiError

# Refresh this long before expires_in so a token never expires mid-request.
EXPIRY_MARGIN_SECONDS = 120.0


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    expires_at: float
    issued_at: float = 0.0

    def fresh(self, now: float) -> bool:
        """Usable for a while yet: refreshed 2 minutes (or a tenth of its life) before it expires."""
        lifetime = self.expires_at - (self.issued_at or self.expires_at - 3600)
        return now < self.expires_at - min(EXPIRY_MARGIN_SECONDS, lifetime / 10)


def parse_token(payload: Any, credential_label: str) -> CachedToken:
    """Check the token endpoint's answer and register the token with the log masker."""
    if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
        raise AtlasApiError(
            f"The Atlas token endpoint answered without an access_token for the {credential_label}; "
            "check the connection host points at Atlas.",
            operation="oauthToken",
        )
    token = payload["access_token"]
    mask_secret(token)
    try:
        expires_in = float(payload.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    now = time.time()
    return CachedToken(token, now + expires_in, now)
