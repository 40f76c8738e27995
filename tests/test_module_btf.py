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


# ------------------------------------------------------- a kernel with modules

BTF_MAGIC = 0xEB9F
KIND_STRUCT, KIND_INT = 4, 1


def _split_btf(vmlinux) -> bytes:  # noqa: ANN001 - a decode.btf.Btf
    """A module's split BTF over this kernel's vmlinux: struct bpfreplay_nowhere { int
    pad; int value; } (the type core_walk.bpf.c looks for and vmlinux lacks). Own
    string offsets continue vmlinux's string section; ``int`` is vmlinux's."""
    from bpfreplay.decode.btf import Kind

    base = len(vmlinux.strings)
    int_id = vmlinux.by_name("int", Kind.INT).id
    strings = b"bpfreplay_nowhere\0pad\0value\0"
    types = struct.pack("<III", base + 0, (KIND_STRUCT << 24) | 2, 8)
    types += struct.pack("<III", base + 18, int_id, 0)
    types += struct.pack("<III", base + 22, int_id, 32)
    return struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


def test_split_btf_reads_as_bpftool_reads_it(tmp_path):
    """Our parse of a module's split BTF (strings continuing the base's) against
    bpftool's dump of the same bytes over the same vmlinux."""
    require_kernel()
    from bpfreplay.decode.btf import parse_btf
    from bpfreplay.loader.kernel import LoadOptions, _vmlinux_btf

    vmlinux = _vmlinux_btf(LoadOptions())
    blob = _split_btf(vmlinux)
    (tmp_path / "mod.btf").write_bytes(blob)
    dump = subprocess.run(["bpftool", "-B", "/sys/kernel/btf/vmlinux", "btf", "dump", "file",
                           str(tmp_path / "mod.btf")], capture_output=True, text=True,
                          check=True).stdout
    btf = parse_btf(blob, base=vmlinux)
    t = btf.type(len(vmlinux))
    ours = [f"[{t.id}] STRUCT '{t.name}' size={t.size} vlen={len(t.members)}"] + [
        f"'{m.name}' type_id={m.type} bits_offset={m.bit_offset}" for m in t.members]
    assert [line.strip() for line in dump.splitlines()] == ours


class _ModuleKernel:
    """The real kernel, except for the BTF objects: it answers the walk as a kernel
    with vmlinux, one other process's BTF and one module BTF would (ids 1, 40, 41),
    and logs every call it sees."""

    def __init__(self, module_btf: bytes) -> None:
        import os

        from bpfreplay import sys as bsys

        self.real = bsys._libc_syscall
        self.module_btf = module_btf
        self.objects = {1: ("vmlinux", 1, b""), 40: ("", 0, b""), 41: ("bpfreplay_mod", 1,
                                                                      module_btf)}
        self.fds: dict[int, int] = {}  # fd -> BTF id
        self.calls: list[str] = []
        self.insns: dict[str, bytes] = {}  # program name -> instructions loaded
        self.opened: list[tuple[int, int]] = []  # (fd, BTF id) handed out
        self._open = lambda: os.open("/dev/null", os.O_RDONLY)

    def __call__(self, number: int, args: tuple[int, ...]) -> tuple[int, int]:
        import ctypes
        import errno

        from bpfreplay.recording import syscalls as nr

        if number == nr.CLOSE and args[0] in self.fds:
            self.calls.append(f"close btf#{self.fds.pop(args[0])}")
            return self.real(number, args)
        if number != nr.BPF:
            return self.real(number, args)
        cmd = cmd_name(args[0])
        attr = ctypes.string_at(args[1], args[2])
        if cmd == "BPF_BTF_GET_NEXT_ID":
            start = struct.unpack_from("<I", attr, 0)[0]
            following = [i for i in sorted(self.objects) if i > start]
            self.calls.append(f"next_id {start}")
            if not following:
                return -1, errno.ENOENT
            ctypes.memmove(args[1] + 4, struct.pack("<I", following[0]), 4)
            return 0, 0
        if cmd == "BPF_BTF_GET_FD_BY_ID":
            btf_id = struct.unpack_from("<I", attr, 0)[0]
            fd = self._open()
            self.fds[fd] = btf_id
            self.opened.append((fd, btf_id))
            self.calls.append(f"fd_by_id {btf_id}")
            return fd, 0
        if cmd == "BPF_OBJ_GET_INFO_BY_FD" and struct.unpack_from("<I", attr)[0] in self.fds:
            btf_id = self.fds[struct.unpack_from("<I", attr)[0]]
            name, kernel_btf, data = self.objects[btf_id]
            info_address = struct.unpack_from("<Q", attr, 8)[0]
            info = bytearray(ctypes.string_at(info_address, 32))
            buf, buf_size, _, name_ptr, name_len = struct.unpack_from("<QIIQI", info)
            if buf:
                ctypes.memmove(buf, data, min(buf_size, len(data)))
            if name_ptr and name_len:
                raw = name.encode()[:name_len - 1] + b"\0"
                ctypes.memmove(name_ptr, raw, len(raw))
            struct.pack_into("<II", info, 8, len(data), btf_id)
            struct.pack_into("<I", info, 28, kernel_btf)
            ctypes.memmove(info_address, bytes(info), 32)
            self.calls.append(f"info btf#{btf_id}" + (f" data {buf_size}" if buf else "")
                              + (" name" if name_ptr else ""))
            return 0, 0
        if cmd == "BPF_PROG_LOAD":
            name = attr[48:64].split(b"\0")[0].decode()
            if name:
                self.calls.append(f"prog_load {name}")
                count, insns = struct.unpack_from("<IQ", attr, 4)
                self.insns[name] = ctypes.string_at(insns, count * 8)
        return self.real(number, args)


