"""A hand attach with options of a program the skeleton would auto-attach, on the real
kernel (docs/parity.md, "Sections"): tests/data/iter's application with --by-hand
attaches every iterator itself with bpf_program__attach_iter() and a zeroed link_info,
as upstream libbpf-bootstrap's task_iter does; libbpf 1.1.2's attach_iter() passes no
link_info. Our auto-attach pairs with that attach: its options are shown apart, every
other field is compared."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.compare import DIFFERENCES, PARITY, compare_calls, normalise
from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_name, enum_values
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
ITER = ROOT / "tests" / "data" / "iter"
APP = ITER / "build" / "iters_iter"
OBJ = ITER / "build" / "iters.bpf.o"
_ATTACH = enum_values("bpf_attach_type")


def _calls(path: Path) -> tuple[list[dict], int]:
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """libbpf's trace of the application attaching by hand, and ours compared with it."""
    require_kernel()
    built = subprocess.run(["make", "-s", "-C", str(ITER)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    tmp = tmp_path_factory.mktemp("hand_options")
    ref, ours = tmp / "ref.mp", tmp / "ours.mp"
    recorded = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(ref), "--", str(APP),
                               "--by-hand", str(tmp)], capture_output=True, text=True,
                              timeout=120)
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    run = subprocess.run([*BPFREPLAY, "run", str(OBJ), "--duration", "0.2", "--compare",
                          str(ref), "--save-trace", str(ours)], capture_output=True,
                         text=True, timeout=120)
    return ref, ours, run


def _iter_links(calls: list[dict]) -> list[int]:
    return [i for i, c in enumerate(calls) if c["syscall"] == "bpf"
            and cmd_name(c["cmd"]) == "BPF_LINK_CREATE" and not c.get("errno")
            and struct.unpack_from("<I", c["attr"], 8)[0] == _ATTACH["BPF_TRACE_ITER"]]


def test_the_options_are_shown_apart_and_the_rest_is_at_parity(traces):
    ref, ours, run = traces
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "FULL PARITY" in run.stdout
    reference, pid = _calls(ref)
    links = _iter_links(reference)
    assert links, "the application made no iterator link"
    # what the kernel was given: a 16-byte zeroed link_info behind iter_info
    for i in links:
        assert struct.unpack_from("<QI", reference[i]["attr"], 16)[1] == 16
        assert reference[i]["in"]["iter_info"] == bytes(16)
    mine, our_pid = _calls(ours)
    assert all(struct.unpack_from("<QI", mine[j]["attr"], 16) == (0, 0)
               for j in _iter_links(mine))
    report = compare_calls(normalise(reference, pid), normalise(mine, our_pid))
    assert report.outcome == PARITY, report.differences
    notes = [c for c in report.application if c.note]
    assert [c.reference_index for c in notes] == links
    assert all("by hand with options fields.iter_info=<pointer>, fields.iter_info_len=16, "
               "in.iter_info=" + "00" * 16 in c.note for c in notes)
    assert run.stdout.count("by hand with options") == len(links)


def _edited(calls: list[dict], at: int, offset: int, value: int) -> list[dict]:
    edited = copy.deepcopy(calls)
    attr = bytearray(edited[at]["attr"])
    struct.pack_into("<I", attr, offset, value)
    edited[at]["attr"] = bytes(attr)
    return edited


def test_another_attach_type_or_program_is_still_a_difference(traces):
    """Made up: our LINK_CREATE paired with the hand attach names another attach type,
    or another program: the fields that are no options are compared and counted."""
    ref, ours, _ = traces
    reference, pid = _calls(ref)
    mine, our_pid = _calls(ours)
    first = _iter_links(mine)[0]
    other_type = _edited(mine, first, 8, _ATTACH["BPF_TRACE_RAW_TP"])
    report = compare_calls(normalise(reference, pid), normalise(other_type, our_pid))
    assert report.outcome == DIFFERENCES
    found = {d.path: (d.reference, d.ours) for d in report.differences}
    assert found["fields.attach_type"] == (_ATTACH["BPF_TRACE_ITER"],
                                           _ATTACH["BPF_TRACE_RAW_TP"])
    # the second link's program fd in the first link: another program
    second = _iter_links(mine)[1]
    prog_fd = struct.unpack_from("<I", mine[second]["attr"], 0)[0]
    other_prog = _edited(mine, first, 0, prog_fd)
    report = compare_calls(normalise(reference, pid), normalise(other_prog, our_pid))
    assert report.outcome == DIFFERENCES
    assert "fields.prog_fd" in {d.path for d in report.differences}


def test_options_of_ours_are_compared_as_they_are(traces):
    """The rule reads the reference only: our attach passing link_info where the
    reference's auto-attach passed none is a difference; both passing it, compared."""
    ref, ours, _ = traces
    reference, pid = _calls(ref)
    mine, our_pid = _calls(ours)
    swapped = compare_calls(normalise(mine, our_pid), normalise(reference, pid))
    assert swapped.outcome == DIFFERENCES
    assert {"fields.iter_info", "fields.iter_info_len"} <= {d.path for d in
                                                            swapped.differences}
    assert not [c for c in swapped.application if c.note]
    # both hand attaches, one with another link_info length: compared, not shown apart
    at = _iter_links(reference)[0]
    shorter = _edited(reference, at, 24, 8)
    report = compare_calls(normalise(reference, pid), normalise(shorter, pid))
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.iter_info_len", 16, 8)]
