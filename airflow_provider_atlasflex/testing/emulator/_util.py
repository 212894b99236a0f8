"""Small shared helpers: deterministic ids, ISO dates, case-insensitive headers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone

__all__ = ["Headers", "derive_hex", "derive_text", "iso"]


def derive_hex(seed: str, *parts: object, length: int = 24) -> str:
    """Deterministic lowercase hex id (Atlas ObjectId-like for length 24) from the seed."""
    material = ":".join([seed, *map(str, parts)]).encode()
    out = hashlib.sha256(material).hexdigest()
    while len(out) < length:
        out += hashlib.sha256(out.encode()).hexdigest()
    return out[:length]


def derive_text(seed: str, *parts: object, alphabet: str, length: int) -> str:
    """Deterministic string over ``alphabet`` (for key-like secrets)."""
    raw = bytes.fromhex(derive_hex(seed, *parts, length=length * 2))
    return "".join(alphabet[b % len(alphabet)] for b in raw[:length])


def iso(ts: float) -> str:
    """ISO 8601 UTC with a ``Z`` suffix and whole seconds, as Atlas renders dates."""
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping that keeps the original spelling.

    Repeated headers are joined with ``", "`` (RFC 9110 field combination).
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        for key, value in items:
            low = key.lower()
            if low in self._store:
                orig, old = self._store[low]
                self._store[low] = (orig, f"{old}, {value}")
            else:
                self._store[low] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (orig for orig, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"