def _load_core_walk(fake: _ModuleKernel) -> None:
    from bpfreplay import sys as bsys
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec

    spec = load_spec(str(_build() / "core_walk.bpf.o"))
    with bsys.override_syscall(fake):
        load(open_object(spec)).close()


def test_a_module_btf_is_kept_searched_and_closed_at_the_end_of_load():
    """core_walk's missing type, found in a module: the walk keeps only the module's
    fd (vmlinux and a foreign BTF are closed at once), reads its BTF as
    btf_get_from_fd() does (4 KiB, then its size), relocates against the module's
    type, and closes the module fd at the end of load, after the last program."""
    require_kernel()
    from bpfreplay.decode.insn import disassemble
    from bpfreplay.loader.kernel import LoadOptions, _vmlinux_btf

    module = _split_btf(_vmlinux_btf(LoadOptions()))
    padded = module + b"\0" * 5000  # more than 4 KiB: libbpf reads it twice
    fake = _ModuleKernel(padded)
    _load_core_walk(fake)
    walk = [c for c in fake.calls if not c.startswith("prog_load")]
    assert walk == [
        "next_id 0", "fd_by_id 1", "info btf#1 name", "close btf#1",
        "next_id 1", "fd_by_id 40", "info btf#40 name", "close btf#40",
        "next_id 40", "fd_by_id 41", "info btf#41 name", "info btf#41 data 4096",
        f"info btf#41 data {len(padded)}", "next_id 41",
        "close btf#41"]
    assert fake.calls.index("close btf#41") > fake.calls.index("prog_load found_nowhere")

    # Against the same walk without the module (what libbpf does on this machine, the
    # first test): only the three CO-RE results for bpfreplay_nowhere differ: the type
    # and the field exist (1, not 0) and the field is read at offset 4 (bpftool's view
    # of the module's type above), not poisoned.
    fake_small = _ModuleKernel(module)
    _load_core_walk(fake_small)
    without = _ModuleKernel(b"")
    without.objects.pop(41)
    _load_core_walk(without)
    with_module = disassemble(fake_small.insns["found_nowhere"])
    plain = disassemble(without.insns["found_nowhere"])
    assert len(with_module) == len(plain)
    changed = [(a, b) for a, b in zip(plain, with_module, strict=True) if a != b]
    assert [b.split(": ", 1)[1] for _, b in changed] == ["(b7) r1 = 1", "(b7) r1 = 1",
                                                         "(b7) r1 = 4"]
    assert [a.split(": ", 1)[1] for a, _ in changed][:2] == ["(b7) r1 = 0", "(b7) r1 = 0"]
    assert "call unknown" in changed[2][0]  # libbpf's poisoned CO-RE instruction


KIND_PTR, KIND_TYPEDEF, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR = 2, 8, 12, 13, 14


