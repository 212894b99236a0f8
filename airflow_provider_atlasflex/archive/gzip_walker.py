"""The one gzip walk over a .tgz: every member inflated and checked, the inflated stream fed to the tar walk.

Why: an HTML error page or a truncated file must never pass as a .tgz, for the copy (before it
commits) and for the scrub (months later) alike, so both use this walk. Every byte is inflated (the
gzip trailer's CRC32 and length cover the whole member) and the inflated stream is walked as a tar
archive, whose end-of-archive marker proves no trailing gzip member was cut off. Memory stays flat:
the input is fed in small slices and each inflate call returns at most :data:`MAX_OUTPUT_PER_CALL`
bytes, which are checked and dropped at once.

ISA-L (``isal``, a regular dependency) inflates faster than zlib (docs/performance.md measures it) and
is used whenever it loads; zlib is the fallback where it cannot, and ``ATLASFLEX_INFLATER=zlib`` forces it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

from airflow_provider_atlasflex.archive.tar_walker import ArchiveDamage, TarWalker
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

GZIP_MAGIC = b"\x1f\x8b"
# Input is inflated this much at a time: small enough that its output rarely exceeds the cap below.
INPUT_SLICE = 64 * 1024
# Bound the memory a highly compressible slice can expand into. Outputs above glibc's mmap
# threshold would be mapped and unmapped on every call (a page fault per 4 KiB).
MAX_OUTPUT_PER_CALL = 256 * 1024
INFLATERS = ("auto", "isal", "zlib")
INFLATER_ENV = "ATLASFLEX_INFLATER"


def inflater(name: str | None = None) -> tuple[str, Callable[[], Any], Any]:
    """(name, gzip decompressobj factory, error class) for ``name``: "isal", "zlib" or "auto" (isal if installed)."""
    choice = name or os.environ.get(INFLATER_ENV) or "auto"
    if choice not in INFLATERS:
        raise AtlasFlexConfigError(f"{INFLATER_ENV}={choice!r} is not an inflater; use one of {', '.join(INFLATERS)}.")
    if choice != "zlib":
        try:
            from isal import isal_zlib
        except ImportError:
            if choice == "isal":
                raise AtlasFlexConfigError(
                    "the isal inflater was asked for but python-isal is not installed: "
                    "pip install isal (a regular dependency of this provider: reinstall it)"
                ) from None
        else:
            return "isal", lambda: isal_zlib.decompressobj(wbits=31), isal_zlib.error
    return "zlib", lambda: zlib.decompressobj(wbits=31), zlib.error


class GzipWalker:
    """Feed the file's bytes in order; :meth:`finish` raises :class:`ArchiveDamage` unless they form a
    complete .tgz (``feed`` raises as soon as damage shows).

    :param check_tar: also walk the inflated bytes as a tar archive and require its end marker.
    :param inflater_name: "auto" (ISA-L when installed), "isal" or "zlib".
    """

    def __init__(self, *, check_tar: bool = True, inflater_name: str | None = None) -> None:
        self.inflater, self._new_decoder, self._error = inflater(inflater_name)
        self._decoder: Any = None  # the member being inflated; None between members
        self.members = 0  # gzip members complete so far
        self._magic_seen = 0  # bytes of the current member's gzip signature seen so far
        self.tar = TarWalker() if check_tar else None
        self.inflated = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            for start in range(0, len(view), INPUT_SLICE):
                self._feed_slice(view[start : start + INPUT_SLICE])
        except self._error as exc:
            raise ArchiveDamage(
                f"the file is not valid gzip data (invalid gzip data in member {self.members + 1}: {exc})"
            ) from None

    def _feed_slice(self, piece: bytes | memoryview) -> None:
        while len(piece):
            if self._decoder is None or self._magic_seen < 2:
                self._check_magic(piece)
            decoder = self._decoder
            out = decoder.decompress(piece, MAX_OUTPUT_PER_CALL)
            self._inflated(out)
            # A full output may leave more pending even when all input was taken: ask until it is drained.
            while not decoder.eof and (decoder.unconsumed_tail or len(out) == MAX_OUTPUT_PER_CALL):
                out = decoder.decompress(decoder.unconsumed_tail, MAX_OUTPUT_PER_CALL)
                self._inflated(out)
            if not decoder.eof:
                return
            self.members += 1
            self._decoder = None
            self._magic_seen = 0
            piece = decoder.unused_data

    def _check_magic(self, piece: bytes | memoryview) -> None:
        if self._decoder is None:
            self._decoder = self._new_decoder()
        for i in range(min(2 - self._magic_seen, len(piece))):
            if piece[i] != GZIP_MAGIC[self._magic_seen]:
                what = "does not start with" if self.members == 0 else "has trailing bytes without"
                raise ArchiveDamage(f"the file {what} the gzip signature (not a .tgz)")
            self._magic_seen += 1

    def _inflated(self, out: bytes) -> None:
        if out:
            self.inflated += len(out)
            if self.tar is not None:
                self.tar.feed(out)

    def finish(self) -> None:
        """Raise unless at least one gzip member ended, none was left unfinished, and the tar archive is whole."""
        if self.members == 0 or self._decoder is not None:
            raise ArchiveDamage(
                f"the file ends in the middle of a gzip stream (inside member {self.members + 1}; truncated)"
            )
        if self.tar is not None:
            self.tar.finish()
