"""eBPF instructions: decode a buffer of ``struct bpf_insn`` and print each instruction
in the kernel's own text (kernel/bpf/disasm.c ``print_bpf_insn``), the text of the
verifier log (log_level 2) and of ``bpftool prog dump xlated``.

The kernel lets its callers name things it cannot (``struct bpf_insn_cbs``); here a
``Resolver`` does that: helper names, kfunc names, call targets and the text of
ld_imm64 pseudo forms. The default resolver prints what the verifier log prints
(helpers by id, ``kernel-function`` for kfuncs, ld_imm64 immediates in hex).

Pure: bytes in, text out. ``decode_insns`` raises only ``DecodeError``; ``format_insn``
never raises: an opcode the kernel does not know prints as the kernel prints it
(``BUG_ldx_a1``, ``(null)`` for an operator it has no name for).
"""

from __future__ import annotations

import enum
import gc
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from bpfreplay.errors import DecodeError

INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")


class InsnClass(enum.IntEnum):
    """BPF_CLASS(code): the low three bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class LdImm64Src(enum.IntEnum):
    """What the src_reg of an ld_imm64 says its immediate is (BPF_PSEUDO_*)."""

    IMM = 0
    MAP_FD = 1          # imm: map fd
    MAP_VALUE = 2       # imm: map fd, second imm: offset into value 0
    BTF_ID = 3          # imm: BTF id of a ksym, second imm: BTF object fd (0: vmlinux)
    FUNC = 4            # imm: instruction offset of a subprogram
    MAP_IDX = 5         # imm: index into the fd_array
    MAP_IDX_VALUE = 6   # imm: index into the fd_array, second imm: offset


class CallSrc(enum.IntEnum):
    """What the src_reg of a call says its immediate is."""

    HELPER = 0          # imm: enum bpf_func_id (after load: address offset)
    PSEUDO_CALL = 1     # imm: instruction offset of a subprogram (bpf-to-bpf call)
    KFUNC = 2           # imm: BTF id of a kernel function, off: fd_array index of its BTF


# Opcode fields (include/uapi/linux/bpf_common.h, bpf.h).
BPF_K, BPF_X = 0x00, 0x08
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
BPF_NOSPEC = 0xC0  # BPF_ST | BPF_NOSPEC: the kernel's own speculation barrier, no uapi
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV = 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0
BPF_ARSH, BPF_END = 0xC0, 0xD0
BPF_TO_BE = 0x08
BPF_JA, BPF_CALL, BPF_EXIT, BPF_JCOND = 0x00, 0x80, 0x90, 0xE0
BPF_MAY_GOTO = 0  # src_reg of BPF_JMP | BPF_JCOND
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110
BPF_ADDR_SPACE_CAST = 1  # off of ALU64 MOV X
BPF_ADDR_PERCPU = -1     # off of ALU64 MOV X: the kernel's per-cpu address move, no uapi

LD_IMM64 = InsnClass.LD | BPF_IMM | BPF_DW  # 0x18

_ALU_OPS = {
    BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=", BPF_AND: "&=",
    BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_NEG: "neg", BPF_MOD: "%=", BPF_XOR: "^=",
    BPF_MOV: "=", BPF_ARSH: "s>>=", BPF_END: "endian",
}
_SIGNED_ALU_OPS = {BPF_DIV: "s/=", BPF_MOD: "s%="}
_MOVSX_CASTS = {8: "(s8)", 16: "(s16)", 32: "(s32)"}
_ATOMIC_OPS = {BPF_ADD: "add", BPF_AND: "and", BPF_OR: "or", BPF_XOR: "xor"}
_FETCH_OPS = frozenset(op | BPF_FETCH for op in _ATOMIC_OPS)
_SIZES = {BPF_W: "u32", BPF_H: "u16", BPF_B: "u8", BPF_DW: "u64"}
_SIGNED_SIZES = {BPF_W: "s32", BPF_H: "s16", BPF_B: "s8"}
_JMP_OPS = {
    0x00: "jmp", 0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>",
    0x70: "s>=", 0x80: "call", 0x90: "exit", 0xA0: "<", 0xB0: "<=", 0xC0: "s<", 0xD0: "s<=",
}
# What the kernel's printf makes of a NULL string: operators its tables do not name.
_NULL = "(null)"


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction. An ld_imm64 spans two 8-byte slots: ``imm`` is its first
    half's immediate and ``imm64`` the full 64-bit immediate (unsigned); the second
    slot's other fields (zero in any program the kernel accepts) are not kept."""

    index: int  # slot number: the kernel's instruction index
    code: int
    dst: int
    src: int
    off: int    # signed 16-bit
    imm: int    # signed 32-bit
    imm64: int | None = None

    @property
    def slots(self) -> int:
        return 2 if self.code == LD_IMM64 else 1

    @property
    def cls(self) -> InsnClass:
        return InsnClass(self.code & 0x07)

    @property
    def imm_hi(self) -> int:
        """The second slot's immediate of an ld_imm64 (signed 32-bit), else 0."""
        if self.imm64 is None:
            return 0
        hi = self.imm64 >> 32
        return hi - (1 << 32) if hi & 0x80000000 else hi

    @property
    def is_ld_imm64(self) -> bool:
        return self.code == LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.code & 0x07 in (InsnClass.JMP, InsnClass.JMP32) and \
            self.code & 0xF0 == BPF_CALL

    @property
    def is_exit(self) -> bool:
        return self.code == InsnClass.JMP | BPF_EXIT

    @property
    def branch_target(self) -> int | None:
        """The instruction index this one may transfer control to (a jump, a
        bpf-to-bpf call, an ld_imm64 of a subprogram's address), else None."""
        cls = self.code & 0x07
        nxt = self.index + 1
        if self.code == LD_IMM64:
            return nxt + self.imm if self.src == LdImm64Src.FUNC else None
        if cls not in (InsnClass.JMP, InsnClass.JMP32):
            return None
        op = self.code & 0xF0
        if op == BPF_CALL:
            return nxt + self.imm if self.src == CallSrc.PSEUDO_CALL else None
        if op == BPF_EXIT or self.code == InsnClass.JMP | BPF_JA | BPF_X:
            return None
        if self.code == InsnClass.JMP32 | BPF_JA:
            return nxt + self.imm
        return nxt + self.off