def _module_with_ksyms(vmlinux) -> bytes:  # noqa: ANN001 - a decode.btf.Btf
    """Split BTF of a module with what module_ksyms.bpf.c uses: int
    bpfreplay_mod_kfunc(int x), int bpfreplay_mod_var, and the tp_btf target
    btf_trace_bpfreplay_mod_event (a typedef of a pointer to a function)."""
    from bpfreplay.decode.btf import Kind

    base, first = len(vmlinux.strings), len(vmlinux)
    int_id = vmlinux.by_name("int", Kind.INT).id
    names = ["x", "bpfreplay_mod_kfunc", "bpfreplay_mod_var", "btf_trace_bpfreplay_mod_event"]
    offsets, strings = {}, b""
    for n in names:
        offsets[n] = base + len(strings)
        strings += n.encode() + b"\0"

    def record(name: str | None, kind: int, vlen: int, size_or_type: int) -> bytes:
        return struct.pack("<III", offsets[name] if name else 0, (kind << 24) | vlen,
                           size_or_type)

    types = record(None, KIND_FUNC_PROTO, 1, int_id) + struct.pack("<II", offsets["x"], int_id)
    types += record("bpfreplay_mod_kfunc", KIND_FUNC, 1, first)  # linkage global
    types += record("bpfreplay_mod_var", KIND_VAR, 0, int_id) + struct.pack("<I", 1)
    types += record("btf_trace_bpfreplay_mod_event", KIND_TYPEDEF, 0, first + 4)
    types += record(None, KIND_PTR, 0, first + 5)
    types += record(None, KIND_FUNC_PROTO, 0, int_id)
    return struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


class _ModuleProgKernel(_ModuleKernel):
    """Also answers the object's PROG_LOAD (which names module fds the real kernel does
    not have), keeping its attr and fd array."""

    def __call__(self, number: int, args: tuple[int, ...]) -> tuple[int, int]:
        import ctypes

        from bpfreplay.recording import syscalls as nr

        if number == nr.BPF and cmd_name(args[0]) == "BPF_PROG_LOAD":
            attr = ctypes.string_at(args[1], args[2])
            if attr[48:64].split(b"\0")[0] == b"module_things":
                self.calls.append("prog_load module_things")
                self.prog_attr = attr
                count, insns = struct.unpack_from("<IQ", attr, 4)
                self.insns["module_things"] = ctypes.string_at(insns, count * 8)
                fd_array = struct.unpack_from("<Q", attr, 120)[0]
                self.fd_array = ctypes.string_at(fd_array, 8) if fd_array else b""
                return self._open(), 0
        return super().__call__(number, args)


def test_kfunc_variable_and_attach_target_in_a_module():
    """find_ksym_btf_id() and find_kernel_btf_id() past vmlinux: the kfunc's call names
    the module BTF's slot in fd_array (insn.off 1, slot 0 unused), the typed variable's
    ld_imm64 carries the module BTF fd in insn[1].imm, the program is loaded with
    attach_btf_obj_fd = that fd and the target's id in the module; one walk (during
    extern resolution), the fd closed after the load."""
    require_kernel()
    from bpfreplay import sys as bsys
    from bpfreplay.loader.kernel import LoadOptions, _vmlinux_btf, load, open_object
    from bpfreplay.loader.spec import load_spec

    vmlinux = _vmlinux_btf(LoadOptions())
    fake = _ModuleProgKernel(_module_with_ksyms(vmlinux))
    spec = load_spec(str(_build() / "module_ksyms.bpf.o"))
    with bsys.override_syscall(fake):
        load(open_object(spec)).close()
    assert fake.calls.count("next_id 0") == 1
    module_fd = next(fd for fd, btf_id in fake.opened if btf_id == 41)
    first = len(vmlinux)
    attach_btf_id, attach_btf_obj_fd = struct.unpack_from("<II", fake.prog_attr, 108)
    assert (attach_btf_id, attach_btf_obj_fd) == (first + 3, module_fd)
    assert fake.fd_array == struct.pack("<ii", 0, module_fd)
    insns = fake.insns["module_things"]
    calls = [struct.unpack_from("<BBhi", insns, i) for i in range(0, len(insns), 8)
             if insns[i] == 0x85 and insns[i + 1] >> 4 == 2]  # BPF_PSEUDO_KFUNC_CALL
    assert [(off, imm) for _, _, off, imm in calls] == [(1, first + 1)]
    loads = [i for i in range(0, len(insns) - 8, 8)
             if insns[i] == 0x18 and insns[i + 1] >> 4 == 3]  # BPF_PSEUDO_BTF_ID
    assert [struct.unpack_from("<i", insns, i + 4)[0] for i in loads] == [first + 2]
    assert [struct.unpack_from("<i", insns, i + 12)[0] for i in loads] == [module_fd]
    assert fake.calls.index("close btf#41") > fake.calls.index("prog_load module_things")
