"""The buffers bpfreplay record copies for a call, checked against what the program
passed (tests/data/record/map_buffers.c), whichever way the recorder read them: cut
from the attr's own page, read on their own, or read again by the plan of an attr it
has seen before (which must not outlive the map its fd named)."""

from __future__ import annotations

import errno
import random
import struct
import subprocess
import sys
from pathlib import Path

from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_name, cmd_value
from bpfreplay.uapi.pointers import BUFFERS, compiled_command, read_field
from tests.conftest import require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
SOURCE = Path(__file__).parent / "data" / "record" / "map_buffers.c"


def _record_map_buffers(tmp_path: Path) -> list[dict]:
    require_kernel()
    require_tool("cc")
    exe = tmp_path / "map_buffers"
    subprocess.run(["cc", "-O1", "-o", str(exe), str(SOURCE)], check=True, timeout=120)
    out = tmp_path / "buffers.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", str(exe)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"map_buffers exited {result.returncode}: {result.stderr}"
    with read_trace(str(out)) as trace:
        calls = [c for c in trace.calls() if c["syscall"] == "bpf"]
        assert not trace.truncated
    return calls


def test_map_keys_and_values_are_what_the_program_passed(tmp_path):
    calls = _record_map_buffers(tmp_path)
    update, lookup, create = "BPF_MAP_UPDATE_ELEM", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_CREATE"
    assert [cmd_name(c["cmd"]) for c in calls] == (
        [create] + [update] * 8 + [lookup] * 8 + [update] * 4 + [create] + [update] * 6
        + [create] + [update] * 2)
    stack, lookups, static = calls[1:9], calls[9:17], calls[17:21]
    resized, (in_page, unmapped), unseen_close = calls[22:26], calls[26:28], calls[29:31]

    for i, c in enumerate(stack):
        assert c["in"] == {"key": struct.pack("<I", i), "value": struct.pack("<Q", 1000 + i)}
    for i, c in enumerate(lookups):
        assert c["in"] == {"key": struct.pack("<I", i)}
        assert c["out"] == {"value": struct.pack("<Q", 1000 + i)}  # written by the kernel
    for i, c in enumerate(static):
        assert c["in"] == {"key": struct.pack("<I", 100 + i),
                           "value": struct.pack("<Q", 2000 + i)}
    # The same attr bytes at the same address after close(fd) and a new map on that fd:
    # the new map's sizes, not the old one's.
    assert resized[0]["attr"] == static[-1]["attr"]
    assert resized[0]["args"][1] == static[-1]["args"][1]
    for i, c in enumerate(resized):
        assert c["in"] == {"key": struct.pack("<Q", 200 + i),
                           "value": struct.pack("<3Q", 3000 + i, 4000 + i, 5000 + i)}
    assert in_page["ret"] == 0
    assert in_page["in"]["value"] == struct.pack("<3Q", 6000, 6001, 6002)
    # The page unmapped under an attr seen before: a fault, as the kernel found it.
    assert unmapped["attr"] == in_page["attr"]
    assert (unmapped["ret"], unmapped["errno"]) == (-1, errno.EFAULT)
    assert "value" in unmapped["faults"] and "value" not in unmapped["in"]
    assert unmapped["in"]["key"] == struct.pack("<Q", 203)
    # The map closed by close_range() (not recorded) and made again on the same fd.
    for i, c in enumerate(unseen_close):
        assert c["in"] == {"key": struct.pack("<I", 400 + i),
                           "value": struct.pack("<2Q", 7000 + i, 8000 + i)}
    assert all(c["ret"] == 0 for c in stack + lookups + static + resized + unseen_close)


def test_repeated_calls_keep_the_record_layout(tmp_path):
    """A call the recorder has seen before is copied by a shortcut; its record has the
    keys of the first one, in the same order (the bytes of the file depend on it)."""
    calls = _record_map_buffers(tmp_path)
    updates = [c for c in calls if cmd_name(c["cmd"]) == "BPF_MAP_UPDATE_ELEM"]
    first = list(updates[0])
    assert first[:4] == ["cmd", "size", "attr", "in"]
    faulted = updates[-3]
    assert all(list(c) == first for c in updates if c is not faulted)
    assert list(faulted) == first[:4] + ["faults"] + first[4:]


def test_field_reader_reads_what_read_field_reads():
    """The per-command struct reader against the field-by-field reading, for attrs cut
    at every length (bytes past the end read as zero) and random contents."""
    rnd = random.Random(7)
    for name in BUFFERS:
        cmd = cmd_value(name)
        compiled = compiled_command(cmd)
        reader = compiled.reader
        assert attr_layout(cmd) is not None
        for size in range(0, max((f.end for f in reader.fields if f), default=0) + 9):
            attr = bytes(rnd.getrandbits(8) for _ in range(size))
            expected = tuple(0 if f is None else read_field(attr, f) for f in reader.fields)
            assert reader.unpack(attr) == expected, (name, size)
