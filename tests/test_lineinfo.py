"""func_info/line_info decoding, compared with `bpftool prog dump xlated ... linum` for the
same programs in the kernel, and with the source files themselves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfreplay.decode.btf import Btf, parse_btf
from bpfreplay.decode.lineinfo import (
    annotate,
    decode_func_info,
    decode_line_info,
    program_btf,
    program_info,
)
from bpfreplay.errors import DecodeError, TraceFormatError
from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_value
from tests.conftest import REFERENCE_DIR, ROOT, require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
PROG_LOAD = cmd_value("BPF_PROG_LOAD")
LINK_CREATE = cmd_value("BPF_LINK_CREATE")
_INSN_LINE = re.compile(r"\s*\d+: ")


def bpftool(*args: str) -> str:
    return subprocess.run(["bpftool", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def read_calls(path: Path) -> list[dict]:
    try:
        with read_trace(str(path)) as trace:
            return list(trace.calls())
    except TraceFormatError:  # not even the header written yet
        return []


def prog_name(call: dict) -> str:
    return call["attr"][48:64].split(b"\0")[0].decode()  # bpf_attr.prog_name


def programs_held_by(pid: int) -> dict[int, str]:
    """id -> name of the programs process ``pid`` holds an fd of, as the kernel says."""
    shown = json.loads(bpftool("prog", "show", "--json"))
    names = {p["id"]: p.get("name", "") for p in shown}
    if any("pids" in p for p in shown):
        return {p["id"]: names[p["id"]] for p in shown
                if any(holder["pid"] == pid for holder in p.get("pids", []))}
    # bpftool built without its BPF skeletons (Debian's 7.1) lists no pids: the
    # process's fdinfo says which programs it holds.
    held = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        m = re.search(r"^prog_id:\s*(\d+)", fdinfo.read_text(), re.M)
        if m:
            held.add(int(m.group(1)))
    return {prog_id: names[prog_id] for prog_id in held if prog_id in names}


def compare_with_bpftool(calls: list[dict], load: dict, prog_id: int, source: Path) -> None:
    """Our annotation of bpftool's own disassembly equals bpftool's linum dump, and every
    line_info's text is the line of ``source`` it names."""
    btf = parse_btf(program_btf(calls, load["index"]))
    funcs, lines = program_info(load, btf)
    assert funcs and lines
    plain = bpftool("prog", "dump", "xlated", "id", str(prog_id)).splitlines()
    linum = bpftool("prog", "dump", "xlated", "id", str(prog_id), "linum").splitlines()
    insns = [line for line in plain if _INSN_LINE.match(line)]
    assert annotate(insns, funcs, lines) == [line for line in linum if line]
    assert annotate(insns, funcs, lines, linum=False) == [line for line in plain if line]

    text = source.read_text().splitlines()
    for info in lines:
        assert Path(info.file).name == source.name
        if info.line == 0:  # compiler-made code with no line of its own
            assert info.source == ""
            continue
        assert info.source == text[info.line - 1]
        assert 0 <= info.column <= len(text[info.line - 1]) + 1


def test_minimal_handle_tp(tmp_path: Path, minimal_binary: Path) -> None:
    require_kernel()
    require_tool("bpftool")
    out = tmp_path / "trace.mp"
    recorder = subprocess.Popen([*BPFREPLAY, "record", "-q", "-o", str(out), "--",
                                 str(minimal_binary), "3"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid = None
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            calls = read_calls(out)
            if any(c["syscall"] == "bpf" and c["cmd"] == LINK_CREATE and c["ret"] is not None
                   and c["ret"] >= 0 for c in calls):
                break
            assert recorder.poll() is None, recorder.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        else:
            pytest.fail("minimal did not attach within 20 s")
        (load,) = [c for c in calls if c["syscall"] == "bpf" and c["cmd"] == PROG_LOAD
                   and prog_name(c) == "handle_tp"]
        pid = load["pid"]
        held = programs_held_by(pid)
        (prog_id,) = [i for i, name in held.items() if name == "handle_tp"]
        assert load["object"]["prog_id"] == prog_id  # the recording is of this program
        compare_with_bpftool(calls, load, prog_id, REFERENCE_DIR / "minimal.bpf.c")
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # minimal detaches and exits
        try:
            recorder.wait(timeout=15)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
    if pid is not None:
        gone = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)],
                              capture_output=True)
        assert gone.returncode != 0


