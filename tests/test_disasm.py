"""The eBPF disassembler against the real tools: the kernel's verifier log, bpftool's
xlated dump and llvm-objdump; plus a fuzz test.

Instruction bytes here are built by the test's own encoder (``ins``/``lddw``), never by
bpfreplay; the expected text always comes from the tool.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfreplay.decode.insn import (
    BEFORE_LOAD,
    Insn,
    Resolver,
    decode_insns,
    disassemble,
    format_insn,
    xlated_imm64_text,
)
from bpfreplay.errors import DecodeError
from tests.conftest import ROOT, require_kernel, require_tool

DATA = ROOT / "tests" / "data" / "disasm"
CLANG_FLAGS = ["-g", "-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]

# --------------------------------------------------------------------------------------
# The test's own instruction encoder.


def ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def lddw(dst: int, value: int, src: int = 0) -> bytes:
    value &= (1 << 64) - 1
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return struct.pack("<BBhIBBhI", 0x18, dst | src << 4, 0, lo, 0, 0, 0, hi)


EXIT = ins(0x95)
RET0 = ins(0xB7, 0, 0, 0, 0) + EXIT
# BPF_ALU ops that take a register or an immediate (NEG and END apart).
ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0]
# Conditional jump ops.
JMP_OPS = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
SIZES = [0x00, 0x08, 0x10, 0x18]  # W H B DW
ATOMIC_IMMS = [0x00, 0x50, 0x40, 0xA0, 0x01, 0x51, 0x41, 0xA1, 0xE1, 0xF1]


def init_regs() -> bytes:
    """r0..r9 = small nonzero constants, so that the verifier walks what follows."""
    return b"".join(ins(0xB7, r, 0, 0, r + 3) for r in range(10))


def alu_family() -> bytes:
    out = [init_regs()]
    for cls in (0x07, 0x04):  # ALU64, ALU
        for op in ALU_OPS:
            imm = 3 if op in (0x60, 0x70, 0xC0) else -7
            out.append(ins(cls | op, 1, 0, 0, imm))          # K
            out.append(ins(cls | op | 0x08, 2, 3))            # X
        out.append(ins(cls | 0x80, 4))                        # neg
        for op in (0x30, 0x90):                               # sdiv, smod
            out.append(ins(cls | op, 5, 0, 1, -3))
            out.append(ins(cls | op | 0x08, 5, 6, 1))
        for bits in (8, 16) + ((32,) if cls == 0x07 else ()):
            out.append(ins(cls | 0xB8, 7, 8, bits))           # movsx
    for bits in (16, 32, 64):
        out.append(ins(0xD4, 1, 0, 0, bits))                  # le
        out.append(ins(0xDC, 2, 0, 0, bits))                  # be
        out.append(ins(0xD7, 3, 0, 0, bits))                  # bswap
    out.append(RET0)
    return b"".join(out)


def memory_family() -> bytes:
    out = [init_regs(), ins(0x7A, 10, 0, -8, 0), ins(0x7A, 10, 0, -16, 0)]
    for size in SIZES:
        out.append(ins(0x62 | size, 10, 0, -8, -5))           # st
        out.append(ins(0x63 | size, 10, 1, -16))               # stx
        out.append(ins(0x61 | size, 2, 10, -8))                # ldx
        if size != 0x18:
            out.append(ins(0x81 | size, 3, 10, -16))           # ldsx
    for size in (0x00, 0x18):
        for imm in ATOMIC_IMMS:
            out.append(ins(0xC3 | size, 10, 0 if imm == 0xF1 else 4, -8, imm))
    for size in SIZES:
        out.append(ins(0xC3 | size, 5, 10, -16, 0x100))       # load_acquire
        out.append(ins(0xC3 | size, 10, 6, -8, 0x110))        # store_release
    out.append(RET0)
    return b"".join(out)


def packet_family() -> bytes:
    out = [ins(0xBF, 6, 1), ins(0xB7, 7, 0, 0, 2)]
    for size in (0x00, 0x08, 0x10):
        out.append(ins(0x20 | size, 0, 0, 0, 14))             # ld_abs
        out.append(ins(0x40 | size, 0, 7, 0, 10))             # ld_ind
    out.append(EXIT)
    return b"".join(out)


def jump_family() -> bytes:
    out = [init_regs()]
    for cls in (0x05, 0x06):  # JMP, JMP32
        for op in JMP_OPS:
            out.append(ins(cls | op, 1, 0, 0, -9))            # K: to the next instruction
            out.append(ins(cls | op | 0x08, 2, 3, 1))         # X: skip one
            out.append(ins(0x07, 4, 0, 0, 1))
    for always in (ins(0x05, 0, 0, 1), ins(0x06, 0, 0, 0, 1)):  # ja, gotol: skip one
        out.append(ins(0x15, 1, 0, 1, 5))                     # ... that this reaches
        out.append(always)
        out.append(ins(0x07, 4, 0, 0, 1))
    out.append(ins(0xE5, 0, 0, 1))                            # may_goto
    out.append(ins(0x07, 4, 0, 0, 1))
    out.append(RET0)
    return b"".join(out)


def call_family(kfunc_id: int) -> bytes:
    """Helpers by id, a bpf-to-bpf call and a kfunc; a subprogram after the main one."""
    main = [
        ins(0x85, 0, 0, 0, 14),        # bpf_get_current_pid_tgid
        ins(0x85, 0, 0, 0, 5),         # bpf_ktime_get_ns
        ins(0x85, 0, 0, 0, 7),         # bpf_get_prandom_u32
        ins(0x85, 0, 2, 0, kfunc_id),  # kfunc
        ins(0xB7, 1, 0, 0, 3),
        None,                          # call pc+N (patched below)
        EXIT,
    ]
    main[5] = ins(0x85, 0, 1, 0, len(main) - 6)
    sub = [ins(0xBF, 0, 1), ins(0x07, 0, 0, 0, 1), EXIT]
    return b"".join(main) + b"".join(sub)


def ld_imm64_family(map_fd: int, ksym_id: int) -> bytes:
    """Every pseudo source of ld_imm64 (map idx forms use fd_array slot 0)."""
    main = [
        lddw(1, 0x123456789ABCDEF0),
        lddw(2, -2),
        lddw(3, 7),
        lddw(1, map_fd, 1),
        lddw(1, map_fd | 4 << 32, 2),
        lddw(1, ksym_id, 3),
        lddw(1, 0, 5),
        lddw(1, 0 | 4 << 32, 6),
    ]
    tail = [ins(0xB7, 1, 0, 0, 2), ins(0xB7, 3, 0, 0, 0), ins(0xB7, 4, 0, 0, 0),
            ins(0x85, 0, 0, 0, 181), RET0]  # bpf_loop(2, cb, NULL, 0)
    # The callback's address: imm counts from the instruction after the ld_imm64's first
    # half, so past its second half and the tail.
    func = lddw(2, 1 + sum(len(x) for x in tail) // 8, 4)
    return b"".join(main) + func + b"".join(tail) + RET0


# --------------------------------------------------------------------------------------
# bpf() through ctypes: the test's own, as bpfreplay/sys.py does not exist yet.

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_BPF = 321
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD = 0, 5, 7, 15


def bpf(cmd: int, attr: bytearray) -> int:
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    err = ctypes.get_errno()
    attr[:] = buf.raw[:len(attr)]
    return ret if ret >= 0 else -err


def map_create(map_type: int, key_size: int, value_size: int, entries: int) -> int:
    attr = bytearray(72)
    struct.pack_into("<IIII", attr, 0, map_type, key_size, value_size, entries)
    fd = bpf(BPF_MAP_CREATE, attr)
    assert fd >= 0, f"map create: errno {-fd}"
    return fd


@dataclass
class LoadResult:
    fd: int       # < 0: -errno
    log: str


def prog_load(insns: bytes, prog_type: int, fd_array: list[int] | None = None) -> LoadResult:
    """Load with log_level 2 and return the log; the caller closes a returned fd."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 22)
    fds = (ctypes.c_int * max(1, len(fd_array or [])))(*(fd_array or []))
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(license), 2, len(log), ctypes.addressof(log))
    if fd_array:
        struct.pack_into("<Q", attr, 120, ctypes.addressof(fds))
    fd = bpf(BPF_PROG_LOAD, attr)
    return LoadResult(fd, log.value.decode(errors="replace"))


