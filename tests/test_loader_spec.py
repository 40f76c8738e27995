"""The loader's spec stage (bpfreplay.loader.spec/relocate) against the real libbpf 1.1.2.

Three references, none of them our own code:
- libbpf itself, called through ctypes, opening each object (bpf_object__open_file
  makes no syscall: no root needed) — names, maps, programs, the BTF after its fixups;
- libbpf's bpf() calls: the reference skeleton recorded in the test and,
  with root, fresh recordings of tests/progs/build/libbpf_load loading each test
  object — BPF_MAP_CREATE attrs, the object's BTF_LOAD, data map contents and every
  BPF_PROG_LOAD's instructions and func/line info, given the fds the trace shows;
- llvm-objdump (relocations) and bpftool (skeleton names).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from bpfreplay.errors import LoaderError
from bpfreplay.loader.externs import kconfig_value, resolve_ksyms
from bpfreplay.loader.relocate import relocate_object
from bpfreplay.loader.spec import MapKind, ObjectSpec, load_spec, skeleton_name
from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_name
from bpfreplay.uapi.pointers import read_field
from tests.conftest import (
    PROGS_DIR,
    REFERENCE_DIR,
    ROOT,
    _built,
    kernel_required,
    require_kernel,
    require_tool,
)

LOADER_DIR = ROOT / "tests" / "data" / "loader"
BUILD = LOADER_DIR / "build"
OBJECTS = ("globals", "maps", "kconfig", "core", "ksyms", "nobtf")
VMLINUX = Path("/sys/kernel/btf/vmlinux")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def loader_objects() -> Path:
    require_tool("clang")
    require_tool("bpftool")
    if not VMLINUX.exists():
        pytest.skip("needs /sys/kernel/btf/vmlinux for vmlinux.h")
    # make every session: edited sources must not be tested through stale objects
    result = subprocess.run(["make", "-s", "-C", str(LOADER_DIR)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        message = f"building the loader test objects failed: {result.stderr[-2000:]}"
        if kernel_required():
            pytest.fail(message)
        pytest.skip(message)
    return BUILD


@pytest.fixture(scope="session")
def minimal_obj() -> Path:
    require_tool("clang")
    return _built(REFERENCE_DIR / "minimal.bpf.o", REFERENCE_DIR)


@pytest.fixture(scope="session")
def vmlinux_btf():
    from bpfreplay.decode.btf import parse_btf

    if not VMLINUX.exists():
        pytest.skip("needs /sys/kernel/btf/vmlinux")
    return parse_btf(VMLINUX.read_bytes())


def _obj(build: Path, name: str) -> Path:
    return build / f"{name}.bpf.o"


# ------------------------------------------------------------------ libbpf via ctypes


class _OpenOpts(ctypes.Structure):
    # the head of struct bpf_object_open_opts: libbpf reads `sz` bytes of it
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p)]


@cache
def _libbpf() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("bpf")
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    vp, cp, u32, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint64
    sigs = {
        "bpf_object__open_file": (vp, [cp, ctypes.POINTER(_OpenOpts)]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__name": (cp, [vp]),
        "bpf_object__kversion": (u32, [vp]),
        "bpf_object__btf": (vp, [vp]),
        "bpf_object__next_map": (vp, [vp, vp]),
        "bpf_object__next_program": (vp, [vp, vp]),
        "btf__raw_data": (vp, [vp, ctypes.POINTER(u32)]),
        "bpf_map__name": (cp, [vp]),
        "bpf_map__type": (ctypes.c_int, [vp]),
        "bpf_map__key_size": (u32, [vp]),
        "bpf_map__value_size": (u32, [vp]),
        "bpf_map__max_entries": (u32, [vp]),
        "bpf_map__map_flags": (u32, [vp]),
        "bpf_map__numa_node": (u32, [vp]),
        "bpf_map__map_extra": (u64, [vp]),
        "bpf_map__btf_key_type_id": (u32, [vp]),
        "bpf_map__btf_value_type_id": (u32, [vp]),
        "bpf_map__is_internal": (ctypes.c_bool, [vp]),
        "bpf_map__inner_map": (vp, [vp]),
        "bpf_map__initial_value": (vp, [vp, ctypes.POINTER(ctypes.c_size_t)]),
        "bpf_map__pin_path": (cp, [vp]),
        "bpf_program__name": (cp, [vp]),
        "bpf_program__section_name": (cp, [vp]),
        "bpf_program__type": (ctypes.c_int, [vp]),
        "bpf_program__expected_attach_type": (ctypes.c_int, [vp]),
        "bpf_program__autoload": (ctypes.c_bool, [vp]),
        "bpf_program__insns": (vp, [vp]),
        "bpf_program__insn_cnt": (ctypes.c_size_t, [vp]),
        "libbpf_prog_type_by_name": (ctypes.c_int, [cp, ctypes.POINTER(ctypes.c_int),
                                                    ctypes.POINTER(ctypes.c_int)]),
        "libbpf_set_print": (vp, [vp]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    lib.libbpf_set_print(None)  # libbpf's own warnings would only clutter the test output
    return lib


def require_libbpf() -> ctypes.CDLL:
    lib = _libbpf()
    if lib is None:
        if kernel_required():
            pytest.fail("needs libbpf.so (Debian's libbpf1)")
        pytest.skip("needs libbpf.so (Debian's libbpf1)")
    return lib


@dataclass
class LibbpfMap:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    numa_node: int
    map_extra: int
    btf_key_type_id: int
    btf_value_type_id: int
    internal: bool
    initial_value: bytes | None
    inner: LibbpfMap | None
    pin_path: str | None


@dataclass
class LibbpfProgram:
    name: str
    section: str
    type: int
    expected_attach_type: int
    autoload: bool
    insns: bytes


@dataclass
class LibbpfObject:
    name: str
    kversion: int
    btf: bytes | None
    maps: list[LibbpfMap]
    programs: list[LibbpfProgram]


def _libbpf_map(lib: ctypes.CDLL, m: int) -> LibbpfMap:
    size = ctypes.c_size_t(0)
    value = lib.bpf_map__initial_value(m, ctypes.byref(size))
    inner = lib.bpf_map__inner_map(m)
    return LibbpfMap(
        lib.bpf_map__name(m).decode(), lib.bpf_map__type(m), lib.bpf_map__key_size(m),
        lib.bpf_map__value_size(m), lib.bpf_map__max_entries(m), lib.bpf_map__map_flags(m),
        lib.bpf_map__numa_node(m), lib.bpf_map__map_extra(m),
        lib.bpf_map__btf_key_type_id(m), lib.bpf_map__btf_value_type_id(m),
        lib.bpf_map__is_internal(m), ctypes.string_at(value, size.value) if value else None,
        _libbpf_map(lib, inner) if inner else None,
        (lib.bpf_map__pin_path(m) or b"").decode() or None)


def libbpf_open(path: Path, name: str | None = None) -> LibbpfObject | None:
    """What the system's libbpf 1.1.2 makes of an object at bpf_object__open_file()
    (None when it refuses it)."""
    lib = require_libbpf()
    opts = _OpenOpts(ctypes.sizeof(_OpenOpts), name.encode() if name else None)
    obj = lib.bpf_object__open_file(str(path).encode(), ctypes.byref(opts))
    if not obj:
        return None
    try:
        btf = None
        handle = lib.bpf_object__btf(obj)
        if handle:
            size = ctypes.c_uint32(0)
            raw = lib.btf__raw_data(handle, ctypes.byref(size))
            btf = ctypes.string_at(raw, size.value)
        maps = []
        m = lib.bpf_object__next_map(obj, None)
        while m:
            maps.append(_libbpf_map(lib, m))
            m = lib.bpf_object__next_map(obj, m)
        programs = []
        p = lib.bpf_object__next_program(obj, None)
        while p:
            insns = ctypes.string_at(lib.bpf_program__insns(p), 8 * lib.bpf_program__insn_cnt(p))
            programs.append(LibbpfProgram(
                lib.bpf_program__name(p).decode(), lib.bpf_program__section_name(p).decode(),
                lib.bpf_program__type(p), lib.bpf_program__expected_attach_type(p),
                lib.bpf_program__autoload(p), insns))
            p = lib.bpf_object__next_program(obj, p)
        return LibbpfObject(lib.bpf_object__name(obj).decode(), lib.bpf_object__kversion(obj),
                            btf, maps, programs)
    finally:
        lib.bpf_object__close(obj)


def _func_info_words(blob: bytes) -> dict[int, tuple[int, int]]:
    """Byte offset of each FUNC's info word -> (name offset, linkage), for comparing
    BTF blobs that differ only where libbpf marks hidden functions static at load."""
    from bpfreplay.decode.btf import Kind, parse_btf

    btf = parse_btf(blob)
    hdr_len, type_off = struct.unpack_from("<II", blob, 4)
    pos = hdr_len + type_off
    out = {}
    sizes = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
    per = {Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.FUNC_PROTO: 8,
           Kind.DATASEC: 12, Kind.ENUM64: 12}
    for t in btf.types:
        if t.kind == Kind.FUNC:
            out[pos + 4] = (t.name_off, t.linkage)
        pos += 12 + sizes.get(t.kind, 0) + per.get(t.kind, 0) * t.vlen
    return out


def compare_with_libbpf_open(spec: ObjectSpec, ref: LibbpfObject) -> None:
    assert spec.name == ref.name
    if spec.kern_version is not None:
        assert spec.kern_version == ref.kversion
    # maps: libbpf's order, names (bpf_map__name: the section for .data.*/.rodata.*)
    assert len(spec.maps) == len(ref.maps)
    for ours, theirs in zip(spec.maps, ref.maps, strict=True):
        visible = ours.real_name if ours.kind in (MapKind.DATA, MapKind.RODATA) and \
            ours.real_name not in (".data", ".rodata") else ours.name
        assert visible == theirs.name
        _compare_map(ours, theirs)
    # programs (libbpf lists entry programs only)
    entries = spec.entry_programs
    assert [p.name for p in entries] == [p.name for p in ref.programs]
    for ours, theirs in zip(entries, ref.programs, strict=True):
        assert ours.section == theirs.section
        assert (ours.prog_type, ours.expected_attach_type) == \
            (theirs.type, theirs.expected_attach_type), ours.name
        assert ours.autoload == theirs.autoload
        assert ours.insns == theirs.insns
    # BTF after libbpf's open-time fixups; ours also has the load-time marking of
    # hidden subprograms as static FUNCs, which must be the only difference
    if ref.btf is None:
        assert spec.btf_bytes is None
        return
    assert spec.btf_bytes is not None and len(spec.btf_bytes) == len(ref.btf)
    hidden = {p.name for p in spec.programs if p.is_subprog and p.mark_btf_static}
    words = _func_info_words(ref.btf)
    for i in range(0, len(ref.btf), 4):
        a, b = spec.btf_bytes[i:i + 4], ref.btf[i:i + 4]
        if a == b:
            continue
        assert i in words, f"BTF differs at byte {i}"
        name = spec.btf.string_at(words[i][0])
        assert name in hidden and words[i][1] == 1, f"BTF FUNC {name} differs"
        assert struct.unpack("<I", a)[0] & 0xFFFF == 0  # made static


def _compare_map(ours, theirs: LibbpfMap) -> None:
    assert (ours.type, ours.key_size, ours.value_size, ours.max_entries, ours.flags,
            ours.numa_node, ours.map_extra, ours.btf_key_type_id, ours.btf_value_type_id,
            ours.is_internal) == \
        (theirs.type, theirs.key_size, theirs.value_size, theirs.max_entries, theirs.flags,
         theirs.numa_node, theirs.map_extra, theirs.btf_key_type_id, theirs.btf_value_type_id,
         theirs.internal), ours.name
    if theirs.initial_value is not None:
        assert ours.initial_value == theirs.initial_value, ours.name
    assert ours.pin_path() == theirs.pin_path, ours.name
    assert (ours.inner is None) == (theirs.inner is None), ours.name
    if ours.inner is not None and theirs.inner is not None:
        assert ours.inner.name == theirs.inner.name
        _compare_map(ours.inner, theirs.inner)


# ------------------------------------------------------------------ against libbpf's open


@pytest.mark.parametrize("name", [*OBJECTS, "minimal"])
@pytest.mark.parametrize("object_name", [None, "skeleton", "a_long_object_name"])
def test_open_matches_libbpf(name, object_name, loader_objects, minimal_obj):
    path = minimal_obj if name == "minimal" else _obj(loader_objects, name)
    if object_name == "skeleton":
        object_name = skeleton_name(path)
    ref = libbpf_open(path, object_name)
    assert ref is not None
    compare_with_libbpf_open(load_spec(path, name=object_name), ref)


@pytest.mark.parametrize("name", [*OBJECTS, "minimal"])
def test_parsed_btf_is_the_btf_given_to_the_kernel(name, tmp_path, loader_objects,
                                                   minimal_obj):
    """spec.btf is the first parse with the types the fixups wrote (or added: ksyms)
    decoded again: it must read as bpftool reads the fixed-up bytes, type by type."""
    from bpfreplay.decode.btf import dump_btf

    path = minimal_obj if name == "minimal" else _obj(loader_objects, name)
    spec = load_spec(path)
    if spec.btf_bytes is None:
        assert spec.btf is None
        return
    blob = tmp_path / "btf.raw"
    blob.write_bytes(spec.btf_bytes)
    theirs = subprocess.run([require_tool("bpftool"), "btf", "dump", "file", str(blob)],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    assert list(dump_btf(spec.btf)) == theirs


def test_spec_from_bytes_is_the_same(loader_objects):
    path = _obj(loader_objects, "globals")
    a, b = load_spec(path), load_spec(path.read_bytes(), name="globals")
    assert a.maps == b.maps and a.programs == b.programs and a.btf_bytes == b.btf_bytes


SECTION_NAMES = [
    "socket", "socketx", "sk_reuseport", "sk_reuseport/migrate", "kprobe", "kprobe/do_sys",
    "kprobex", "kretprobe/x", "uprobe", "uprobe/bin:func", "uprobe.s", "uprobe.s/x",
    "uretprobe.s/x", "kprobe.multi/tcp_*", "kretprobe.multi/x", "ksyscall/write",
    "kretsyscall/write", "usdt/a:b:c", "tc", "tcx", "classifier", "action", "tracepoint/a/b",
    "tp", "tp/syscalls/sys_enter_write", "tpx/a", "raw_tracepoint/x", "raw_tp", "raw_tp/x",
    "raw_tracepoint.w/x", "raw_tp.w/x", "tp_btf/sched_switch", "fentry/f", "fmod_ret/f",
    "fexit/f", "fentry.s/f", "fmod_ret.s/f", "fexit.s/f", "freplace/f", "lsm/file_open",
    "lsm.s/file_open", "lsm_cgroup/x", "iter/task", "iter.s/task", "syscall", "syscall/x",
    "xdp", "xdp/devmap", "xdp/cpumap", "xdp.frags", "xdp.frags/devmap", "xdp.frags/cpumap",
    "xdp/other", "xdpx", "perf_event", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local",
    "sockops", "sk_skb", "sk_skb/stream_parser", "sk_skb/stream_verdict", "sk_skb/other",
    "sk_msg", "lirc_mode2", "flow_dissector", "cgroup_skb/ingress", "cgroup_skb/egress",
    "cgroup/skb", "cgroup/sock", "cgroup/sock_create", "cgroup/sock_release",
    "cgroup/post_bind4", "cgroup/post_bind6", "cgroup/bind4", "cgroup/bind6",
    "cgroup/connect4", "cgroup/connect6", "cgroup/sendmsg4", "cgroup/sendmsg6",
    "cgroup/recvmsg4", "cgroup/recvmsg6", "cgroup/getpeername4", "cgroup/getpeername6",
    "cgroup/getsockname4", "cgroup/getsockname6", "cgroup/sysctl", "cgroup/getsockopt",
    "cgroup/setsockopt", "cgroup/dev", "cgroup/unknown", "struct_ops", "struct_ops/x",
    "sk_lookup", "sk_lookup/x", ".text", "license", "", "/", "tp+",
]


def test_section_table_matches_libbpf():
    from bpfreplay.loader.sections import find_sec_def

    lib = require_libbpf()
    for section in SECTION_NAMES:
        prog_type, attach_type = ctypes.c_int(-1), ctypes.c_int(-1)
        err = lib.libbpf_prog_type_by_name(section.encode(), ctypes.byref(prog_type),
                                           ctypes.byref(attach_type))
        sec_def = find_sec_def(section)
        if err:
            assert sec_def is None, section
        else:
            assert sec_def is not None, section
            assert (sec_def.prog_type, sec_def.expected_attach_type) == \
                (prog_type.value, attach_type.value), section


# ------------------------------------------------------------------ against tools


_OBJDUMP_RELOC = re.compile(r"^([0-9a-f]+)\s+(R_BPF_\w+)\s+(\S+)")


def test_relocations_match_llvm_objdump(loader_objects, minimal_obj):
    require_tool("llvm-objdump")
    for path in [minimal_obj, *(_obj(loader_objects, n) for n in OBJECTS)]:
        spec = load_spec(path)
        out = subprocess.run(["llvm-objdump", "-r", str(path)], capture_output=True,
                             text=True, check=True).stdout
        expected: dict[str, list[tuple[int, str]]] = {}
        section = None
        for line in out.splitlines():
            header = re.match(r"^RELOCATION RECORDS FOR \[(.*)\]:", line)
            if header:
                section = header.group(1)
                continue
            m = _OBJDUMP_RELOC.match(line)
            if m and section is not None:
                expected.setdefault(section, []).append((int(m.group(1), 16), m.group(3)))
        for prog in spec.programs:
            elf_section = ("?" if not prog.autoload else "") + prog.section
            theirs = sorted((off // 8 - prog.insn_offset, sym)
                            for off, sym in expected.get(elf_section, [])
                            if 0 <= off // 8 - prog.insn_offset < prog.insn_count)
            ours = sorted((r.insn_index, r.symbol) for r in prog.relocations)
            assert ours == theirs, (path.name, prog.name)


def test_skeleton_name_matches_bpftool(tmp_path, minimal_obj):
    require_tool("bpftool")
    odd = tmp_path / "my-prog.v2.bpf.o"
    shutil.copy(minimal_obj, odd)
    for path in (minimal_obj, odd):
        skel = subprocess.run(["bpftool", "gen", "skeleton", str(path)], capture_output=True,
                              text=True, check=True).stdout
        assert f's->name = "{skeleton_name(path)}";' in skel


# ------------------------------------------------------------------ against libbpf's calls


def _fields(call: dict) -> dict[str, int | bytes]:
    layout = attr_layout(call["cmd"])
    out: dict[str, int | bytes] = {}
    for f in layout.fields:
        if f.offset + f.size <= len(call["attr"]):
            if f.name in ("map_name", "prog_name"):
                out[f.name] = call["attr"][f.offset:f.offset + f.size].split(b"\0")[0]
            else:
                out[f.name] = read_field(call["attr"], f)
    return out


@dataclass
class Recorded:
    """A libbpf load, as its bpf() calls show it."""

    calls: list[dict]

    def of(self, cmd: str) -> list[tuple[dict, dict]]:
        return [(c, _fields(c)) for c in self.calls if cmd_name(c["cmd"]) == cmd]


def read_recorded(path: Path) -> Recorded:
    with read_trace(str(path)) as trace:
        calls = [c for c in trace.calls() if c["syscall"] == "bpf"]
    return Recorded(calls)


def kernel_version_code() -> int:
    """libbpf's get_kernel_version(): KERNEL_VERSION(major, minor, patch) of uname."""
    release = os.uname().release
    if os.path.exists("/proc/version_signature"):
        parts = Path("/proc/version_signature").read_text().split()
        if len(parts) >= 3:
            release = parts[2]
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", release)
    assert m
    major, minor, patch = map(int, m.groups())
    return (major << 16) + (minor << 8) + min(patch, 255)


