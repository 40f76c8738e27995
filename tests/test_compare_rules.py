"""The compare's rules on real traces: libbpf's own recordings (`bpfreplay record` of the
C programs) and our loader's (`bpfreplay run --save-trace`), and traces made up by
editing real records, to show that each rule catches what it must and forgives only
what it should (docs/parity.md)."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.compare import (
    DIFFERENCES,
    FAILED_PARITY,
    PARITY,
    compare_calls,
    compare_trace_files,
    normalise,
)
from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_name
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
APP_DATA = ROOT / "tests" / "data" / "compare"
RUN_DATA = ROOT / "tests" / "data" / "run"


def _bpfreplay(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*BPFREPLAY, *args], capture_output=True, text=True, timeout=180,
                          check=check)


def _record(out: Path, *program: str) -> Path:
    _bpfreplay("record", "-q", "-o", str(out), "--", *program, check=False)
    assert out.exists()
    return out


def _ours(out: Path, obj: Path, *args: str) -> Path:
    _bpfreplay("run", str(obj), "--duration", "0.1", "--save-trace", str(out), *args,
               check=False)
    assert out.exists()
    return out


def _calls(path: Path) -> tuple[list[dict], int]:
    with read_trace(str(path)) as trace:
        records = list(trace.records())
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


def _compare(reference: tuple[list[dict], int], ours: tuple[list[dict], int]):
    return compare_calls(normalise(*reference), normalise(*ours))


def _is(record: dict, command: str) -> bool:
    return record["syscall"] == "bpf" and cmd_name(record["cmd"]) == command


@pytest.fixture(scope="module")
def minimal(tmp_path_factory, minimal_binary, minimal_object):
    """libbpf's minimal and ours, recorded now."""
    tmp = tmp_path_factory.mktemp("minimal")
    return (_record(tmp / "ref.mp", str(minimal_binary), "0.1"),
            _ours(tmp / "ours.mp", minimal_object, "--set", "my_pid=self"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """tests/data/compare/app: an application that makes calls of its own."""
    require_kernel()
    result = subprocess.run(["make", "-s", "-C", str(APP_DATA)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tmp = tmp_path_factory.mktemp("app")
    return (_record(tmp / "ref.mp", str(APP_DATA / "build" / "app"), "0.1"),
            _ours(tmp / "ours.mp", APP_DATA / "build" / "app.bpf.o", "--set", "my_pid=self"))


@pytest.fixture(scope="module")
def rejected(tmp_path_factory):
    """A program the verifier rejects: libbpf's skeleton and ours."""
    require_kernel()
    result = subprocess.run(["make", "-s", "-C", str(RUN_DATA), "all", "skels"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tmp = tmp_path_factory.mktemp("rejected")
    return (_record(tmp / "ref.mp", str(RUN_DATA / "build" / "rejected_skel")),
            _ours(tmp / "ours.mp", RUN_DATA / "build" / "rejected.bpf.o"))


# ------------------------------------------------------------- real traces


def test_a_trace_compared_with_itself_is_at_parity(minimal, app):
    for path in (*minimal, *app):
        report = compare_trace_files(str(path), str(path))
        assert report.outcome == PARITY and report.at_parity, report.differences[:3]
        assert report.exit_code == 0


def test_minimal_reference_and_our_run_are_at_full_parity(minimal):
    report = compare_trace_files(*map(str, minimal))
    assert report.outcome == PARITY, report.differences[:5]
    assert report.matched == report.reference_calls == report.our_calls
    assert report.application == [] and report.teardown_skipped == 0


def test_the_application_section_is_shown_apart(app):
    """ring_buffer__new, perf_buffer__new, a map update from main, setsockopt and a
    perf event of the application's own with a program attached by hand are the
    reference's application; libbpf's load, attach and teardown are at parity."""
    reference, ours = app
    report = compare_trace_files(str(reference), str(ours))
    assert report.outcome == PARITY, report.differences[:5]
    only_reference = [c.call for c in report.application if c.our_index is None]
    assert len(only_reference) == len(report.application)
    assert "bpf BPF_OBJ_GET_INFO_BY_FD map:events" in only_reference  # ring_buffer__new
    assert "bpf BPF_MAP_UPDATE_ELEM map:settings" in only_reference  # from main
    assert "setsockopt" in only_reference
    assert any(c.startswith("bpf BPF_LINK_CREATE link") for c in only_reference)
    assert sum(c.startswith("perf_event_open") for c in only_reference) == 3
    # What libbpf made is all compared: the tracepoint's attach and the teardown.
    calls, _ = _calls(reference)
    assert report.matched == len(calls) - len(report.application)


def test_a_probe_run_for_a_hand_attach_is_paired_in_the_application_section(
        app, tmp_path):
    """app hand-first attaches on_tick by hand before the skeleton's attach: libbpf
    runs its perf_link probe for that attach; ours runs it at its tracepoint attach."""
    reference = _record(tmp_path / "hand.mp", str(APP_DATA / "build" / "app"), "0.1",
                        "hand-first")
    report = compare_trace_files(str(reference), str(app[1]))
    assert report.outcome == PARITY, report.differences[:5]
    paired = [c for c in report.application if c.our_index is not None]
    assert [c.call for c in paired] == [
        "bpf BPF_PROG_LOAD probe:perf_link prog:(probe:perf_link) -> "
        "prog:(probe:perf_link)#1",
        "bpf BPF_LINK_CREATE probe:perf_link prog:(probe:perf_link) = -1 EBADF",
        "close  probe:perf_link prog:(probe:perf_link) prog:(probe:perf_link)#1"]
    assert all(c.identical for c in paired)
    # Where the reference ran it for its own attach, it is compared there.
    ref_calls, pid = _calls(app[0])
    our_calls, our_pid = _calls(app[1])
    probe = {j for j, item in enumerate(normalise(our_calls, our_pid))
             if item.get("probe") == "perf_link"}
    no_probe = [c for j, c in enumerate(our_calls) if j not in probe]
    report = _compare((ref_calls, pid), (no_probe, our_pid))
    assert [d.kind for d in report.differences] == ["missing"] * 3


def test_a_missing_auto_attach_is_not_hidden_by_the_application_section(app):
    reference, ours = (_calls(p) for p in app)
    calls, pid = ours
    link = next(c for c in calls if _is(c, "BPF_LINK_CREATE") and c.get("ret", -1) > 0)
    fewer = [c for c in calls if c is not link]
    report = _compare(reference, (fewer, pid))
    assert report.outcome == DIFFERENCES
    # The link and its close (ours now closes an fd it never saw made: application).
    assert [(d.kind, d.call) for d in report.differences] == [
        ("missing", "bpf BPF_LINK_CREATE link -> link#1"), ("missing", "close  link link#1")]


def test_an_application_call_made_inside_the_load_is_a_difference(app):
    """A call the application makes after the load is forgiven; the same call made by
    our loader before its programs are loaded is not."""
    reference, (calls, pid) = (_calls(p) for p in app)
    ref_calls, _ = reference
    update = next(c for c in ref_calls if _is(c, "BPF_MAP_UPDATE_ELEM")
                  and c["attr"][:4] == next(m for m in ref_calls if _is(m, "BPF_MAP_CREATE")
                                            and b"settings" in m["attr"])["ret"].to_bytes(
                                                4, "little"))
    create = next(i for i, c in enumerate(calls) if _is(c, "BPF_MAP_CREATE")
                  and b"settings" in c["attr"])
    moved = copy.deepcopy(update)
    moved["pid"] = moved["tid"] = pid
    moved["attr"] = calls[create]["ret"].to_bytes(4, "little") + moved["attr"][4:]
    more = calls[:create + 1] + [moved] + calls[create + 1:]
    report = _compare(reference, (more, pid))
    assert [(d.kind, d.call) for d in report.differences] == [
        ("extra", "bpf BPF_MAP_UPDATE_ELEM map:settings")]


def test_teardown_of_a_reference_stopped_before_it_is_not_counted(minimal):
    (ref, pid), ours = (_calls(p) for p in minimal)
    last_attach = max(i for i, c in enumerate(ref) if c["syscall"] == "ioctl")
    killed = ref[:last_attach]  # the ENABLE is kept, DISABLE and the closes are not
    assert [c["args"][1] & 0xFFFFFFFF for c in killed if c["syscall"] == "ioctl"] == [0x2400]
    report = _compare((killed, pid), ours)
    assert report.outcome == PARITY, report.differences[:3]
    assert report.teardown_skipped == 8  # DISABLE, 6 closes, munmap
    # A teardown both made is compared: ours without its closes is a difference.
    our_calls, our_pid = ours
    attached = max(i for i, c in enumerate(our_calls) if c["syscall"] == "ioctl"
                   and c["args"][1] & 0xFFFFFFFF == 0x2400)  # PERF_EVENT_IOC_ENABLE
    no_closes = [c for i, c in enumerate(our_calls)
                 if not (c["syscall"] == "close" and i > attached)]
    report = _compare((ref, pid), (no_closes, our_pid))
    assert report.outcome == DIFFERENCES
    assert {d.kind for d in report.differences} == {"missing"}
    assert all(d.call.startswith("close") for d in report.differences)


# ------------------------------------------------------- pairing and sizes


def test_an_extra_probe_is_one_difference_per_call_and_the_rest_still_pairs(minimal):
    reference, (calls, pid) = (_calls(p) for p in minimal)
    at = next(i for i, c in enumerate(calls) if _is(c, "BPF_BTF_LOAD"))
    extra = calls[:at] + copy.deepcopy(calls[at:at + 2]) + calls[at:]  # the btf probe again
    report = _compare(reference, (extra, pid))
    assert [(d.kind, d.call) for d in report.differences] == [
        ("extra", "bpf BPF_BTF_LOAD probe:btf btf:(probe:btf) -> btf:(probe:btf)#2"),
        ("extra", "close  probe:btf btf:(probe:btf) btf:(probe:btf)#2")]
    assert report.matched == len(reference[0])  # nothing after it renumbered


def test_two_calls_swapped_are_reported_once_as_moved(minimal):
    reference, (calls, pid) = (_calls(p) for p in minimal)
    loads = [i for i, c in enumerate(calls) if _is(c, "BPF_BTF_LOAD")]
    a, b = loads[1], loads[2]  # two BTF probes, each with its close
    swapped = calls[:a] + calls[b:b + 2] + calls[a + 2:b] + calls[a:a + 2] + calls[b + 2:]
    assert len(swapped) == len(calls)
    report = _compare(reference, (swapped, pid))
    assert report.outcome == DIFFERENCES
    assert [d.kind for d in report.differences] == ["moved", "moved"]
    assert report.matched == len(calls) - 2


def test_an_attr_of_another_size_is_one_difference(minimal):
    reference, (calls, pid) = (_calls(p) for p in minimal)
    bigger = copy.deepcopy(calls)
    create = next(c for c in bigger if _is(c, "BPF_MAP_CREATE") and b"minimal_.bss" in c["attr"])
    size = create["size"]
    create["attr"] = create["attr"] + b"\0" * 4 + struct.pack("<I", 7) + b"\0" * 24
    create["size"] = len(create["attr"])
    report = _compare(reference, (bigger, pid))
    assert [(d.kind, d.path) for d in report.differences] == [("size", "size")]
    difference = report.differences[0]
    assert difference.reference == f"{size} bytes"
    assert difference.ours.startswith(f"{size + 32} bytes; non-zero past the shorter: ")
    assert "=7" in difference.ours and difference.ours.count("=") == 1
    # Zero bytes past the end: still one difference, the size alone.
    create["attr"] = create["attr"][:size] + b"\0" * 32
    report = _compare(reference, (bigger, pid))
    assert [(d.kind, d.ours) for d in report.differences] == [("size", f"{size + 32} bytes")]


def test_a_changed_field_inside_a_bigger_attr_is_still_reported(minimal):
    reference, (calls, pid) = (_calls(p) for p in minimal)
    bigger = copy.deepcopy(calls)
    create = next(c for c in bigger if _is(c, "BPF_MAP_CREATE") and b"minimal_.bss" in c["attr"])
    attr = bytearray(create["attr"]) + bytes(8)
    attr[12] += 1  # max_entries
    create["attr"], create["size"] = bytes(attr), len(attr)
    report = _compare(reference, (bigger, pid))
    assert sorted((d.kind, d.path) for d in report.differences) == [
        ("changed", "fields.max_entries"), ("size", "size")]


# --------------------------------------------------------------- failed loads


def test_libbpf_and_our_rejected_load_are_parity_of_a_failed_load(rejected):
    reference, ours = rejected
    report = compare_trace_files(str(reference), str(ours))
    assert report.outcome == FAILED_PARITY, report.differences[:3]
    assert not report.at_parity and report.exit_code == 3
    failure = report.reference_failure
    assert failure.call == "bpf BPF_PROG_LOAD prog:count_writes"
    assert failure.errno_name == "EACCES" and "invalid mem access" in failure.log
    result = _bpfreplay("compare", str(reference), str(ours), check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert ("PARITY OF A FAILED LOAD: both failed at bpf BPF_PROG_LOAD prog:count_writes "
            "with EACCES") in result.stdout


def test_a_failed_load_with_another_log_or_errno_is_a_difference(rejected):
    reference, (calls, pid) = (_calls(p) for p in rejected)
    for change in ("log", "errno"):
        edited = copy.deepcopy(calls)
        load = [c for c in edited if _is(c, "BPF_PROG_LOAD") and c.get("errno")][-1]
        if change == "log":
            log = load["out"]["log_buf"]
            load["out"]["log_buf"] = log.replace(b"invalid mem access", b"invalid mem access!")
        else:
            load["errno"] = 22
        report = _compare(reference, (edited, pid))
        assert report.outcome == DIFFERENCES, change
        paths = {d.path for d in report.differences}
        assert paths == ({"out.log_buf"} if change == "log" else {"errno"}), paths


def test_a_working_load_against_a_failed_one_is_a_difference(rejected, minimal):
    report = compare_trace_files(str(rejected[0]), str(minimal[1]))
    assert report.outcome == DIFFERENCES
    assert report.reference_failure is not None and report.our_failure is None


# ----------------------------------------------------------- the command line


def test_compare_command_exit_codes_and_errors(tmp_path, minimal, app):
    same = _bpfreplay("compare", str(minimal[0]), str(minimal[1]), check=False)
    assert same.returncode == 0 and "FULL PARITY" in same.stdout, same.stdout[-2000:]
    other = _bpfreplay("compare", str(minimal[0]), str(app[1]), check=False)
    assert other.returncode == 1 and "NOT AT PARITY" in other.stdout
    assert "calls only in the reference" in other.stdout
    missing = _bpfreplay("compare", str(tmp_path / "nothing.mp"), str(minimal[1]), check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "nothing.mp" in missing.stderr
    junk = tmp_path / "junk.mp"
    junk.write_bytes(b"not a trace\n")
    bad = _bpfreplay("compare", str(minimal[0]), str(junk), check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "junk.mp" in bad.stderr
    from bpfreplay.trace import TraceWriter

    broken = tmp_path / "broken.mp"
    with read_trace(str(minimal[0])) as trace:
        header = {k: v for k, v in trace.header.items() if k not in ("format", "version")}
    with TraceWriter(str(broken), header) as writer:
        writer.write({"type": "call", "index": 0, "pid": 1, "syscall": "bpf"})  # no cmd
    bad = _bpfreplay("compare", str(broken), str(minimal[1]), check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "broken.mp" in bad.stderr and "not a call" in bad.stderr
    shown = _bpfreplay("compare", str(app[0]), str(app[1]), check=False)
    assert shown.returncode == 0 and "application section" in shown.stdout
