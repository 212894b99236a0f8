"""Where signing keys live: Airflow Variables, one per key, plus a pointer naming the key to sign with.

Why Variables: they are stored encrypted with Airflow's Fernet key, only users allowed to edit
Variables can change them, and a writer of the export destination (a bucket, a share) holds none
of them. Every key has its own Variable, ``atlasflex_signing_secret_<key_id>`` (a name Airflow
masks as sensitive), so two tasks creating the first key at the same moment each store their own
key under its own name and both keep verifying (no lost update); the pointer Variable
``atlasflex_signing_key_id`` names the key new manifests are signed with (last writer wins, which
is harmless). A manifest records its key id and is checked with that key: rotation is a new key
Variable and a moved pointer; old keys verify until their Variable is deleted.

``Variable.get`` also reads ``AIRFLOW_VAR_<NAME>`` environment variables and secrets backends, so
keys can be configured there (and unit tests give theirs that way). ``Variable.set`` needs a
running task (its supervisor): a key is created only inside a task. No secret is ever logged.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from airflow_provider_atlasflex.archive.signature import KEY_ID, MIN_SECRET_CHARS, SigningKey
from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import AtlasFlexError

POINTER_VARIABLE = "atlasflex_signing_key_id"
SECRET_VARIABLE_PREFIX = "atlasflex_signing_secret_"

log = logging.getLogger(__name__)


class SigningKeyError(AtlasFlexError):
    """No usable signing key: the message says which Variable to create or fix."""


def secret_variable(key_id: str) -> str:
    """The Variable holding key ``key_id``'s secret."""
    return f"{SECRET_VARIABLE_PREFIX}{key_id}"


def _variable_get(name: str) -> str | None:
    from airflow.sdk import Variable

    try:
        value = Variable.get(name, default=None)
    except ImportError:  # outside a task some releases ask the (absent) task supervisor last: nothing found
        return None
    return None if value is None else str(value)


def _variable_set(name: str, value: str, description: str) -> None:
    from airflow.sdk import Variable

    Variable.set(name, value, description=description)


class KeyRing:
    """Checks signatures with any key that exists and signs with the one the pointer names.

    One instance per task: each key Variable is read at most once.
    """

    def __init__(self) -> None:
        self._secrets: dict[str, bytes | None] = {}

    def secret_of(self, key_id: str) -> bytes | None:
        """Key ``key_id``'s secret, or None if no such key exists."""
        if not KEY_ID.fullmatch(key_id):
            return None
        if key_id not in self._secrets:
            self._secrets[key_id] = _usable(key_id, _variable_get(secret_variable(key_id)))
        return self._secrets[key_id]

    def signing_key(self) -> SigningKey:
        """The key named by the pointer Variable; with no pointer, a new key is created (first run)."""
        key_id = _variable_get(POINTER_VARIABLE)
        if key_id is None:
            return self._create()
        key_id = key_id.strip()
        if not KEY_ID.fullmatch(key_id):
            raise SigningKeyError(
                f"Variable {POINTER_VARIABLE} holds {key_id!r}, which is not a key id ({KEY_ID.pattern}); "
                "set it to the id of an existing key, or delete it to have a new key created."
            )
        secret = self.secret_of(key_id)
        if secret is None:
            raise SigningKeyError(
                f"Variable {POINTER_VARIABLE} names signing key {key_id!r}, but Variable {secret_variable(key_id)} "
                "does not exist: create it (a random text of at least 32 characters) or point "
                f"{POINTER_VARIABLE} at an existing key."
            )
        return SigningKey(key_id, secret)

    def _create(self) -> SigningKey:
        """Store a new random key under its own name, then point at it (that order: the pointer never dangles)."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(48)
        mask_secret(secret)
        name = secret_variable(key_id)
        try:
            _variable_set(
                name, secret, "atlasflex export signing key (HMAC-SHA256); manifests signed with it verify while it exists"
            )
            stored = _variable_get(name)
            if stored != secret:
                raise SigningKeyError(f"Variable {name} did not read back as written")
            _variable_set(POINTER_VARIABLE, key_id, "id of the atlasflex signing key new export manifests are signed with")
        except Exception as exc:  # noqa: BLE001 - outside a task Variable.set cannot work: say what to do instead
            raise SigningKeyError(
                f"No export signing key exists (Variable {POINTER_VARIABLE} is not set) and creating one failed "
                f"({type(exc).__name__}: {exc}). Keys are created by a running task; elsewhere create Variables "
                f"{SECRET_VARIABLE_PREFIX}<key_id> (a random text of at least {MIN_SECRET_CHARS} characters) and "
                f"{POINTER_VARIABLE} (<key_id>), e.g. as AIRFLOW_VAR_ environment variables."
            ) from None
        log.warning(
            "Created export signing key %s (Variable %s) and pointed %s at it; keep that Variable: manifests "
            "signed with it verify only while it exists",
            key_id, name, POINTER_VARIABLE,
        )
        self._secrets[key_id] = secret.encode()
        return SigningKey(key_id, secret.encode())


def _usable(key_id: str, value: Any) -> bytes | None:
    if value is None:
        return None
    text = str(value).strip()
    mask_secret(text)
    if len(text) < MIN_SECRET_CHARS:
        raise SigningKeyError(
            f"Variable {secret_variable(key_id)} holds a signing key shorter than {MIN_SECRET_CHARS} characters: "
            "too easy to guess. Replace it with a longer random text (and re-export what it signed)."
        )
    return text.encode()