SOCKET_FILTER, TRACEPOINT = 1, 5

# --------------------------------------------------------------------------------------
# Reading the verifier log.

# "12: (bf) r1 = r2    ; R1=..." while walking, "     12: .1........ (bf) r1 = r2" in
# the "Live regs before insn" listing (6.18), where the column shows live registers.
_WALK_LINE = re.compile(r"^(\d+): (\([0-9a-f]{2}\) .*?|BUG_\w+)(?:\s+;.*)?$")
_LIVE_LINE = re.compile(r"^\s+(\d+): [.0-9]{10,12} (\([0-9a-f]{2}\) .*?|BUG_\w+)\s*$")


def log_insn_lines(log: str) -> Iterator[tuple[int, str]]:
    for line in log.splitlines():
        m = _WALK_LINE.match(line) or _LIVE_LINE.match(line)
        if m:
            yield int(m.group(1)), m.group(2).rstrip()


# Pseudo forms whose immediate the kernel has replaced with a kernel address by the
# time it prints (map, map value, ksym): the log shows the address.
_ADDRESS_SOURCES = {1, 2, 3, 5, 6}


@cache
def vmlinux_btf():
    from bpfreplay.decode.btf import parse_btf

    return parse_btf(Path("/sys/kernel/btf/vmlinux").read_bytes())


