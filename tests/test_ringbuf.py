"""Ring buffer and perf buffer consumers (bpfreplay/runtime, issue 11 item 1): the ring
layouts walked as bytes (wrap-around, busy and discarded records, lost-sample records),
then on the kernel: a one-page ring buffer wrapping around many times with discards,
a one-page perf buffer losing samples, and `bpfreplay run --event` printing the exec
record of a program this test runs, from a ring buffer and from a perf buffer."""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time

import pytest

from bpfreplay.runtime.ring_layout import (
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    parse_perf_record,
    walk_perf_ring,
    walk_ringbuf,
)
from tests.conftest import ROOT, _built, require_kernel
from tests.corpus.manifest import CORPUS_DIR, by_name
from tests.netns import Running

BUSY, DISCARD = 1 << 31, 1 << 30  # the kernel's BPF_RINGBUF_BUSY_BIT, _DISCARD_BIT
RUN_DIR = ROOT / "tests" / "data" / "run"
SMALL_RB = RUN_DIR / "build" / "ringbuf_small.bpf.o"


def _ring(size: int, records: list[tuple[int, int, bytes]]) -> bytes:
    """A data area of ``size`` bytes mapped twice, as the kernel maps it, holding
    (position, header len word, payload) records."""
    area = bytearray(size)
    for position, length_word, payload in records:
        raw = struct.pack("<II", length_word, 0) + payload
        for i, b in enumerate(raw):
            area[(position + i) % size] = b
    return bytes(area) * 2


def test_ringbuf_walk_skips_discarded_and_reads_across_the_end():
    # 64-byte ring; the consumer at 40: a 12-byte record (header at 40, 20 bytes with
    # it, rounded to 24), a discarded 4-byte one at 64 (=0 mod 64), then a 16-byte one
    # at 80 (=16) ... positions grow forever, the ring index is position & 63
    data = _ring(64, [(40, 12, b"A" * 12), (64, DISCARD | 4, b"xxxx"), (80, 16, b"B" * 16)])
    walk = walk_ringbuf(data, 63, 40, 104)
    assert walk.samples == [b"A" * 12, b"B" * 16]
    assert (walk.consumer, walk.discarded, walk.busy) == (104, 1, False)


def test_ringbuf_walk_stops_at_a_busy_record():
    data = _ring(64, [(0, 8, b"C" * 8), (16, BUSY | 8, b"D" * 8)])
    walk = walk_ringbuf(data, 63, 0, 32)
    assert walk.samples == [b"C" * 8] and walk.busy and walk.consumer == 16


def test_perf_ring_record_wrapping_the_end_is_put_together():
    size = 64
    sample = struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, 24) + struct.pack("<I", 12) + b"E" * 12
    lost = struct.pack("<IHH", PERF_RECORD_LOST, 0, 32) + struct.pack("<QQQ", 7, 5, 0)
    area = bytearray(size)
    for i, b in enumerate(sample + lost):  # the sample at 48 runs past the end
        area[(48 + i) % size] = b
    records, tail = walk_perf_ring(bytes(area), 48 + 56, 48)
    assert tail == 104 and records == [sample, lost]
    assert parse_perf_record(records[0]).raw == b"E" * 12
    assert parse_perf_record(records[1]).lost == 5


@pytest.fixture(scope="module")
def kernel() -> None:
    require_kernel()
    _built(SMALL_RB, RUN_DIR)
    _built(by_name("bootstrap").path, CORPUS_DIR)
    _built(by_name("bootstrap_legacy").path, CORPUS_DIR)


def test_one_page_ring_wraps_around_with_discards(kernel):
    """300 records of 208 bytes through a 4096-byte ring (15 times around, records
    straddling its end): every submitted one read in order and whole, every discarded
    one (each third) skipped; read with the iterator and with a callback."""
    import bpfreplay

    with bpfreplay.load(str(SMALL_RB), globals={"target_pid": "self"}) as obj:
        reader = obj.ring_buffer("small_rb")
        got: list[bytes] = []
        for _ in range(30):
            for _ in range(10):
                os.getppid()
            got.extend(reader.poll(timeout=0))
        called: list[bytes] = []
        obj.ring_buffer("small_rb", callback=called.append)
    counters = [struct.unpack_from("<Q", r, 0)[0] for r in got]
    assert counters == [c for c in range(300) if c % 3 != 2]
    assert all(len(r) == 200 and r[:8] == r[192:] for r in got)
    assert called == []  # a second reader after everything was consumed