def compare_with_trace(spec: ObjectSpec, rec: Recorded, *, vmlinux=None, ksyms=None,
                       bss_written: bool = False) -> None:
    """Every call libbpf made to load the object, against the spec and relocations.
    Program loads are compared whatever the kernel answered (libbpf's last attempt)."""
    creates: dict[bytes, list[tuple[dict, dict]]] = {}
    for call, f in rec.of("BPF_MAP_CREATE"):
        creates.setdefault(f["map_name"], []).append((call, f))

    def check_create(m) -> int:
        attempts = creates.get(m.kernel_name.encode())
        assert attempts, f"no BPF_MAP_CREATE of {m.kernel_name}"
        _, first = attempts[0]  # libbpf retries without BTF when the kernel refuses it
        key_id, value_id = m.create_btf_ids
        assert (first["map_type"], first["key_size"], first["value_size"],
                first["max_entries"], first["map_flags"], first["numa_node"],
                first["map_extra"], first["btf_key_type_id"], first["btf_value_type_id"]) == \
            (m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.numa_node,
             m.map_extra, key_id, value_id), m.name
        call = attempts[-1][0]
        assert call["ret"] is not None and call["ret"] >= 0, m.name
        return call["ret"]

    fds: dict[str, int] = {}
    for m in spec.maps:
        if m.inner is not None:
            check_create(m.inner)
        fds[m.name] = check_create(m)

    # the object's BTF: the BTF_LOAD whose fd the maps and programs use
    btf_fds = {f.get("btf_fd") for _, f in rec.of("BPF_MAP_CREATE")} | \
        {f.get("prog_btf_fd") for _, f in rec.of("BPF_PROG_LOAD")}
    btf_fds -= {None, 0}
    if spec.btf_bytes is None:
        assert not btf_fds
    else:
        loads = [c for c, _ in rec.of("BPF_BTF_LOAD") if c["ret"] in btf_fds]
        assert loads, "the object's BTF was not loaded"
        assert loads[-1]["in"]["btf"] == spec.btf_bytes

    # initial contents of data maps, and map-in-map slots
    by_fd = {fd: spec.map(name) for name, fd in fds.items()}
    updates: dict[str, list[tuple[bytes, bytes]]] = {}
    for call, f in rec.of("BPF_MAP_UPDATE_ELEM"):
        if f["map_fd"] in by_fd:
            updates.setdefault(by_fd[f["map_fd"]].name, []).append(
                (call["in"]["key"], call["in"]["value"]))
    for m in spec.maps:
        if m.kind == MapKind.KCONFIG:
            config = system_kconfig()
            expected = kconfig_value(spec.externs, m.value_size, config=config,
                                     kernel_version=kernel_version_code())
            assert updates[m.name] == [(bytes(4), expected)]
        elif m.is_internal:
            (key, value), = updates[m.name]
            assert key == bytes(4)
            if m.kind == MapKind.BSS and bss_written:
                assert len(value) == m.value_size  # user space wrote into it
            else:
                assert value == m.initial_value, m.name
        elif m.init_slots and m.inner is not None:
            expected_slots = [(struct.pack("<I", i), struct.pack("<i", fds[t]))
                              for i, t in enumerate(m.init_slots) if t is not None]
            assert updates[m.name] == expected_slots

    # programs
    relocated = relocate_object(spec, fds, target_btf=vmlinux, ksyms=ksyms)
    loads = {}
    for call, f in rec.of("BPF_PROG_LOAD"):
        if f.get("prog_name"):
            loads[f["prog_name"]] = (call, f)
    assert [p.name for p in spec.entry_programs if p.autoload] == list(relocated)
    for prog in spec.entry_programs:
        if not prog.autoload:
            assert prog.kernel_name.encode() not in loads
            continue
        if prog.kernel_name.encode() not in loads and any(
                c["ret"] == -1 for c, _ in loads.values()):
            continue  # libbpf stopped at an earlier program the kernel refused
        call, f = loads[prog.kernel_name.encode()]
        ours = relocated[prog.name]
        assert call["in"]["insns"] == ours.insns, prog.name
        assert call["in"]["license"].decode() == spec.license
        kern_version = spec.kern_version if spec.kern_version is not None \
            else kernel_version_code()
        assert (f["prog_type"], f["expected_attach_type"], f["prog_flags"],
                f["kern_version"]) == \
            (prog.prog_type, prog.expected_attach_type, prog.prog_flags, kern_version)
        assert call["in"].get("func_info") == ours.func_info, prog.name
        assert call["in"].get("line_info") == ours.line_info, prog.name
        assert (f["func_info_rec_size"], f["func_info_cnt"], f["line_info_rec_size"],
                f["line_info_cnt"]) == (ours.func_info_rec_size, ours.func_info_count,
                                        ours.line_info_rec_size, ours.line_info_count)
    # program arrays are filled once every program is loaded
    for m in spec.maps:
        if m.init_slots and m.inner is None:
            prog_fds = {name.decode(): c["ret"] for name, (c, _) in loads.items()}
            assert updates[m.name] == [
                (struct.pack("<I", i), struct.pack("<i", prog_fds[spec.program(t).kernel_name]))
                for i, t in enumerate(m.init_slots) if t is not None]


