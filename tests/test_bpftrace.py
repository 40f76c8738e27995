"""A loader nobody here wrote: bpftrace (Debian's 0.17) running a one-liner on a
tracepoint, recorded with -f and explained with the tracefs look-ups disabled. Checked
against the kernel's tracefs and against strace -v of the same one-liner: the
tracepoint is named as the recording machine named it, kprobe_multi.syms (bpftrace's
own kprobe_multi probe) shows the strings strace shows, and every failed call's errno
is named as strace names it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
EVENT = "syscalls:sys_enter_getppid"


def _one_liner() -> str:
    # only our own getppid() calls count (other processes may make them too)
    return f"tracepoint:{EVENT} /pid == {os.getpid()}/ {{ @calls = count(); exit(); }}"


def _run_while_firing(argv: list[str], tmp_path: Path) -> None:
    """Run ``argv`` (bpftrace under a tracer) and call getppid() until it has ended."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{argv[0]} did not end: bpftrace never saw our getppid()")
        os.getppid()
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read().decode(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[list[dict], Path]:
    require_kernel()
    bpftrace = require_tool("bpftrace")
    tmp = tmp_path_factory.mktemp("bpftrace")
    trace = tmp / "bpftrace.mp"
    _run_while_firing([*BPFREPLAY, "record", "-q", "-f", "-o", str(trace), "--", bpftrace,
                       "-e", _one_liner()], tmp)
    env = dict(os.environ, BPFREPLAY_TRACEFS="")  # names only from the recording
    out = subprocess.run([*BPFREPLAY, "explain", "--json", str(trace)], check=True,
                         capture_output=True, text=True, env=env, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")], tmp


@pytest.fixture(scope="module")
def straced(recorded) -> list[str]:
    require_tool("strace")
    _, tmp = recorded
    log = tmp / "strace.log"
    _run_while_firing(["strace", "-f", "-qq", "-v", "-s", "256", "-e",
                       "trace=bpf,perf_event_open", "-e", "signal=none", "-o", str(log),
                       require_tool("bpftrace"), "-e", _one_liner()], tmp)
    return [re.sub(r"^\d+\s+", "", line) for line in log.read_text().splitlines()]


def _tracefs_id(event: str) -> int:
    for root in ("/sys/kernel/debug/tracing", "/sys/kernel/tracing"):
        path = Path(root, "events", *event.split(":"), "id")
        if path.exists():
            return int(path.read_text())
    pytest.fail(f"no tracefs id for {event}")


def test_the_tracepoint_is_named_by_the_recording(recorded):
    calls, _ = recorded
    opens = [c for c in calls if c["syscall"] == "perf_event_open"
             and c["fields"].get("type") == "PERF_TYPE_TRACEPOINT"]
    assert opens, "bpftrace attached no tracepoint"
    for c in opens:
        assert c["tracepoint"] == EVENT
        assert c["fields"]["config"] == f"{_tracefs_id(EVENT)} /* {EVENT} */"


def test_kprobe_multi_syms_as_strace_shows_them(recorded, straced):
    calls, _ = recorded
    ours = [c["fields"]["kprobe_multi.syms"] for c in calls
            if c.get("cmd") == "BPF_LINK_CREATE" and "kprobe_multi.syms" in c["fields"]]
    theirs = re.findall(r"kprobe_multi=\{[^}]*syms=(\[[^\]]*\])", "\n".join(straced))
    assert ours and ours == theirs


def test_errnos_named_as_strace_names_them(recorded, straced):
    calls, _ = recorded
    ours = {(c.get("cmd") or c["syscall"], c["errno"]) for c in calls if c.get("errno")}
    theirs = set()
    for line in straced:
        m = re.match(r"^(\w+)\((BPF_\w+)?.*\) = -1 (E[A-Z0-9]+) ", line)
        if m:
            theirs.add((m[2] or m[1], m[3]))
    assert ours and ours == theirs
    assert not any(re.fullmatch(r"\d+", errno) for _, errno in ours)