def test_ring_buffer_callback(kernel):
    import bpfreplay

    with bpfreplay.load(str(SMALL_RB), globals={"target_pid": "self"}) as obj:
        called: list[bytes] = []
        reader = obj.ring_buffer("small_rb", callback=called.append)
        for _ in range(5):
            os.getppid()
        assert reader.poll(timeout=0) == []
    assert [struct.unpack_from("<Q", r)[0] for r in called] == [0, 1, 3, 4]


def test_one_page_perf_buffer_counts_lost_samples(kernel):
    """A one-page perf buffer not read while 150 programs per online CPU start (some
    CPU sees 150 or more; a page holds about 100 of these 40-byte records), twice: the
    kernel reports lost samples (PERF_RECORD_LOST), those it kept are whole exec
    records."""
    import bpfreplay
    from bpfreplay.loader.attach_perf_event import sampling_cpus

    count = 150 * len(sampling_cpus())

    lost: list[tuple[int, int]] = []
    samples: list[tuple[int, bytes]] = []
    with bpfreplay.load(str(by_name("bootstrap_legacy").path)) as obj:
        reader = obj.perf_buffer("pb", page_cnt=1, callback=lambda cpu, data:
                                 samples.append((cpu, data)),
                                 lost=lambda cpu, n: lost.append((cpu, n)))
        pids = set()
        for _ in range(2):
            for _ in range(count):
                proc = subprocess.Popen(["/bin/true"])
                proc.wait()
                pids.add(proc.pid)
            reader.poll(timeout=0.1)
            reader.poll(timeout=0)
        counted = reader.lost
    assert lost and sum(n for _, n in lost) == counted > 0
    ours = [struct.unpack_from("<ii16s", d) for _, d in samples
            if struct.unpack_from("<i", d)[0] in pids]
    assert ours and all(comm.split(b"\0")[0] == b"true" for _, _, comm in ours)


def _record_of(run: Running, pid: int, prefix: str) -> str:
    """The line `run` printed for ``pid`` (read as it comes; a minute at most)."""
    assert run.proc.stdout is not None
    fd = run.proc.stdout.fileno()
    os.set_blocking(fd, False)
    buffered, deadline = "", time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            buffered += chunk
            for line in buffered.splitlines():
                if line.startswith(prefix) and f"pid = {pid}," in line:
                    return line
    raise AssertionError(f"no record of pid {pid} in:\n{buffered[-3000:]}")


@pytest.mark.parametrize("name, header, prefix", [
    ("bootstrap", "bootstrap.h", "rb: "),
    ("bootstrap_legacy", "bootstrap_legacy.h", "pb cpu "),
])
def test_run_event_prints_the_exec_of_a_program_we_run(kernel, name, header, prefix):
    run = Running([str(by_name(name).path), "--event", "struct event", "--header",
                   str(CORPUS_DIR / header)])
    try:
        proc = subprocess.Popen(["/bin/sleep", "0"])  # its exec: pid, comm "sleep"
        proc.wait()
        line = _record_of(run, proc.pid, prefix)
    finally:
        status, _, err = run.stop()
    assert status == 0, err[-3000:]
    assert re.search(rf'^{prefix}.*\{{pid = {proc.pid}, ppid = {os.getpid()}, .*'
                     r'comm = "sleep"', line), line


def test_record_decoded_through_a_header_type_or_dumped_in_hex():
    """A record packed as the C compiler lays out bootstrap.h's struct event (read back
    by clang's own BTF of it), and the same bytes without a type."""
    from bpfreplay.runtime.events import find_event_type, format_event
    from bpfreplay.runtime.header_btf import header_btf

    name = "struct event"
    event = find_event_type(header_btf(str(CORPUS_DIR / "bootstrap.h"), name), name)
    assert event.size == 48  # int, int, unsigned, (pad), u64, char[16], bool, (pad)
    data = struct.pack("<iiI4xQ16s?7x", 42, 1, 3, 5_000_000, b"sleep", True)
    assert format_event(event, data) == ('{pid = 42, ppid = 1, exit_code = 3, duration_ns '
                                         '= 5000000, comm = "sleep", exit_event = true}')
    dump = format_event(None, data).splitlines()
    assert len(dump) == 3 and dump[1].startswith("00000010  ") and "sleep" in dump[1]