def test_minimal_matches_reference_skeleton(tmp_path, minimal_obj, minimal_binary):
    """The reference skeleton (object name minimal_bpf) recorded now, from the object
    built here (its BTF holds the source path, so a trace from another checkout or
    machine would not do)."""
    trace = tmp_path / "minimal.mp"
    subprocess.run([sys.executable, "-m", "bpfreplay.cli", "record", "-q", "-o", str(trace),
                    "--", str(minimal_binary), "0"], check=True, capture_output=True,
                   timeout=120)
    spec = load_spec(minimal_obj, name=skeleton_name(minimal_obj))
    assert [m.name for m in spec.maps] == ["minimal_.bss", "minimal_.rodata"]
    # the skeleton writes its pid into .bss before loading
    compare_with_trace(spec, read_recorded(trace), bss_written=True)


def system_kconfig() -> str | None:
    """The Kconfig libbpf 1.1.2 reads: /boot/config-$(uname -r), else /proc/config.gz
    (Debian kernels have only the first; this host only the second)."""
    for path in (Path(f"/boot/config-{os.uname().release}"), Path("/proc/config.gz")):
        if path.exists():
            data = path.read_bytes()
            return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
    return None


def _record(tmp_path: Path, obj: Path, name: str | None) -> Path:
    """Record libbpf_load loading ``obj`` (it closes everything before it exits)."""
    loader = _built(PROGS_DIR / "libbpf_load", ROOT / "tests" / "progs")
    out = tmp_path / "libbpf.mp"
    argv = [str(loader), str(obj)] + (["--name", name] if name else [])
    result = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "record", "-o", str(out),
                             "--", *argv], capture_output=True, text=True, timeout=120)
    # the kernel may refuse a program (ksyms: a variable without a kallsyms address on
    # kernels without CONFIG_KALLSYMS_ALL); the calls up to there are what we compare
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return out


