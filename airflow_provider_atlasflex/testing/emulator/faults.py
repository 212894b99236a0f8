"""Fault injection: make chosen calls fail, stall, or break in well-defined ways.

Why a rule table instead of ad-hoc flags: reliability tests need to say exactly
*which* call misbehaves ("the 3rd poll of the restore job answers 503 twice") and
to compose effects (a delay plus a 429).  Each :class:`Fault` counts the calls
that match it from the moment it is added and fires on a precise window of them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "API_OPERATIONS",
    "EXTRA_OPERATIONS",
    "OPERATIONS",
    "Fault",
    "FaultPlan",
    "FaultSet",
]

API_OPERATIONS: tuple[str, ...] = (
    "getGroupFlexCluster",
    "downloadGroupFlexClusterBackup",
    "listGroupFlexClusterBackupRestoreJobs",
    "createGroupFlexClusterBackupRestoreJob",
    "getGroupFlexClusterBackupRestoreJob",
    "listGroupFlexClusterBackupSnapshots",
    "getGroupFlexClusterBackupSnapshot",
    "listGroupFlexClusters",
    "listGroups",
)
EXTRA_OPERATIONS: tuple[str, ...] = ("oauthToken", "oauthRevoke", "snapshotFile")
OPERATIONS: tuple[str, ...] = API_OPERATIONS + EXTRA_OPERATIONS

_ids = itertools.count(1)


@dataclass
class Fault:
    """One fault rule.

    Matching: ``operation`` (and ``cluster`` if given) must equal the call's.
    Window: counting matching calls from 1 after the fault was added, it fires on
    call ``nth`` (default: the first) and the following ones until it has fired
    ``times`` times (``None`` = forever).
    Effects (any combination): ``delay`` seconds before answering; ``status``
    (an error answer instead of the real one; with ``after_effect=True`` the real
    action, e.g. creating the restore job, happens first); ``retry_after`` sent as
    ``Retry-After``; for ``snapshotFile`` also ``cut_after_bytes`` (send the full
    headers, then close the connection after that many body bytes),
    ``ignore_range`` (answer 200 with the whole file even if a Range was asked) and
    ``corrupt_at`` (flip every bit of the file's byte at that offset, when it is
    served; size and headers are unchanged, so only a content check can tell).
    """

    operation: str
    status: int | None = None
    retry_after: float | None = None
    times: int | None = 1
    nth: int | None = None
    delay: float | None = None
    cut_after_bytes: int | None = None
    ignore_range: bool = False
    cluster: str | None = None
    after_effect: bool = False
    error_code: str | None = None
    detail: str | None = None
    corrupt_at: int | None = None
    id: int = field(default_factory=lambda: next(_ids))
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}; expected one of {', '.join(OPERATIONS)}")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400..599)")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None (forever)")
        if self.nth is not None and self.nth < 1:
            raise ValueError("nth is 1-based")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must be >= 0")
        body_effect = self.cut_after_bytes is not None or self.ignore_range or self.corrupt_at is not None
        if body_effect and self.operation != "snapshotFile":
            raise ValueError("cut_after_bytes / ignore_range / corrupt_at apply only to operation='snapshotFile'")
        if self.corrupt_at is not None and self.corrupt_at < 0:
            raise ValueError("corrupt_at must be >= 0")
        if self.cut_after_bytes is not None and self.cut_after_bytes < 0:
            raise ValueError("cut_after_bytes must be >= 0")
        if self.after_effect and self.status is None:
            raise ValueError("after_effect=True needs a status to answer with")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if not any((self.status is not None, self.delay, body_effect)):
            raise ValueError("a fault needs an effect: status, delay, cut_after_bytes, ignore_range or corrupt_at")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def _eligible(self) -> bool:
        return self.seen >= (self.nth or 1) and not self.exhausted


@dataclass
class FaultPlan:
    """The combined effect of the faults firing on one call."""

    delay: float = 0.0
    status_fault: Fault | None = None
    cut_after_bytes: int | None = None
    ignore_range: bool = False
    corrupt_at: int | None = None
    fired: list[Fault] = field(default_factory=list)

    @property
    def before(self) -> Fault | None:
        """The status fault to answer with *instead of* acting."""
        f = self.status_fault
        return f if f is not None and not f.after_effect else None

    @property
    def after(self) -> Fault | None:
        """The status fault to answer with *after* acting."""
        f = self.status_fault
        return f if f is not None and f.after_effect else None


class FaultSet:
    """Thread-safe, ordered collection of :class:`Fault` rules (``emu.faults``)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        operation: str,
        status: int | None = None,
        retry_after: float | None = None,
        times: int | None = 1,
        nth: int | None = None,
        delay: float | None = None,
        cut_after_bytes: int | None = None,
        ignore_range: bool = False,
        cluster: str | None = None,
        after_effect: bool = False,
        error_code: str | None = None,
        detail: str | None = None,
        corrupt_at: int | None = None,
    ) -> Fault:
        """Add a rule (see :class:`Fault`) and return it (inspect ``.seen``/``.fired``)."""
        fault = Fault(
            operation=operation,
            status=status,
            retry_after=retry_after,
            times=times,
            nth=nth,
            delay=delay,
            cut_after_bytes=cut_after_bytes,
            ignore_range=ignore_range,
            cluster=cluster,
            after_effect=after_effect,
            error_code=error_code,
            detail=detail,
            corrupt_at=corrupt_at,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.id != fault.id]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def pending(self) -> list[Fault]:
        """Rules that can still fire."""
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def on_call(self, operation: str, cluster: str | None, *, has_body: bool = True) -> FaultPlan:
        """Count one call against every matching rule and return what fires.

        Delays add up; the first eligible status rule (in insertion order) decides
        the answer and later status rules are not consumed by this call.  A call
        without a response body (``HEAD``) neither matches nor consumes rules whose
        only effects are body effects (``cut_after_bytes`` / ``ignore_range`` /
        ``corrupt_at``).
        """
        plan = FaultPlan()
        with self._lock:
            for f in self._faults:
                if f.operation != operation or (f.cluster is not None and f.cluster != cluster):
                    continue
                if not has_body and f.status is None and not f.delay:
                    continue
                f.seen += 1
                if not f._eligible():
                    continue
                if f.status is not None:
                    if plan.status_fault is not None:
                        continue
                    plan.status_fault = f
                if f.delay:
                    plan.delay += f.delay
                if f.cut_after_bytes is not None:
                    plan.cut_after_bytes = (
                        f.cut_after_bytes
                        if plan.cut_after_bytes is None
                        else min(plan.cut_after_bytes, f.cut_after_bytes)
                    )
                if f.ignore_range:
                    plan.ignore_range = True
                if f.corrupt_at is not None and plan.corrupt_at is None:
                    plan.corrupt_at = f.corrupt_at
                f.fired += 1
                plan.fired.append(f)
        return plan