@pytest.mark.parametrize("options, message", [
    (["--event", "struct nothing", "--header", "HEADER"], "no such type in the BTF"),
    (["--header", "HEADER"], "give the type to read from it with --event TYPE"),
    (["--event", "struct event"], "no such type in the BTF of object 'bootstrap_bpf'"),
    (["--event", "struct event", "--header", "/nonexistent.h"], "no such file"),
])
def test_event_options_errors_before_any_load(options, message):
    """Bad --event/--header input: a clear error and exit 1, before anything is loaded
    (no kernel needed)."""
    _built(by_name("bootstrap").path, CORPUS_DIR)
    argv = [sys.executable, "-m", "bpfreplay.cli", "run", str(by_name("bootstrap").path),
            *[str(CORPUS_DIR / "bootstrap.h") if o == "HEADER" else o for o in options]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "bpfreplay: map" not in done.stderr


def _bpf_mappings() -> list[tuple[int, str, int]]:
    """(length, permissions, offset) of this process's mappings of BPF maps and perf
    events, as /proc/self/maps shows them."""
    found = []
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] in ("anon_inode:bpf-map", "anon_inode:[perf_event]"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found.append((end - start, fields[1], int(fields[2], 16)))
    return found


def test_mappings_as_the_kernel_shows_them_and_none_left(kernel):
    """While a reader is open, /proc/self/maps shows libbpf's mappings: the ring
    buffer's consumer page (rw, offset 0) and producer + twice the data (ro, offset one
    page); per online CPU one perf ring of 1 + 8 pages (rw). After the object closes,
    none; a map of the wrong kind is refused without any mapping made."""
    import bpfreplay
    from bpfreplay.errors import LoaderError
    from bpfreplay.loader.attach_perf_event import sampling_cpus

    page = os.sysconf("SC_PAGE_SIZE")
    before = _bpf_mappings()
    with bpfreplay.load(str(by_name("bootstrap").path)) as obj:
        base = _bpf_mappings()  # the skeleton's own (a frozen .rodata)
        obj.ring_buffer("rb")
        added = [m for m in _bpf_mappings() if m not in base]
        assert sorted(added) == sorted([(page, "rw-s", 0),
                                        (page + 2 * 256 * 1024, "r--s", page)])
        with pytest.raises(LoaderError, match="not a BPF_MAP_TYPE_RINGBUF"):
            obj.ring_buffer("exec_start")
        with pytest.raises(LoaderError, match="not a BPF_MAP_TYPE_PERF_EVENT_ARRAY"):
            obj.perf_buffer("rb")
        assert [m for m in _bpf_mappings() if m not in base] == added
    with bpfreplay.load(str(by_name("bootstrap_legacy").path)) as obj:
        base = _bpf_mappings()
        obj.perf_buffer("pb")
        added = [m for m in _bpf_mappings() if m not in base]
        assert added == [(9 * page, "rw-s", 0)] * len(sampling_cpus())
    assert _bpf_mappings() == before


def test_run_event_without_a_type_dumps_records_in_hex(kernel):
    """`run --event` alone: each record as a hex dump under its "pb cpu N:" line; the
    exec record of a program we run starts with its pid and ppid (little-endian ints)
    and shows its name in the text column."""
    run = Running([str(by_name("bootstrap_legacy").path), "--event"])
    try:
        proc = subprocess.Popen(["/bin/sleep", "0"])
        proc.wait()
        start = (struct.pack("<ii", proc.pid, os.getpid()).hex(" "))
        assert run.proc.stdout is not None
        fd = run.proc.stdout.fileno()
        os.set_blocking(fd, False)
        buffered, found, deadline = "", None, time.monotonic() + 60
        while found is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    break
                buffered += chunk
                lines = buffered.splitlines()
                found = next((i for i, line in enumerate(lines)
                              if line.startswith(f"  00000000  {start} ")), None)
    finally:
        status, _, err = run.stop()
    assert status == 0, err[-3000:]
    assert found is not None, buffered[-3000:]
    assert re.match(r"pb cpu \d+:$", lines[found - 1]), lines[found - 1]
    assert lines[found].rsplit("  ", 1)[1].endswith("sleep..."), lines[found]  # text column
