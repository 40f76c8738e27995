"""A perf buffer consumer (BPF_MAP_TYPE_PERF_EVENT_ARRAY read through one perf event
ring per CPU) making libbpf 1.1.2's calls in its order (src/libbpf.c).

perf_buffer__new() -> __perf_buffer__new(): the map's BPF_OBJ_GET_INFO_BY_FD (88-byte
struct bpf_map_info; the type must be PERF_EVENT_ARRAY), epoll_create1(EPOLL_CLOEXEC),
as many CPUs as libbpf_num_possible_cpus() (no more than the map's max_entries),
offline ones skipped; for each online CPU perf_buffer__open_cpu_buf(): perf_event_open
of a PERF_COUNT_SW_BPF_OUTPUT software event (sample_type PERF_SAMPLE_RAW,
sample_period 1, wakeup_events 1; pid -1, that CPU, no group, PERF_FLAG_FD_CLOEXEC),
its mmap read-write (one page of header + page_cnt data pages), PERF_EVENT_IOC_ENABLE;
then the map update (key: the CPU, value: the event's fd) and the epoll registration.
perf_buffer__poll(): epoll_wait, perf_event_read_simple() of each ready ring.
perf_buffer__free(): per CPU the map entry deleted, the ring unmapped,
PERF_EVENT_IOC_DISABLE and close of the event; the epoll fd closed.

bpf(), perf_event_open, ioctl, mmap/munmap/close go through ``bpfreplay.sys``; epoll is
Python's ``select.epoll`` (a documented exception, as in ``ringbuf``)."""

from __future__ import annotations

import ctypes
import os
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.runtime.ring_layout import (
    PERF_DATA_HEAD_OFFSET,
    PERF_DATA_TAIL_OFFSET,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    parse_perf_record,
    walk_perf_ring,
)

PERF_EVENT_ARRAY_MAP_TYPE = 4  # BPF_MAP_TYPE_PERF_EVENT_ARRAY
PERF_ATTR_SIZE = 128  # sizeof(struct perf_event_attr) libbpf 1.1.2 was built with
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0)
PERF_EVENT_IOC_DISABLE = 0x2401  # _IO('$', 1)

SampleCallback = Callable[[int, bytes], None]  # (cpu, raw sample)
LostCallback = Callable[[int, int], None]  # (cpu, samples lost)


def bpf_output_attr() -> bytearray:
    """perf_buffer__new()'s perf_event_attr: size, type PERF_TYPE_SOFTWARE, config
    PERF_COUNT_SW_BPF_OUTPUT, sample_period 1, sample_type PERF_SAMPLE_RAW,
    wakeup_events 1, everything else zero."""
    attr = bytearray(PERF_ATTR_SIZE)
    struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE,
                     PERF_COUNT_SW_BPF_OUTPUT, 1, PERF_SAMPLE_RAW)
    struct.pack_into("<I", attr, 48, 1)  # wakeup_events
    return attr


def _cpu_mask(path: str) -> set[int]:
    """parse_cpu_mask_file(): the CPUs a list such as 0-3,5 names."""
    with open(path) as f:
        text = f.read().strip()
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


@dataclass
class _CpuBuffer:
    cpu: int
    map_key: int
    fd: int = -1
    base: int = 0  # the mapping: the perf_event_mmap_page, then the data pages


