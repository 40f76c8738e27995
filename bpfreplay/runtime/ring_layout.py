"""The memory layouts of a BPF ring buffer and of a perf event ring, walked as bytes.

Pure: each function takes the bytes (or a memoryview of the live mapping) and the
positions, and returns the records found and the new consumer position; the consumers
in ``ringbuf`` and ``perfbuf`` read the positions and publish the new one."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# The kernel's ring buffer record header (8 bytes: u32 len, u32 pad): the two top bits
# of len say busy (not committed yet) and discarded.
RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_SZ = 8


def ringbuf_roundup_len(length: int) -> int:
    """libbpf 1.1.2 ringbuf.c roundup_len(): the busy/discard bits cleared, the header
    added, rounded up to 8 bytes: how far one record moves the consumer."""
    length &= 0x3FFFFFFF
    return (length + RINGBUF_HDR_SZ + 7) // 8 * 8


@dataclass(frozen=True)
class RingWalk:
    samples: list[bytes]
    consumer: int  # where the consumer stands after them
    discarded: int  # records skipped for their discard bit
    busy: bool  # stopped at a record not committed yet


def walk_ringbuf(data: bytes | memoryview, mask: int, consumer: int, producer: int,
                 limit: int | None = None) -> RingWalk:
    """The committed records between ``consumer`` and ``producer``, as libbpf 1.1.2
    ringbuf_process_ring() walks them: a record whose busy bit is set ends the walk
    (not committed yet); one with the discard bit is skipped. ``data`` is the data area
    as the kernel maps it: twice its size (mask + 1), the second copy following the
    first, so a record that wraps around the end is contiguous. ``limit`` stops after
    that many samples (the consumer then stands after the last one taken)."""
    samples: list[bytes] = []
    discarded = 0
    while consumer < producer:
        at = consumer & mask
        length = struct.unpack_from("<I", data, at)[0]
        if length & RINGBUF_BUSY_BIT:
            return RingWalk(samples, consumer, discarded, True)
        consumer += ringbuf_roundup_len(length)
        if length & RINGBUF_DISCARD_BIT:
            discarded += 1
            continue
        start = at + RINGBUF_HDR_SZ
        samples.append(bytes(data[start:start + length]))
        if limit is not None and len(samples) >= limit:
            break
    return RingWalk(samples, consumer, discarded, False)


# perf_event_mmap_page: data_head and data_tail (u64) at these offsets of the first page.
PERF_DATA_HEAD_OFFSET = 1024
PERF_DATA_TAIL_OFFSET = 1032
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9


@dataclass(frozen=True)
class PerfRecord:
    type: int  # PERF_RECORD_SAMPLE, PERF_RECORD_LOST or another
    raw: bytes | None = None  # a sample's PERF_SAMPLE_RAW bytes
    lost: int = 0  # a lost record's count of samples lost


def parse_perf_record(record: bytes) -> PerfRecord:
    """One perf record (with its 8-byte perf_event_header) as libbpf 1.1.2
    perf_buffer__process_record() reads it: a sample's u32 size and raw bytes
    (struct perf_sample_raw), a lost record's u64 lost (struct perf_sample_lost: id,
    lost, sample_id)."""
    record_type = struct.unpack_from("<I", record, 0)[0]
    if record_type == PERF_RECORD_SAMPLE and len(record) >= 12:
        size = struct.unpack_from("<I", record, 8)[0]
        return PerfRecord(record_type, raw=bytes(record[12:12 + size]))
    if record_type == PERF_RECORD_LOST and len(record) >= 24:
        return PerfRecord(record_type, lost=struct.unpack_from("<Q", record, 16)[0])
    return PerfRecord(record_type)


def walk_perf_ring(data: bytes | memoryview, head: int, tail: int) -> tuple[list[bytes], int]:
    """The records between ``tail`` and ``head`` of a perf ring whose data area is
    ``data`` (a power-of-two size), as libbpf 1.1.2 perf_event_read_simple() reads
    them: a record that runs past the end is put together from its two pieces. Returns
    the records (headers included) and the new tail."""
    size = len(data)
    records: list[bytes] = []
    while head != tail:
        at = tail & (size - 1)
        if at + 8 > size:  # the header itself wraps (the kernel writes 8-byte aligned)
            header = bytes(data[at:]) + bytes(data[:8 - (size - at)])
        else:
            header = bytes(data[at:at + 8])
        record_size = struct.unpack_from("<H", header, 6)[0]
        if record_size == 0:
            break  # never written by the kernel; stop rather than spin
        if at + record_size > size:
            first = size - at
            record = bytes(data[at:]) + bytes(data[:record_size - first])
        else:
            record = bytes(data[at:at + record_size])
        records.append(record)
        tail += record_size
    return records, tail