@dataclass(frozen=True, slots=True)
class Resolver:
    """Names the kernel's disassembler asks its caller for (``struct bpf_insn_cbs``).
    Each callback may return None to fall back to the default text.

    - ``helper_name(id)``: name of helper ``id``, e.g. ``bpf_map_lookup_elem``.
      Default: this kernel's ``enum bpf_func_id``. Asked only for calls with src_reg 0.
    - ``call_target(insn)``: text for a call the helper table does not name (the
      kernel's ``cb_call``): after load, helper and kfunc calls hold address offsets;
      for a bpf-to-bpf call the text follows ``call pc``.
    - ``kfunc_name(btf_id, off)``: name of a kfunc (src_reg 2), asked after
      ``call_target``. Default ``kernel-function``.
    - ``imm64_text(insn)``: what follows ``rN = `` for an ld_imm64 (the kernel's
      ``cb_imm``). Default ``0x`` and the 64-bit immediate in hex.
    """

    helper_name: Callable[[int], str | None] | None = None
    call_target: Callable[[Insn], str | None] | None = None
    kfunc_name: Callable[[int, int], str | None] | None = None
    imm64_text: Callable[[Insn], str | None] | None = None


@cache
def kernel_helper_name(func_id: int) -> str | None:
    """``bpf_map_lookup_elem`` for 1, as the kernel prints helper ``func_id``; None for
    an id the ``enum bpf_func_id`` of the uapi table (the generating kernel's) lacks."""
    from bpfreplay.uapi import enum_name

    name = enum_name("bpf_func_id", func_id)
    if name is None or not name.startswith("BPF_FUNC_"):
        return None  # __BPF_FUNC_MAX_ID and beyond
    return "bpf_" + name[len("BPF_FUNC_"):]


