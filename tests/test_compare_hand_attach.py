"""Hand attaches of programs libbpf does not auto-attach, and uprobes on /proc/self/exe,
on real traces: tests/data/compare/hand_uprobe (upstream libbpf-bootstrap's uprobe
example in small: SEC("uretprobe") attached by hand for every process, two programs
auto-attached on /proc/self/exe:uprobed_sub) recorded with `bpfreplay record`, and our
loader's run of its object (docs/parity.md, "Sections" and rule 5)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.compare import (
    DIFFERENCES,
    PARITY,
    compare_calls,
    compare_trace_files,
    normalise,
)
from bpfreplay.trace import read_trace
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
DATA = ROOT / "tests" / "data" / "compare"
APP = DATA / "build" / "hand_uprobe"
OBJ = DATA / "build" / "hand_uprobe.bpf.o"


def _bpfreplay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BPFREPLAY, *args], capture_output=True, text=True, timeout=180)


def _records(path: Path) -> list[dict]:
    with read_trace(str(path)) as trace:
        return list(trace.records())


def _calls(path: Path) -> tuple[list[dict], int]:
    records = _records(path)
    pid = next(r["pid"] for r in records if r["type"] == "process")
    return [r for r in records if r["type"] == "call"], pid


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> tuple[Path, Path]:
    """libbpf's trace of hand_uprobe (stopped while it runs, as upstream's is) and ours
    of its object, compared with it (the trace's exe stands for /proc/self/exe)."""
    require_kernel()
    result = subprocess.run(["make", "-s", "-C", str(DATA)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    tmp = tmp_path_factory.mktemp("hand_uprobe")
    ref, ours = tmp / "ref.mp", tmp / "ours.mp"
    _bpfreplay("record", "-q", "--duration", "0.5", "-o", str(ref), "--", str(APP))
    run = _bpfreplay("run", str(OBJ), "--duration", "0.2", "--compare", str(ref),
                     "--save-trace", str(ours))
    assert ours.exists(), run.stderr
    return ref, ours


def test_run_compare_of_the_command_is_at_full_parity():
    """The default reference (the program next to the object) is recorded; its program
    is what /proc/self/exe stands for in our uprobe targets; its hand attach is its
    application's, the auto-attach of uprobe_sub/uretprobe_sub is compared call by call."""
    require_kernel()
    subprocess.run(["make", "-s", "-C", str(DATA)], capture_output=True, timeout=300)
    run = _bpfreplay("run", str(OBJ), "--duration", "0.5", "--compare")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "FULL PARITY" in run.stdout
    assert ("does not auto-attach (by their sections): uprobe_add, uretprobe_add"
            in run.stdout)
    assert "link uprobe_sub       fd" in run.stderr and str(APP.resolve()) in run.stderr


def test_the_hand_attach_is_application_only_with_the_object(traces):
    ref, ours = traces
    without = compare_trace_files(str(ref), str(ours))
    assert without.outcome == DIFFERENCES
    missing = [_unnumbered(d.call) for d in without.differences if d.kind == "missing"]
    assert missing == ["perf_event_open  perf_event -> perf_event",
                       "bpf BPF_LINK_CREATE link -> link", "ioctl  perf_event"]
    with_object = compare_trace_files(str(ref), str(ours), object_path=str(OBJ))
    assert with_object.outcome == PARITY, with_object.differences
    hand = [_unnumbered(c.call) for c in with_object.application if c.our_index is None]
    assert hand == missing
    # Two auto-attaches compared call by call: perf_event_open, LINK_CREATE, ENABLE each.
    calls, _ = _calls(ours)
    assert sum(1 for c in calls if c["syscall"] == "perf_event_open") == 2
    cli = _bpfreplay("compare", "--object", str(OBJ), str(ref), str(ours))
    assert cli.returncode == 0, cli.stdout
    assert _bpfreplay("compare", str(ref), str(ours)).returncode == 1


def _unnumbered(call: str) -> str:
    return re.sub(r"#\d+", "", call)


def _without_attach_of(calls: list[dict], path_part: bytes, retprobe: bool) -> list[dict]:
    """``calls`` without the perf_event_open of one uprobe and the calls on its event."""
    at = next(i for i, c in enumerate(calls) if c["syscall"] == "perf_event_open"
              and path_part in (c.get("in") or {}).get("config1", b"")
              and bool(struct.unpack_from("<Q", c["attr"], 8)[0]) == retprobe)
    drop = {at, at + 1, at + 2}  # LINK_CREATE on it, PERF_EVENT_IOC_ENABLE
    return [c for i, c in enumerate(calls) if i not in drop]


def test_an_auto_attach_our_loader_missed_is_still_a_difference(traces):
    ref, ours = traces
    reference, pid = _calls(ref)
    mine, our_pid = _calls(ours)
    exe = {r["pid"]: r.get("self_exe") or r["exe"] for r in _records(ours)
           if r["type"] == "process"}
    fewer = _without_attach_of(mine, b"hand_uprobe", retprobe=False)
    report = compare_calls(normalise(reference, pid, {pid: str(APP.resolve())}),
                           normalise(fewer, our_pid, exe),
                           not_auto_attached=frozenset({"uprobe_add", "uretprobe_add"}))
    assert report.outcome == DIFFERENCES
    assert "missing" in {d.kind for d in report.differences}
    assert {_unnumbered(d.call) for d in report.differences} <= {
        "perf_event_open  perf_event -> perf_event", "bpf BPF_LINK_CREATE link -> link",
        "ioctl  perf_event"}


def test_an_attach_of_a_program_libbpf_does_not_auto_attach_is_ours_to_answer_for(traces):
    """The rule is the reference's only: with the traces swapped, the C program's hand
    attach stands in the place of ours and is reported as calls only in ours."""
    ref, ours = traces
    report = compare_trace_files(str(ours), str(ref), object_path=str(OBJ))
    assert report.outcome == DIFFERENCES
    extra = [_unnumbered(d.call) for d in report.differences if d.kind == "extra"]
    assert "bpf BPF_LINK_CREATE link -> link" in extra


def test_a_proc_self_exe_target_needs_the_program_it_stands_for(tmp_path):
    require_kernel()
    subprocess.run(["make", "-s", "-C", str(DATA)], capture_output=True, timeout=300)
    run = _bpfreplay("run", str(OBJ), "--duration", "0.1")
    assert run.returncode != 0
    assert "'/proc/self/exe'" in run.stderr and "--self-exe PATH" in run.stderr
    assert "Traceback" not in run.stderr
    run = _bpfreplay("run", str(OBJ), "--duration", "0.1", "--self-exe", str(APP))
    assert run.returncode == 0, run.stderr
    assert f"perf uretprobe {APP.resolve()}:0x" in run.stderr


def test_proc_self_exe_is_that_process_program_and_no_other(traces, tmp_path):
    """Rule 5 names the program, it forgives no other file: a copy of the program given
    as --self-exe is a different uprobe path."""
    ref, _ = traces
    copy = tmp_path / "hand_uprobe_copy"
    shutil.copy(APP, copy)
    ours = tmp_path / "ours.mp"
    run = _bpfreplay("run", str(OBJ), "--duration", "0.1", "--compare", str(ref),
                     "--self-exe", str(copy), "--save-trace", str(ours))
    assert run.returncode == 1, run.stdout[-2000:]
    assert "in.config1" in run.stdout and str(copy) in run.stdout
    process = next(r for r in _records(ours) if r["type"] == "process")
    assert process["self_exe"] == str(copy) and process["exe"] != str(copy)