class PerfBuffer:
    """The perf buffer of one PERF_EVENT_ARRAY map. ``poll`` returns the raw samples
    as (cpu, bytes) and counts lost samples in ``lost``; with callbacks (libbpf's
    sample_cb and lost_cb) they get them instead."""

    def __init__(self, map_fd: int, page_cnt: int = 8, *,
                 sample: SampleCallback | None = None, lost: LostCallback | None = None,
                 name: str = ""):
        from bpfreplay.recording.procfs import possible_cpus
        from bpfreplay.runtime.ringbuf import map_info

        what = f"perf buffer '{name or map_fd}'"
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise LoaderError(f"{what}: page count should be a power of two, not {page_cnt}")
        try:
            info = map_info(map_fd)
        except OSError as e:
            # kernels without BPF_OBJ_GET_INFO_BY_FD answer EINVAL: libbpf goes on
            if e.errno != 22:
                raise LoaderError(f"{what}: asking the map's info: {e.strerror}") from e
            info = bytes(88)
        else:
            if struct.unpack_from("<I", info, 0)[0] != PERF_EVENT_ARRAY_MAP_TYPE:
                raise LoaderError(f"{what}: the map is not a BPF_MAP_TYPE_PERF_EVENT_ARRAY")
        self.what = what
        self.map_fd = map_fd
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.mmap_size = self.page_size * page_cnt
        self.sample_callback, self.lost_callback = sample, lost
        self.lost = 0
        self._buffers: list[_CpuBuffer] = []
        self._by_fd: dict[int, _CpuBuffer] = {}
        self._epoll: select.epoll | None = select.epoll()  # epoll_create1(EPOLL_CLOEXEC)
        try:
            cpu_count = possible_cpus()
            max_entries = struct.unpack_from("<I", info, 16)[0]
            if max_entries and max_entries < cpu_count:
                cpu_count = max_entries
            online = _cpu_mask("/sys/devices/system/cpu/online")
            for cpu in range(cpu_count):
                if cpu in online:
                    self._open_cpu(cpu, cpu)
        except BaseException:
            self.close()
            raise

    def _open_cpu(self, cpu: int, map_key: int) -> None:
        """perf_buffer__open_cpu_buf(), the map update and the epoll registration."""
        buf = _CpuBuffer(cpu, map_key)
        try:
            buf.fd = bsys.perf_event_open(bpf_output_attr(), -1, cpu, -1,
                                          PERF_FLAG_FD_CLOEXEC)
        except OSError as e:
            raise LoaderError(f"{self.what}: opening the perf buffer event on CPU {cpu}: "
                              f"{e.strerror}") from e
        try:
            buf.base = bsys.mmap(buf.fd, self.mmap_size + self.page_size,
                                 bsys.PROT_READ | bsys.PROT_WRITE)
            bsys.ioctl(buf.fd, PERF_EVENT_IOC_ENABLE, 0)
        except OSError as e:
            self._free_cpu(buf)
            step = "enabling" if buf.base else "mapping"
            raise LoaderError(f"{self.what}: {step} the perf buffer on CPU {cpu}: "
                              f"{e.strerror}") from e
        self._buffers.append(buf)
        from bpfreplay.loader import bpfcalls

        try:
            bpfcalls.map_update_elem(self.map_fd, map_key.to_bytes(4, "little"),
                                     buf.fd.to_bytes(4, "little"), 0)
        except OSError as e:
            raise LoaderError(f"{self.what}: setting CPU {cpu}'s key {map_key} to its "
                              f"perf event: {e.strerror}") from e
        assert self._epoll is not None
        self._epoll.register(buf.fd, select.EPOLLIN)
        self._by_fd[buf.fd] = buf

    @property
    def epoll_fd(self) -> int:
        assert self._epoll is not None
        return self._epoll.fileno()

    @property
    def cpus(self) -> list[int]:
        """The CPUs with a buffer (perf_buffer__buffer_cnt() of them)."""
        return [b.cpu for b in self._buffers]

    def poll(self, timeout_ms: int = -1) -> list[tuple[int, bytes]]:
        """perf_buffer__poll(): wait up to ``timeout_ms`` (-1: forever), then read each
        ready CPU's ring. Returns (cpu, raw sample) of the samples no callback took."""
        if self._epoll is None:
            raise LoaderError(f"{self.what}: polled after close")
        timeout = -1 if timeout_ms < 0 else timeout_ms / 1000
        ready = self._epoll.poll(timeout, max(1, len(self._buffers)))
        out: list[tuple[int, bytes]] = []
        for fd, _ in ready:
            buf = self._by_fd.get(fd)
            if buf is not None:
                out.extend(self._process(buf))
        return out

    def consume(self) -> list[tuple[int, bytes]]:
        """perf_buffer__consume(): read every CPU's ring without waiting."""
        out: list[tuple[int, bytes]] = []
        for buf in self._buffers:
            out.extend(self._process(buf))
        return out

    def _process(self, buf: _CpuBuffer) -> list[tuple[int, bytes]]:
        """perf_event_read_simple() + perf_buffer__process_record(): from data_tail to
        data_head, then data_tail written back."""
        head = ctypes.c_uint64.from_address(buf.base + PERF_DATA_HEAD_OFFSET).value
        tail_word = ctypes.c_uint64.from_address(buf.base + PERF_DATA_TAIL_OFFSET)
        data = memoryview((ctypes.c_char * self.mmap_size).from_address(
            buf.base + self.page_size)).cast("B")
        records, tail = walk_perf_ring(data, head, tail_word.value)
        out: list[tuple[int, bytes]] = []
        try:
            for raw_record in records:
                record = parse_perf_record(raw_record)
                if record.type == PERF_RECORD_SAMPLE and record.raw is not None:
                    if self.sample_callback is not None:
                        self.sample_callback(buf.cpu, record.raw)
                    else:
                        out.append((buf.cpu, record.raw))
                elif record.type == PERF_RECORD_LOST:
                    self.lost += record.lost
                    if self.lost_callback is not None:
                        self.lost_callback(buf.cpu, record.lost)
                else:
                    raise LoaderError(f"{self.what}: unknown perf sample type "
                                      f"{record.type} on CPU {buf.cpu}")
        finally:
            tail_word.value = tail
        return out

    def _free_cpu(self, buf: _CpuBuffer) -> None:
        """perf_buffer__free_cpu_buf(): munmap, then PERF_EVENT_IOC_DISABLE and close."""
        if buf.base:
            try:
                bsys.munmap(buf.base, self.mmap_size + self.page_size)
            except OSError:
                pass
            buf.base = 0
        if buf.fd >= 0:
            try:
                bsys.ioctl(buf.fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError:
                pass
            bsys.close(buf.fd)
            buf.fd = -1

    def close(self) -> None:
        """perf_buffer__free(): per CPU the map entry deleted and the buffer freed; the
        epoll fd closed."""
        from bpfreplay.loader import bpfcalls

        for buf in self._buffers:
            try:
                bpfcalls.map_delete_elem(self.map_fd, buf.map_key.to_bytes(4, "little"))
            except OSError:
                pass
            self._free_cpu(buf)
        self._buffers = []
        self._by_fd = {}
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
