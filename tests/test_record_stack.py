"""record --stack (issue 9 item 6): each call's user-space call chain, checked against
the real files (readelf -s, nm -D, addr2line -i -f, readelf -l) and the tracee's
/proc/PID/maps read while it ran, never against our own output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import msgpack
import pytest

from bpfreplay.trace.reader import read_trace
from tests.conftest import require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
PERF_EVENT_IOC_ENABLE = 0x2400
BPF_PROG_LOAD, BPF_LINK_CREATE = 5, 28
EBADF = 9


class Recording:
    def __init__(self, path: Path, maps: list[tuple[int, int, int, str]]):
        self.path = path
        self.maps = maps  # (start, end, file offset, path) of the tracee, read while it ran
        with read_trace(str(path)) as trace:
            self.calls = list(trace.calls())


def _process_pid(path: Path) -> int | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    try:
        for obj in unpacker:
            if isinstance(obj, dict) and obj.get("type") == "process":
                return obj["pid"]
    except (ValueError, msgpack.ExtraData):
        pass
    return None


@pytest.fixture(scope="module")
def recording(tmp_path_factory, minimal_binary) -> Recording:
    for tool in ("readelf", "nm", "addr2line"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("stack") / "minimal.mp"
    proc = subprocess.Popen([*BPFREPLAY, "record", "-q", "--stack", "-o", str(out), "--",
                             str(minimal_binary), "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    maps_text = ""
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline and not maps_text:
        pid = _process_pid(out)
        if pid is not None:  # written at its first call: its libraries are mapped
            try:
                maps_text = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert maps_text, "the tracee's maps could not be read while it ran"
    maps = []
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            low, high = (int(x, 16) for x in parts[0].split("-"))
            maps.append((low, high, int(parts[2], 16), parts[5]))
    return Recording(out, maps)


@cache
def _load_segments(path: str) -> list[tuple[int, int, int]]:
    """(file offset, file size, virtual address) of each LOAD, from readelf -lW."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True,
                         check=True).stdout
    segments = []
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["LOAD"]:
            segments.append((int(words[1], 16), int(words[4], 16), int(words[2], 16)))
    return segments


@cache
def _functions(path: str) -> dict[str, list[tuple[int, int]]]:
    """name -> (value, size) of each FUNC/IFUNC symbol readelf -sW lists (both tables)."""
    out = subprocess.run(["readelf", "-sW", path], capture_output=True, text=True,
                         check=True).stdout
    table: dict[str, list[tuple[int, int]]] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 8 and words[3] in ("FUNC", "IFUNC") and words[6] != "UND":
            size = int(words[2], 16) if words[2].startswith("0x") else int(words[2])
            table.setdefault(words[7].split("@")[0], []).append((int(words[1], 16), size))
    return table


@cache
def _dynamic_functions(path: str) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[2].split("@")[0] for line in out.splitlines()
            if len(line.split()) == 3 and line.split()[1] in "TtWwi"}


def _names(call: dict) -> list[str]:
    """Every function of the chain: the inlined ones and the symbols."""
    names = []
    for frame in call["stack"]:
        names += frame.get("inlined", [])
        if "symbol" in frame:
            names.append(frame["symbol"])
    return names


def _is_handle_tp_load(call: dict) -> bool:
    return call.get("cmd") == BPF_PROG_LOAD and b"handle_tp\0" in call.get("attr", b"")


def _ioc_enable(call: dict) -> bool:
    return call["syscall"] == "ioctl" and call["args"][1] & 0xFFFFFFFF == PERF_EVENT_IOC_ENABLE


def test_every_call_has_a_chain_out_of_libc_into_main(recording):
    assert recording.calls
    for call in recording.calls:
        names = _names(call)
        assert "main" in names, (call["index"], names)
        innermost = call["stack"][0]
        assert os.path.basename(innermost["module"]).startswith("libc.so"), innermost


