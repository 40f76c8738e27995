"""The Python API's readers of a loaded object's ring buffer and perf buffer maps
(``Object.ring_buffer()``, ``Object.perf_buffer()``): iterators with a timeout, or
callbacks with ``poll``; on top of ``ringbuf.RingBuffer`` and ``perfbuf.PerfBuffer``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from bpfreplay.errors import LoaderError
from bpfreplay.runtime.perfbuf import PerfBuffer
from bpfreplay.runtime.ringbuf import RingBuffer


class PerfSample(NamedTuple):
    cpu: int  # the CPU whose ring it came from
    data: bytes  # what bpf_perf_event_output() wrote


def _polls(timeout: float | None) -> Iterator[int]:
    """Poll timeouts (ms) until ``timeout`` seconds have passed (None: forever)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            yield 1000
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield max(1, int(left * 1000))


class RingBufferReader:
    """The records of a BPF_MAP_TYPE_RINGBUF map: ``for data in reader`` yields each
    (bytes) until ``timeout`` seconds have passed; with a ``callback``, ``poll()`` hands
    each record to it instead."""

    def __init__(self, map_fd: int, name: str, *, timeout: float | None = None,
                 callback: Callable[[bytes], int | None] | None = None):
        self.name, self.timeout, self.callback = name, timeout, callback
        self._buffer: RingBuffer | None = RingBuffer(map_fd, callback, name=name)

    def poll(self, timeout: float | None = None) -> list[bytes]:
        """One ring_buffer__poll() waiting up to ``timeout`` seconds (None: until a
        record comes); the records a callback did not take."""
        return self._live().poll(-1 if timeout is None else int(timeout * 1000))

    def __iter__(self) -> Iterator[bytes]:
        if self.callback is not None:
            raise LoaderError(f"ring buffer '{self.name}': read by its callback; call "
                              "poll() instead of iterating")
        for timeout_ms in _polls(self.timeout):
            yield from self._live().poll(timeout_ms)

    def _live(self) -> RingBuffer:
        if self._buffer is None:
            raise LoaderError(f"ring buffer '{self.name}': closed")
        return self._buffer

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


class PerfBufferReader:
    """The samples of a BPF_MAP_TYPE_PERF_EVENT_ARRAY map, one perf ring per CPU:
    ``for sample in reader`` yields PerfSample(cpu, data) until ``timeout`` seconds have
    passed; with ``callback(cpu, data)`` (and ``lost(cpu, count)``), ``poll()`` hands
    them over instead. ``lost`` counts the samples the kernel dropped."""

    def __init__(self, map_fd: int, name: str, *, timeout: float | None = None,
                 page_cnt: int = 8, callback: Callable[[int, bytes], None] | None = None,
                 lost: Callable[[int, int], None] | None = None):
        self.name, self.timeout, self.callback = name, timeout, callback
        self._buffer: PerfBuffer | None = PerfBuffer(map_fd, page_cnt, sample=callback,
                                                     lost=lost, name=name)

    @property
    def lost(self) -> int:
        return self._buffer.lost if self._buffer is not None else 0

    def poll(self, timeout: float | None = None) -> list[PerfSample]:
        """One perf_buffer__poll() waiting up to ``timeout`` seconds (None: until a
        sample comes)."""
        got = self._live().poll(-1 if timeout is None else int(timeout * 1000))
        return [PerfSample(cpu, data) for cpu, data in got]

    def __iter__(self) -> Iterator[PerfSample]:
        if self.callback is not None:
            raise LoaderError(f"perf buffer '{self.name}': read by its callback; call "
                              "poll() instead of iterating")
        for timeout_ms in _polls(self.timeout):
            for cpu, data in self._live().poll(timeout_ms):
                yield PerfSample(cpu, data)

    def _live(self) -> PerfBuffer:
        if self._buffer is None:
            raise LoaderError(f"perf buffer '{self.name}': closed")
        return self._buffer

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
