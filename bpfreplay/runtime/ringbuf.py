"""A BPF ring buffer consumer making libbpf 1.1.2's calls in its order (src/ringbuf.c).

ring_buffer__new(): epoll_create1(EPOLL_CLOEXEC), then ring_buffer__add(): the map's
BPF_OBJ_GET_INFO_BY_FD (an 88-byte struct bpf_map_info; the type must be RINGBUF), the
consumer page mapped read-write at offset 0, the producer page and the data pages
(twice the data size, so a record wrapping around the end reads contiguously) mapped
read-only at offset one page, and the map fd added to the epoll set (EPOLLIN).
ring_buffer__poll(): epoll_wait, then ringbuf_process_ring() of each ready ring.
ring_buffer__free(): both mappings unmapped (consumer first), the epoll fd closed.

bpf() and mmap/munmap go through ``bpfreplay.sys`` (traced like the loader's calls);
epoll is Python's ``select.epoll`` (a documented exception: no BPF object is made or
used by it, and ``bpfreplay record`` does not record it either)."""

from __future__ import annotations

import ctypes
import os
import select
from collections.abc import Callable
from dataclasses import dataclass

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.runtime.ring_layout import walk_ringbuf

MAP_INFO_SIZE = 88  # sizeof(struct bpf_map_info) in libbpf 1.1.2's headers
RINGBUF_MAP_TYPE = 27  # BPF_MAP_TYPE_RINGBUF

SampleCallback = Callable[[bytes], "int | None"]


@dataclass
class _Ring:
    map_fd: int
    name: str
    mask: int
    consumer_address: int  # the read-write consumer page
    producer_address: int  # the read-only producer page, the data pages after it
    producer_length: int
    callback: SampleCallback | None
    discarded: int = 0


def map_info(map_fd: int) -> bytes:
    """bpf_obj_get_info_by_fd() of a map, as ring_buffer__add() and perf_buffer__new()
    ask it (a zeroed 88-byte info, its length in info_len)."""
    from bpfreplay.loader import bpfcalls

    info = bytearray(MAP_INFO_SIZE)
    bpfcalls.obj_info(map_fd, info, bsys.Buffers())
    return bytes(info)


class RingBuffer:
    """The consumer of one or more ring buffer maps (``add`` more, as
    ring_buffer__add()). ``poll`` returns the samples (bytes) read; a callback given
    to ``add`` gets each sample instead (a negative return stops the walk, as in
    libbpf)."""

    def __init__(self, map_fd: int, callback: SampleCallback | None = None, *,
                 name: str = ""):
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self._rings: list[_Ring] = []
        self._epoll: select.epoll | None = select.epoll()  # epoll_create1(EPOLL_CLOEXEC)
        try:
            self.add(map_fd, callback, name=name)
        except BaseException:
            self.close()
            raise

    def add(self, map_fd: int, callback: SampleCallback | None = None, *,
            name: str = "") -> None:
        """ring_buffer__add(): info query, consumer page rw, producer + data ro, epoll."""
        import struct

        what = f"ring buffer '{name or map_fd}'"
        try:
            info = map_info(map_fd)
        except OSError as e:
            raise LoaderError(f"{what}: asking the map's info: {e.strerror}") from e
        map_type, max_entries = struct.unpack_from("<I", info, 0)[0], \
            struct.unpack_from("<I", info, 16)[0]
        if map_type != RINGBUF_MAP_TYPE:
            raise LoaderError(f"{what}: the map is not a BPF_MAP_TYPE_RINGBUF (type "
                              f"{map_type})")
        try:
            consumer = bsys.mmap(map_fd, self.page_size, bsys.PROT_READ | bsys.PROT_WRITE)
        except OSError as e:
            raise LoaderError(f"{what}: mapping the consumer page: {e.strerror}") from e
        length = self.page_size + 2 * max_entries
        try:
            producer = bsys.mmap(map_fd, length, bsys.PROT_READ, offset=self.page_size)
        except OSError as e:
            bsys.munmap(consumer, self.page_size)
            raise LoaderError(f"{what}: mapping the data pages: {e.strerror}") from e
        ring = _Ring(map_fd, name, max_entries - 1, consumer, producer, length, callback)
        assert self._epoll is not None
        try:
            self._epoll.register(map_fd, select.EPOLLIN)
        except OSError as e:
            self._unmap(ring)
            raise LoaderError(f"{what}: adding it to epoll: {e.strerror}") from e
        self._rings.append(ring)

    @property
    def epoll_fd(self) -> int:
        """ring_buffer__epoll_fd()."""
        assert self._epoll is not None
        return self._epoll.fileno()

    @property
    def discarded(self) -> int:
        """Records skipped so far for their discard bit."""
        return sum(r.discarded for r in self._rings)

    def poll(self, timeout_ms: int = -1) -> list[bytes]:
        """ring_buffer__poll(): wait up to ``timeout_ms`` (-1: forever) for a ring to
        have data, then read every ready ring. Returns the samples of rings without a
        callback."""
        if self._epoll is None:
            raise LoaderError("ring buffer: polled after close")
        timeout = -1 if timeout_ms < 0 else timeout_ms / 1000
        ready = self._epoll.poll(timeout, max(1, len(self._rings)))
        fds = {fd for fd, _ in ready}
        out: list[bytes] = []
        for ring in self._rings:
            if ring.map_fd in fds:
                out.extend(self._process(ring))
        return out

    def consume(self) -> list[bytes]:
        """ring_buffer__consume(): read every ring without waiting."""
        out: list[bytes] = []
        for ring in self._rings:
            out.extend(self._process(ring))
        return out

    def _process(self, ring: _Ring) -> list[bytes]:
        """ringbuf_process_ring(): walk from the consumer to the producer, again while
        the walk found something (records committed meanwhile), storing the consumer
        position after each record as libbpf does (x86 stores are release-ordered)."""
        consumer_pos = ctypes.c_uint64.from_address(ring.consumer_address)
        producer_pos = ctypes.c_uint64.from_address(ring.producer_address)
        data = memoryview((ctypes.c_char * (2 * (ring.mask + 1))).from_address(
            ring.producer_address + self.page_size)).cast("B")
        out: list[bytes] = []
        position = consumer_pos.value
        while True:
            walk = walk_ringbuf(data, ring.mask, position, producer_pos.value,
                                limit=1 if ring.callback else None)
            found = walk.consumer != position
            ring.discarded += walk.discarded
            position = walk.consumer
            consumer_pos.value = position
            for sample in walk.samples:
                if ring.callback is None:
                    out.append(sample)
                    continue
                result = ring.callback(sample)
                if result is not None and result < 0:
                    return out
            if walk.busy or not found:
                return out

    def _unmap(self, ring: _Ring) -> None:
        """ringbuf_unmap_ring(): the consumer page, then the producer and data pages."""
        if ring.consumer_address:
            bsys.munmap(ring.consumer_address, self.page_size)
            ring.consumer_address = 0
        if ring.producer_address:
            bsys.munmap(ring.producer_address, ring.producer_length)
            ring.producer_address = 0

    def close(self) -> None:
        """ring_buffer__free(): every ring unmapped, then the epoll fd closed."""
        for ring in self._rings:
            self._unmap(ring)
        self._rings = []
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