@pytest.mark.parametrize("name,object_name", [
    ("globals", None), ("globals", "a_long_object_name"), ("maps", None),
    ("kconfig", None), ("core", None), ("ksyms", None), ("nobtf", None),
    ("minimal", "minimal_bpf"),
])
def test_load_matches_libbpf(name, object_name, tmp_path, loader_objects, minimal_obj,
                             vmlinux_btf):
    require_kernel()
    path = minimal_obj if name == "minimal" else _obj(loader_objects, name)
    trace = _record(tmp_path, path, object_name)
    spec = load_spec(path, name=object_name)
    kallsyms = Path("/proc/kallsyms").read_text() if spec.externs else None
    try:
        ksyms = resolve_ksyms(spec.externs, spec.btf, vmlinux_btf, kallsyms)
    except LoaderError as error:
        # this kernel lacks an extern (5.10: no BTF for per-CPU variables such as
        # bpf_prog_active): libbpf stops at bpf_object__resolve_externs() as well,
        # before it creates a map or loads a program of the object
        recorded = read_recorded(trace)
        made = [f.get("map_name") for _, f in recorded.of("BPF_MAP_CREATE")] + \
            [f.get("prog_name") for _, f in recorded.of("BPF_PROG_LOAD")]
        names = {m.kernel_name.encode() for m in spec.maps} | \
            {p.kernel_name.encode() for p in spec.entry_programs}
        assert not names & set(made), (str(error), made)
        pytest.skip(f"this kernel lacks an extern and libbpf stops there too: {error}")
    compare_with_trace(spec, read_recorded(trace),
                       vmlinux=vmlinux_btf if spec.core_relos else None, ksyms=ksyms)


