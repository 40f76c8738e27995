"""bpfreplay record against the real kernel, checked against strace and the ELF object."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_name, cmd_value
from bpfreplay.uapi.pointers import read_field
from tests.conftest import require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TRACED = ("bpf", "perf_event_open", "ioctl")


def run_record(tmp_path: Path, *program: str, extra: tuple[str, ...] = ()) -> Path:
    out = tmp_path / "trace.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-o", str(out), *extra, "--", *program],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return out


def trace_calls(path: Path) -> list[dict]:
    with read_trace(str(path)) as trace:
        calls = list(trace.calls())
        assert not trace.truncated
    return calls


_STRACE_LINE = re.compile(
    r"^(?:\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+)(?:\s+(E[A-Z0-9]+))?"
)


def strace_calls(tmp_path: Path, *program: str) -> list[tuple]:
    """(syscall, cmd, size, ret, errno) of the bpf/perf_event_open/perf ioctl calls
    strace -f -v sees for the same program."""
    require_tool("strace")
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-v", "-qq", "-e", "trace=bpf,perf_event_open,ioctl",
                    "-e", "signal=none", "-o", str(log), *program],
                   check=True, capture_output=True, timeout=300)
    calls = []
    for line in log.read_text().splitlines():
        m = _STRACE_LINE.match(line)
        if not m:
            continue
        name, args, ret, err = m.groups()
        if name == "ioctl" and "PERF_EVENT_IOC" not in args:
            continue
        ret_value = int(ret, 0)
        if name == "bpf":
            cmd = args.split(",", 1)[0].strip()
            size = int(args.rsplit(",", 1)[1])
            calls.append(("bpf", cmd, size, ret_value, err))
        else:
            calls.append((name, None, None, ret_value, err))
    return calls


def ours(calls: list[dict]) -> list[tuple]:
    import errno

    out = []
    for c in calls:
        if c["syscall"] not in TRACED:
            continue
        err = errno.errorcode.get(c["errno"]) if c["errno"] else None
        if c["syscall"] == "bpf":
            out.append(("bpf", cmd_name(c["cmd"]), c["size"], c["ret"], err))
        else:
            out.append((c["syscall"], None, None, c["ret"], err))
    return out


def test_minimal_matches_strace(tmp_path, minimal_binary):
    path = run_record(tmp_path, str(minimal_binary), "1")
    recorded = ours(trace_calls(path))
    expected = strace_calls(tmp_path, str(minimal_binary), "1")
    assert recorded == expected
    assert sum(1 for c in recorded if c[0] == "bpf") >= 20


def test_minimal_header_and_process(tmp_path, minimal_binary):
    path = run_record(tmp_path, str(minimal_binary), "0.5")
    with read_trace(str(path)) as trace:
        records = list(trace.records())
        header = trace.header
    assert header["kernel"] == os.uname().release
    assert header["argv"] == [str(minimal_binary), "0.5"]
    processes = [r for r in records if r["type"] == "process"]
    assert processes and processes[0]["libbpf"] is not None
    assert "libbpf.so" in processes[0]["libbpf"]["path"]
    exits = [r for r in records if r["type"] == "exit"]
    assert exits and exits[-1]["code"] == 0


def _section(obj: Path, name: str) -> bytes:
    with open(obj, "rb") as f:
        return ELFFile(f).get_section_by_name(name).data()


def _field(cmd: str, attr: bytes, name: str) -> int:
    layout = attr_layout(cmd_value(cmd))
    return read_field(attr, next(f for f in layout.fields if f.name == name))


def test_minimal_payloads_match_object(tmp_path, minimal_binary, minimal_object):
    calls = trace_calls(run_record(tmp_path, str(minimal_binary), "0.5"))
    bpf = [c for c in calls if c["syscall"] == "bpf"]
    loads = [c for c in bpf if cmd_name(c["cmd"]) == "BPF_PROG_LOAD"
             and c["attr"][48:64].rstrip(b"\0") == b"handle_tp"]
    assert len(loads) == 1, "one PROG_LOAD of handle_tp"
    insns = loads[0]["in"]["insns"]
    section = _section(minimal_object, "tp/syscalls/sys_enter_write")
    assert _field("BPF_PROG_LOAD", loads[0]["attr"], "insn_cnt") == 13
    assert len(insns) == len(section) == 13 * 8
    i = 0
    while i < len(section) // 8:
        ours_insn, theirs = insns[i * 8:i * 8 + 8], section[i * 8:i * 8 + 8]
        if theirs[0] == 0x18:  # ld_imm64: only the map reference (src_reg, imms) may change
            assert ours_insn[0] == theirs[0] and ours_insn[1] & 0x0F == theirs[1] & 0x0F
            assert insns[i * 8 + 8:i * 8 + 16][:4] == section[i * 8 + 8:i * 8 + 16][:4]
            i += 2
            continue
        assert ours_insn == theirs, f"instruction {i} differs"
        i += 1
    assert loads[0]["in"]["license"] == b"Dual BSD/GPL"

    btf = _section(minimal_object, ".BTF")
    btf_loads = [c for c in bpf if cmd_name(c["cmd"]) == "BPF_BTF_LOAD" and c["ret"] >= 0
                 and len(c["in"]["btf"]) == len(btf)]
    assert btf_loads, "the object's BTF was loaded whole"
    blob = btf_loads[-1]["in"]["btf"]
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", btf, 4)
    start = hdr_len + str_off
    assert blob[start:start + str_len] == btf[start:start + str_len]
    assert _field("BPF_BTF_LOAD", btf_loads[-1]["attr"], "btf_size") == len(btf)

    rodata = _section(minimal_object, ".rodata")
    updates = [c for c in bpf if cmd_name(c["cmd"]) == "BPF_MAP_UPDATE_ELEM"]
    assert any(c["in"].get("value") == rodata for c in updates)


def test_many_map_updates_all_recorded(tmp_path, test_progs):
    require_kernel()
    calls = trace_calls(run_record(tmp_path, str(test_progs / "bpf_heavy"), "100000"))
    updates = [c for c in calls if c["syscall"] == "bpf"
               and cmd_name(c["cmd"]) == "BPF_MAP_UPDATE_ELEM"]
    assert len(updates) == 100000
    assert all(c["ret"] == 0 for c in updates)
    assert all(len(c["in"]["key"]) == 4 for c in updates[:100])


def test_write_heavy_program_records_its_bpf_call(tmp_path, test_progs):
    """The seccomp filter keeps the million writes away from the recorder: the program
    stops only a handful of times (loader mmaps, the bpf() call, its close)."""
    require_kernel()
    out = tmp_path / "writes.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-o", str(out), "--",
                             str(test_progs / "write_heavy"), "1000000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    calls = trace_calls(out)
    assert [cmd_name(c["cmd"]) for c in calls if c["syscall"] == "bpf"] == ["BPF_MAP_CREATE"]
    stops = int(re.search(r"\((\d+) ptrace stops\)", result.stderr).group(1))
    assert stops < 100


def test_follow_forks_records_children(tmp_path, minimal_binary):
    script = f"{minimal_binary} 0.3; true"
    plain = trace_calls(run_record(tmp_path, "/bin/sh", "-c", script))
    assert plain == []  # the shell itself makes no bpf() call; its child is not recorded
    followed = trace_calls(run_record(tmp_path, "/bin/sh", "-c", script, extra=("-f",)))
    assert sum(1 for c in followed if c["syscall"] == "bpf") >= 20
    shell_pids = {c["pid"] for c in followed}
    assert len(shell_pids) == 1


def _wait_for_calls(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            try:
                with read_trace(str(path)) as trace:
                    if sum(1 for _ in trace.calls()) >= count:
                        return
            except Exception:  # noqa: BLE001 - header not written yet
                pass
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {count} calls")


def _pids_of_trace(path: Path) -> set[int]:
    with read_trace(str(path)) as trace:
        return {r["pid"] for r in trace.records() if r["type"] == "process"}


def _alive_or_stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_of_recorder_leaves_readable_file_and_no_tracee(tmp_path, minimal_binary):
    out = tmp_path / "killed.mp"
    proc = subprocess.Popen([*BPFREPLAY, "record", "-q", "-o", str(out), "--",
                             str(minimal_binary)], stderr=subprocess.DEVNULL)
    try:
        _wait_for_calls(out, 25)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with read_trace(str(out)) as trace:
        calls = list(trace.calls())
    assert len(calls) >= 25
    time.sleep(0.5)
    for pid in _pids_of_trace(out):
        assert not _alive_or_stopped(pid), f"tracee {pid} survived the recorder"


def test_sigint_ends_tracee_cleanly(tmp_path, minimal_binary):
    out = tmp_path / "interrupted.mp"
    proc = subprocess.Popen([*BPFREPLAY, "record", "-q", "-o", str(out), "--",
                             str(minimal_binary)], stderr=subprocess.PIPE, text=True)
    _wait_for_calls(out, 30)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    with read_trace(str(out)) as trace:
        records = list(trace.records())
        assert not trace.truncated
    exits = [r for r in records if r["type"] == "exit"]
    assert exits and exits[-1]["code"] == 0  # minimal tears down and exits 0 on SIGINT
    # The skeleton's teardown closed the link, program and maps it made.
    closed = [r for r in records if r["type"] == "call" and r["syscall"] == "close"]
    assert {c["object"]["kind"] for c in closed} >= {"prog", "map", "link"}
    for pid in _pids_of_trace(out):
        assert not _alive_or_stopped(pid)


def test_duration_stops_program(tmp_path, minimal_binary):
    out = run_record(tmp_path, str(minimal_binary), extra=("--duration", "1"))
    with read_trace(str(out)) as trace:
        exits = [r for r in trace.records() if r["type"] == "exit"]
    assert exits and exits[-1]["code"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "/tmp/x.mp", "--", "/nonexistent/program"], "program not found"),
        (["-o", "/nonexistent-dir/x.mp", "--", "/bin/true"], "for writing"),
        (["-o", "/tmp/x.mp", "--", "{plain_file}"], "not an executable"),
        (["-o", "/tmp/x.mp", "--", "{bad_binary}"], "Exec format error"),
    ],
)
def test_errors_are_clear(argv, message, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    bad = tmp_path / "bad-binary"
    bad.write_bytes(b"\x7fELF garbage")
    bad.chmod(0o755)
    argv = [a.format(plain_file=plain, bad_binary=bad) for a in argv]
    result = subprocess.run([*BPFREPLAY, "record", *argv], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_status_passes_through(tmp_path):
    require_kernel()
    out = tmp_path / "t.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", "/bin/sh", "-c",
                             "exit 7"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 7


def test_attach_to_running_process_and_detach(tmp_path, test_progs):
    require_kernel()
    program = subprocess.Popen([str(test_progs / "bpf_heavy"), "1000000000"])
    try:
        time.sleep(0.3)
        out = tmp_path / "attached.mp"
        result = subprocess.run([*BPFREPLAY, "record", "-p", str(program.pid), "--duration",
                                 "0.5", "-o", str(out)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        calls = trace_calls(out)
        assert calls, "calls made after attaching were recorded"
        assert {cmd_name(c["cmd"]) for c in calls} == {"BPF_MAP_UPDATE_ELEM"}
        map_fd = _field("BPF_MAP_UPDATE_ELEM", calls[0]["attr"], "map_fd")
        fdinfo = Path(f"/proc/{program.pid}/fdinfo/{map_fd}").read_text()
        key_size = int(re.search(r"key_size:\s+(\d+)", fdinfo).group(1))
        value_size = int(re.search(r"value_size:\s+(\d+)", fdinfo).group(1))
        assert all(len(c["in"]["key"]) == key_size for c in calls)
        assert all(len(c["in"]["value"]) == value_size for c in calls)
        time.sleep(0.2)
        state = Path(f"/proc/{program.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in ("R", "S"), f"left in state {state}"
        assert program.poll() is None, "the attached program still runs after detaching"
    finally:
        program.kill()
        program.wait()


def _compile(tmp_path: Path, source: str) -> Path:
    require_tool("cc")
    exe = tmp_path / Path(source).stem
    src = Path(__file__).parent / "data" / "record" / source
    subprocess.run(["cc", "-O1", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def test_verifier_log_and_common_attrs(tmp_path):
    """The verifier log we capture is the text the program itself got back; the
    5-argument BPF_COMMON_ATTRS form keeps its common attr."""
    require_kernel()
    exe = _compile(tmp_path, "verifier_log.c")
    out = tmp_path / "log.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", str(exe)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split("\n", 1)[1].split("--- end of log\n")[0]
    calls = [c for c in trace_calls(out) if c["syscall"] == "bpf"]
    first, second = calls
    assert first["ret"] == -1 and first["errno"] > 0
    assert first["out"]["log_buf"].decode() == printed
    assert "R2 !read_ok" in printed  # the kernel's own words, not ours
    assert second["cmd"] == cmd_value("BPF_PROG_LOAD") | (1 << 16)
    assert len(second["common"]) == second["args"][4]  # size_common, as passed
    assert int.from_bytes(second["common"][8:12], "little") == 128  # log_size
    assert second["in"]["insns"] == first["in"]["insns"]


def test_recording_without_capabilities(tmp_path, minimal_binary):
    """As root without capabilities (setpriv drops them all) the seccomp filter needs
    no_new_privs, which the recorder then sets: the program runs, recorded, and gets
    the kernel's EPERM for its bpf() calls, as it would unrecorded."""
    setpriv = require_tool("setpriv")
    out = tmp_path / "nocaps.mp"
    result = subprocess.run([setpriv, "--bounding-set=-all", "--inh-caps=-all",
                             "--ambient-caps=-all", *BPFREPLAY, "record", "-o", str(out),
                             "--", str(minimal_binary), "0"], capture_output=True, text=True,
                            timeout=120)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr  # minimal's own status: it cannot load
    calls = [c for c in trace_calls(out) if c["syscall"] == "bpf"]
    assert calls and all(c["errno"] == 1 for c in calls)  # EPERM
