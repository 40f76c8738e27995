"""Module BTFs: libbpf 1.1.2 walks the kernel's BTF objects (load_module_btfs) only
where a lookup in vmlinux BTF finds nothing, once per load. On this machine (no
modules) the walk is checked against libbpf's own trace of the same object: where it
happens, and that it does not happen when vmlinux has everything. What the walk does
with a module BTF (keep its fd, read its BTF, search it) is checked against a kernel
that answers as one with modules does (bpfreplay.sys.override_syscall)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.trace import read_trace
from bpfreplay.uapi import cmd_name
from tests.conftest import ROOT, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
LOADER_DATA = ROOT / "tests" / "data" / "loader"
WALK = "(walk over the kernel's BTF objects)"


def _build() -> Path:
    result = subprocess.run(["make", "-s", "-C", str(LOADER_DATA), "all", "skels"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return LOADER_DATA / "build"


def _shape(path: Path) -> list[str]:
    """The trace's calls, one token each, with each walk over the BTF objects (the
    GET_NEXT_ID / GET_FD_BY_ID / GET_INFO_BY_FD / close of every object met, which
    depends on what other processes hold) folded into one token."""
    with read_trace(str(path)) as trace:
        calls = [r for r in trace.records() if r.get("type") == "call"]
    walk_fds: set[int] = set()
    out: list[str] = []
    for r in calls:
        name = cmd_name(r["cmd"]) if r["syscall"] == "bpf" else r["syscall"]
        in_walk = False
        if name in ("BPF_BTF_GET_NEXT_ID", "BPF_BTF_GET_FD_BY_ID"):
            in_walk = True
            if name == "BPF_BTF_GET_FD_BY_ID" and isinstance(r.get("ret"), int) \
                    and r["ret"] >= 0:
                walk_fds.add(r["ret"])
        elif name == "BPF_OBJ_GET_INFO_BY_FD":
            in_walk = struct.unpack_from("<I", r["attr"], 0)[0] in walk_fds
        elif name == "close":
            fd = r["args"][0] & 0xFFFFFFFF
            in_walk = fd in walk_fds
            walk_fds.discard(fd)
        if in_walk:
            if not out or out[-1] != WALK:
                out.append(WALK)
            continue
        if name == "BPF_PROG_LOAD" and r.get("attr"):
            name += ":" + r["attr"][48:64].split(b"\0")[0].decode()  # prog_name
        elif name == "BPF_BTF_LOAD" and r.get("attr"):
            name += f":{struct.unpack_from('<I', r['attr'], 16)[0]}"  # btf_size
        out.append(name)
    return out


def _record_and_run(build: Path, name: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    reference, ours = tmp_path / "c.mp", tmp_path / "py.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(reference), "--",
                    str(build / f"{name}_skel"), "0.05"],
                   check=True, capture_output=True, timeout=120)
    result = subprocess.run([*BPFREPLAY, "run", str(build / f"{name}.bpf.o"), "--duration",
                             "0.05", "--save-trace", str(ours)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return _shape(reference), _shape(ours)


@pytest.mark.parametrize(("name", "walks", "before"), [
    ("core_present", 0, None),  # every CO-RE type is in vmlinux: no walk at all
    ("core_walk", 1, "BPF_PROG_LOAD:found_everywhe"),  # CO-RE: after the maps
    ("core_walk_ksym", 1, "object BTF"),  # a missing __ksym: during extern resolution
])
def test_the_walk_happens_where_libbpf_makes_it(name, walks, before, tmp_path):
    """libbpf's own trace of each object, and ours, with the walk folded: the same
    sequence, the walk in the same place (and only where a lookup missed)."""
    require_kernel()
    theirs, ours = _record_and_run(_build(), name, tmp_path)
    assert theirs.count(WALK) == walks, theirs
    assert ours == theirs
    if before == "object BTF":  # the largest BTF_LOAD: the object's, not a probe's
        loads = [c for c in theirs if c.startswith("BPF_BTF_LOAD:")]
        before = max(loads, key=lambda c: int(c.split(":")[1]))
    if before is not None:
        # the walk comes before the first such call of the object's own load
        walk_at = theirs.index(WALK)
        assert any(c.startswith(before) for c in theirs[walk_at + 1:]), theirs
        assert not any(c.startswith(before) for c in theirs[:walk_at]), theirs