# ------------------------------------------------------------------ spec details


def test_globals_spec(loader_objects):
    spec = load_spec(_obj(loader_objects, "globals"))
    names = {p.name: p for p in spec.programs}
    assert {n for n, p in names.items() if p.is_subprog} == {"add", "scale", "clamp", "step"}
    assert names["clamp"].mark_btf_static and not names["scale"].mark_btf_static
    assert names["sleepy"].sleepable and names["sleepy"].prog_flags == 1 << 4
    assert not names["not_loaded"].autoload
    assert names["on_getpid"].attach_target == "syscalls/sys_enter_getpid"
    assert names["xdp_prog"].attach_target is None
    relocated = relocate_object(spec, list(range(10, 10 + len(spec.maps))))
    # both entry programs that call scale() carry their own copy of it
    assert "scale" in relocated["on_getpid"].subprograms
    assert "scale" in relocated["on_raw"].subprograms
    assert relocated["on_raw"].subprograms[:2] == ("clamp", "add")


def test_kconfig_externs(loader_objects):
    spec = load_spec(_obj(loader_objects, "kconfig"))
    kcfg = {e.name: e for e in spec.externs}
    config = "CONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=m\nCONFIG_HZ=1000\n" \
             'CONFIG_LOCALVERSION="-abcdefghijklmnopqrstuvwxyz"\n'
    m = spec.maps[spec.kconfig_map_index]
    value = kconfig_value(spec.externs, m.value_size, config=config, kernel_version=0x060102)
    hz = kcfg["CONFIG_HZ"]
    assert struct.unpack_from("<i", value, hz.kcfg_offset)[0] == 1000
    assert struct.unpack_from("<I", value, kcfg["CONFIG_BPF_JIT"].kcfg_offset)[0] == 2
    local = kcfg["CONFIG_LOCALVERSION"]
    assert value[local.kcfg_offset:local.kcfg_offset + 16] == b"-abcdefghijklmn\0"
    with pytest.raises(LoaderError, match="CONFIG_HZ"):
        kconfig_value(spec.externs, m.value_size, config="CONFIG_BPF_SYSCALL=y\n",
                      kernel_version=1)


