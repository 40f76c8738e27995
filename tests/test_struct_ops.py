"""struct_ops maps (bpfreplay/loader/struct_ops.py) against libbpf itself.

The corpus object struct_ops shows open and load (the map created with the kernel's
value type, the programs with their attach ids); a skeleton never attaches struct_ops
maps in libbpf 1.1.2, so the attach is tested here: a struct tcp_congestion_ops of our
own (members out of order, a data member, a member left NULL) is registered and
unregistered by libbpf's bpf_map__attach_struct_ops() / bpf_link__destroy() (through
ctypes on the system libbpf) and by ours, each process recorded by `bpfreplay record`.
The MAP_UPDATE_ELEM values (the kernel value with the programs' fds, fds named after
their programs) and the MAP_DELETE_ELEM must be the same; bpftool must see the struct_ops
while it is registered and nothing of it after."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.decode.attrs import decode_bpf_attr
from bpfreplay.loader.spec import load_spec
from bpfreplay.trace.reader import read_trace
from bpfreplay.uapi import cmd_value, enum_values
from tests.conftest import ROOT, kernel_required, require_kernel, require_tool
from tests.corpus.manifest import BUILD

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")
MAP = "bpfrp_sops"

SOURCE = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
char LICENSE[] SEC("license") = "GPL";
SEC("struct_ops/t_ssthresh")
__u32 BPF_PROG(t_ssthresh, struct sock *sk) { return 10; }
SEC("struct_ops/t_undo_cwnd")
__u32 BPF_PROG(t_undo_cwnd, struct sock *sk) { return 10; }
SEC("struct_ops/t_cong_avoid")
void BPF_PROG(t_cong_avoid, struct sock *sk, __u32 ack, __u32 acked) { }
SEC(".struct_ops")
struct tcp_congestion_ops bpfrp_sops = {
	.undo_cwnd = (void *)t_undo_cwnd,
	.ssthresh = (void *)t_ssthresh,
	.cong_avoid = (void *)t_cong_avoid,
	.name = "bpfrp_test_cc",
};
"""

LIBBPF_SIDE = """
import ctypes, subprocess, sys
lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
P = ctypes.c_void_p
for name, res, args in (("bpf_object__open_file", P, [ctypes.c_char_p, P]),
                        ("bpf_object__load", ctypes.c_int, [P]),
                        ("bpf_object__find_map_by_name", P, [P, ctypes.c_char_p]),
                        ("bpf_map__attach_struct_ops", P, [P]),
                        ("bpf_link__destroy", ctypes.c_int, [P]),
                        ("bpf_object__close", None, [P])):
    getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
obj = lib.bpf_object__open_file(sys.argv[1].encode(), None)
assert obj and lib.bpf_object__load(obj) == 0, "load"
link = lib.bpf_map__attach_struct_ops(lib.bpf_object__find_map_by_name(obj, sys.argv[2].encode()))
assert link, ("attach", ctypes.get_errno())
print(subprocess.run(["bpftool", "-j", "struct_ops", "show"], capture_output=True,
                     text=True).stdout, flush=True)
assert lib.bpf_link__destroy(link) == 0
lib.bpf_object__close(obj)
"""

OUR_SIDE = """
import subprocess, sys
from bpfreplay.loader import struct_ops
from bpfreplay.loader.kernel import load, open_object
from bpfreplay.loader.spec import load_spec
with load(open_object(load_spec(sys.argv[1]))) as obj:
    link = struct_ops.attach(obj, sys.argv[2])
    obj.links.append(link)
    print(subprocess.run(["bpftool", "-j", "struct_ops", "show"], capture_output=True,
                         text=True).stdout, flush=True)
"""

_PROG_LOAD = cmd_value("BPF_PROG_LOAD")
_MAP_CREATE = cmd_value("BPF_MAP_CREATE")
_UPDATE = cmd_value("BPF_MAP_UPDATE_ELEM")
_DELETE = cmd_value("BPF_MAP_DELETE_ELEM")
_STRUCT_OPS_MAP = enum_values("bpf_map_type")["BPF_MAP_TYPE_STRUCT_OPS"]


@pytest.fixture(scope="module")
def sops_object(tmp_path_factory) -> Path:
    require_kernel()
    clang = require_tool("clang")
    require_tool("bpftool")
    vmlinux_h = BUILD / "vmlinux.h"
    if not vmlinux_h.exists():
        message = "needs the corpus build (make -C tests/corpus: vmlinux.h)"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("sops")
    src = out / "sops.bpf.c"
    src.write_text(SOURCE)
    machine = subprocess.run(["cc", "-dumpmachine"], capture_output=True,
                             text=True).stdout.strip()
    obj = out / "sops.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I{BUILD}", f"-I/usr/include/{machine}", "-c", str(src), "-o",
                    str(obj)], check=True)
    return obj


def _registered(bpftool_json: str) -> list[str]:
    return [e.get("name", "") for e in json.loads(bpftool_json or "[]")]