def before_load_imm64_text(insn: Insn) -> str | None:
    """ld_imm64 pseudo forms as a loader wrote them, before the kernel rewrote them:
    ``map[fd:5]``, ``map[fd:5][0]+16``, ``map[idx:1]``, ``map[idx:1]+16``,
    ``btf_id[1234]`` (``btf_id[1234,btf_fd:7]`` for a module's BTF), ``subprog[+5]``."""
    src, imm, hi = insn.src, insn.imm, insn.imm_hi
    if src == LdImm64Src.MAP_FD:
        return f"map[fd:{imm}]"
    if src == LdImm64Src.MAP_VALUE:
        return f"map[fd:{imm}][0]+{hi}"
    if src == LdImm64Src.MAP_IDX:
        return f"map[idx:{imm}]"
    if src == LdImm64Src.MAP_IDX_VALUE:
        return f"map[idx:{imm}]+{hi}"
    if src == LdImm64Src.BTF_ID:
        return f"btf_id[{imm}]" if hi == 0 else f"btf_id[{imm},btf_fd:{hi}]"
    if src == LdImm64Src.FUNC:
        return f"subprog[{imm:+d}]"
    return None


def xlated_imm64_text(insn: Insn) -> str | None:
    """ld_imm64 forms of a program the kernel gave back (BPF_PROG_GET_INFO xlated_prog_insns,
    where map references hold map ids), printed as bpftool prints them."""
    src, imm, hi = insn.src, insn.imm & 0xFFFFFFFF, insn.imm_hi & 0xFFFFFFFF
    if src == LdImm64Src.MAP_FD:
        return f"map[id:{imm}]"
    if src == LdImm64Src.MAP_VALUE:
        return f"map[id:{imm}][0]+{hi}"
    if src == LdImm64Src.MAP_IDX_VALUE:
        return f"map[idx:{imm}]+{hi}"
    if src == LdImm64Src.FUNC:
        return f"subprog[{insn.imm:+d}]"
    return None


_SLOT_SETTERS = tuple(getattr(Insn, name).__set__
                      for name in ("index", "code", "dst", "src", "off", "imm", "imm64"))

DEFAULT_RESOLVER = Resolver()
BEFORE_LOAD = Resolver(imm64_text=before_load_imm64_text)


