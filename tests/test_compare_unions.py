"""The compare reads union bpf_attr through the member each call means (decode/attrs.py's
view): a pointer passed in one member leaks through none of its aliases, and a real
difference inside a union member still shows. On real traces: libbpf's own recording of
tests/data/iter's application (its iterators' LINK_CREATE), edited to pass iter_info as
upstream's task_iter does, and the minimal reference's perf-event link."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys

import pytest

from bpfreplay.compare import DIFFERENCES, PARITY, POINTER, compare_calls, normalise
from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_name, enum_values
from tests.conftest import ROOT, _built, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
ITER_DATA = ROOT / "tests" / "data" / "iter"
REFERENCE_TRACE = ROOT / "traces" / "minimal.mp"
_ATTACH = enum_values("bpf_attach_type")
# Two user addresses differing in both 32-bit halves, as two processes' stacks do.
POINTER_A, POINTER_B = 0x7FFD_1234_5670, 0x7FFE_9ABC_DEF8


def _calls(path):
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


@pytest.fixture(scope="module")
def iter_trace(tmp_path_factory):
    """libbpf's load and attach of tests/data/iter's iterators, recorded now."""
    require_kernel()
    app = _built(ITER_DATA / "build" / "iters_iter", ITER_DATA)
    tmp = tmp_path_factory.mktemp("iter")
    out = tmp / "ref.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", str(app),
                    str(tmp)], capture_output=True, timeout=120, check=False)
    return _calls(out)


def _link_create(calls, attach_type: str) -> int:
    return next(i for i, c in enumerate(calls)
                if c["syscall"] == "bpf" and cmd_name(c["cmd"]) == "BPF_LINK_CREATE"
                and not c.get("errno")
                and struct.unpack_from("<I", c["attr"], 8)[0] == _ATTACH[attach_type])


def _with_iter_info(calls, pointer: int, length: int = 16, info: bytes = bytes(16)):
    """The first iterator's LINK_CREATE as bpf_program__attach_iter() with link_info
    makes it: iter_info (a pointer to a union bpf_iter_link_info) and iter_info_len."""
    edited = copy.deepcopy(calls)
    at = _link_create(edited, "BPF_TRACE_ITER")
    attr = bytearray(edited[at]["attr"])
    struct.pack_into("<QI", attr, 16, pointer, length)
    edited[at]["attr"] = bytes(attr)
    if pointer:
        edited[at]["in"] = {"iter_info": info}
    return edited, at


def test_a_pointer_in_a_union_leaks_through_no_alias(iter_trace):
    """Two processes passing iter_info at different addresses are at parity; before,
    link_create's target_btf_id and kprobe_multi.cnt showed the address's halves."""
    calls, pid = iter_trace
    first, at = _with_iter_info(calls, POINTER_A)
    second, _ = _with_iter_info(calls, POINTER_B)
    report = compare_calls(normalise(first, pid), normalise(second, pid))
    assert report.outcome == PARITY, report.differences
    fields = normalise(first, pid)[at]["fields"]
    assert fields["iter_info"] == POINTER and fields["iter_info_len"] == 16
    assert fields["attach_type"] == _ATTACH["BPF_TRACE_ITER"]
    assert not [name for name in fields if "." in name or name == "target_btf_id"]
    halves = {POINTER_A & 0xFFFFFFFF, POINTER_A >> 32, POINTER_A}
    assert not [v for v in fields.values() if v in halves]


def test_a_difference_inside_the_meant_member_still_shows(iter_trace):
    calls, pid = iter_trace
    first, _ = _with_iter_info(calls, POINTER_A)
    shorter, _ = _with_iter_info(calls, POINTER_B, length=8)
    report = compare_calls(normalise(first, pid), normalise(shorter, pid))
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.iter_info_len", 16, 8)]
    # A pointer against NULL is kept (the kernel reads no link info at all): ours
    # passing link info that the reference's auto-attach did not. (The other way round
    # is the reference's hand attach with options: tests/test_compare_hand_options.py.)
    none, _ = _with_iter_info(calls, 0, length=0)
    report = compare_calls(normalise(none, pid), normalise(first, pid))
    assert report.outcome == DIFFERENCES
    assert ("fields.iter_info", 0, POINTER) in [(d.path, d.reference, d.ours)
                                                for d in report.differences]
    # The pointed-to bytes are compared: another pid filter in bpf_iter_link_info.
    other, _ = _with_iter_info(calls, POINTER_B, info=struct.pack("<I", 7) + bytes(12))
    report = compare_calls(normalise(first, pid), normalise(other, pid))
    assert [d.path for d in report.differences] == ["in.iter_info"]


def test_bytes_of_a_member_the_call_does_not_use_are_compared(iter_trace):
    """A non-zero byte outside the meant member (where kprobe_multi.syms would be) is
    not dropped with the aliases: it shows as bytes no field of this call reads."""
    calls, pid = iter_trace
    edited = copy.deepcopy(calls)
    at = _link_create(edited, "BPF_TRACE_ITER")
    attr = bytearray(edited[at]["attr"])
    attr[33] = 0x5A
    edited[at]["attr"] = bytes(attr)
    report = compare_calls(normalise(calls, pid), normalise(edited, pid))
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.(bytes no field of this call reads)", None, "28..47=00000000005a"
         + "00" * 14)]


def test_a_perf_event_links_cookie_is_compared():
    """perf_event.bpf_cookie is the member a BPF_PERF_EVENT link means."""
    calls, pid = _calls(REFERENCE_TRACE)
    edited = copy.deepcopy(calls)
    at = _link_create(edited, "BPF_PERF_EVENT")
    attr = bytearray(edited[at]["attr"])
    struct.pack_into("<Q", attr, 16, 7)
    edited[at]["attr"] = bytes(attr)
    report = compare_calls(normalise(calls, pid), normalise(edited, pid))
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.perf_event.bpf_cookie", 0, 7)]