def btf_id(name: str, kind: int) -> int:
    t = vmlinux_btf().by_name(name, kind)
    assert t is not None, f"{name} not in vmlinux BTF"
    return t.id


# The kfunc the call tests use (6.2+); progs.c calls it too.
KFUNC = "bpf_rcu_read_lock"


def kfunc_id() -> int:
    """KFUNC's BTF id, or a skip on a kernel that does not have it (its own answer)."""
    from bpfreplay.decode.btf import Kind

    t = vmlinux_btf().by_name(KFUNC, Kind.FUNC)
    if t is None:
        pytest.skip(f"this kernel ({os.uname().release}) has no kfunc {KFUNC} in its BTF")
    return t.id


def has_listing(log: str) -> bool:
    """The "Live regs before insn" listing (6.18's verifier prints every instruction
    before walking); older verifiers print only what they walk."""
    return "Live regs" in log


def skip_refused_unprinted(result: LoadResult) -> None:
    """A verifier without the listing that refuses the program before walking it
    ("unknown opcode d7": 5.10 and 6.1 have no cpu-v4 instructions) prints nothing to
    compare: skip, quoting the kernel."""
    if result.fd < 0 and not has_listing(result.log) and not any(log_insn_lines(result.log)):
        refusal = [line for line in result.log.splitlines()
                   if line and not line.startswith(("func#", "processed"))]
        pytest.skip(f"this kernel ({os.uname().release}) refuses the program before "
                    f"printing it: {refusal[-1] if refusal else result.log[-200:]!r}")


def verifier_resolver() -> Resolver:
    """What the verifier's callbacks know: kfunc names from vmlinux BTF."""
    return Resolver(
        kfunc_name=lambda type_id, off: vmlinux_btf().name(type_id) if off == 0 else None,
        imm64_text=lambda insn: "<address>" if insn.src in _ADDRESS_SOURCES else None,
    )


def compare_with_log(insns: bytes, log: str) -> int:
    """Every instruction line of the log equals our text at that index; every
    instruction of ours is printed at least once. Returns the lines compared."""
    ours = {insn.index: (insn, format_insn(insn, resolver=verifier_resolver()))
            for insn in decode_insns(insns)}
    seen: set[int] = set()
    compared = 0
    for index, text in log_insn_lines(log):
        assert index in ours, f"log prints an instruction at {index}, we have none there"
        insn, mine = ours[index]
        if insn.code == 0x18 and insn.src in _ADDRESS_SOURCES:
            m = re.fullmatch(r"(.* = )0x([0-9a-f]+)", text)
            # a kernel address: the upper half, 0xff00... with 5-level paging (the
            # guests' -cpu max has LA57: 0xff2333c9411edb10 on 6.1), 0xffff... with 4
            assert m and int(m.group(2), 16) >= 0xFF00000000000000, text
            text = m.group(1) + "<address>"
        assert mine == text, f"insn {index}: ours {mine!r}, kernel {text!r}"
        seen.add(index)
        compared += 1
    missing = sorted(set(ours) - seen)
    if not has_listing(log) and seen and all(i > max(seen) for i in missing):
        missing = []  # no listing: the walk printed a prefix, stopped where it refused
    assert not missing, f"the log never printed instructions {missing}:\n{log[:3000]}"
    # "func#1 @24": where the kernel found subprograms, which bpf-to-bpf calls and
    # ld_imm64 of functions point at.
    starts = {int(m) for m in re.findall(r"^func#\d+ @(\d+)$", log, re.M)}
    for insn, _ in ours.values():
        if insn.src == 1 and insn.is_call or insn.is_ld_imm64 and insn.src == 4:
            assert insn.branch_target in starts, (insn, sorted(starts))
    return compared


# --------------------------------------------------------------------------------------
# 1. Against the verifier log.