def test_object_without_btf(loader_objects):
    spec = load_spec(_obj(loader_objects, "nobtf"))
    assert spec.btf is None and spec.btf_bytes is None and spec.btf_ext is None
    assert spec.kern_version == 0x050A00
    assert all(m.btf_value_type_id == 0 and not m.flags & (1 << 10) for m in spec.maps)
    (prog,) = spec.entry_programs
    relocated = relocate_object(spec, [3, 4])[prog.name]
    assert relocated.func_info is None and relocated.line_info is None


def test_core_needs_target_btf(loader_objects):
    spec = load_spec(_obj(loader_objects, "core"))
    assert spec.needs_vmlinux_btf
    with pytest.raises(LoaderError, match="kernel's BTF"):
        relocate_object(spec, [3])


# ------------------------------------------------------------------ errors


def _compile_bpf(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    require_tool("clang")
    src = tmp_path / f"{name}.bpf.c"
    src.write_text(source)
    out = tmp_path / f"{name}.bpf.o"
    include = f"-I/usr/include/{subprocess.check_output(['cc', '-dumpmachine'], text=True).strip()}"
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", include, *flags, "-c", str(src),
                    "-o", str(out)], check=True, capture_output=True)
    return out


_HEAD = ('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
         'char LICENSE[] SEC("license") = "GPL";\n')


