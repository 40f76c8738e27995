"""The trace file: streaming writes, truncated tails, refusal of foreign files."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest

from bpfreplay.errors import TraceFormatError
from bpfreplay.trace import FORMAT_VERSION, TraceWriter, read_trace


def write_sample(path, count=5):
    with TraceWriter(str(path), {"argv": ["x"]}) as w:
        for i in range(count):
            w.write({"type": "call", "index": i, "syscall": "bpf", "cmd": 5,
                     "attr": bytes([i]) * 40})


def test_round_trip(tmp_path):
    path = tmp_path / "t.mp"
    write_sample(path)
    with read_trace(str(path)) as trace:
        assert trace.header["argv"] == ["x"]
        calls = list(trace.calls())
        assert not trace.truncated
    assert [c["index"] for c in calls] == list(range(5))
    assert calls[3]["attr"] == b"\x03" * 40


@pytest.mark.parametrize("cut", [1, 7, 30])
def test_truncated_tail_keeps_complete_records(tmp_path, cut):
    path = tmp_path / "t.mp"
    write_sample(path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with read_trace(str(path)) as trace:
        calls = list(trace.calls())
        assert trace.truncated and trace.trailing_bytes > 0
    assert [c["index"] for c in calls] == [0, 1, 2, 3]


def test_foreign_and_future_files_are_refused(tmp_path):
    empty = tmp_path / "empty.mp"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp"
    text.write_text("hello, I am not a trace\n")
    future = tmp_path / "future.mp"
    future.write_bytes(msgpack.packb({"format": "bpfreplay-trace", "version": FORMAT_VERSION + 1}))
    for path, words in ((empty, "empty"), (text, "not a bpfreplay trace"), (future, "version")):
        with pytest.raises(TraceFormatError, match=words):
            read_trace(str(path))
    with pytest.raises(TraceFormatError, match="opening"):
        read_trace(str(tmp_path / "missing.mp"))


@pytest.mark.parametrize("content", [b"", b"\xc1\xc1\xc1", b"garbage" * 10])
def test_cli_reports_bad_files_without_traceback(tmp_path, content):
    path = tmp_path / "bad.mp"
    path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "explain", "--json",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "bpfreplay: error:" in result.stderr and "Traceback" not in result.stderr


def test_cli_reads_truncated_file_and_warns(tmp_path):
    path = tmp_path / "t.mp"
    write_sample(path)
    path.write_bytes(path.read_bytes()[:-3])
    result = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "explain", "--json",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 4
    assert "ends inside a record" in result.stderr


def test_records_across_mapped_windows_read_back_exactly(tmp_path):
    """Records written through the file's mapping, across its window boundaries and
    larger than a window (pwrite), read back as written, and close() leaves the file
    exactly as long as its objects (no reserved space)."""
    from bpfreplay.trace import writer

    path = tmp_path / "big.mp"
    records = [{"type": "call", "index": i, "syscall": "bpf", "cmd": 5,
                "attr": b"", "in": {"insns": bytes([i % 251]) * (i * 997 % 70000)}}
               for i in range(80)]
    records.insert(40, {"type": "call", "index": 999, "syscall": "bpf", "cmd": 5,
                        "attr": b"", "in": {"insns": b"\x07" * (writer._WINDOW + 12345)}})
    header = {"argv": ["x"]}
    with TraceWriter(str(path), header) as w:
        for r in records:
            w.write(r)
    packer = msgpack.Packer(use_bin_type=True)
    expected_size = len(packer.pack({"format": "bpfreplay-trace", "version": FORMAT_VERSION,
                                     **header})) + sum(len(packer.pack(r)) for r in records)
    assert path.stat().st_size == expected_size
    with read_trace(str(path)) as trace:
        assert list(trace.records()) == records
        assert not trace.truncated


_KILLED_WRITER = """
import sys
from bpfreplay.trace import TraceWriter
w = TraceWriter(sys.argv[1], {"argv": ["x"]})
for i in range(int(sys.argv[2])):
    w.write({"type": "call", "index": i, "syscall": "bpf", "cmd": 5, "attr": bytes(i % 300)})
print("written", flush=True)
sys.stdin.read()  # SIGKILLed here, before close() could cut the file
"""


def test_sigkilled_writer_leaves_every_record_it_wrote(tmp_path):
    """The guarantee of docs/trace-format.md: a writer killed with SIGKILL leaves every
    record its write() returned from; the space reserved past them (zero bytes) ends the
    records, reported as bytes after the last complete record."""
    path = tmp_path / "killed.mp"
    count = 9000  # several MiB: more than one mapped window
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), str(count)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "written\n"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9
    with read_trace(str(path)) as trace:
        calls = list(trace.calls())
        reserved = trace.trailing_bytes
        end = trace.complete_end
    assert [c["index"] for c in calls] == list(range(count))
    assert calls[-1]["attr"] == bytes((count - 1) % 300)
    data = path.read_bytes()
    assert reserved == len(data) - end and reserved > 0
    assert data[end:] == bytes(reserved)


def test_zero_byte_ends_the_records(tmp_path):
    """A zero byte where a record would begin (no record does: each is a map) is space a
    killed writer reserved: the records before it are all there."""
    path = tmp_path / "t.mp"
    write_sample(path)
    path.write_bytes(path.read_bytes() + bytes(5000))
    with read_trace(str(path)) as trace:
        calls = list(trace.calls())
        assert trace.trailing_bytes == 5000 and trace.zero_tail
    assert [c["index"] for c in calls] == list(range(5))
    result = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "explain", "--json",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 5
    assert "5000 bytes reserved but never written" in result.stderr