@pytest.fixture
def fds() -> Iterator[list[int]]:
    """fds a test opens; all closed at the end."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)


def load_and_compare(insns: bytes, prog_type: int, fds: list[int],
                     fd_array: list[int] | None = None) -> LoadResult:
    result = prog_load(insns, prog_type, fd_array)
    if result.fd >= 0:
        fds.append(result.fd)
    skip_refused_unprinted(result)
    assert "Live regs" in result.log or result.log.count("\n") > 2, result.log[:2000]
    compare_with_log(insns, result.log)
    return result


@pytest.mark.parametrize("family", ["alu", "memory", "packet", "jump"])
def test_verifier_log_families(family: str, fds: list[int]) -> None:
    require_kernel()
    insns, prog_type = {
        "alu": (alu_family(), SOCKET_FILTER),
        "memory": (memory_family(), SOCKET_FILTER),
        "packet": (packet_family(), SOCKET_FILTER),
        "jump": (jump_family(), SOCKET_FILTER),
    }[family]
    load_and_compare(insns, prog_type, fds)


def test_verifier_log_calls(fds: list[int]) -> None:
    require_kernel()
    insns = call_family(kfunc_id())
    result = load_and_compare(insns, TRACEPOINT, fds)
    assert "call bpf_rcu_read_lock#" in result.log  # the kfunc, named by the kernel
    # Without a kfunc resolver we print what the kernel prints when it cannot name one.
    kfunc = decode_insns(insns)[3]
    assert format_insn(kfunc) == f"(85) call kernel-function#{kfunc.imm}"


def test_verifier_log_ld_imm64(fds: list[int]) -> None:
    require_kernel()
    # A ksym: without CONFIG_KALLSYMS_ALL only functions have addresses, so a function.
    ksym = kfunc_id()
    map_fd = map_create(2, 4, 16, 1)  # array
    fds.append(map_fd)
    insns = ld_imm64_family(map_fd, ksym)
    load_and_compare(insns, TRACEPOINT, fds, fd_array=[map_fd])
    # Before load, with the loader's view of the immediates:
    text = [format_insn(i, resolver=BEFORE_LOAD) for i in decode_insns(insns)]
    assert text[3:8] == [f"(18) r1 = map[fd:{map_fd}]", f"(18) r1 = map[fd:{map_fd}][0]+4",
                         f"(18) r1 = btf_id[{ksym}]",
                         "(18) r1 = map[idx:0]", "(18) r1 = map[idx:0]+4"]


# Forms a compiler does not emit, each at the end of a small program: the kernel
# prints them (in its listing) before it refuses most of them.
ODD_FORMS = [
    ins(0xBF, 1, 2, 1, 0x10002),   # addr_space_cast
    ins(0xBF, 1, 2, -1),           # the kernel's per-cpu address move
    ins(0x3F, 1, 2, 2),            # div with an off that is not the signed one
    ins(0xBF, 1, 2, 24),           # mov with an off that is no sign extension
    ins(0x0F, 1, 2, 8),            # add with the off of a sign-extending mov
    ins(0xD4, 1, 0, 0, 8),         # le8
    ins(0xE5, 0, 1),               # jcond that is not may_goto: "(null)"
    ins(0x85, 0, 3, 0, 7),         # call with an unknown src_reg
    ins(0x85, 0, 0, 0, 5000),      # call of an unknown helper
    ins(0x85, 0, 0, 0, -1),
    ins(0x95, 3, 4, 5, 6),         # exit with fields set (ends the program)
    ins(0x15, 11, 0, 0, 0),        # register past r10
]


@pytest.mark.parametrize("form", ODD_FORMS, ids=lambda f: f.hex())
def test_verifier_log_odd_forms(form: bytes, fds: list[int]) -> None:
    require_kernel()
    insns = init_regs() + ins(0x7A, 10, 0, -8, 0) + form + (b"" if form[0] == 0x95 else RET0)
    result = prog_load(insns, SOCKET_FILTER)
    if result.fd >= 0:
        fds.append(result.fd)
    if not has_listing(result.log):
        # Walked, these forms print as the kernel's printer of that release reads them
        # (5.10 prints an addr_space_cast as a plain mov, names a helper whatever
        # src_reg says) and most are refused before printing: what we print follows
        # the printer of the kernels with the listing.
        pytest.skip(f"this kernel ({os.uname().release}) has no 'Live regs' listing "
                    "that prints forms it refuses")
    compare_with_log(insns, result.log)


# -- compiled programs, relocated by the test (a minimal libbpf: maps, global data,
#    .text subprograms, kfunc externs) -------------------------------------------------

MAP_SPECS = {"counts": (1, 4, 8, 64)}  # name -> (type, key size, value size, entries)


def compile_progs(tmp: Path, mcpu: str) -> Path:
    require_tool("clang")
    out = tmp / f"progs_{mcpu}.o"
    subprocess.run(["clang", *CLANG_FLAGS, f"-mcpu={mcpu}", "-c", str(DATA / "progs.c"),
                    "-o", str(out)], check=True, capture_output=True, timeout=120)
    return out


def relocate(obj: Path, section: str, fds: list[int]) -> bytes:
    """The program in ``section`` with .text appended and every relocation applied, the
    way libbpf does for these simple cases."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    from bpfreplay.decode.btf import Kind

    with obj.open("rb") as f:
        elf = ELFFile(f)
        prog = bytearray(elf.get_section_by_name(section).data())
        text_sec = elf.get_section_by_name(".text")
        text_base = len(prog) // 8
        sections = {section: (prog, 0)}
        if text_sec is not None and text_sec.data_size and _uses_text(elf, section):
            prog += text_sec.data()
            sections[".text"] = (prog, text_base)
        data_maps: dict[str, int] = {}
        named_maps: dict[str, int] = {}
        for name, (_, base) in list(sections.items()):
            rel = elf.get_section_by_name(".rel" + name)
            if not isinstance(rel, RelocationSection):
                continue
            symtab = elf.get_section(rel["sh_link"])
            for r in rel.iter_relocations():
                sym = symtab.get_symbol(r["r_info_sym"])
                i = base + r["r_offset"] // 8
                code, regs, off, imm = struct.unpack_from("<BBhi", prog, i * 8)
                shndx = sym["st_shndx"]
                if shndx == "SHN_UNDEF":  # a kfunc extern
                    struct.pack_into("<BBhi", prog, i * 8, code, (regs & 0x0F) | 2 << 4, 0,
                                     btf_id(sym.name, Kind.FUNC))
                    continue
                target = elf.get_section(shndx).name
                if target == ".text":
                    if code == 0x18:  # address of a subprogram: imm is a byte offset
                        dest = text_base + (sym["st_value"] + imm) // 8
                        src = 4
                    else:              # call: imm counts instructions from the symbol
                        dest = text_base + sym["st_value"] // 8 + imm + 1
                        src = 1
                    struct.pack_into("<BBhi", prog, i * 8, code, (regs & 0x0F) | src << 4,
                                     off, dest - i - 1)
                elif target == ".maps":
                    if sym.name not in named_maps:
                        named_maps[sym.name] = map_create(*MAP_SPECS[sym.name])
                        fds.append(named_maps[sym.name])
                    struct.pack_into("<BBhi", prog, i * 8, code, (regs & 0x0F) | 1 << 4, off,
                                     named_maps[sym.name])
                else:  # global data: one array map per section, value = the section
                    if target not in data_maps:
                        size = max(elf.get_section(shndx)["sh_size"], 1)
                        data_maps[target] = map_create(2, 4, size, 1)
                        fds.append(data_maps[target])
                    struct.pack_into("<BBhi", prog, i * 8, code, (regs & 0x0F) | 2 << 4, off,
                                     data_maps[target])
                    struct.pack_into("<i", prog, i * 8 + 12, sym["st_value"] + imm)
        return bytes(prog)


