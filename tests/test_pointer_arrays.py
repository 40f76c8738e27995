"""Pointer arrays followed at record time (trace format 2), shown as strace -v shows them.

tests/progs/kprobe_multi_syms.c issues BPF_LINK_CREATE of kind kprobe_multi with symbol
names (a ``char **``) and cookies, then with addresses; the kernel refuses both here
(no CONFIG_KPROBES), the entries are what count. The same program runs under
``strace -v`` and under ``bpfreplay record``: our ``kprobe_multi.syms``, ``addrs`` and
``cookies`` must read as strace's ``syms=[...]``, ``addrs=[...]``, ``cookies=[...]``.
Its uprobe_multi LINK_CREATE (which strace 6.1 does not decode) is checked against the
arrays the program prints."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bpfreplay.trace import read_trace
from tests.conftest import PROGS_DIR, ROOT, _built, require_kernel, require_tool

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")
SYMS = ["do_unlinkat", "do_sys_openat2", "ksys_write"]
MANY = [f"sym_{i:03d}" for i in range(40)]  # past the one-line view's 32


@pytest.fixture(scope="module")
def program() -> Path:
    require_kernel()
    require_tool("strace")
    return _built(PROGS_DIR / "kprobe_multi_syms", ROOT / "tests" / "progs")


def _strace_arrays(program: Path, tmp_path: Path, args: list[str]) -> list[dict[str, str]]:
    """Per LINK_CREATE strace printed: field -> the text of its value ("[...]"/NULL)."""
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-v", "-s", "4096", "-e", "trace=bpf", "-o", str(log),
                    str(program), *args], check=True, capture_output=True, timeout=60)
    out = []
    for line in log.read_text().splitlines():
        if "BPF_LINK_CREATE" not in line or "BPF_TRACE_KPROBE_MULTI" not in line:
            continue
        fields = {}
        for name in ("syms", "addrs", "cookies"):
            m = re.search(rf"\b{name}=(NULL|\[[^\]]*\])", line)
            assert m, f"strace printed no {name}: {line}"
            fields[name] = m.group(1)
        out.append(fields)
    return out


def _recorded(program: Path, tmp_path: Path, args: list[str]) -> Path:
    trace = tmp_path / "km.mp"
    result = subprocess.run([BPFREPLAY, "record", "-q", "-o", str(trace), "--",
                             str(program), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return trace


def _explained(trace: Path, *flags: str) -> str:
    result = subprocess.run([BPFREPLAY, "explain", *flags, str(trace)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _our_fields(line: str) -> dict[str, str]:
    fields = {}
    for name in ("syms", "addrs", "cookies"):
        m = re.search(rf"\bkprobe_multi\.{name}=(\[[^\]]*\])", line)
        fields[name] = m.group(1) if m else "NULL"  # the one-line view omits NULLs
    return fields


def test_syms_addrs_cookies_read_as_strace_shows_them(program, tmp_path):
    theirs = _strace_arrays(program, tmp_path, SYMS)
    assert len(theirs) == 2 and theirs[0]["syms"] != "NULL"
    trace = _recorded(program, tmp_path, SYMS)
    lines = [li for li in _explained(trace).splitlines()
             if "bpf(BPF_LINK_CREATE" in li and "KPROBE_MULTI" in li]
    assert [_our_fields(li) for li in lines] == theirs
    assert theirs[0]["syms"] == "[" + ", ".join(f'"{s}"' for s in SYMS) + "]"
    with read_trace(str(trace)) as t:
        with_syms = [c for c in t.calls() if "kprobe_multi.syms" in (c.get("in") or {})]
    assert with_syms[0]["in"]["kprobe_multi.syms.strings"] == \
        b"".join(s.encode() + b"\0" for s in SYMS)


def test_long_arrays_whole_in_verbose_cut_in_one_line(program, tmp_path):
    theirs = _strace_arrays(program, tmp_path, MANY)[0]
    strace_items = re.findall(r'"([^"]*)"', theirs["syms"])
    assert strace_items == MANY
    trace = _recorded(program, tmp_path, MANY)
    verbose = _explained(trace, "-v")
    section = verbose.split("--- kprobe_multi.syms (40 elements)\n", 1)[1].splitlines()[:40]
    assert [re.sub(r'^\s*\[\d+\] "(.*)"$', r"\1", li) for li in section] == strace_items
    line = next(li for li in _explained(trace).splitlines() if "kprobe_multi.syms=" in li)
    shown = _our_fields(line)["syms"]
    assert re.findall(r'"([^"]*)"', shown) == strace_items[:32] and "... 8 more]" in shown


def test_an_unreadable_element_shows_as_its_pointer(program, tmp_path):
    """The kernel's copy_user_syms() stops at the first string it cannot read, and so
    does the recorder: the strings before it and the bad pointer read as strace's."""
    args = ["--bad", *SYMS]
    theirs = _strace_arrays(program, tmp_path, args)[0]["syms"]
    assert theirs.startswith('["do_unlinkat", 0x1, ')
    trace = _recorded(program, tmp_path, args)
    line = next(li for li in _explained(trace).splitlines() if "kprobe_multi.syms=" in li)
    ours = _our_fields(line)["syms"]
    assert ours.startswith('["do_unlinkat", 0x1, 0x')  # the rest: pointers, not followed
    with read_trace(str(trace)) as t:
        call = next(c for c in t.calls() if "kprobe_multi.syms" in (c.get("in") or {}))
    assert call["faults"]["kprobe_multi.syms.strings"].startswith("element 1: ")


def _replayed(trace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BPFREPLAY, "replay", str(trace)], capture_output=True, text=True,
                          timeout=120)


def test_replay_passes_the_recorded_strings(program, tmp_path):
    """The replay builds a char ** of its own from the recorded strings: its own trace
    (read from its memory by the same capture code) holds the same strings, so every
    call compares the same; target_fd 0, which a kprobe_multi attach does not read, is
    not taken for the recording's stdin."""
    trace = _recorded(program, tmp_path, SYMS)
    result = _replayed(trace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"replay: 7 same, 0 different, 0 skipped", result.stdout), result.stdout


def test_replay_refuses_strings_it_does_not_have(program, tmp_path):
    trace = _recorded(program, tmp_path, ["--bad", *SYMS])
    result = _replayed(trace)
    line = next(li for li in result.stdout.splitlines() if li.lstrip().startswith("#1 "))
    assert "could not read the strings of kprobe_multi.syms (element 1: " in line


def test_uprobe_multi_arrays_read_as_the_program_passed_them(program, tmp_path):
    printed = subprocess.run([str(program), *SYMS], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    rows = re.findall(r"offset=(\S+) ref_ctr_offset=(\S+) cookie=(\S+)", printed)
    assert len(rows) == 3
    expected = {name: "[" + ", ".join(row[i] for row in rows) + "]"
                for i, name in enumerate(("offsets", "ref_ctr_offsets", "cookies"))}
    trace = _recorded(program, tmp_path, SYMS)
    line = next(li for li in _explained(trace).splitlines()
                if "bpf(BPF_LINK_CREATE" in li and "BPF_TRACE_UPROBE_MULTI" in li)
    assert 'uprobe_multi.path="/proc/self/exe"' in line
    for name, text in expected.items():
        assert f"uprobe_multi.{name}={text}" in line