def decode_insns(data: bytes | bytearray | memoryview) -> list[Insn]:
    """Decode a buffer of ``struct bpf_insn``; an ld_imm64 takes two slots."""
    if len(data) % INSN_SIZE:
        raise DecodeError(f"decoding instructions: {len(data)} bytes is not a whole number "
                          f"of {INSN_SIZE}-byte instructions")
    fields = list(_INSN.iter_unpack(data))
    count = len(fields)
    if count and fields[-1][0] == LD_IMM64 and _cut_at_end(fields):
        raise DecodeError(f"decoding instructions: the ld_imm64 at {count - 1} is cut (its "
                          f"second half is past the end of {count} slots)")
    # A program holds up to a million instructions: skip the dataclass __init__ (its
    # frozen-field writes cost half the time) and the cyclic GC, which these objects
    # cannot feed but which their number would trigger again and again.
    new, (set_index, set_code, set_dst, set_src, set_off, set_imm, set_imm64) = \
        object.__new__, _SLOT_SETTERS
    insns: list[Insn] = []
    append = insns.append
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        i = 0
        while i < count:
            code, regs, off, imm = fields[i]
            insn = new(Insn)
            set_index(insn, i)
            set_code(insn, code)
            set_dst(insn, regs & 0x0F)
            set_src(insn, regs >> 4)
            set_off(insn, off)
            set_imm(insn, imm)
            if code == LD_IMM64:
                set_imm64(insn, ((fields[i + 1][3] & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF))
                i += 2
            else:
                set_imm64(insn, None)
                i += 1
            append(insn)
    finally:
        if gc_was_enabled:
            gc.enable()
    return insns


def _cut_at_end(fields: list[tuple[int, int, int, int]]) -> bool:
    """Whether the last slot is the first half of an ld_imm64 (walking from the start:
    an 0x18 byte in a second half is data, not an opcode)."""
    i, count = 0, len(fields)
    while i < count:
        if fields[i][0] == LD_IMM64:
            if i + 1 == count:
                return True
            i += 2
        else:
            i += 1
    return False


def disassemble(data: bytes | bytearray | memoryview, *,
                resolver: Resolver | None = None) -> list[str]:
    """``N: (cc) text`` for each instruction, as the verifier log prints them."""
    return [f"{insn.index}: {format_insn(insn, resolver=resolver)}"
            for insn in decode_insns(data)]


def format_insn(insn: Insn, *, resolver: Resolver | None = None) -> str:
    """One instruction as the kernel prints it, without its index: ``(85) call ...``."""
    cls = insn.code & 0x07
    if cls in (InsnClass.ALU, InsnClass.ALU64):
        return _format_alu(insn, cls)
    if cls == InsnClass.STX:
        return _format_stx(insn)
    if cls == InsnClass.ST:
        return _format_st(insn)
    if cls == InsnClass.LDX:
        return _format_ldx(insn)
    if cls == InsnClass.LD:
        return _format_ld(insn, resolver or DEFAULT_RESOLVER)
    return _format_jmp(insn, cls, resolver or DEFAULT_RESOLVER)


def _format_alu(insn: Insn, cls: int) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    op = code & 0xF0
    reg = "w" if cls == InsnClass.ALU else "r"
    head = f"({code:02x})"
    if op == BPF_END:
        if cls == InsnClass.ALU64:
            return f"{head} r{dst} = bswap{imm} r{dst}"
        return f"{head} r{dst} = {'be' if code & BPF_TO_BE else 'le'}{imm} r{dst}"
    if op == BPF_NEG:
        return f"{head} {reg}{dst} = -{reg}{dst}"
    if code == InsnClass.ALU64 | BPF_MOV | BPF_X:
        if off == BPF_ADDR_SPACE_CAST:
            u32 = imm & 0xFFFFFFFF
            return f"{head} r{dst} = addr_space_cast(r{src}, {u32 >> 16}, {u32 & 0xFFFF})"
        if off == BPF_ADDR_PERCPU:
            return f"{head} r{dst} = &(void __percpu *)(r{src})"
    if off == 1 and op in _SIGNED_ALU_OPS:
        name = _SIGNED_ALU_OPS[op]
    else:
        name = _ALU_OPS.get(op, _NULL)
    if code & BPF_X:
        cast = _MOVSX_CASTS.get(off, "") if op == BPF_MOV else ""
        return f"{head} {reg}{dst} {name} {cast}{reg}{src}"
    return f"{head} {reg}{dst} {name} {imm}"


def _mem(insn: Insn, base: int) -> str:
    return f"(r{base} {insn.off:+d})"


def _format_stx(insn: Insn) -> str:
    code, dst, src, imm = insn.code, insn.dst, insn.src, insn.imm
    mode, size = code & 0xE0, _SIZES[code & 0x18]
    head = f"({code:02x})"
    if mode == BPF_MEM:
        return f"{head} *({size} *){_mem(insn, dst)} = r{src}"
    if mode != BPF_ATOMIC:
        return f"BUG_{code:02x}"
    width = "64" if code & 0x18 == BPF_DW else ""
    if imm in (BPF_ADD, BPF_AND, BPF_OR, BPF_XOR):
        return f"{head} lock *({size} *){_mem(insn, dst)} {_ALU_OPS[imm]} r{src}"
    if imm in _FETCH_OPS:
        return (f"{head} r{src} = atomic{width}_fetch_{_ATOMIC_OPS[imm & 0xF0]}"
                f"(({size} *){_mem(insn, dst)}, r{src})")
    if imm == BPF_CMPXCHG:
        return f"{head} r0 = atomic{width}_cmpxchg(({size} *){_mem(insn, dst)}, r0, r{src})"
    if imm == BPF_XCHG:
        return f"{head} r{src} = atomic{width}_xchg(({size} *){_mem(insn, dst)}, r{src})"
    if imm == BPF_LOAD_ACQ:
        return f"{head} r{dst} = load_acquire(({size} *){_mem(insn, src)})"
    if imm == BPF_STORE_REL:
        return f"{head} store_release(({size} *){_mem(insn, dst)}, r{src})"
    return f"BUG_{code:02x}"


def _format_st(insn: Insn) -> str:
    code = insn.code
    mode = code & 0xE0
    if mode == BPF_MEM:
        return f"({code:02x}) *({_SIZES[code & 0x18]} *){_mem(insn, insn.dst)} = {insn.imm}"
    if mode == BPF_NOSPEC:
        return f"({code:02x}) nospec"
    return f"BUG_st_{code:02x}"


def _format_ldx(insn: Insn) -> str:
    code = insn.code
    mode, size = code & 0xE0, code & 0x18
    if mode == BPF_MEM:
        name = _SIZES[size]
    elif mode == BPF_MEMSX:
        name = _SIGNED_SIZES.get(size, _NULL)
    else:
        return f"BUG_ldx_{code:02x}"
    return f"({code:02x}) r{insn.dst} = *({name} *){_mem(insn, insn.src)}"


def _format_ld(insn: Insn, resolver: Resolver) -> str:
    code = insn.code
    mode, size = code & 0xE0, _SIZES[code & 0x18]
    if mode == BPF_ABS:
        return f"({code:02x}) r0 = *({size} *)skb[{insn.imm}]"
    if mode == BPF_IND:
        return f"({code:02x}) r0 = *({size} *)skb[r{insn.src} + {insn.imm}]"
    if code != LD_IMM64:
        return f"BUG_ld_{code:02x}"
    text = resolver.imm64_text(insn) if resolver.imm64_text else None
    if text is None:
        imm64 = insn.imm64 if insn.imm64 is not None else insn.imm & 0xFFFFFFFF
        text = f"0x{imm64:x}"
    return f"({code:02x}) r{insn.dst} = {text}"


def _call_name(insn: Insn, resolver: Resolver) -> str:
    # The kernel's order: the helper table (src_reg 0 only), then its caller's
    # callback, then a fixed text.
    if insn.src == CallSrc.HELPER:
        name = (resolver.helper_name or kernel_helper_name)(insn.imm)
        if name is not None:
            return name
    if resolver.call_target:
        name = resolver.call_target(insn)
        if name is not None:
            return name
    if insn.src == CallSrc.PSEUDO_CALL:
        return f"{insn.imm:+d}"
    if insn.src == CallSrc.KFUNC:
        name = resolver.kfunc_name(insn.imm, insn.off) if resolver.kfunc_name else None
        return name if name is not None else "kernel-function"
    return "unknown"


def _format_jmp(insn: Insn, cls: int, resolver: Resolver) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    op = code & 0xF0
    head = f"({code:02x})"
    if op == BPF_CALL:
        if src == CallSrc.PSEUDO_CALL:
            return f"{head} call pc{_call_name(insn, resolver)}"
        return f"{head} call {_call_name(insn, resolver)}#{imm}"
    if code == InsnClass.JMP | BPF_JA:
        return f"{head} goto pc{off:+d}"
    if code == InsnClass.JMP | BPF_JA | BPF_X:  # newer kernels; 6.18 refuses 0x0d
        return f"{head} gotox r{dst}"
    if code == InsnClass.JMP | BPF_JCOND and src == BPF_MAY_GOTO:
        return f"{head} may_goto pc{off:+d}"
    if code == InsnClass.JMP32 | BPF_JA:
        return f"{head} gotol pc{imm:+d}"
    if code == InsnClass.JMP | BPF_EXIT:
        return f"{head} exit"
    reg = "w" if cls == InsnClass.JMP32 else "r"
    name = _JMP_OPS.get(op, _NULL)
    if code & BPF_X:
        return f"{head} if {reg}{dst} {name} {reg}{src} goto pc{off:+d}"
    return f"{head} if {reg}{dst} {name} 0x{imm & 0xFFFFFFFF:x} goto pc{off:+d}"