def _uses_text(elf, section: str) -> bool:
    from elftools.elf.relocation import RelocationSection

    rel = elf.get_section_by_name(".rel" + section)
    if not isinstance(rel, RelocationSection):
        return False
    symtab = elf.get_section(rel["sh_link"])
    return any(elf.get_section(sym["st_shndx"]).name == ".text"
               for r in rel.iter_relocations()
               if (sym := symtab.get_symbol(r["r_info_sym"]))["st_shndx"] != "SHN_UNDEF")


@pytest.mark.parametrize("mcpu", ["v1", "v2", "v3"])
@pytest.mark.parametrize("section,prog_type", [
    ("tracepoint/syscalls/sys_enter_write", TRACEPOINT),
    ("socket", SOCKET_FILTER),
])
def test_verifier_log_compiled(tmp_path: Path, mcpu: str, section: str, prog_type: int,
                               fds: list[int]) -> None:
    require_kernel()
    if section.startswith("tracepoint"):
        kfunc_id()  # its program calls the kfunc
    insns = relocate(compile_progs(tmp_path, mcpu), section, fds)
    # Loaded without BTF, so the program with a bpf_loop callback is refused ("missing
    # btf func_info") after the walk began: the listing still shows every instruction.
    load_and_compare(insns, prog_type, fds)


def test_verifier_log_minimal(minimal_object: Path, fds: list[int]) -> None:
    """The reference object's handle_tp."""
    require_kernel()
    insns = relocate(minimal_object, "tp/syscalls/sys_enter_write", fds)
    result = load_and_compare(insns, TRACEPOINT, fds)
    assert result.fd >= 0, result.log[-2000:]
    lines = disassemble(insns, resolver=verifier_resolver())
    assert lines[0] == "0: (85) call bpf_get_current_pid_tgid#14"


