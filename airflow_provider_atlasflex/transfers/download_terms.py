"""What a snapshot copy is given and what it reports: the link, the stall rule, the result."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from airflow_provider_atlasflex.defaults import DEFAULT_STALL_MIN_BYTES, DEFAULT_STALL_WINDOW, MIB
from airflow_provider_atlasflex.exceptions import AtlasFlexConfigError

MAX_STALL_WINDOW = 3600.0


@dataclass(frozen=True)
class DownloadResult:
    bytes: int
    sha256: str
    attempts: int
    resumes: int
    restarts: int
    link_refreshes: int
    seconds: float
    inflater: str | None = None  # which gzip inflater checked the bytes ("isal", "zlib"; None: not checked)


class SnapshotLink(NamedTuple):
    """A pre-signed link and when it stops working (epoch seconds; None when unknown)."""

    url: str
    expires_at: float | None = None


@dataclass(frozen=True)
class StallRule:
    """Fewer than ``min_bytes`` received in ``window`` seconds is a stall: the connection is dropped and resumed."""

    window: float = DEFAULT_STALL_WINDOW
    min_bytes: int = DEFAULT_STALL_MIN_BYTES

    def __post_init__(self) -> None:
        check_stall_rule(self.window, self.min_bytes)

    def describe(self) -> str:
        return f"fewer than {size_text(self.min_bytes)} arrived in {self.window:g} s"


def check_stall_rule(window: Any, min_bytes: Any) -> None:
    """Refuse stall thresholds that cannot work, naming the operator arguments."""
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, float))
        or not math.isfinite(window)
        or not 1 <= window <= MAX_STALL_WINDOW
    ):
        raise AtlasFlexConfigError(
            f"stall_window must be a number of seconds from 1 to {MAX_STALL_WINDOW:g}, got {window!r}."
        )
    if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or not 1 <= min_bytes <= 1024 * MIB:
        raise AtlasFlexConfigError(
            f"stall_min_bytes must be a whole number of bytes from 1 to 1 GiB, got {min_bytes!r} (the copy is "
            "treated as stalled when fewer bytes than this arrive in stall_window seconds)."
        )


def size_text(n: int) -> str:
    """A byte count for people: MiB from 1 MiB up."""
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"
