"""bpfreplay.sys: real syscalls, the fake-kernel override, and the loader's own trace,
which must say what the ptrace recorder says about the same calls."""

from __future__ import annotations

import errno
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay import sys as bsys
from bpfreplay.recording.self_trace import SelfTracer
from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_name, cmd_value
from tests.conftest import require_kernel

MAP_CREATE = cmd_value("BPF_MAP_CREATE")
MAP_UPDATE = cmd_value("BPF_MAP_UPDATE_ELEM")
MAP_LOOKUP = cmd_value("BPF_MAP_LOOKUP_ELEM")


def _attr(cmd: int, size: int, **values: int | bytes) -> bytearray:
    layout = attr_layout(cmd)
    attr = bytearray(size)
    for name, value in values.items():
        field = layout.field(name)
        raw = value if isinstance(value, bytes) else value.to_bytes(field.size, "little")
        attr[field.offset:field.offset + len(raw)] = raw
    return attr


def _heavy_like_calls(count: int) -> None:
    """The calls tests/progs/bpf_heavy.c makes, through bpfreplay.sys."""
    keep = bsys.Buffers()
    fd = bsys.bpf(MAP_CREATE, _attr(MAP_CREATE, 72, map_type=2, key_size=4, value_size=8,
                                    max_entries=256, map_name=b"bpf_heavy"))
    try:
        for i in range(count):
            key = keep.bytes_at(struct.pack("<I", i % 256))
            value = keep.bytes_at(struct.pack("<Q", i))
            bsys.bpf(MAP_UPDATE, _attr(MAP_UPDATE, 32, map_fd=fd, key=key, value=value))
    finally:
        bsys.close(fd)


def test_errors_carry_the_kernels_errno():
    require_kernel()
    with pytest.raises(OSError) as caught:
        bsys.bpf(MAP_UPDATE, _attr(MAP_UPDATE, 32, map_fd=0xFFFF))
    assert caught.value.errno == errno.EBADF


def test_override_replaces_the_kernel():
    seen = []

    def fake(number, args):
        seen.append((number, args[0]))
        return (-1, errno.EPERM) if args[0] == MAP_CREATE else (7, 0)

    with bsys.override_syscall(fake):
        with pytest.raises(PermissionError):
            bsys.bpf(MAP_CREATE, bytearray(72))
        assert bsys.bpf(MAP_UPDATE, bytearray(32)) == 7
    assert seen == [(321, MAP_CREATE), (321, MAP_UPDATE)]


def test_self_trace_matches_ptrace_recording(tmp_path, test_progs):
    """The same calls made by a C program recorded with ptrace and by us through
    bpfreplay.sys give the same records, but for pointers, ids and times."""
    require_kernel()
    ptrace_trace = tmp_path / "c.mp"
    subprocess.run([sys.executable, "-m", "bpfreplay.cli", "record", "-q", "-o",
                    str(ptrace_trace), "--", str(test_progs / "bpf_heavy"), "3"], check=True)
    own_trace = tmp_path / "py.mp"
    with SelfTracer(str(own_trace)) as tracer:
        with bsys.traced_by(tracer):
            _heavy_like_calls(3)

    def comparable(path: Path) -> list[tuple]:
        """Each call with its fd numbers replaced by the call that made the fd, and the
        pointers of MAP_UPDATE_ELEM (key, value) left out: their bytes are in ``in``."""
        made_by: dict[int, int] = {}
        out = []
        with read_trace(str(path)) as trace:
            for c in trace.calls():
                obj = {k: v for k, v in c.get("object", {}).items() if not k.endswith("_id")}
                attr, ret = c.get("attr"), c["ret"]
                if c["syscall"] == "close":
                    attr = made_by[c["args"][0]]
                elif cmd_name(c["cmd"]) == "BPF_MAP_UPDATE_ELEM":
                    attr = made_by[int.from_bytes(attr[:4], "little")]
                else:
                    made_by[ret] = len(out)
                    ret = "fd"
                out.append((c["syscall"], c.get("cmd"), c.get("size"), attr, c.get("in"),
                            ret, c["errno"], obj))
        return out

    assert comparable(own_trace) == comparable(ptrace_trace)
    with read_trace(str(own_trace)) as trace:
        assert trace.header["recorder"] == "loader"
        records = list(trace.records())
    assert records[-1]["type"] == "exit"
