"""Make the .tgz files the benchmarks serve: incompressible, and realistic (JSON documents, gzip -6).

Files are cached by kind and size in the work directory (they take a minute or two to make at
1 GiB), and rebuilt when missing. The realistic file imitates a dump: a few collections of
JSON/BSON-like documents, a tar member per collection, compressed at gzip level 6 (about 4-5:1).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from pathlib import Path

MIB = 1024 * 1024
KINDS = ("incompressible", "realistic")
_WORDS = ["order", "customer", "status", "shipped", "pending", "invoice", "item", "price", "quantity", "address", "street", "city", "country", "email", "phone", "created", "updated", "payment", "refund", "warehouse", "carrier", "tracking", "discount", "coupon", "review", "rating", "product", "category", "brand", "color", "size", "weight", "stock", "supplier", "region", "channel", "campaign", "session", "device", "browser", "locale", "currency"]


def snapshot_file(work_dir: Path, kind: str, size: int) -> Path:
    """A cached .tgz of about ``size`` bytes (realistic ones overshoot by at most one tar member)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    path = work_dir / f"{kind}-{size}.tgz"
    if not path.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        (_incompressible if kind == "incompressible" else _realistic)(partial, size)
        partial.rename(path)
    return path


def _incompressible(path: Path, size: int) -> None:
    """Random bytes in one tar member; gzip stores them (what gzip -6 does with random data too)."""
    rng = random.Random(size)
    payload = max(0, size - 64 * 1024)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        info = tarfile.TarInfo("dump/random.bin")
        info.size = payload
        tar.addfile(info, _Random(rng, payload))


def _realistic(path: Path, size: int) -> None:
    rng = random.Random(7)
    pool = _document_pool(rng, 24 * MIB if size >= 256 * MIB else 2 * MIB)
    member = 64 * MIB if size >= 256 * MIB else max(256 * 1024, size)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        n = 0
        while raw.tell() < size:
            metadata = json.dumps({"collection": f"c{n}", "indexes": [{"key": {"_id": 1}}]}).encode()
            info = tarfile.TarInfo(f"dump/app/c{n}.metadata.json")
            info.size = len(metadata)
            tar.addfile(info, io.BytesIO(metadata))
            info = tarfile.TarInfo(f"dump/app/c{n}.json")
            info.size = member
            tar.addfile(info, _Repeat(pool, member, offset=rng.randrange(len(pool))))
            n += 1


def _document_pool(rng: random.Random, size: int) -> bytes:
    docs = []
    total = 0
    i = 0
    while total < size:
        doc = {
            "_id": {"$oid": f"{rng.getrandbits(96):024x}"},
            "orderId": i,
            "customer": {
                "name": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
                "email": f"{rng.choice(_WORDS)}.{rng.randint(1, 999999)}@example.com",
                "address": {"street": f"{rng.randint(1, 9999)} {rng.choice(_WORDS).title()} St",
                            "zip": f"{rng.randint(10000, 99999)}"},
            },
            "items": [
                {"sku": f"SKU-{rng.randint(0, 9999999):07d}", "qty": rng.randint(1, 9),
                 "price": round(rng.random() * 500, 2)}
                for _ in range(rng.randint(1, 5))
            ],
            "status": rng.choice(_WORDS),
            "createdAt": {"$date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                                   f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"},
            "session": f"{rng.getrandbits(64):016x}",
            "notes": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 10))),
        }
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        docs.append(line)
        total += len(line)
        i += 1
    return b"".join(docs)


class _Random(io.RawIOBase):
    def __init__(self, rng: random.Random, size: int) -> None:
        self._rng, self._left = rng, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


class _Repeat(io.RawIOBase):
    def __init__(self, pool: bytes, size: int, offset: int) -> None:
        self._pool, self._left, self._pos = pool, size, offset

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self._pool) - self._pos)
            out += self._pool[self._pos : self._pos + take]
            self._pos = (self._pos + take) % len(self._pool)
        self._left -= n
        return bytes(out)
