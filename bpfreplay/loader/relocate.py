"""The instructions, func_info and line_info of one entry program as libbpf 1.1.2 sends
them in BPF_PROG_LOAD (bpf_object__relocate() then bpf_object__load_progs()).

Pure: the kernel stage passes what only it knows — the fd of each map, the kernel's
BTF for CO-RE, resolved __ksym externs, the answers of two feature probes — and gets
bytes back. The steps, in libbpf's order:

1. CO-RE: every record of .BTF.ext patched against the target BTF (``core.py``), once
   per object (a shared candidate cache, as libbpf has);
2. ld_imm64 of subprogram addresses marked BPF_PSEUDO_FUNC;
3. subprogram calls: each called .text function is appended once to the calling
   entry program, depth first in call order, and calls are re-pointed to the copies;
   func_info/line_info of each copy follow, shifted to where it landed;
4. data: map references become BPF_PSEUDO_MAP_FD (fd), global variables
   BPF_PSEUDO_MAP_VALUE (fd, offset in the second imm), .kconfig externs a value of
   the .kconfig map, __ksym externs their BTF ids or addresses, kfunc calls
   BPF_PSEUDO_KFUNC_CALL;
5. on kernels without bpf_probe_read_{kernel,user}[_str], those helper calls become
   bpf_probe_read[_str].
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bpfreplay.decode.btf import Btf
from bpfreplay.errors import LoaderError
from bpfreplay.loader.spec import (
    ExternKind,
    ObjectSpec,
    ProgramSpec,
    Relocation,
    RelocKind,
)

BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2
_CALL = 0x85
_LD_IMM64 = 0x18
# bpf_probe_read_{user,kernel}[_str] -> bpf_probe_read[_str] on old kernels
PROBE_READ_FALLBACK = {112: 4, 113: 4, 114: 45, 115: 45}


@dataclass(frozen=True, slots=True)
class KsymValue:
    """How the kernel stage resolved one __ksym extern (libbpf's extern_desc.ksym)."""

    btf_id: int = 0  # typed variable or kfunc: its id in the kernel (or module) BTF
    btf_obj_fd: int = 0  # typed variable in a module: that module's BTF fd
    btf_fd_idx: int = 0  # kfunc in a module: the index of its BTF fd in fd_array
    address: int = 0  # typeless variable: its /proc/kallsyms address


@dataclass(frozen=True, slots=True)
class RelocatedProgram:
    """What BPF_PROG_LOAD carries for one program. ``func_info``/``line_info`` are
    None when libbpf sends none (no .BTF.ext records for the entry function)."""

    name: str
    insns: bytes
    func_info: bytes | None
    func_info_rec_size: int
    line_info: bytes | None
    line_info_rec_size: int
    subprograms: tuple[str, ...] = ()  # appended .text functions, in order

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    @property
    def func_info_count(self) -> int:
        return len(self.func_info) // self.func_info_rec_size if self.func_info else 0

    @property
    def line_info_count(self) -> int:
        return len(self.line_info) // self.line_info_rec_size if self.line_info else 0


MapFds = Sequence[int] | Mapping[str, int]


def relocate_object(obj: ObjectSpec, map_fds: MapFds, *, target_btf: Btf | None = None,
                    ksyms: Mapping[str, KsymValue] | None = None, btf_func: bool = True,
                    probe_read_kernel: bool = True) -> dict[str, RelocatedProgram]:
    """Every autoloaded entry program, relocated (BPF_PROG_LOAD order = dict order)."""
    core = _core(obj, target_btf)
    return {p.name: _relocate(obj, p, map_fds, core, ksyms, btf_func, probe_read_kernel)
            for p in obj.entry_programs if p.autoload}


def relocate_program(obj: ObjectSpec, program: ProgramSpec | str, map_fds: MapFds, *,
                     target_btf: Btf | None = None,
                     core_insns: Mapping[tuple[int, int], bytes] | None = None,
                     ksyms: Mapping[str, KsymValue] | None = None, btf_func: bool = True,
                     probe_read_kernel: bool = True) -> RelocatedProgram:
    """One entry program, relocated.

    ``map_fds``: the fd of each map, by index of ``obj.maps`` or by map name.
    ``target_btf``: the kernel's BTF (needed when the object has CO-RE records), or
    ``core_insns`` from ``core.apply_core_relocations`` to reuse one computation for
    several programs. ``ksyms``: resolved __ksym externs by name (absent: unresolved
    weak). ``btf_func``: whether the kernel takes func/line info (libbpf's
    FEAT_BTF_FUNC probe, and a loaded BTF). ``probe_read_kernel``: libbpf's
    FEAT_PROBE_READ_KERN probe."""
    prog = obj.program(program) if isinstance(program, str) else program
    if prog.is_subprog:
        raise LoaderError(f"prog '{prog.name}' is a subprogram: it is loaded as part of the "
                          f"programs that call it")
    if core_insns is None:
        core_insns = _core(obj, target_btf)
    return _relocate(obj, prog, map_fds, core_insns, ksyms, btf_func, probe_read_kernel)


def _core(obj: ObjectSpec, target_btf: Btf | None) -> Mapping[tuple[int, int], bytes]:
    if not obj.core_relos or obj.btf_ext is None:
        return {}
    if target_btf is None:
        raise LoaderError(f"object '{obj.name}' has CO-RE relocations: relocating it needs "
                          f"the kernel's BTF (/sys/kernel/btf/vmlinux)")
    from bpfreplay.loader.core import apply_core_relocations

    return apply_core_relocations(obj, target_btf)


class _Builder:
    """One entry program being assembled (libbpf's main_prog during reloc_code)."""

    def __init__(self, obj: ObjectSpec, main: ProgramSpec,
                 core: Mapping[tuple[int, int], bytes], btf_func: bool) -> None:
        self.obj = obj
        self.main = main
        self.core = core
        self.insns = bytearray()
        self.relos: list[Relocation] = []
        self.placed: dict[tuple[int, int], int] = {}  # subprogram -> its insn offset
        self.order: list[str] = []
        ext = obj.btf_ext if btf_func else None
        self.ext = ext
        self.func_info: bytearray | None = None
        self.line_info: bytearray | None = None
        self.text = [p for p in obj.programs if p.section_index == obj.text_section_index]

    def code(self, prog: ProgramSpec) -> bytearray:
        """The function's own instructions: CO-RE applied, subprogram-address loads
        marked BPF_PSEUDO_FUNC (libbpf does both on each function's copy)."""
        insns = bytearray(self.core.get((prog.section_index, prog.insn_offset), prog.insns))
        for r in prog.relocations:
            if r.kind == RelocKind.SUBPROG_ADDR:
                pos = r.insn_index * 8 + 1
                insns[pos] = (insns[pos] & 0x0F) | (BPF_PSEUDO_FUNC << 4)
        return insns

    def append(self, prog: ProgramSpec, at: int) -> None:
        self.insns += self.code(prog)
        self.relos.extend(Relocation(r.insn_index + at, r.kind, r.symbol, r.sym_off,
                                     r.map_index, r.extern_index) for r in prog.relocations)

    def reloc_code(self, prog: ProgramSpec, at: int) -> None:
        """libbpf's bpf_object__reloc_code() for ``prog`` placed at ``at``."""
        self._ext_info(prog, at)
        own = {r.insn_index: r for r in prog.relocations}
        for idx in range(prog.insn_count):
            pos = (at + idx) * 8
            code, regs = self.insns[pos], self.insns[pos + 1]
            imm = struct.unpack_from("<i", self.insns, pos + 4)[0]
            off = struct.unpack_from("<h", self.insns, pos + 2)[0]
            is_call = code == _CALL and regs == BPF_PSEUDO_CALL << 4 and off == 0
            is_func = code == _LD_IMM64 and regs >> 4 == BPF_PSEUDO_FUNC
            if not is_call and not is_func:
                continue
            relo = own.get(idx)
            if relo is not None and relo.kind == RelocKind.EXTERN_FUNC:
                continue
            if relo is not None and relo.kind not in (RelocKind.CALL, RelocKind.SUBPROG_ADDR):
                raise LoaderError(f"prog '{prog.name}': unexpected relo for insn #{idx}, "
                                  f"type {relo.kind.value}")
            if relo is not None and relo.kind == RelocKind.CALL:
                target = relo.sym_off // 8 + imm + 1
            elif relo is not None:
                target = (relo.sym_off + imm) // 8
            elif is_func:
                raise LoaderError(f"prog '{prog.name}': missing subprog addr relo for insn "
                                  f"#{idx}")
            else:  # a static function of the same section: no relocation needed
                target = prog.insn_offset + idx + imm + 1
            sub = self._text_function(target)
            if sub is None:
                raise LoaderError(f"prog '{prog.name}': no .text section found yet "
                                  f"sub-program call exists")
            key = (sub.section_index, sub.insn_offset)
            if key not in self.placed:
                where = len(self.insns) // 8
                self.placed[key] = where
                self.order.append(sub.name)
                self.append(sub, where)
                self.reloc_code(sub, where)
            new_imm = self.placed[key] - (at + idx) - 1
            struct.pack_into("<i", self.insns, pos + 4, new_imm)

    def _text_function(self, insn_index: int) -> ProgramSpec | None:
        for p in self.text:
            if p.insn_offset <= insn_index < p.insn_offset + p.insn_count:
                return p
        return None

    def _ext_info(self, prog: ProgramSpec, at: int) -> None:
        """libbpf's reloc_prog_func_and_line_info()."""
        if self.ext is None:
            return
        first = prog is self.main
        for what in ("func", "line"):
            have = getattr(self, f"{what}_info")
            if not first and have is None:
                continue  # the entry function had none: libbpf sends none at all
            records = getattr(prog, f"{what}_info")
            if records is None:
                if have is not None:
                    raise LoaderError(f"prog '{prog.name}': missing .BTF.ext {what} info.")
                continue  # libbpf warns and skips the whole kind
            size = getattr(prog, f"{what}_info_rec_size")
            shifted = bytearray(records)
            for off in range(0, len(shifted), size):
                insn = struct.unpack_from("<I", shifted, off)[0]
                struct.pack_into("<I", shifted, off, (insn + at) & 0xFFFFFFFF)
            if have is None:
                setattr(self, f"{what}_info", shifted)
            else:
                have += shifted


def _relocate(obj: ObjectSpec, prog: ProgramSpec, map_fds: MapFds,
              core: Mapping[tuple[int, int], bytes], ksyms: Mapping[str, KsymValue] | None,
              btf_func: bool, probe_read_kernel: bool) -> RelocatedProgram:
    b = _Builder(obj, prog, core, btf_func)
    b.append(prog, 0)
    b.reloc_code(prog, 0)
    for relo in b.relos:
        _relocate_data(obj, prog, b.insns, relo, map_fds, ksyms or {})
    if not probe_read_kernel:
        _sanitize_helpers(b.insns)
    ext = obj.btf_ext
    return RelocatedProgram(
        prog.name, bytes(b.insns),
        bytes(b.func_info) if b.func_info is not None else None,
        ext.func_info.record_size if b.func_info is not None and ext else 0,
        bytes(b.line_info) if b.line_info is not None else None,
        ext.line_info.record_size if b.line_info is not None and ext else 0,
        tuple(b.order))


def _fd(obj: ObjectSpec, map_fds: MapFds, index: int) -> int:
    m = obj.maps[index]
    try:
        if isinstance(map_fds, Mapping):
            return map_fds[m.name]
        return map_fds[index]
    except (KeyError, IndexError):
        raise LoaderError(f"no fd given for map '{m.name}' (#{index})") from None


def _relocate_data(obj: ObjectSpec, prog: ProgramSpec, insns: bytearray, relo: Relocation,
                   map_fds: MapFds, ksyms: Mapping[str, KsymValue]) -> None:
    """libbpf's bpf_object__relocate_data() for one relocation."""
    pos = relo.insn_index * 8
    kind = relo.kind
    if kind == RelocKind.LD64:
        _set_src(insns, pos, BPF_PSEUDO_MAP_FD)
        _set_imm(insns, pos, _fd(obj, map_fds, relo.map_index))
    elif kind == RelocKind.DATA:
        imm0 = struct.unpack_from("<i", insns, pos + 4)[0]
        _set_imm(insns, pos + 8, imm0 + relo.sym_off)
        _set_src(insns, pos, BPF_PSEUDO_MAP_VALUE)
        _set_imm(insns, pos, _fd(obj, map_fds, relo.map_index))
    elif kind == RelocKind.EXTERN_VAR:
        ext = obj.externs[relo.extern_index]
        if ext.kind == ExternKind.KCONFIG:
            index = obj.kconfig_map_index
            assert index is not None
            _set_src(insns, pos, BPF_PSEUDO_MAP_VALUE)
            _set_imm(insns, pos, _fd(obj, map_fds, index))
            _set_imm(insns, pos + 8, ext.kcfg_offset)
        else:
            value = ksyms.get(ext.name)
            if ext.ksym_type_id and value is not None:  # typed ksym
                _set_src(insns, pos, BPF_PSEUDO_BTF_ID)
                _set_imm(insns, pos, value.btf_id)
                _set_imm(insns, pos + 8, value.btf_obj_fd)
            else:  # typeless, or an unresolved weak typed ksym (address 0)
                address = value.address if value is not None else 0
                _set_imm(insns, pos, address & 0xFFFFFFFF)
                _set_imm(insns, pos + 8, (address >> 32) & 0xFFFFFFFF)
    elif kind == RelocKind.EXTERN_FUNC:
        ext = obj.externs[relo.extern_index]
        value = ksyms.get(ext.name)
        _set_src(insns, pos, BPF_PSEUDO_KFUNC_CALL)
        _set_imm(insns, pos, value.btf_id if value is not None else 0)
        struct.pack_into("<h", insns, pos + 2, value.btf_fd_idx if value is not None else 0)
    elif kind == RelocKind.SUBPROG_ADDR:
        if insns[pos + 1] >> 4 != BPF_PSEUDO_FUNC:
            raise LoaderError(f"prog '{prog.name}': relo against '{relo.symbol}': bad insn")
    # CALL: done while appending subprograms


def _set_src(insns: bytearray, pos: int, src: int) -> None:
    insns[pos + 1] = (insns[pos + 1] & 0x0F) | (src << 4)


def _set_imm(insns: bytearray, pos: int, value: int) -> None:
    struct.pack_into("<I", insns, pos + 4, value & 0xFFFFFFFF)


def _sanitize_helpers(insns: bytearray) -> None:
    """libbpf's bpf_object__sanitize_prog() on a kernel without probe_read_kernel."""
    for pos in range(0, len(insns), 8):
        if insns[pos] == _CALL and insns[pos + 1] == 0:
            helper = struct.unpack_from("<i", insns, pos + 4)[0]
            if helper in PROBE_READ_FALLBACK:
                _set_imm(insns, pos, PROBE_READ_FALLBACK[helper])