def test_handle_tp_load_chain_and_inlined_skeleton_load(recording, minimal_binary):
    (load,) = [c for c in recording.calls if _is_handle_tp_load(c)]
    names = _names(load)
    assert "bpf_object__load_skeleton" in names and "main" in names, names
    (main,) = [f for f in load["stack"] if f.get("symbol") == "main"]
    assert main["module"] == os.path.realpath(minimal_binary)
    # What addr2line says was inlined at the call instruction before the return address.
    out = subprocess.run(["addr2line", "-i", "-f", "-e", str(minimal_binary),
                          f"{main['offset'] - 1:#x}"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    functions = out[0::2]
    assert functions[-1] == "main"
    assert "minimal_bpf__load" in functions
    assert main.get("inlined", []) + ["main"] == functions


def test_load_phase_chains_have_load_skeleton(recording):
    """Every call before the first perf_event_open (feature probes included) is made
    inside bpf_object__load_skeleton."""
    first_attach = next(c["index"] for c in recording.calls
                        if c["syscall"] == "perf_event_open")
    loading = [c for c in recording.calls if c["index"] < first_attach]
    assert len(loading) > 30
    for call in loading:
        assert "bpf_object__load_skeleton" in _names(call), (call["index"], _names(call))


def test_perf_link_probe_is_asked_while_attaching(recording):
    """libbpf 1.1.2 probes perf_link (a LINK_CREATE with target_fd -1, answered EBADF)
    in bpf_program__attach_perf_event_opts, under bpf_object__attach_skeleton."""
    start = next(c["index"] for c in recording.calls if c["syscall"] == "perf_event_open")
    end = next(c["index"] for c in recording.calls if _ioc_enable(c))
    attaching = [c for c in recording.calls if start <= c["index"] <= end]
    probe = [c for c in attaching if c.get("cmd") == BPF_LINK_CREATE and c["errno"] == EBADF]
    assert len(probe) == 1
    for call in attaching:
        assert "bpf_object__attach_skeleton" in _names(call), (call["index"], _names(call))


def test_frames_agree_with_maps_and_symbol_tables(recording):
    checked = 0
    for call in recording.calls:
        for number, frame in enumerate(call["stack"]):
            if "module" not in frame:
                continue
            lookup = frame["pc"] - (1 if number else 0)
            (start, _, file_offset, path), = [m for m in recording.maps
                                              if m[0] <= lookup < m[1]]
            assert os.path.realpath(path) == os.path.realpath(frame["module"])
            at = lookup - start + file_offset
            (vaddr,), = [[at - off + va] for off, size, va in _load_segments(path)
                         if off <= at < off + size]
            assert frame["offset"] - (1 if number else 0) == vaddr
            if "symbol" in frame:
                ranges = _functions(path)[frame["symbol"]]
                assert any(v <= vaddr < v + s for v, s in ranges), frame
                assert frame["symbol_offset"] == frame["offset"] - \
                    next(v for v, s in ranges if v <= vaddr < v + s)
                assert frame.get("exported", False) == \
                    (frame["symbol"] in _dynamic_functions(path)), frame
            checked += 1
    assert checked > 200


def test_stripped_libbpf_frames_have_no_symbol_where_readelf_has_none(recording):
    """Debian's libbpf.so.1 has only .dynsym: a static function's frame is module+offset,
    and no FUNC symbol readelf lists covers its address."""
    unnamed = [f for c in recording.calls for f in c["stack"]
               if os.path.basename(f.get("module", "")).startswith("libbpf.so")
               and "symbol" not in f]
    assert unnamed
    for frame in unnamed[:50]:
        table = _functions(frame["module"])
        lookup = frame["offset"] - 1
        assert not any(v <= lookup < v + s for ranges in table.values() for v, s in ranges)


def test_explain_shows_the_chain_and_the_api_function(recording):
    one_line = subprocess.run([*BPFREPLAY, "explain", str(recording.path)], capture_output=True,
                              text=True, check=True).stdout
    (line,) = [text for text in one_line.splitlines() if 'prog_name="handle_tp"' in text]
    assert line.endswith("<- bpf_object__load")
    verbose = subprocess.run([*BPFREPLAY, "explain", "-v", str(recording.path)],
                             capture_output=True, text=True, check=True).stdout
    assert "--- call chain (record --stack)" in verbose
    assert "minimal_bpf__load (inlined)" in verbose


def test_off_by_default(tmp_path, minimal_binary):
    out = tmp_path / "plain.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", str(minimal_binary), "0"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with read_trace(str(out)) as trace:
        calls = list(trace.calls())
    assert calls and not any("stack" in c for c in calls)


FRAME_POINTER_PROGRAM = r"""
#include <unistd.h>
#include <sys/syscall.h>
__attribute__((noinline)) long inner(void) { return syscall(SYS_bpf, 0, (void *)0, 0); }
__attribute__((noinline)) long outer(void) { return inner() + 1; }
int main(void) { return outer() == 0; }
"""


def test_code_without_unwind_tables_is_walked_by_frame_pointer(tmp_path):
    """A program built without .eh_frame entries of its own (only the C runtime's) but
    with frame pointers: its frames come from rbp, named as addr2line -f names them."""
    cc = require_tool("cc")
    for tool in ("readelf", "addr2line"):
        require_tool(tool)
    source, program, out = tmp_path / "fp.c", tmp_path / "fp", tmp_path / "fp.mp"
    source.write_text(FRAME_POINTER_PROGRAM)
    subprocess.run([cc, "-O0", "-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables",
                    "-fno-unwind-tables", "-o", str(program), str(source)], check=True)
    fdes = subprocess.run(["readelf", "--debug-dump=frames", str(program)], capture_output=True,
                          text=True, check=True).stdout
    ranges = [tuple(int(x, 16) for x in line.split("pc=")[1].split(".."))
              for line in fdes.splitlines() if " FDE " in line]
    subprocess.run([*BPFREPLAY, "record", "-q", "--stack", "-o", str(out), "--", str(program)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with read_trace(str(out)) as trace:
        (call,) = list(trace.calls())
    own = [f for f in call["stack"] if f.get("module") == str(program.resolve())]
    names = subprocess.run(["addr2line", "-f", "-e", str(program),
                            *[f"{f['offset'] - 1:#x}" for f in own]], capture_output=True,
                           text=True, check=True).stdout.splitlines()[0::2]
    assert names[:3] == ["inner", "outer", "main"]
    assert [f["symbol"] for f in own[:3]] == names[:3]
    for frame in own[:3]:
        assert not any(low <= frame["offset"] - 1 < high for low, high in ranges)
    assert [f.get("frame_pointer", False) for f in own[:3]] == [False, True, True]
    assert call["stack"][-1].get("symbol") == "_start"
