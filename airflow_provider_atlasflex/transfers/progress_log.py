"""The copy's log lines: its start (size, destination), progress at intervals, and its end."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_atlasflex.defaults import MIB
from airflow_provider_atlasflex.transfers.download_terms import size_text


@dataclass
class ProgressLog:
    """Logs the start (size, destination), progress every ``interval`` seconds or ``step`` of the size, and the end."""

    log: Any  # a logging.Logger, LoggerAdapter or Airflow's structlog logger
    label: str
    interval: float = 30.0
    destination: str | None = None
    step: float = 0.1  # fraction of a known size between two progress lines
    _started: float = 0.0
    _last: float = 0.0
    _next_bytes: float = math.inf
    _announced: bool = False

    def start(self) -> None:
        self._started = self._last = time.monotonic()

    def announce(self, total: int | None) -> None:
        if self._announced:
            return
        self._announced = True
        size = size_text(total) if total is not None else "size unknown (no Content-Length)"
        where = f" to {self.destination}" if self.destination else ""
        self.log.info("Copying %s%s: %s", self.label, where, size)
        if total:
            self._next_bytes = total * self.step

    def update(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and done < self._next_bytes:
            return
        self._last = now
        if total:
            while self._next_bytes <= done:
                self._next_bytes += total * self.step
        rate = done / MIB / max(now - self._started, 1e-6)
        percent = f" ({100 * done / total:.1f}%)" if total else ""
        size = f" of {total / MIB:.1f} MiB" if total else ""
        self.log.info("%s: %.1f MiB%s%s at %.1f MiB/s", self.label, done / MIB, size, percent, rate)

    def finish(self, done: int, seconds: float, attempts: int) -> None:
        rate = done / MIB / max(seconds, 1e-6)
        self.log.info(
            "Copied %s: %s in %.1f s (%.1f MiB/s, %d attempt%s)",
            self.label, size_text(done), seconds, rate, attempts, "" if attempts == 1 else "s",
        )
