"""The spec stage: an eBPF object read the way libbpf 1.1.2's bpf_object__open()
reads it, with no syscalls. Same input, same ``ObjectSpec``, on any machine.

``load_spec()`` follows libbpf's open sequence: ELF checks (elf_init), section
collection (elf_collect), externs (collect_externs), BTF fixups (fixup_btf), maps
(init_maps), program types (init_progs) and relocation records (collect_relos). The
kernel stage then loads ``btf_bytes``, creates ``maps`` in order, relocates each entry
program with ``bpfreplay.loader.relocate`` and loads it.

Everything here is frozen: a spec is data; the kernel stage keeps its own state.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from bpfreplay.decode.btf import Btf
from bpfreplay.errors import LoaderError
from bpfreplay.loader.btf_ext import BtfExt, CoreRelo
from bpfreplay.loader.sections import SecDef, SecFlags

if TYPE_CHECKING:
    from bpfreplay.loader.struct_ops import StructOpsSpec

BPF_OBJ_NAME_LEN = 16  # kernel names (maps, programs, the object) keep 15 bytes
DEFAULT_PAGE_SIZE = 4096  # ring buffer sizes are rounded to pages (x86-64, arm64 4K)


class MapKind(enum.IntEnum):
    """libbpf's enum libbpf_map_type: where a map comes from."""

    USER = 0  # BTF-defined, in .maps (libbpf's LIBBPF_MAP_UNSPEC)
    DATA = 1  # .data, .data.*
    BSS = 2  # .bss, .bss.*
    RODATA = 3  # .rodata, .rodata.*
    KCONFIG = 4  # .kconfig externs


class RelocKind(enum.IntEnum):
    """libbpf's enum reloc_type (the ones found in the ELF; CO-RE is separate)."""

    LD64 = 0  # ld_imm64 of a BTF-defined map: src_reg=BPF_PSEUDO_MAP_FD, imm=fd
    CALL = 1  # bpf-to-bpf call into .text
    DATA = 2  # ld_imm64 of a global variable: BPF_PSEUDO_MAP_VALUE, imm=fd, imm2=offset
    EXTERN_VAR = 3  # ld_imm64 of an extern (.kconfig value or __ksym variable)
    EXTERN_FUNC = 4  # call of a kfunc (__ksym function)
    SUBPROG_ADDR = 5  # ld_imm64 of a subprogram's address (callbacks)


class ExternKind(enum.IntEnum):
    KCONFIG = 1
    KSYM = 2


class KconfigType(enum.IntEnum):
    """libbpf's enum kcfg_type: how a .kconfig value is written."""

    UNKNOWN = 0
    CHAR = 1
    BOOL = 2
    INT = 3
    TRISTATE = 4
    CHAR_ARR = 5


@dataclass(frozen=True, slots=True)
class Relocation:
    """One ELF relocation of a program's instruction, as libbpf records it.

    ``insn_index`` counts instructions from the start of the program. ``map_index``
    indexes ``ObjectSpec.maps`` (LD64, DATA); ``extern_index`` indexes
    ``ObjectSpec.externs`` (EXTERN_*); ``sym_off`` is the symbol's value (DATA: offset
    of the variable in its section; CALL/SUBPROG_ADDR: byte offset of the callee's
    symbol in .text)."""

    insn_index: int
    kind: RelocKind
    symbol: str
    sym_off: int = 0
    map_index: int = -1
    extern_index: int = -1


@dataclass(frozen=True, slots=True)
class ProgramCoreRelo:
    """A CO-RE relocation record placed in its program. ``relo_index`` is its number
    within its .BTF.ext section (libbpf's "relo #N"); ``insn_index`` counts from the
    start of the program."""

    program: str
    insn_index: int
    relo_index: int
    relo: CoreRelo