# --------------------------------------------------------------------------------------
# 2. Against bpftool prog dump xlated.


def kallsyms() -> dict[int, str]:
    """address -> name, the first name listed for an address (as bpftool keeps them)."""
    names: dict[int, str] = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            address = int(parts[0], 16)
            if address:
                names.setdefault(address, parts[2])
    return names


def prog_info(prog_fd: int) -> tuple[bytes, list[int]]:
    """(xlated instructions, jited_ksyms) through BPF_OBJ_GET_INFO_BY_FD."""
    info = ctypes.create_string_buffer(232)

    def get() -> None:
        attr = bytearray(16)
        struct.pack_into("<IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
        assert bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0

    get()
    xlated_len, = struct.unpack_from("<I", info, 20)
    nr_ksyms, = struct.unpack_from("<I", info, 104)
    xlated = ctypes.create_string_buffer(xlated_len)
    ksyms = (ctypes.c_uint64 * max(nr_ksyms, 1))()
    ctypes.memset(info, 0, 232)
    struct.pack_into("<I", info, 20, xlated_len)
    struct.pack_into("<Q", info, 32, ctypes.addressof(xlated))
    struct.pack_into("<I", info, 104, nr_ksyms)
    struct.pack_into("<Q", info, 112, ctypes.addressof(ksyms))
    get()
    return xlated.raw, list(ksyms)[:nr_ksyms]


def xlated_resolver(jited_ksyms: list[int]) -> Resolver:
    """bpftool's callbacks: call targets from kallsyms, map ids as map[id:N]."""
    syms = kallsyms()
    call_base = next(a for a, n in syms.items() if n == "__bpf_call_base")

    def call_target(insn: Insn) -> str:
        if insn.src == 1:
            # After JIT the kernel gives back the callee's subprogram index in imm and
            # the pc-relative offset in off; bpftool prints the offset.
            if not jited_ksyms:
                return f"{insn.off:+d}"
            address = jited_ksyms[insn.imm] if 0 <= insn.imm < len(jited_ksyms) else 0
            name = syms.get(address)
            return f"{insn.off:+d}#{name}" if name else f"{insn.off:+d}#0x{address:x}"
        address = (call_base + insn.imm) & (1 << 64) - 1
        return syms.get(address, f"0x{address:x}")

    return Resolver(call_target=call_target, imm64_text=xlated_imm64_text)


def bpftool_lines(text: str) -> dict[int, str]:
    lines = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+): (.*)$", line)
        if m:
            lines[int(m.group(1))] = m.group(2)
    return lines


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / f"bpfreplay_disasm_{os.getpid()}"
    yield path
    if path.exists():
        shutil.rmtree(path)
    assert not path.exists()


def compare_xlated(obj: Path, pin_dir: Path) -> int:
    require_kernel()
    bpftool = require_tool("bpftool")
    subprocess.run([bpftool, "prog", "loadall", str(obj), str(pin_dir)], check=True,
                   capture_output=True, timeout=120)
    compared = 0
    pins = sorted(pin_dir.iterdir())
    assert pins
    for pin in pins:
        text = subprocess.run([bpftool, "prog", "dump", "xlated", "pinned", str(pin)],
                              check=True, capture_output=True, text=True, timeout=60).stdout
        attr = bytearray(16)
        path = ctypes.create_string_buffer(str(pin).encode())
        struct.pack_into("<Q", attr, 0, ctypes.addressof(path))
        prog_fd = bpf(BPF_OBJ_GET, attr)
        assert prog_fd >= 0
        try:
            xlated, ksyms = prog_info(prog_fd)
        finally:
            os.close(prog_fd)
        expected = bpftool_lines(text)
        resolver = xlated_resolver(ksyms)
        ours = {i.index: format_insn(i, resolver=resolver) for i in decode_insns(xlated)}
        assert ours == expected, "\n".join(
            f"{k}: ours {ours.get(k)!r} bpftool {expected.get(k)!r}"
            for k in sorted(set(ours) | set(expected)) if ours.get(k) != expected.get(k))
        compared += len(ours)
    return compared


@pytest.mark.parametrize("mcpu", ["v1", "v3"])
def test_bpftool_xlated_compiled(tmp_path: Path, mcpu: str, pin_dir: Path) -> None:
    require_kernel()
    kfunc_id()  # bpftool loads every program, the one calling the kfunc too
    assert compare_xlated(compile_progs(tmp_path, mcpu), pin_dir) > 50