def _struct_ops_calls(trace: Path) -> tuple[list[tuple[str, bytes, bytes]], dict[int, str]]:
    """(command, key, value) of each MAP_UPDATE/DELETE_ELEM on the struct_ops map, and
    fd -> program name of the programs loaded."""
    progs: dict[int, str] = {}
    map_fd = None
    calls = []
    with read_trace(str(trace)) as t:
        for c in t.calls():
            if c.get("syscall") != "bpf":
                continue
            cmd, ret = c["args"][0], c.get("ret", -1)
            fields = {f.name: f.raw for f in decode_bpf_attr(cmd, c["attr"]).fields}
            if cmd == _PROG_LOAD and ret >= 0:
                progs[ret] = bytes(fields.get("prog_name", b"")).rstrip(b"\0").decode()
            elif cmd == _MAP_CREATE and ret >= 0 and fields.get("map_type") == _STRUCT_OPS_MAP:
                map_fd = ret
            elif cmd in (_UPDATE, _DELETE) and fields.get("map_fd") == map_fd:
                assert ret == 0, (cmd, c.get("errno"))
                calls.append(("update" if cmd == _UPDATE else "delete",
                              c["in"]["key"], c["in"].get("value", b""),
                              fields.get("flags", 0)))
    return calls, progs


def _named(value: bytes, progs: dict[int, str]) -> list[object]:
    """The value as 8-byte words, a word holding a program's fd shown as its name."""
    words = [w for (w,) in struct.iter_unpack("<Q", value)]
    return [progs.get(w, w) if w in progs else w for w in words]


def _recorded(tmp_path: Path, name: str, script: str, obj: Path) -> tuple[Path, str]:
    path = tmp_path / f"{name}.py"
    path.write_text(script)
    trace = tmp_path / f"{name}.mp"
    result = subprocess.run([BPFREPLAY, "record", "-o", str(trace), "--", sys.executable,
                             str(path), str(obj), MAP], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return trace, result.stdout


def test_attach_registers_and_detach_unregisters_as_libbpf(sops_object, tmp_path):
    ref, ref_out = _recorded(tmp_path, "libbpf_side", LIBBPF_SIDE, sops_object)
    ours, our_out = _recorded(tmp_path, "our_side", OUR_SIDE, sops_object)
    assert MAP in _registered(ref_out) and MAP in _registered(our_out)

    ref_calls, ref_progs = _struct_ops_calls(ref)
    our_calls, our_progs = _struct_ops_calls(ours)
    assert [c[0] for c in ref_calls] == ["update", "delete"], ref_calls
    assert [(c[0], c[1], c[3]) for c in our_calls] == [(c[0], c[1], c[3]) for c in ref_calls]
    ref_value, our_value = _named(ref_calls[0][2], ref_progs), _named(our_calls[0][2],
                                                                       our_progs)
    assert sum(isinstance(w, str) for w in ref_value) == 3  # the three programs' fds
    assert our_value == ref_value
    assert our_calls[1][2] == ref_calls[1][2]

    # nothing of ours left registered or loaded
    after = subprocess.run(["bpftool", "-j", "struct_ops", "show"], capture_output=True,
                           text=True, check=True).stdout
    assert MAP not in _registered(after)
    maps = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True,
                          check=True).stdout
    assert MAP not in [m.get("name") for m in json.loads(maps or "[]")]


def test_open_matches_libbpfs_map_and_program_view(sops_object):
    """The spec's struct_ops map: the local struct's size and the member each program
    fills, in member order (bpf_object__collect_st_ops_relos())."""
    spec = load_spec(sops_object)
    (m,) = [m for m in spec.maps if m.struct_ops is not None]
    assert (m.name, m.key_size, m.max_entries) == (MAP, 4, 1)
    assert spec.btf is not None
    local = spec.btf.by_name("tcp_congestion_ops")
    assert local is not None and m.value_size == local.size
    members = [local.members[i].name for i, _ in m.struct_ops.programs]
    assert dict(zip(members, [p for _, p in m.struct_ops.programs], strict=True)) == {
        "ssthresh": "t_ssthresh", "undo_cwnd": "t_undo_cwnd", "cong_avoid": "t_cong_avoid"}


MISSING_SOURCE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
char LICENSE[] SEC("license") = "GPL";
struct bpfrp_missing_ops { int (*f)(void); char name[16]; };
SEC("struct_ops/t_f")
int t_f(void *ctx) { return 0; }
SEC(".struct_ops")
struct bpfrp_missing_ops bpfrp_missing = { .f = (void *)t_f, .name = "x" };
"""


def test_struct_the_kernel_lacks_fails_where_libbpf_fails(sops_object, tmp_path):
    """bpf_map__init_kern_struct_ops() finds no struct bpfrp_missing_ops in vmlinux:
    the load fails after the BTF load, before any map is created, on both sides."""
    clang = require_tool("clang")
    src = tmp_path / "missing.bpf.c"
    src.write_text(MISSING_SOURCE)
    machine = subprocess.run(["cc", "-dumpmachine"], capture_output=True,
                             text=True).stdout.strip()
    obj = tmp_path / "missing.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I/usr/include/{machine}", "-c", str(src), "-o", str(obj)], check=True)
    from tests.corpus.manifest import REFLOAD

    ref = tmp_path / "ref.mp"
    recorded = subprocess.run([BPFREPLAY, "record", "-o", str(ref), "--", str(REFLOAD),
                               str(obj), "0.2"], capture_output=True, text=True, timeout=120)
    assert "struct bpfrp_missing_ops is not found in kernel BTF" in recorded.stderr
    run = subprocess.run([BPFREPLAY, "run", str(obj), "--compare", str(ref), "--duration",
                          "0.2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PARITY OF A FAILED LOAD" in run.stdout
    assert "struct bpfrp_missing_ops is not found in kernel BTF" in run.stderr