@dataclass(frozen=True, slots=True)
class ExternSpec:
    """An ``extern`` variable or function (``__kconfig`` or ``__ksym``)."""

    name: str
    kind: ExternKind
    btf_id: int  # the VAR or FUNC
    sec_btf_id: int  # its DATASEC (.kconfig or .ksyms)
    sym_index: int
    is_weak: bool
    is_func: bool = False
    # .kconfig
    kcfg_type: KconfigType = KconfigType.UNKNOWN
    kcfg_size: int = 0
    kcfg_align: int = 0
    kcfg_signed: bool = False
    kcfg_offset: int = 0  # where the value sits in the .kconfig map
    # .ksyms: the local type the extern declares (0: typeless ksym, e.g. `const void`)
    ksym_type_id: int = 0


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A map as libbpf 1.1.2 will create it (BPF_MAP_CREATE attrs) and fill it."""

    name: str  # libbpf's map->name (kernel name, <= 15 bytes for data maps)
    real_name: str  # the ELF section for data maps, else the same as ``name``
    kind: MapKind
    type: int  # enum bpf_map_type
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    numa_node: int = 0
    map_extra: int = 0
    pinning: int = 0  # 0: none, 1: LIBBPF_PIN_BY_NAME
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0  # data maps: the DATASEC of the section
    inner: MapSpec | None = None  # maps of maps: the ``values`` definition
    # ``values = { [i] = &map_or_prog }``: slot i -> name of the map (maps of maps) or
    # program (prog arrays), None for empty slots.
    init_slots: tuple[str | None, ...] = ()
    initial_value: bytes | None = field(default=None, repr=False)  # data/bss/kconfig maps
    section: str = ""  # ELF section of the definition (".maps", ".rodata", ...)
    section_index: int = 0
    section_offset: int = 0
    btf_var_index: int = -1  # position in the .maps DATASEC
    struct_ops: StructOpsSpec | None = None  # .struct_ops maps (loader/struct_ops.py)

    @property
    def kernel_name(self) -> str:
        """The name BPF_MAP_CREATE carries (libbpf_strlcpy into 16 bytes)."""
        return kernel_name(self.name)

    @property
    def is_internal(self) -> bool:
        return self.kind != MapKind.USER

    def pin_path(self, root: str | None = None) -> str | None:
        """Where libbpf pins a ``pinning = LIBBPF_PIN_BY_NAME`` map (pin_root_path,
        /sys/fs/bpf by default, then the map's name); None for unpinned maps."""
        if self.pinning != 1:
            return None
        return f"{root or '/sys/fs/bpf'}/{self.name}"

    @property
    def create_btf_ids(self) -> tuple[int, int]:
        """(btf_key_type_id, btf_value_type_id) as libbpf's bpf_object__create_map
        sends them: zero for map types whose values the kernel cannot describe with
        BTF (maps of maps, perf event arrays, sockmaps, stacks, queues ...)."""
        if self.type in _no_btf_map_types():
            return 0, 0
        return self.btf_key_type_id, self.btf_value_type_id


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """A function found in an executable section: an entry program or a subprogram.

    ``insns`` are the instructions as in the ELF (before any relocation).
    ``func_info``/``line_info`` are this function's .BTF.ext records with their
    ``insn_off`` already turned into instruction indexes from the start of the function
    (what libbpf sends for a program without subprograms); None when .BTF.ext has none.
    """

    name: str
    section: str  # without libbpf's leading "?" (which only turns autoload off)
    section_index: int
    insn_offset: int  # in instructions, from the start of the section
    insns: bytes = field(repr=False)
    prog_type: int = 0  # 0 (UNSPEC) for subprograms and unknown sections
    expected_attach_type: int = 0
    attach_target: str | None = None  # "syscalls/sys_enter_write" for tp/syscalls/...
    sec_def: SecDef | None = None
    autoload: bool = True
    is_subprog: bool = False
    mark_btf_static: bool = False  # hidden global subprogram: FUNC made static in BTF
    relocations: tuple[Relocation, ...] = ()
    func_info: bytes | None = field(default=None, repr=False)
    func_info_rec_size: int = 0
    line_info: bytes | None = field(default=None, repr=False)
    line_info_rec_size: int = 0
    core_relos: tuple[ProgramCoreRelo, ...] = ()

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    @property
    def kernel_name(self) -> str:
        """The prog_name BPF_PROG_LOAD carries."""
        return kernel_name(self.name)

    @property
    def sec_flags(self) -> SecFlags:
        return self.sec_def.flags if self.sec_def else SecFlags.NONE

    @property
    def sleepable(self) -> bool:
        return bool(self.sec_flags & SecFlags.SLEEPABLE)

    @property
    def prog_flags(self) -> int:
        """prog_flags libbpf sets from the section (BPF_F_SLEEPABLE, XDP frags)."""
        return self.sec_def.prog_flags if self.sec_def else 0

    @property
    def needs_attach_btf_id(self) -> bool:
        """fentry/fexit/tp_btf/lsm/iter/freplace: the kernel stage must find
        ``attach_target`` in the kernel's BTF and pass its id at load."""
        return bool(self.sec_flags & SecFlags.ATTACH_BTF)


@dataclass(frozen=True)
class ObjectSpec:
    """Everything libbpf knows about an object after bpf_object__open()."""

    name: str  # libbpf's obj->name (15 bytes at most)
    path: str
    license: str
    kern_version: int | None  # from a "version" section; None: the kernel stage uses
    # the running kernel's version code, as libbpf does
    btf: Btf | None = field(repr=False)
    btf_bytes: bytes | None = field(repr=False)  # the blob for BPF_BTF_LOAD (unsanitised)
    btf_ext: BtfExt | None = field(repr=False)
    programs: tuple[ProgramSpec, ...]  # every function, libbpf's order (section, offset)
    maps: tuple[MapSpec, ...]  # libbpf's order: .maps, then data sections, .kconfig
    externs: tuple[ExternSpec, ...] = ()  # libbpf's order (kconfig by alignment ...)
    core_relos: tuple[ProgramCoreRelo, ...] = ()  # in .BTF.ext order
    text_section_index: int = 0
    warnings: tuple[str, ...] = ()  # what libbpf would only warn about

    @property
    def entry_programs(self) -> tuple[ProgramSpec, ...]:
        """The programs libbpf loads (BPF_PROG_LOAD order): not subprograms."""
        return tuple(p for p in self.programs if not p.is_subprog)

    @property
    def kconfig_map_index(self) -> int | None:
        for i, m in enumerate(self.maps):
            if m.kind == MapKind.KCONFIG:
                return i
        return None

    @property
    def has_rodata(self) -> bool:
        """libbpf binds every .rodata* map to every program it loads
        (BPF_PROG_BIND_MAP) when the object has one."""
        return any(m.kind == MapKind.RODATA for m in self.maps)

    @property
    def needs_vmlinux_btf(self) -> bool:
        """libbpf's obj_needs_vmlinux_btf(): CO-RE relocations, typed ksyms, or
        programs whose type needs the kernel's BTF."""
        if self.core_relos:
            return True
        if any(e.kind == ExternKind.KSYM and e.ksym_type_id for e in self.externs):
            return True
        from bpfreplay.uapi import enum_values

        types = enum_values("bpf_prog_type")
        need = {types["BPF_PROG_TYPE_STRUCT_OPS"], types["BPF_PROG_TYPE_LSM"],
                types["BPF_PROG_TYPE_TRACING"]}
        return any(p.autoload and p.prog_type in need for p in self.programs)

    def program(self, name: str) -> ProgramSpec:
        for p in self.programs:
            if p.name == name:
                return p
        raise LoaderError(f"object '{self.name}' has no program '{name}'")

    def map(self, name: str) -> MapSpec:
        for m in self.maps:
            if m.name == name or m.real_name == name:
                return m
        raise LoaderError(f"object '{self.name}' has no map '{name}'")

    def map_index(self, name: str) -> int:
        return self.maps.index(self.map(name))


def kernel_name(name: str) -> str:
    """A name as the kernel keeps it: 15 bytes (libbpf_strlcpy into char[16])."""
    raw = name.encode()[:BPF_OBJ_NAME_LEN - 1]
    return raw.decode("utf-8", "ignore")


def default_object_name(path: str | os.PathLike[str]) -> str:
    """libbpf's bpf_object__open_file() default: the file name up to its first '.',
    15 bytes at most ("minimal" for minimal.bpf.o)."""
    base = os.path.basename(os.fspath(path))
    return kernel_name(base)[: BPF_OBJ_NAME_LEN - 1].split(".", 1)[0]


def skeleton_name(path: str | os.PathLike[str]) -> str:
    """The object name a ``bpftool gen skeleton`` skeleton passes to libbpf: the file
    name (63 bytes at most) without a trailing ".o", every character but letters,
    digits and '_' made '_' ("minimal_bpf" for minimal.bpf.o). libbpf keeps 15 bytes
    of it."""
    base = os.path.basename(os.fspath(path)).encode()[:63].decode("utf-8", "ignore")
    if base.endswith(".o"):
        base = base[:-2]
    return re.sub(r"[^A-Za-z0-9_]", "_", base, flags=re.ASCII)


def load_spec(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
              page_size: int = DEFAULT_PAGE_SIZE) -> ObjectSpec:
    """Read an eBPF object (a path or its bytes) as libbpf 1.1.2 opens it.

    ``name`` is the object name (bpf_object_open_opts.object_name): it prefixes the
    internal maps' names. Without it, the name comes from the file name as
    bpf_object__open_file() makes it; bytes without a name are called "bpf_object".
    ``page_size`` sizes ring buffers as libbpf does with the running system's page.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        path = name or "bpf_object"
    else:
        path = os.fspath(source)
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise LoaderError(f"elf: failed to open {path}: {e.strerror}") from e
    if name is None:
        name = default_object_name(path)
    from bpfreplay.loader.builder import build_object_spec

    return build_object_spec(data, path, kernel_name(name), page_size)


@cache
def _no_btf_map_types() -> frozenset[int]:
    from bpfreplay.uapi import enum_values

    types = enum_values("bpf_map_type")
    return frozenset(types["BPF_MAP_TYPE_" + n] for n in (
        "PERF_EVENT_ARRAY", "CGROUP_ARRAY", "STACK_TRACE", "ARRAY_OF_MAPS", "HASH_OF_MAPS",
        "DEVMAP", "DEVMAP_HASH", "CPUMAP", "XSKMAP", "SOCKMAP", "SOCKHASH", "QUEUE",
        "STACK"))
