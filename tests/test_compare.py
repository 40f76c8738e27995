"""Parity of traces: two recordings of the same program are at parity after the
documented normalisation, and a real difference is reported where it is."""

from __future__ import annotations

import copy
import subprocess
import sys

from bpfreplay.compare import PID, compare_calls, compare_traces, normalise
from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_name
from tests.conftest import ROOT

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
REFERENCE_TRACE = ROOT / "traces" / "minimal.mp"


def _record(tmp_path, name, *program):
    out = tmp_path / name
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", *program], check=True,
                   capture_output=True, timeout=120)
    return out


def _calls(path):
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


def test_two_runs_of_the_reference_are_at_parity(tmp_path, minimal_binary):
    first = _record(tmp_path, "a.mp", str(minimal_binary), "0.3")
    second = _record(tmp_path, "b.mp", str(minimal_binary), "0.3")
    report = compare_traces(str(first), str(second))
    assert report.at_parity, report.differences[:5]
    calls, _ = _calls(first)
    assert report.matched == len(calls)
    assert sum(1 for c in calls if c["syscall"] == "bpf") == 28


def test_pid_in_bss_is_the_only_value_masked():
    calls, pid = _calls(REFERENCE_TRACE)
    normal = normalise(calls, pid)
    bss_updates = [n for n in normal if n.get("cmd") == "BPF_MAP_UPDATE_ELEM"
                   and n["fields"]["map_fd"].startswith("map:minimal_.bss")]
    assert [u["in"]["value"] for u in bss_updates] == [PID]
    # Another pid is not masked: the rule is about each trace's own process.
    other = normalise(calls, pid + 1)
    assert PID not in str(other)


def test_a_changed_field_is_reported_with_both_values():
    calls, pid = _calls(REFERENCE_TRACE)
    changed = copy.deepcopy(calls)
    create = next(c for c in changed if c["syscall"] == "bpf"
                  and cmd_name(c["cmd"]) == "BPF_MAP_CREATE" and b"minimal_.rodata" in c["attr"])
    attr = bytearray(create["attr"])
    attr[16] ^= 0x01  # map_flags: BPF_F_NO_PREALLOC added
    create["attr"] = bytes(attr)
    report = compare_calls(normalise(calls, pid), normalise(changed, pid))
    assert not report.at_parity
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.map_flags", 128, 129)]


def test_a_missing_call_is_reported_and_the_rest_still_aligns():
    calls, pid = _calls(REFERENCE_TRACE)
    fewer = [c for c in calls if not (c["syscall"] == "bpf"
                                      and cmd_name(c["cmd"]) == "BPF_MAP_FREEZE")]
    report = compare_calls(normalise(calls, pid), normalise(fewer, pid))
    assert [(d.call, d.path, d.ours) for d in report.differences] == [
        ("bpf BPF_MAP_FREEZE map:minimal_.rodata", "(whole call)", None)]
    assert report.matched == len(fewer)


def test_a_renumbered_fd_still_names_its_object():
    """Newer libbpf moves fds with dup3 (placeholder memfds): an fd reached through a
    duplicate names the object of its original."""
    calls, pid = _calls(REFERENCE_TRACE)
    create = next(c for c in calls if c["syscall"] == "bpf"
                  and cmd_name(c["cmd"]) == "BPF_MAP_CREATE" and b"minimal_.bss" in c["attr"])
    update = next(c for c in calls if c["syscall"] == "bpf" and c["index"] > create["index"]
                  and cmd_name(c["cmd"]) == "BPF_MAP_UPDATE_ELEM")
    fd = create["ret"]
    moved = copy.deepcopy(update)
    moved["attr"] = (fd + 40).to_bytes(4, "little") + moved["attr"][4:]
    dup3 = {"type": "call", "syscall": "dup3", "pid": pid, "args": [fd, fd + 40, 0, 0, 0, 0],
            "ret": fd + 40, "errno": None}
    close = {"type": "call", "syscall": "close", "pid": pid, "args": [fd, 0, 0, 0, 0, 0],
             "ret": None, "errno": None}
    plain = normalise([create, update], pid)
    renumbered = normalise([create, dup3, close, moved], pid)
    assert renumbered[1]["ret"] == plain[0]["ret"] == "map:minimal_.bss#1"
    assert renumbered[3] == plain[1]
