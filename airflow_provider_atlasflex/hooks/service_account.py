"""OAuth 2.0 client credentials for Atlas service accounts: the token and revoke calls, and the process's token cache.

The hooks sign their requests with a bearer token fetched with the service account's client id and
secret (HTTP Basic, form-encoded ``grant_type=client_credentials``) and revoke the tokens they
replace. How tokens are shared and reused (Atlas allows 10 token requests a minute and 100 active
tokens per service account) is :mod:`.token_cache`'s job; :data:`TOKEN_CACHE` is the one cache of
this process.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import urlencode

from airflow_provider_atlasflex.hooks.api_protocol import REVOKE_PATH, TOKEN_PATH, ApiCall
from airflow_provider_atlasflex.hooks.oauth_token import CachedToken, parse_token
from airflow_provider_atlasflex.hooks.token_cache import TokenCache

# CachedToken, parse_token and TokenCache are imported here by the hooks, as before they moved out.
__all__ = [
    "TOKEN_CACHE",
    "CachedToken",
    "FormCall",
    "TokenCache",
    "basic_authorization",
    "parse_token",
    "revoke_call",
    "token_call",
]


@dataclass(frozen=True)
class FormCall(ApiCall):
    """A call to the OAuth endpoints: form-encoded body, Basic auth, plain JSON answer."""

    form: tuple[tuple[str, str], ...] = ()

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}

    def body(self) -> bytes:
        return urlencode(self.form).encode()


def basic_authorization(client_id: str, client_secret: str) -> str:
    raw = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_call() -> FormCall:
    return FormCall(operation="oauthToken", method="POST", path=TOKEN_PATH, form=(("grant_type", "client_credentials"),))


def revoke_call(token: str) -> FormCall:
    return FormCall(
        operation="oauthRevoke",
        method="POST",
        path=REVOKE_PATH,
        form=(("token", token), ("token_type_hint", "access_token")),
    )


TOKEN_CACHE = TokenCache()