def test_bpftool_xlated_minimal(minimal_object: Path, pin_dir: Path) -> None:
    require_kernel()
    assert compare_xlated(minimal_object, pin_dir) >= 11


# --------------------------------------------------------------------------------------
# 3. Every form against llvm-objdump.


# llvm-objdump 14 decodes the classic forms; these need a newer one (llvm 22 decodes them
# all): sign extension, signed div, mod, bswap, BPF_ST, ldsx, gotol, may_goto, jset,
# 32-bit atomics other than add, load-acquire/store-release, addr_space_cast, gotox.
NEW_LLVM = 22


def llvm_version_needed(form: bytes) -> int | None:
    """The llvm-objdump version the test asks to decode ``form``; None: no llvm
    decodes it (the kernel's internal forms, registers past r10)."""
    code, regs, off, imm = struct.unpack_from("<BBhi", form)
    cls, op, mode = code & 0x07, code & 0xF0, code & 0xE0
    if regs & 0x0F > 10 or regs >> 4 > 10 and code != 0x18:
        return None
    if code == 0xC2 or code == 0xBF and off == -1:  # nospec, per-cpu move
        return None
    new = (
        cls in (4, 7) and (op == 0x90 or op == 0x30 and off == 1 or code == 0xD7
                           or op == 0xB0 and off != 0)
        or cls in (5, 6) and op == 0x40
        or code in (0x06, 0x0D, 0xE5)
        or cls == 1 and mode == 0x80
        or cls == 2
        or cls == 3 and mode == 0xC0 and (imm in (0x100, 0x110)
                                          or code & 0x18 != 0x18 and imm != 0)
    )
    return NEW_LLVM if new else 14


def all_forms() -> list[bytes]:
    programs = [alu_family(), packet_family(), call_family(12345), memory_family(),
                jump_family(), ld_imm64_family(5, 777)]
    return [form for p in programs for form in _split(p)] + [
        ins(0xBF, 1, 2, 1, 0x10002),    # addr_space_cast
        ins(0x0D, 3),                   # gotox
        ins(0x79, 1, 2, -32768),        # the lowest offset
        ins(0x07, 9, 0, 0, -(1 << 31)),  # the lowest immediate
        ins(0x06, 0, 0, 0, -300000),    # gotol past what off could reach
        ins(0x79, 11, 12, 5),           # registers past r10: no llvm decodes them
        ins(0xC2),                      # nospec: the kernel's own
        ins(0xBF, 1, 2, -1),            # per-cpu move: the kernel's own
    ]


def _split(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = 16 if data[i] == 0x18 else 8
        out.append(data[i:i + n])
        i += n
    return out


def objdumps() -> list[tuple[str, int]]:
    found = []
    for name in ["llvm-objdump", *(f"llvm-objdump-{v}" for v in range(30, 13, -1))]:
        path = shutil.which(name)
        if not path:
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"LLVM version (\d+)", out)
        if m and all(int(m.group(1)) != v for _, v in found):
            found.append((path, int(m.group(1))))
    return found


def objdump_text(tmp: Path, objdump: str, version: int, data: bytes) -> dict[int, str]:
    asm = tmp / "forms.s"
    asm.write_text(".text\n" + "".join(
        "  .byte " + ",".join(str(b) for b in data[i:i + 8]) + "\n"
        for i in range(0, len(data), 8)))
    obj = tmp / "forms.o"
    mc = shutil.which(f"llvm-mc-{version}") or require_tool("llvm-mc")
    subprocess.run([mc, "-triple", "bpfel", "-filetype=obj", str(asm), "-o", str(obj)],
                   check=True, capture_output=True, timeout=60)
    args = [objdump, "-d", str(obj)] + (["--mcpu=v4"] if version >= 17 else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    lines = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+):\t[0-9a-f ]+\t(.*)$", line)
        if m:
            lines[int(m.group(1))] = m.group(2).strip()
    return lines


_REG = re.compile(r"\b[rw](\d+)\b")
_WORD_WITH_DIGITS = re.compile(r"\b[a-z_]+\d+\w*")
_NUMBER = re.compile(r"(?<![\w.])([-+]?)\s*(0x[0-9a-f]+|\d+)")


def registers_and_numbers(text: str) -> tuple[list[int], list[int]]:
    """The register numbers and the other numbers of a line, in order, with signs;
    names that contain digits (u32, bswap16, atomic64_..., xchg_64) dropped."""
    text = re.sub(r"^\([0-9a-f]{2}\) ", "", text)  # ours: the opcode
    text = re.sub(r"\s<\S+>$", "", text)        # llvm's branch target label
    text = re.sub(r"\bpc(?=[-+])", "", text)      # ours: pc+5
    regs = [int(x) for x in _REG.findall(text)]
    text = _WORD_WITH_DIGITS.sub(" ", _REG.sub(" R ", text))
    numbers = [int(sign + value, 0) for sign, value in _NUMBER.findall(text)]
    return regs, numbers


