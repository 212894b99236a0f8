"""Overlap the per-byte work of a copy on two cores, in a fixed set of reused buffers.

Why: writing, hashing and inflating a snapshot cost more CPU than receiving it, and hashlib,
zlib/ISA-L and file writes release the GIL on large buffers. The reader fills one of a few
preallocated buffers straight from the socket; each stage (e.g. write+hash, inflate+tar check)
runs on its own thread over every buffer, in order; a buffer is refilled only when every stage
is done with it. Memory is the buffers, whatever the file size, and nothing is allocated per chunk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

Stage = Callable[[memoryview], None]


class CopyPipeline:
    """Hands filled buffers to stage threads in order; the first stage error is raised to the reader.

    :param stages: functions called with each buffer's filled part, each on its own thread.
    :param slots: number of buffers (at least 2, so reading overlaps the stages).
    :param slot_size: bytes per buffer.
    """

    def __init__(self, stages: Sequence[Stage], *, slots: int, slot_size: int) -> None:
        if slots < 2 or slot_size < 1 or not stages:
            raise ValueError("a pipeline needs stages, at least 2 slots and a positive slot size")
        self._views = [memoryview(bytearray(slot_size)) for _ in range(slots)]
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(slots):
            self._free.put(index)
        self._pending = [0] * slots  # stages still holding each slot
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._error: BaseException | None = None
        self._queues: list[queue.SimpleQueue[tuple[int, memoryview] | None]] = [queue.SimpleQueue() for _ in stages]
        self._threads = [
            threading.Thread(target=self._work, args=(stage, q), name=f"atlasflex-copy-{i}", daemon=True)
            for i, (stage, q) in enumerate(zip(stages, self._queues))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def slot_size(self) -> int:
        return len(self._views[0])

    def acquire(self) -> tuple[int, memoryview]:
        """A free buffer to fill (waits for one); raises a stage's error instead once one failed."""
        self._raise_error()
        index = self._free.get()
        if self._error is not None:
            self._free.put(index)
            self._raise_error()
        return index, self._views[index]

    def submit(self, index: int, length: int) -> None:
        """Give the first ``length`` bytes of buffer ``index`` to every stage (0 returns it unused)."""
        if length <= 0:
            self._free.put(index)
            return
        with self._lock:
            self._pending[index] = len(self._queues)
            self._in_flight += 1
        data = self._views[index][:length]
        for q in self._queues:
            q.put((index, data))

    def drain(self) -> None:
        """Wait until every submitted buffer went through every stage; raise the first stage error."""
        with self._idle:
            while self._in_flight:
                self._idle.wait()
        self._raise_error()

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self, stage: Stage, jobs: queue.SimpleQueue[tuple[int, memoryview] | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            index, data = job
            if self._error is None:
                try:
                    stage(data)
                except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
                    with self._lock:
                        if self._error is None:
                            self._error = exc
            with self._lock:
                self._pending[index] -= 1
                if self._pending[index] == 0:
                    self._in_flight -= 1
                    self._free.put(index)
                    if not self._in_flight:
                        self._idle.notify_all()

    def _raise_error(self) -> None:
        error = self._error
        if error is not None:
            raise error