def _refused(path: Path, match: str) -> None:
    with pytest.raises(LoaderError, match=match):
        load_spec(path)
    if _libbpf() is not None:
        assert libbpf_open(path) is None, "libbpf opens it"


def test_error_not_elf(tmp_path):
    path = tmp_path / "text.bpf.o"
    path.write_text("hello\n")
    _refused(path, "not an eBPF object: .* is not an ELF file")


def test_error_other_machine(tmp_path):
    require_tool("cc")
    src = tmp_path / "x.c"
    src.write_text("int f(void) { return 1; }\n")
    out = tmp_path / "x.o"
    subprocess.run(["cc", "-c", str(src), "-o", str(out)], check=True)
    _refused(out, r"not an eBPF object: .* \(machine x86-64, not BPF\)"
             if os.uname().machine == "x86_64" else "not an eBPF object")


def test_error_truncated(tmp_path, minimal_obj):
    data = minimal_obj.read_bytes()
    for size in (20, 64, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{size}.bpf.o"
        path.write_bytes(data[:size])
        _refused(path, "truncated")


def test_error_missing_file(tmp_path):
    with pytest.raises(LoaderError, match="failed to open"):
        load_spec(tmp_path / "nope.bpf.o")


def test_no_programs_opens_as_libbpf_opens_it(tmp_path):
    """An object without programs is no error for libbpf 1.1.2 (its maps are made at
    load): the same maps, no programs."""
    path = _compile_bpf(tmp_path, "noprog", _HEAD + "int x = 1;\n")
    spec = load_spec(path)
    ref = libbpf_open(path)
    assert ref is not None
    assert list(spec.programs) == []
    assert [p.name for p in ref.programs] == []
    assert [m.name for m in spec.maps] == [m.name for m in ref.maps]


def test_error_unknown_section(tmp_path):
    path = _compile_bpf(tmp_path, "unknown", _HEAD + 'SEC("bpfreplay/what") int f(void *c)'
                        " { return 0; }\n")
    spec = load_spec(path)  # opened typeless, as libbpf does; the load fails (kernel.py)
    ref = libbpf_open(path)  # libbpf opens it and fails only at load, typeless
    assert ref is not None and ref.programs[0].type == 0
    assert spec.programs[0].prog_type == ref.programs[0].type
    assert spec.programs[0].sec_def is None


def test_error_legacy_maps(tmp_path):
    path = _compile_bpf(tmp_path, "legacy", _HEAD + (
        "struct bpf_map_def { unsigned int type, key_size, value_size, max_entries; };\n"
        'struct bpf_map_def SEC("maps") m = { 2, 4, 4, 1 };\n'
        'SEC("socket") int f(void *c) { return bpf_map_lookup_elem(&m, &c) != 0; }\n'))
    _refused(path, "legacy map definitions in 'maps' section are not supported")


def test_pinned_and_odd_maps_match_libbpf(tmp_path):
    path = _compile_bpf(tmp_path, "pinned", _HEAD + (
        "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4);"
        " __type(key, int); __type(value, long); __uint(pinning, LIBBPF_PIN_BY_NAME);"
        " __uint(map_extra, 0); __uint(numa_node, 1); } pinned_map SEC(\".maps\");\n"
        "struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 16);"
        " __type(value, int); __uint(map_extra, 3); } bloom SEC(\".maps\");\n"
        "struct { __uint(type, BPF_MAP_TYPE_USER_RINGBUF); __uint(max_entries, 4096 * 3); }"
        " uring SEC(\".maps\");\n"
        "struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4);"
        " __uint(value_size, 4); } perf SEC(\".maps\");\n"
        'SEC("socket") int f(void *c) { return bpf_map_lookup_elem(&pinned_map, &c) != 0'
        " && bpf_map_peek_elem(&bloom, &c) && bpf_map_lookup_elem(&perf, &c); }\n"))
    spec = load_spec(path)
    ref = libbpf_open(path)
    assert ref is not None
    compare_with_libbpf_open(spec, ref)
    assert spec.map("pinned_map").pin_path() == "/sys/fs/bpf/pinned_map"
    assert spec.map("uring").max_entries == 4096 * 4
    assert spec.map("perf").create_btf_ids == (0, 0)


def test_error_bad_map_definition(tmp_path):
    path = _compile_bpf(tmp_path, "badmap", _HEAD + (
        "struct { __uint(max_entries, 1); __type(key, int); __type(value, int); }"
        ' m SEC(".maps");\n'
        'SEC("socket") int f(void *c) { return bpf_map_lookup_elem(&m, &c) != 0; }\n'))
    _refused(path, "map 'm': map type isn't specified")
