"""The manifest signature (archive/signature.py) and where its keys come from (archive/keys.py)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_atlasflex.archive import keys as keys_module
from airflow_provider_atlasflex.archive.keys import KeyRing, SigningKeyError
from airflow_provider_atlasflex.archive.signature import BAD_SIGNATURE, SIGNED, UNSIGNED, SigningKey, check, sign

KEY = SigningKey("k1", b"k" * 40)
MANIFEST = {"format": "atlasflex-export/1", "file": "a.tgz", "bytes": 3, "sha256": "0" * 64, "snapshot": {"b": 1, "a": 2}}


def secrets_of(*keys: SigningKey):
    return {k.key_id: k.secret for k in keys}.get


def test_a_signature_survives_reindenting_and_key_order():
    signed = sign(MANIFEST, KEY)
    reread = json.loads(json.dumps(dict(reversed(list(signed.items()))), indent=4))
    assert check(reread, secrets_of(KEY)).status == SIGNED


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        (lambda m: m.pop("signature"), UNSIGNED, "not signed"),
        (lambda m: m.update(bytes=4), BAD_SIGNATURE, "does not verify with key 'k1'"),
        (lambda m: m["signature"].update(key_id="k2"), BAD_SIGNATURE, "not a known signing key"),
        (lambda m: m["signature"].update(algorithm="none"), BAD_SIGNATURE, "not an HMAC-SHA256 signature"),
        (lambda m: m["signature"].update(key_id="../x"), BAD_SIGNATURE, "no valid key_id"),
        (lambda m: m.update(signature="forged"), BAD_SIGNATURE, "not an HMAC-SHA256 signature"),
    ],
)
def test_what_does_not_verify(change, status, says):
    manifest = json.loads(json.dumps(sign(MANIFEST, KEY)))
    change(manifest)
    result = check(manifest, secrets_of(KEY))
    assert (result.status, says in result.reason) == (status, True)


def test_a_key_never_shows_its_secret():
    assert "kkkk" not in repr(KEY) and "kkkk" not in str(KEY)


def test_the_key_ring_reads_keys_from_variables_and_verifies_old_ones(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_OLD", "o" * 40)
    ring = KeyRing()
    assert ring.signing_key().key_id == "unittests"
    assert ring.secret_of("old") == b"o" * 40 and ring.secret_of("nosuchkey") is None
    assert ring.secret_of("BAD ID") is None


def test_a_short_secret_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_SECRET_UNITTESTS", "short")
    with pytest.raises(SigningKeyError, match="shorter than 32 characters"):
        KeyRing().signing_key()


def test_a_pointer_to_a_missing_key_says_what_to_create(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID", "gone")
    with pytest.raises(SigningKeyError, match="Variable atlasflex_signing_secret_gone does not exist"):
        KeyRing().signing_key()


def test_outside_a_task_no_key_is_created_and_the_error_says_how_to_configure_one(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID")
    with pytest.raises(SigningKeyError, match="created by a running task") as refused:
        KeyRing().signing_key()
    assert "AIRFLOW_VAR_" in str(refused.value)


def test_a_created_key_is_stored_under_its_own_name_before_the_pointer_moves(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_ATLASFLEX_SIGNING_KEY_ID")
    store: dict[str, str] = {}
    order: list[str] = []
    monkeypatch.setattr(keys_module, "_variable_get", store.get)
    monkeypatch.setattr(keys_module, "_variable_set", lambda name, value, _: (order.append(name), store.update({name: value})))
    first, second = KeyRing()._create(), KeyRing()._create()  # two tasks that both found no key
    assert order == [f"atlasflex_signing_secret_{first.key_id}", "atlasflex_signing_key_id",
                     f"atlasflex_signing_secret_{second.key_id}", "atlasflex_signing_key_id"]
    ring = KeyRing()
    assert ring.secret_of(first.key_id) == first.secret and ring.secret_of(second.key_id) == second.secret