def test_subprograms(tmp_path: Path) -> None:
    """Three functions, struct and const parameters, compiler lines with no line number."""
    require_kernel()
    require_tool("bpftool")
    clang = require_tool("clang")
    source = ROOT / "tests" / "progs" / "lineinfo.bpf.c"
    obj = tmp_path / "lineinfo.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(source), "-o", str(obj)], check=True, timeout=60)
    pin = Path(f"/sys/fs/bpf/bpfreplay_lineinfo_{os.getpid()}")
    out = tmp_path / "trace.mp"
    try:
        subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", "bpftool", "prog",
                        "load", str(obj), str(pin)], check=True, timeout=60)
        calls = read_calls(out)
        (load,) = [c for c in calls if c["syscall"] == "bpf" and c["cmd"] == PROG_LOAD
                   and prog_name(c) == "lineinfo_main"]
        prog_id = json.loads(bpftool("prog", "show", "pinned", str(pin), "--json"))["id"]
        assert load["object"]["prog_id"] == prog_id
        funcs, _ = program_info(load, parse_btf(program_btf(calls, load["index"])))
        assert [f.name for f in funcs] == ["lineinfo_main", "scale", "clamp"]
        compare_with_bpftool(calls, load, prog_id, source)
    finally:
        pin.unlink(missing_ok=True)
    assert not pin.exists()


# ------------------------------------------------------------------ corrupt input


def _minimal_program() -> tuple[bytes, dict]:
    calls = read_calls(ROOT / "traces" / "minimal.mp")
    loads = [c for c in calls if c["syscall"] == "bpf" and c["cmd"] == PROG_LOAD
             and "func_info" in c.get("in", {})]
    if not loads:
        pytest.skip("traces/minimal.mp is missing (make traces)")
    return program_btf(calls, loads[0]["index"]), loads[0]


def test_record_sizes_and_bad_ids_are_decode_errors() -> None:
    blob, load = _minimal_program()
    btf = parse_btf(blob)
    func_info, line_info = load["in"]["func_info"], load["in"]["line_info"]
    with pytest.raises(DecodeError, match="record size"):
        decode_func_info(func_info, 4, btf)
    with pytest.raises(DecodeError, match="whole number"):
        decode_line_info(line_info + b"\0", 16, btf)
    with pytest.raises(DecodeError, match="not a FUNC"):
        decode_func_info(b"\0" * 4 + (1).to_bytes(4, "little"), 8, btf)
    with pytest.raises(DecodeError, match="line_info record 0"):
        decode_line_info(b"\0" * 4 + (1 << 31).to_bytes(4, "little") + b"\0" * 8, 16, btf)
    # Longer records (a newer struct): the known fields are read, the rest skipped.
    padded = b"".join(line_info[i:i + 16] + b"\xee" * 8 for i in range(0, len(line_info), 16))
    assert decode_line_info(padded, 24, btf) == decode_line_info(line_info, 16, btf)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_corrupt_info_only_raises_decode_error(data: st.DataObject) -> None:
    blob, load = _minimal_program()
    if data.draw(st.booleans()):
        mutated = bytearray(blob)
        for _ in range(data.draw(st.integers(1, 8))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        try:
            btf: Btf = parse_btf(bytes(mutated))
        except DecodeError:
            return
    else:
        btf = parse_btf(blob)
    func_info = bytearray(load["in"]["func_info"])
    line_info = bytearray(load["in"]["line_info"])
    for buf in (func_info, line_info):
        for _ in range(data.draw(st.integers(0, 6))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    func_info += data.draw(st.binary(max_size=20))
    line_info += data.draw(st.binary(max_size=40))
    func_size = data.draw(st.sampled_from([8, 16, 0, 3, -1, 1 << 32]) | st.integers(0, 64))
    line_size = data.draw(st.sampled_from([16, 32, 0, 7, -1, 1 << 32]) | st.integers(0, 64))
    funcs, lines = [], []
    try:
        funcs = decode_func_info(bytes(func_info), func_size, btf)
    except DecodeError:
        pass
    try:
        lines = decode_line_info(bytes(line_info), line_size, btf)
    except DecodeError:
        pass
    disassembly = data.draw(st.lists(st.from_regex(r"\A\s*\d{1,3}: .{0,10}\Z") | st.text(
        max_size=10), max_size=20))
    annotate(disassembly, funcs, lines)
    annotate(disassembly, funcs, lines, linum=False)
