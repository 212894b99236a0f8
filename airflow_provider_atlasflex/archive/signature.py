"""HMAC-SHA256 signatures of export manifests: only a holder of the key can make one that verifies.

Why: the ``.sha256`` and ``.json`` sidecars prove an export's bytes only against someone who cannot
write them too. Anyone who can write to the destination can plant a file with matching sidecars
(the path is predictable), so a manifest counts as ours only when it carries a valid signature
made with a key the destination's writers do not hold (see :mod:`.keys` for where keys live).

The signature covers a canonical serialisation of the manifest without its ``signature`` field
(sorted keys, no whitespace, ASCII) prefixed by a domain tag and the key id, so it survives
re-indenting and names the key that checks it. This module is pure: no Airflow, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SIGNATURE_FIELD = "signature"
ALGORITHM = "HMAC-SHA256"
SIGNED = "signed"
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
_DOMAIN = b"atlasflex-export-manifest/1\0"
KEY_ID = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class SigningKey:
    """A key id (recorded in manifests) and its secret (never logged: ``repr`` leaves it out)."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class SignatureCheck:
    """``status`` is :data:`SIGNED`, :data:`UNSIGNED` or :data:`BAD_SIGNATURE`; ``reason`` says why in words."""

    status: str
    reason: str
    key_id: str | None = None

    @property
    def valid(self) -> bool:
        return self.status == SIGNED


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its signature, in one stable JSON form."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _mac(manifest: Mapping[str, Any], key: SigningKey) -> str:
    message = _DOMAIN + key.key_id.encode() + b"\0" + canonical(manifest)
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def sign(manifest: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """A copy of ``manifest`` with its ``signature`` (algorithm, key id, HMAC in hex) set by ``key``."""
    if not KEY_ID.fullmatch(key.key_id):
        raise ValueError(f"signing key id {key.key_id!r} is not {KEY_ID.pattern}")
    return dict(manifest) | {SIGNATURE_FIELD: {"algorithm": ALGORITHM, "key_id": key.key_id, "hmac": _mac(manifest, key)}}


def check(manifest: Mapping[str, Any], secret_of: Callable[[str], bytes | None]) -> SignatureCheck:
    """Whether ``manifest`` carries a signature that verifies with the key it names.

    ``secret_of(key_id)`` returns that key's secret, or None when no such key is known (deleted,
    or never ours): a signature nobody can check proves nothing, so it is a bad signature.
    """
    signature = manifest.get(SIGNATURE_FIELD)
    if signature is None:
        return SignatureCheck(UNSIGNED, "the manifest is not signed (planted, or written before signing existed)")
    if not isinstance(signature, Mapping) or signature.get("algorithm") != ALGORITHM:
        return SignatureCheck(BAD_SIGNATURE, f"the manifest's signature is not an {ALGORITHM} signature of ours")
    key_id, value = signature.get("key_id"), signature.get("hmac")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id) or not isinstance(value, str):
        return SignatureCheck(BAD_SIGNATURE, "the manifest's signature has no valid key_id or hmac")
    secret = secret_of(key_id)
    if secret is None:
        return SignatureCheck(
            BAD_SIGNATURE, f"the manifest is signed with key {key_id!r}, which is not a known signing key", key_id
        )
    try:
        expected = _mac(manifest, SigningKey(key_id, secret))
    except ValueError:  # NaN or another value JSON cannot carry: we never sign such a manifest
        return SignatureCheck(BAD_SIGNATURE, "the manifest holds a value no signed manifest can hold", key_id)
    if not hmac.compare_digest(expected, value):
        return SignatureCheck(
            BAD_SIGNATURE, f"the manifest's signature does not verify with key {key_id!r} (changed after signing?)", key_id
        )
    return SignatureCheck(SIGNED, f"signed with key {key_id!r}", key_id)
