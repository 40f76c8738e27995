"""bpfreplay run --compare: the reference recorded first for --duration and never refused
for its exit status, its globals taken (its pid becomes ours), a failed load compared
(exit 3 at parity of a failure), Ctrl-C handled in each phase. Real kernel, real
libbpf references, bpfreplay as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bpfreplay.trace_pipe import TRACE_PIPES
from tests.conftest import ROOT, require_kernel, require_tool

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")
RUN_DATA = ROOT / "tests" / "data" / "run"


@pytest.fixture(scope="module")
def run_builds() -> Path:
    """tests/data/run's objects and their references on the system libbpf."""
    require_kernel()
    result = subprocess.run(["make", "-s", "-C", str(RUN_DATA), "all", "skels"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return RUN_DATA / "build"


@pytest.fixture(scope="module")
def rejected_pair(run_builds) -> tuple[Path, Path]:  # noqa: ANN001
    """The object the verifier rejects and its skeleton reference on the system libbpf."""
    return run_builds / "rejected.bpf.o", run_builds / "rejected_skel"


def _bss_values(trace: Path) -> list[bytes]:
    """The values of the MAP_UPDATE_ELEM calls a trace made on its maps named *.bss."""
    from bpfreplay.reference_globals import reference_images

    return [image.value for name, image in reference_images(str(trace)).items()
            if name.endswith(".bss")]


def _trace_pipe_readers(exclude: set[int]) -> list[int]:
    """Processes other than ``exclude`` holding the trace pipe open: they may take the
    bpf_printk lines before our printer sees them."""
    readers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in exclude:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/trace_pipe"):
                    readers.append(int(pid))
                    break
            except OSError:
                continue
    return readers


def _prog_ids_held_by(pid: int) -> set[int]:
    """Kernel ids of the BPF programs process ``pid`` holds fds of (its fdinfo)."""
    ids = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return ids
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
        except OSError:
            continue
    return ids


def _kernel_prog_ids(name: str) -> set[int]:
    import json

    bpftool = require_tool("bpftool")
    out = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True,
                         timeout=60).stdout or "[]"
    return {p["id"] for p in json.loads(out) if p.get("name") == name}


def _wait_for(predicate, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail("timed out waiting")


def test_ctrl_c_after_a_few_seconds_is_full_parity_and_fires_for_us(tmp_path, minimal_binary,
                                                                   minimal_object):
    """The acceptance command: no --set, no --duration, Ctrl-C (to the whole process
    group, as a terminal sends it) a few seconds into our run."""
    trace = tmp_path / "ours.mp"
    proc = subprocess.Popen([BPFREPLAY, "run", str(minimal_object), "--compare",
                             "--save-trace", str(trace)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: trace.exists() and b"perf_event_open" in trace.read_bytes(), 120)
        time.sleep(2.5)
        readers = _trace_pipe_readers({proc.pid, *_children(proc.pid)})
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "FULL PARITY" in out, out[-3000:]
    assert "Traceback" not in err
    assert "bpfreplay: recording the reference for 3 s" in err
    assert re.search(r"bpfreplay: reference \S*minimal exited with status 0", err), err
    taken = re.search(r"bpfreplay: from the reference: \.bss my_pid = (\d+) -> our pid "
                      r"(\d+)", err)
    assert taken and int(taken.group(2)) == proc.pid, err
    assert int(taken.group(1)) != proc.pid
    # What our loader gave the kernel, which no other reader can take away: our pid.
    assert _bss_values(trace) == [proc.pid.to_bytes(4, "little")]
    # And the program fired for us: the printer's lines (unless another process reads
    # the trace pipe too and took them).
    fired = f"BPF triggered from PID {proc.pid}." in out
    busy = "bpfreplay: no trace pipe" in err and any(map(os.path.exists, TRACE_PIPES))
    if not fired and (readers or busy):  # the pipe has one reader at a time
        pytest.skip(f"another trace_pipe reader ({readers or 'at start'}) had the lines")
    assert fired, out[-2000:] + err[-2000:]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def test_reference_exiting_non_zero_is_reported_not_refused(tmp_path, minimal_binary,
                                                            minimal_object):
    """A script as the reference (its child is recorded) that exits 7 after minimal
    ends: the status is shown and the comparison made."""
    script = tmp_path / "reference.sh"
    script.write_text(f"#!/bin/sh\n{minimal_binary} 0.3\nexit 7\n")
    script.chmod(0o755)
    result = subprocess.run([BPFREPLAY, "run", str(minimal_object), "--compare", str(script),
                             "--duration", "1"], capture_output=True, text=True, timeout=120)
    assert f"bpfreplay: reference {script} exited with status 7" in result.stderr, \
        result.stderr
    assert "FULL PARITY" in result.stdout, result.stdout[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]


def test_failed_load_at_parity_with_libbpf_exits_3(rejected_pair):
    """The verifier rejects the program for libbpf (the skeleton exits 1) and for us:
    our error is printed, the traces compared up to the failing call, exit 3."""
    obj, skel = rejected_pair
    result = subprocess.run([BPFREPLAY, "run", str(obj), "--compare", str(skel),
                             "--duration", "0.5"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"bpfreplay: reference {skel} exited with status 1" in result.stderr
    assert "bpfreplay: error: prog 'count_writes'" in result.stderr
    assert "invalid mem access" in result.stderr
    assert "parity of a failed load" in result.stdout.lower(), result.stdout
    assert "FULL PARITY" not in result.stdout

    # Without --compare the failure stays an error.
    alone = subprocess.run([BPFREPLAY, "run", str(obj), "--duration", "0.5"],
                           capture_output=True, text=True, timeout=120)
    assert alone.returncode == 1 and "Traceback" not in alone.stderr
    assert "invalid mem access" in alone.stderr


def test_attach_failing_before_any_kernel_call_is_parity_of_a_failed_load(run_builds):
    """Without kprobes, libbpf's attach fails reading sysfs, before any call we record
    (the skeleton exits 1), and so does ours: every call matched, exit 3."""
    if Path("/sys/bus/event_source/devices/kprobe").exists():
        pytest.skip("this kernel has kprobes: the attach works")
    result = subprocess.run([BPFREPLAY, "run", str(run_builds / "kprobe.bpf.o"), "--compare",
                             str(run_builds / "kprobe_skel"), "--duration", "0.5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "kprobes are not available on this kernel" in result.stderr
    assert "exited with status 1" in result.stderr
    assert "PARITY OF A FAILED LOAD" in result.stdout


def test_ctrl_c_while_recording_the_reference_exits_130_leaving_nothing(minimal_binary,
                                                                       minimal_object):
    before = _kernel_prog_ids("handle_tp")
    proc = subprocess.Popen([BPFREPLAY, "run", str(minimal_object), "--compare",
                             "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the reference's own words pass through
            if line.startswith("minimal: attached"):
                break
        reference = _children(proc.pid)
        assert len(reference) == 1, reference
        held = _prog_ids_held_by(reference[0])
        assert held and held <= _kernel_prog_ids("handle_tp") - before
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted while recording the reference" in err
    assert "bpfreplay: map " not in err and "parity:" not in out  # we loaded nothing
    assert not os.path.exists(f"/proc/{reference[0]}")
    assert not held & _kernel_prog_ids("handle_tp")


def test_interrupted_load_exits_130_a_stream_ended_by_ctrl_c_exits_0(monkeypatch, capsys,
                                                                    minimal_object):
    """Without --compare: Ctrl-C before the programs are attached is not a completed
    run (130, everything closed); Ctrl-C while they run is the normal end (0)."""
    require_kernel()
    from bpfreplay import cli
    from bpfreplay.loader import attach

    real_attach = attach.attach_all
    calls = []

    def interrupted_attach(obj):  # noqa: ANN001, ANN202
        calls.append(obj)
        raise KeyboardInterrupt

    monkeypatch.setattr(attach, "attach_all", interrupted_attach)
    assert cli.main(["run", str(minimal_object), "--duration", "5"]) == 130
    assert calls and calls[0].closed and all(m.fd == -1 for m in calls[0].maps)
    assert "interrupted before the programs were attached" in capsys.readouterr().err

    def attach_then_interrupt(obj):  # noqa: ANN001, ANN202
        notes = real_attach(obj)
        calls.append(obj)
        return notes

    def interrupted_stream(obj, duration, *dumping):  # noqa: ANN001, ANN002, ANN202
        raise KeyboardInterrupt

    from bpfreplay import run as run_command

    monkeypatch.setattr(attach, "attach_all", attach_then_interrupt)
    monkeypatch.setattr(run_command, "_stream", interrupted_stream)
    assert cli.main(["run", str(minimal_object), "--duration", "5"]) == 0
    assert calls[-1].closed and calls[-1].links == []


def test_globals_the_reference_set_are_taken_and_only_those(run_builds):
    """globals_set.c sets one variable in each data section (.data, .bss with its pid,
    .rodata, .data.custom, .rodata.tag) through libbpf's skeleton: exactly those are
    taken, and the images are then at parity with libbpf's. With --set nothing is
    taken, and the other changed values are differences."""
    obj, program = run_builds / "globals_set.bpf.o", run_builds / "globals_set"
    result = subprocess.run([BPFREPLAY, "run", str(obj), "--compare", str(program),
                             "--duration", "1.5"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FULL PARITY" in result.stdout
    taken = [line.split(": ", 2)[2] for line in result.stderr.splitlines()
             if line.startswith("bpfreplay: from the reference: ")]
    pid = re.search(r"\.bss my_pid = \d+ -> our pid (\d+)$", taken[-1])
    assert pid, taken
    assert taken[:-1] == [".data counter = 5", ".rodata threshold = 9",
                          ".data.custom custom = 43", '.rodata.tag tag = "xyz"']

    with_set = subprocess.run([BPFREPLAY, "run", str(obj), "--compare", str(program),
                               "--duration", "1.5", "--set", "my_pid=self"],
                              capture_output=True, text=True, timeout=120)
    assert with_set.returncode == 1, with_set.stderr[-3000:]
    assert "from the reference" not in with_set.stderr
    assert "FULL PARITY" not in with_set.stdout