def _same(a: list[int], b: list[int], bits: int) -> bool:
    mask = (1 << bits) - 1
    return len(a) == len(b) and all(x & mask == y & mask for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("which", ["system", "newest"])
def test_llvm_objdump_forms(tmp_path: Path, which: str) -> None:
    require_tool("llvm-objdump")
    tools = objdumps()
    objdump, version = tools[0] if which == "system" else max(tools, key=lambda t: t[1])
    if which == "newest" and version < NEW_LLVM:
        # Debian 12 has llvm-22 as a package; CI does not need it, so no failure here.
        pytest.skip(f"the newest llvm-objdump is {version}; newer forms need {NEW_LLVM}")
    forms = [f for f in all_forms() if (llvm_version_needed(f) or 1000) <= version]
    data = b"".join(forms)
    theirs = objdump_text(tmp_path, objdump, version, data)
    ours = decode_insns(data)
    assert len(ours) == len(forms)
    checked = branches = 0
    for insn, form in zip(ours, forms, strict=True):
        text = theirs.get(insn.index)
        assert text and text != "<unknown>", f"llvm {version} cannot decode {form.hex()}"
        mine = format_insn(insn, resolver=BEFORE_LOAD)
        their_regs, their_numbers = registers_and_numbers(text)
        label = re.search(r"<\.text\+0x([0-9a-f]+)>$", text)
        if label:  # llvm names where a jump lands: so does Insn.branch_target
            target = insn.branch_target
            assert target is not None and (target * 8 - int(label.group(1), 16)) % 2**64 == 0, \
                f"{form.hex()}: branch_target {target}, llvm {text!r}"
            branches += 1
        if insn.code == 0x18 and insn.src:  # llvm: ld_pseudo rD, src, imm
            assert (their_regs, their_numbers) == ([insn.dst], [insn.src, insn.imm]), text
            checked += 1
            continue
        my_regs, my_numbers = registers_and_numbers(mine)
        assert my_regs == their_regs, f"{form.hex()}: ours {mine!r}, llvm {text!r}"
        if insn.code & 0xE7 == 0x40:  # ld_ind: llvm does not print the immediate
            my_numbers = my_numbers[:len(their_numbers)]
        bits = 64 if insn.code == 0x18 else 32
        assert _same(my_numbers, their_numbers, bits), \
            f"{form.hex()}: ours {mine!r}, llvm {text!r}"
        checked += 1
    assert checked == len(forms) > 100
    assert branches > 20


# --------------------------------------------------------------------------------------
# 4. Anything decodes or raises DecodeError; whole programs always print.


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        insns = decode_insns(data)
    except DecodeError:
        assert len(data) % 8 or _cut_ld_imm64(data)
        return
    for insn in insns:
        format_insn(insn)
        format_insn(insn, resolver=BEFORE_LOAD)
        format_insn(insn, resolver=Resolver(imm64_text=xlated_imm64_text))


def _cut_ld_imm64(data: bytes) -> bool:
    i = 0
    while i < len(data) // 8:
        if data[i * 8] == 0x18:
            if i + 1 >= len(data) // 8:
                return True
            i += 2
        else:
            i += 1
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), max_size=40))
def test_aligned_programs_disassemble(slots: list[bytes]) -> None:
    # Make every ld_imm64 whole: a first half at the end gets a second half.
    data = b"".join(slots)
    if _cut_ld_imm64(data):
        data += bytes(8)
    lines = disassemble(data)
    insns = decode_insns(data)
    assert len(lines) == len(insns)
    assert sum(i.slots for i in insns) == len(data) // 8
    for line, insn in zip(lines, insns, strict=True):
        assert line.startswith(f"{insn.index}: ")
        # The fields, read here with the test's own struct format.
        code, regs, off, imm = struct.unpack_from("<BBhi", data, insn.index * 8)
        imm64 = None
        if code == 0x18:
            imm64 = struct.unpack_from("<I", data, insn.index * 8 + 12)[0] << 32 | imm & 0xFFFFFFFF
        assert insn == Insn(insn.index, code, regs & 0x0F, regs >> 4, off, imm, imm64)


def test_decode_errors_say_what() -> None:
    with pytest.raises(DecodeError, match="13 bytes"):
        decode_insns(bytes(13))
    with pytest.raises(DecodeError, match="ld_imm64 at 1"):
        decode_insns(ins(0xB7) + ins(0x18, 1))

