"""The module-BTF walk rule (docs/parity.md): libbpf's load_module_btfs() also walks
over the BTF objects other processes hold; how many is machine state, counted but
not compared. The kernel BTFs it finds and the calls made on them are compared."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys

import pytest

from bpfreplay.compare import DIFFERENCES, PARITY, compare_calls, compare_trace_files, normalise
from bpfreplay.parity_sections import FOREIGN, classify
from bpfreplay.trace import read_trace
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
LOADER_DATA = ROOT / "tests" / "data" / "loader"
_KERNEL_BTF = 28  # offsetof(struct bpf_btf_info, kernel_btf)


def _held_btf() -> int:
    """A BTF object of this test process's own: one the walk meets as foreign."""
    from bpfreplay.loader.bpfcalls import btf_load, raw_btf
    from bpfreplay.loader.features import Features

    int_type = struct.pack("<IIII", 1, 1 << 24, 4, 32)  # INT "int", 4 bytes, 32 bits
    return btf_load(raw_btf(int_type, b"\0int\0"), features=Features())


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """libbpf's and our load of an object whose CO-RE relocations make libbpf walk the
    kernel's BTF objects, while this process holds a BTF object of its own."""
    require_kernel()
    from bpfreplay import sys as bsys

    result = subprocess.run(["make", "-s", "-C", str(LOADER_DATA), "all", "skels"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tmp = tmp_path_factory.mktemp("walk")
    held = _held_btf()
    try:
        subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(tmp / "ref.mp"), "--",
                        str(LOADER_DATA / "build" / "core_skel"), "0.1"],
                       capture_output=True, timeout=120, check=True)
        subprocess.run([*BPFREPLAY, "run", str(LOADER_DATA / "build" / "core.bpf.o"),
                        "--duration", "0.1", "--save-trace", str(tmp / "ours.mp")],
                       capture_output=True, timeout=120)
    finally:
        bsys.close(held)
    return tmp / "ref.mp", tmp / "ours.mp"


def _calls(path):
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


def _visits(calls, pid):
    return classify(normalise(calls, pid)).visits


def test_the_walk_meets_a_foreign_object_and_does_not_count_it(core):
    reference = compare_trace_files(str(core[0]), str(core[0]))
    walk = reference.walk
    assert walk.reference_walked and walk.reference_foreign >= 1
    assert walk.reference_kernel and walk.reference_kernel[0].startswith("vmlinux")
    calls, pid = _calls(core[0])
    visits = _visits(calls, pid)
    assert [v.kind for v in visits][-1] == "ended"
    assert any(v.kind == FOREIGN and v.info.get("kernel_btf") == 0 for v in visits)


def test_libbpf_and_our_walk_are_at_parity_whatever_the_foreign_count(core):
    report = compare_trace_files(str(core[0]), str(core[1]))
    assert report.outcome == PARITY, report.differences[:5]
    assert report.walk.our_walked and report.walk.our_foreign >= 1
    assert report.walk.reference_kernel == report.walk.our_kernel


def test_one_foreign_object_less_is_no_difference(core):
    calls, pid = _calls(core[0])
    foreign = next(v for v in _visits(calls, pid) if v.kind == FOREIGN)
    fewer = [c for i, c in enumerate(calls) if i not in set(foreign.indices)]
    report = compare_calls(normalise(calls, pid), normalise(fewer, pid))
    assert report.outcome == PARITY, report.differences[:5]
    assert report.walk.our_foreign == report.walk.reference_foreign - 1
    assert report.matched == len(fewer) - 4 * report.walk.our_foreign


def test_a_module_btf_found_by_one_walk_only_is_a_difference(core):
    """A visit of a module's BTF (kernel_btf set, the fd kept) is compared."""
    calls, pid = _calls(core[0])
    foreign = next(v for v in _visits(calls, pid) if v.kind == FOREIGN)
    info_call, close_call = foreign.indices[2], foreign.indices[3]
    edited = copy.deepcopy(calls)
    info = bytearray(edited[info_call]["out"]["info"])
    info[_KERNEL_BTF:_KERNEL_BTF + 4] = struct.pack("<I", 1)
    edited[info_call]["out"]["info"] = bytes(info)
    edited = [c for i, c in enumerate(edited) if i != close_call]  # kept, as a module's
    assert [v.kind for v in _visits(edited, pid)].count("module") == 1
    report = compare_calls(normalise(calls, pid), normalise(edited, pid))
    assert report.outcome == DIFFERENCES
    # The module's visit is extra (its GET_NEXT_ID pairs with the reference's last one,
    # which then differs in its answer).
    assert {d.kind for d in report.differences} <= {"extra", "changed"}
    assert [d.call for d in report.differences if d.kind == "extra"][:2] == [
        "bpf BPF_BTF_GET_FD_BY_ID btf_by_id -> btf_by_id#2",
        "bpf BPF_OBJ_GET_INFO_BY_FD btf_by_id"]
    assert report.walk.our_kernel[-1].startswith("module BTF (kept)")


def test_a_walk_missing_on_one_side_is_a_difference(core):
    calls, pid = _calls(core[0])
    walk = {i for v in _visits(calls, pid) for i in v.indices}
    without = [c for i, c in enumerate(calls) if i not in walk]
    report = compare_calls(normalise(calls, pid), normalise(without, pid))
    assert report.outcome == DIFFERENCES
    missing = [d.call for d in report.differences if d.kind == "missing"]
    assert "bpf BPF_BTF_GET_NEXT_ID = -1 ENOENT" in missing
    assert any(c.startswith("bpf BPF_BTF_GET_FD_BY_ID btf_by_id") for c in missing)
    assert not report.walk.our_walked


def test_an_info_struct_of_another_length_is_one_difference(core):
    """A newer libbpf asks OBJ_GET_INFO_BY_FD for a longer info: one difference with
    both lengths and what is non-zero past the shorter one."""
    calls, pid = _calls(core[0])
    kernel = next(v for v in _visits(calls, pid) if v.kind == "kernel")
    edited = copy.deepcopy(calls)
    call = edited[kernel.indices[2]]
    call["attr"] = call["attr"][:4] + struct.pack("<I", 40) + call["attr"][8:]  # info_len
    call["in"]["info"] += bytes(8)
    call["out"]["info"] += struct.pack("<II", 0, 9)
    report = compare_calls(normalise(calls, pid), normalise(edited, pid))
    assert [(d.kind, d.path) for d in report.differences] == [("size", "out.info")]
    assert report.differences[0].reference == "32 bytes"
    assert report.differences[0].ours == ("40 bytes; non-zero past the shorter: "
                                          "(bytes past the known fields)=0000000009000000")
    # Zeros past the end: the longer info_len alone.
    call["out"]["info"] = call["out"]["info"][:32] + bytes(8)
    report = compare_calls(normalise(calls, pid), normalise(edited, pid))
    assert [(d.path, d.reference, d.ours) for d in report.differences] == [
        ("fields.info_len", 32, 40)]
