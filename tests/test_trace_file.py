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
