"""Builds an ObjectSpec the way libbpf 1.1.2's bpf_object_open() builds a bpf_object:
elf_collect, collect_externs, fixup_btf, init_maps, init_progs, collect_relos. Each
step keeps libbpf's order and its error wording (so a failure reads like libbpf's
log line)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from bpfreplay.decode.btf import Btf, Kind, parse_btf
from bpfreplay.errors import DecodeError, LoaderError
from bpfreplay.loader import maps as mapdefs
from bpfreplay.loader.btf_edit import BtfEditor
from bpfreplay.loader.btf_ext import BtfExt, BtfExtPart, parse_btf_ext
from bpfreplay.loader.elf import (
    SHN_LORESERVE,
    SHT_LLVM_ADDRSIG,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_REL,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_OBJECT,
    STT_SECTION,
    STV_HIDDEN,
    STV_INTERNAL,
    ElfObject,
    Section,
    Symbol,
    read_elf,
)
from bpfreplay.loader.externs import KCONFIG_SEC, KSYMS_SEC, collect_externs
from bpfreplay.loader.sections import attach_target, find_sec_def
from bpfreplay.loader.spec import (
    ExternKind,
    ExternSpec,
    MapKind,
    MapSpec,
    ObjectSpec,
    ProgramCoreRelo,
    ProgramSpec,
    Relocation,
    RelocKind,
)

BPF_INSN_SZ = 8
BPF_JMP_CALL = 0x85  # BPF_JMP | BPF_CALL
BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_CALL = 1
STRUCT_OPS_SEC = ".struct_ops"


@dataclass
class _Program:
    """A program while the object is being read (libbpf's struct bpf_program)."""

    name: str
    elf_section: str
    section_index: int
    insn_offset: int
    insns: bytes
    mark_btf_static: bool
    relocations: list[Relocation] = field(default_factory=list)

    @property
    def insn_count(self) -> int:
        return len(self.insns) // BPF_INSN_SZ


@dataclass
class _Object:
    elf: ElfObject
    path: str
    name: str
    page_size: int
    license: str = ""
    kern_version: int | None = None
    btf_maps_shndx: int = -1
    st_ops_shndx: int = -1
    text_shndx: int = 0
    data_sections: dict[int, MapKind] = field(default_factory=dict)
    relo_sections: list[Section] = field(default_factory=list)
    programs: list[_Program] = field(default_factory=list)
    btf: Btf | None = None
    editor: BtfEditor | None = None
    btf_ext: BtfExt | None = None
    externs: list[ExternSpec] = field(default_factory=list)
    maps: list[MapSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parsed_raw: bytes = b""  # the BTF blob as last parsed


def build_object_spec(data: bytes, path: str, name: str, page_size: int) -> ObjectSpec:
    obj = _Object(read_elf(data, path), path, name, page_size)
    _collect_sections(obj)
    _init_btf(obj)
    obj.externs = collect_externs(obj.elf, obj.btf, obj.editor)
    _fixup_btf(obj)
    final_btf = _reparse(obj)
    _init_maps(obj, final_btf)
    programs = _init_progs(obj)
    _collect_relos(obj)
    return _finish(obj, programs, final_btf)


# ---------------------------------------------------------------- elf_collect


def _ignored(s: Section) -> bool:
    """libbpf's ignore_elf_section()."""
    if s.type in (SHT_STRTAB, SHT_LLVM_ADDRSIG):
        return True
    if s.type == SHT_PROGBITS and s.size == 0 and s.name == ".text":
        return True
    if s.name.startswith(".debug_"):
        return True
    if s.name.startswith(".rel"):
        rest = s.name[4:]
        if rest.startswith(".debug_") or rest in (".BTF", ".BTF.ext"):
            return True
    return False


def _collect_sections(obj: _Object) -> None:
    path = obj.path
    elf = obj.elf
    sections = elf.sections
    for s in sections[1:]:
        if _ignored(s):
            continue
        name = s.name
        if name == "license":
            raw = s.data[: min(s.size, 63)]
            obj.license = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif name == "version":
            if s.type == SHT_NOBITS or len(s.data) != 4:
                raise LoaderError(f"invalid kver section in {path}")
            obj.kern_version = struct.unpack("<I", s.data)[0]
        elif name == "maps":
            raise LoaderError("elf: legacy map definitions in 'maps' section are not "
                              "supported by libbpf v1.0+")
        elif name == ".maps":
            obj.btf_maps_shndx = s.index
        elif name in (".BTF", ".BTF.ext"):
            if s.type != SHT_PROGBITS:
                raise LoaderError(f"elf: section {name} of {path} is not PROGBITS")
        elif s.type == SHT_SYMTAB:
            pass
        elif s.type == SHT_PROGBITS and s.size > 0:
            if s.executable:
                if name == ".text":
                    obj.text_shndx = s.index
                _add_programs(obj, s)
            elif name == ".data" or name.startswith(".data."):
                obj.data_sections[s.index] = MapKind.DATA
            elif name == ".rodata" or name.startswith(".rodata."):
                obj.data_sections[s.index] = MapKind.RODATA
            elif name == STRUCT_OPS_SEC:
                obj.st_ops_shndx = s.index
            else:
                obj.warnings.append(f"elf: skipping unrecognized data section({s.index}) "
                                    f"{name}")
        elif s.type == SHT_REL:
            target = s.info
            if s.entsize != 16 or target >= len(sections):
                raise LoaderError(f"elf: relocation section {name} of {path} is corrupt")
            if not sections[target].executable and name not in (".rel" + STRUCT_OPS_SEC,
                                                                ".rel.maps"):
                continue
            obj.relo_sections.append(s)
        elif s.type == SHT_NOBITS and (name == ".bss" or name.startswith(".bss.")):
            obj.data_sections[s.index] = MapKind.BSS
    # libbpf keeps programs sorted by (section, offset) to find them by instruction
    obj.programs.sort(key=lambda p: (p.section_index, p.insn_offset))


def _add_programs(obj: _Object, s: Section) -> None:
    """libbpf's bpf_object__add_programs(): one program per STT_FUNC symbol."""
    for sym in obj.elf.symbols:
        if sym.shndx != s.index or sym.type != STT_FUNC:
            continue
        off, size = sym.value, sym.size
        if off + size > s.size:
            raise LoaderError(f"sec '{s.name}': program at offset {off} crosses section "
                              f"boundary")
        if s.index != obj.text_shndx and sym.bind == STB_LOCAL:
            raise LoaderError(f"sec '{s.name}': program '{sym.name}' is static and not "
                              f"supported")
        if size == 0 or size % BPF_INSN_SZ or off % BPF_INSN_SZ:
            raise LoaderError(f"sec '{s.name}': corrupted program '{sym.name}', offset "
                              f"{off}, size {size}")
        hidden = sym.bind != STB_LOCAL and sym.visibility in (STV_HIDDEN, STV_INTERNAL)
        obj.programs.append(_Program(sym.name, s.name, s.index, off // BPF_INSN_SZ,
                                     s.data[off:off + size], hidden))


# ---------------------------------------------------------------- BTF


def _needs_btf(obj: _Object) -> bool:
    # at this point libbpf has not collected externs yet: only .maps and .struct_ops count
    return obj.btf_maps_shndx >= 0 or obj.st_ops_shndx >= 0


def _init_btf(obj: _Object) -> None:
    """libbpf's bpf_object__init_btf(): a corrupt or missing .BTF (or .BTF.ext) is only
    fatal when the object needs BTF."""
    btf_sec = obj.elf.section_by_name(".BTF")
    ext_sec = obj.elf.section_by_name(".BTF.ext")
    problem = "missing"
    if btf_sec is not None and not _ignored(btf_sec):
        try:
            obj.btf = parse_btf(btf_sec.data)
            obj.editor = BtfEditor(btf_sec.data)
            problem = ""
        except (DecodeError, LoaderError) as e:
            obj.btf = obj.editor = None
            problem = "corrupted"
            obj.warnings.append(f"Error loading ELF section .BTF: {e}")
    if ext_sec is not None and obj.btf is not None:
        try:
            obj.btf_ext = parse_btf_ext(ext_sec.data, obj.btf.strings)
        except LoaderError as e:
            problem = "corrupted"
            obj.warnings.append(f"Error loading ELF section .BTF.ext: {e}. Ignored and "
                                f"continue.")
    if problem and _needs_btf(obj):
        raise LoaderError(f"{obj.path}: BTF is required, but is {problem}.")


def _fixup_btf(obj: _Object) -> None:
    """libbpf's bpf_object_fixup_btf(): DATASEC sizes and VAR offsets from the ELF
    (clang leaves them zero), hidden globals made static, VARs sorted by offset."""
    btf, editor = obj.btf, obj.editor
    if btf is None or editor is None:
        return
    for t in btf.types:
        if t.kind != Kind.DATASEC:
            continue
        name = t.name
        entries = editor.secinfos(t.id)
        if name not in (KCONFIG_SEC, KSYMS_SEC):
            fixup_offsets = False
            if editor.size_or_type(t.id) == 0:
                s = obj.elf.section_by_name(name)
                size = s.size if s is not None else 0
                if not size:
                    raise LoaderError(f"sec '{name}': failed to determine size from ELF: "
                                      f"size {size}")
                editor.set_size(t.id, size)
                fixup_offsets = True
            for i, (var_id, _offset, var_size) in enumerate(entries):
                var = btf.type(var_id)
                if var is None or var.kind != Kind.VAR:
                    raise LoaderError(f"sec '{name}': unexpected non-VAR type found")
                if editor.var_linkage(var_id) in (0, 2):  # static, extern
                    continue
                sym = _find_var_symbol(obj.elf, var.name)
                if sym is None:
                    raise LoaderError(f"sec '{name}': failed to find ELF symbol for VAR "
                                      f"'{var.name}'")
                if fixup_offsets:
                    # btf_var_secinfo.offset is a __u32: libbpf assigns st_value (u64)
                    # to it, keeping the low 32 bits of a value >= 2**32.
                    entries[i] = (var_id, sym.value & 0xFFFFFFFF, var_size)
                if sym.visibility in (STV_HIDDEN, STV_INTERNAL):
                    editor.set_var_linkage(var_id, 0)
        entries.sort(key=lambda e: e[1])  # qsort by offset (glibc's is a merge sort)
        editor.set_secinfos(t.id, entries)


def _find_var_symbol(elf: ElfObject, name: str) -> Symbol | None:
    for sym in elf.symbols:
        if sym.type == STT_OBJECT and sym.bind in (STB_GLOBAL, STB_WEAK) and sym.name == name:
            return sym
    return None


def _reparse(obj: _Object) -> Btf | None:
    """The BTF after the fixups: the first parse with the edited types decoded again."""
    if obj.editor is None or obj.btf is None:
        return None
    obj.parsed_raw = obj.editor.raw()
    try:
        return obj.editor.parsed(obj.btf)
    except DecodeError as e:
        raise LoaderError(f"BTF of {obj.path} after libbpf's fixups does not parse: {e}") \
            from e


# ---------------------------------------------------------------- maps


# A .bss (SHT_NOBITS: its size is only a header field) becomes a zeroed image of that
# size. The kernel refuses an array map value over KMALLOC_MAX_SIZE (4 MiB on x86-64,
# array_map_alloc_check(): E2BIG), so libbpf's open of a larger one only defers that
# failure to BPF_MAP_CREATE; we keep its behaviour up to 16 times that and refuse to
# allocate past it (a header edit would otherwise make us allocate up to 2**64 bytes).
KERNEL_MAX_VALUE = 4 << 20
MAX_BSS_SIZE = 16 * KERNEL_MAX_VALUE


def _init_maps(obj: _Object, btf: Btf | None) -> None:
    if obj.btf_maps_shndx >= 0:
        s = obj.elf.sections[obj.btf_maps_shndx]
        obj.maps.extend(mapdefs.btf_maps(btf, s.index, s.size, page_size=obj.page_size))
    for index in sorted(obj.data_sections):
        kind = obj.data_sections[index]
        s = obj.elf.sections[index]
        if s.size == 0:
            continue
        if kind == MapKind.BSS and s.size > MAX_BSS_SIZE:
            raise LoaderError(f"map '{s.name}': section {s.name} (#{index}) takes "
                              f"{s.size} bytes: far more than the {KERNEL_MAX_VALUE} bytes "
                              f"the kernel takes for an array map value; not allocated")
        data = None if kind == MapKind.BSS else s.data
        obj.maps.append(mapdefs.data_map(btf, obj.name, kind, s.name, index, data, s.size))
    kcfg = [e for e in obj.externs if e.kind == ExternKind.KCONFIG]
    if kcfg:
        size = kcfg[-1].kcfg_offset + kcfg[-1].kcfg_size
        obj.maps.append(mapdefs.data_map(btf, obj.name, MapKind.KCONFIG, KCONFIG_SEC,
                                         obj.elf.symtab_index, None, size))
    if obj.st_ops_shndx >= 0:  # bpf_object__init_struct_ops_maps(): the last maps
        from bpfreplay.loader import struct_ops

        obj.maps.extend(struct_ops.init_maps(btf, obj.elf.sections[obj.st_ops_shndx]))


# ---------------------------------------------------------------- programs


def _is_subprog(obj: _Object, p: _Program) -> bool:
    return p.section_index == obj.text_shndx and len(obj.programs) > 1


def _init_progs(obj: _Object) -> list[_Program]:
    # An object without programs is no error either (libbpf 1.1.2 opens and loads it:
    # probes, BTF and maps). A section no sec_def knows is no error at open (libbpf 1.1.2
    # bpf_object_init_progs(): sec_def NULL, prog type UNSPEC, a debug message only): the
    # load fails at that program (kernel.py _load_programs, bpf_object_load_prog()).
    return obj.programs


def _find_prog(obj: _Object, section_index: int, insn_index: int) -> _Program | None:
    """libbpf's find_prog_by_sec_insn()."""
    for p in obj.programs:
        if p.section_index == section_index and \
                p.insn_offset <= insn_index < p.insn_offset + p.insn_count:
            return p
    return None


# ---------------------------------------------------------------- relocations


def _collect_relos(obj: _Object) -> None:
    for s in obj.relo_sections:
        if obj.st_ops_shndx >= 0 and s.info == obj.st_ops_shndx:
            _collect_st_ops_relos(obj, s)
        elif s.info == obj.btf_maps_shndx:
            _collect_map_relos(obj, s)
        else:
            _collect_prog_relos(obj, s)
    for p in obj.programs:
        p.relocations.sort(key=lambda r: (r.insn_index, r.kind))


def _collect_st_ops_relos(obj: _Object, s: Section) -> None:
    """bpf_object__collect_st_ops_relos() (loader/struct_ops.py)."""
    from bpfreplay.loader import struct_ops

    def find_prog(section_index: int, insn_index: int) -> tuple[str, int] | None:
        p = _find_prog(obj, section_index, insn_index)
        if p is None:
            return None
        section = p.elf_section[1:] if p.elf_section.startswith("?") else p.elf_section
        sec_def = None if _is_subprog(obj, p) else find_sec_def(section)
        return p.name, sec_def.prog_type if sec_def else 0

    assert obj.btf is not None  # init_maps found the DATASEC
    struct_ops.collect_relos(obj.maps, obj.btf, obj.elf, s, find_prog)


def _collect_prog_relos(obj: _Object, s: Section) -> None:
    elf = obj.elf
    target = elf.sections[s.info]
    for i, rel in enumerate(elf.relocations(s)):
        if rel.symbol >= len(elf.symbols):
            raise LoaderError(f"sec '{s.name}': symbol #{rel.symbol} not found for relo #{i}")
        sym = elf.symbols[rel.symbol]
        if sym.shndx >= len(elf.sections):
            raise LoaderError(f"sec '{s.name}': corrupted symbol #{rel.symbol} pointing to "
                              f"invalid section #{sym.shndx} for relo #{i}")
        if rel.offset % BPF_INSN_SZ or rel.offset >= target.size:
            raise LoaderError(f"sec '{s.name}': invalid offset {rel.offset:#x} for relo #{i}")
        insn_index = rel.offset // BPF_INSN_SZ
        if sym.type == STT_SECTION and sym.name_off == 0:
            sym_name = elf.sections[sym.shndx].name
        else:
            sym_name = sym.name
        prog = _find_prog(obj, s.info, insn_index)
        if prog is None:
            continue  # an overridden weak function: libbpf skips it too
        prog.relocations.append(_record_reloc(obj, prog, insn_index - prog.insn_offset,
                                              sym_name, sym))


def _record_reloc(obj: _Object, prog: _Program, insn_index: int, sym_name: str,
                  sym: Symbol) -> Relocation:
    """libbpf's bpf_program__record_reloc()."""
    code = prog.insns[insn_index * 8]
    is_call = code == BPF_JMP_CALL
    if not is_call and code != BPF_LD_IMM64:
        raise LoaderError(f"prog '{prog.name}': invalid relo against '{sym_name}' for "
                          f"insns[{insn_index}].code {code:#x}")
    if not is_call and (insn_index + 2) * BPF_INSN_SZ > len(prog.insns):
        # (libbpf would patch insns[insn_index + 1].imm past the program's copy.)
        raise LoaderError(f"prog '{prog.name}': relo against '{sym_name}' for "
                          f"insns[{insn_index}]: a 16-byte ld_imm64 cut by the end of the "
                          f"program ({len(prog.insns) // BPF_INSN_SZ} instructions)")
    src_reg = prog.insns[insn_index * 8 + 1] >> 4
    imm = struct.unpack_from("<i", prog.insns, insn_index * 8 + 4)[0]
    shndx = sym.shndx
    sections = obj.elf.sections
    if shndx == 0 and sym.bind in (STB_GLOBAL, STB_WEAK) and sym.type == 0:
        for i, ext in enumerate(obj.externs):
            if ext.sym_index == sym.index:
                kind = RelocKind.EXTERN_FUNC if is_call else RelocKind.EXTERN_VAR
                return Relocation(insn_index, kind, sym_name, extern_index=i)
        raise LoaderError(f"prog '{prog.name}': extern relo failed to find extern for "
                          f"'{sym_name}' ({sym.index})")
    if is_call:
        if src_reg != BPF_PSEUDO_CALL:
            raise LoaderError(f"prog '{prog.name}': incorrect bpf_call opcode")
        if not shndx or shndx != obj.text_shndx:
            raise LoaderError(f"prog '{prog.name}': bad call relo against '{sym_name}' in "
                              f"section '{sections[shndx].name}'")
        if sym.value % BPF_INSN_SZ:
            raise LoaderError(f"prog '{prog.name}': bad call relo against '{sym_name}' at "
                              f"offset {sym.value}")
        return Relocation(insn_index, RelocKind.CALL, sym_name, sym_off=sym.value)
    if not shndx or shndx >= SHN_LORESERVE:
        raise LoaderError(f"prog '{prog.name}': invalid relo against '{sym_name}' in special "
                          f"section {shndx:#x}; forgot to initialize global var?..")
    if shndx == obj.text_shndx and ((sym.bind == STB_LOCAL and sym.type == STT_SECTION)
                                    or (sym.bind == STB_GLOBAL and sym.type == STT_FUNC)):
        if sym.value % BPF_INSN_SZ or imm % BPF_INSN_SZ:
            raise LoaderError(f"prog '{prog.name}': bad subprog addr relo against "
                              f"'{sym_name}' at offset {sym.value}+{imm}")
        return Relocation(insn_index, RelocKind.SUBPROG_ADDR, sym_name, sym_off=sym.value)
    sec_name = sections[shndx].name
    kind = obj.data_sections.get(shndx)
    if shndx == obj.elf.symtab_index:
        kind = MapKind.KCONFIG
    if kind is None:
        if shndx != obj.btf_maps_shndx:
            raise LoaderError(f"prog '{prog.name}': bad map relo against '{sym_name}' in "
                              f"section '{sec_name}'")
        for i, m in enumerate(obj.maps):
            if m.kind == MapKind.USER and m.section_index == shndx and \
                    m.section_offset == sym.value:
                return Relocation(insn_index, RelocKind.LD64, sym_name, map_index=i)
        raise LoaderError(f"prog '{prog.name}': map relo failed to find map for section "
                          f"'{sec_name}', off {sym.value}")
    if kind == MapKind.KCONFIG:
        raise LoaderError(f"prog '{prog.name}': bad data relo against section '{sec_name}'")
    for i, m in enumerate(obj.maps):
        if m.kind == kind and m.section_index == shndx:
            return Relocation(insn_index, RelocKind.DATA, sym_name, sym_off=sym.value,
                              map_index=i)
    raise LoaderError(f"prog '{prog.name}': data relo failed to find map for section "
                      f"'{sec_name}'")


def _collect_map_relos(obj: _Object, s: Section) -> None:
    """libbpf's bpf_object__collect_map_relos(): ``.values = { [i] = &x }`` of maps of
    maps and program arrays."""
    btf = obj.btf
    if btf is None or obj.editor is None:
        raise LoaderError(".maps relocations without BTF")
    maps_sec = btf.by_name(".maps", Kind.DATASEC)
    if maps_sec is None:
        raise LoaderError(".maps relocations without a .maps DATASEC")
    secinfos = obj.editor.secinfos(maps_sec.id)
    slots: dict[int, dict[int, str]] = {}
    elf = obj.elf
    for i, rel in enumerate(elf.relocations(s)):
        if rel.symbol >= len(elf.symbols):
            raise LoaderError(f".maps relo #{i}: symbol {rel.symbol:x} not found")
        sym = elf.symbols[rel.symbol]
        name = sym.name or "<?>"
        found = None
        for j, m in enumerate(obj.maps):
            if m.section_index != obj.btf_maps_shndx or m.kind != MapKind.USER:
                continue
            _, v_off, v_size = secinfos[m.btf_var_index]
            if v_off <= rel.offset and rel.offset + 8 <= v_off + v_size:
                found = j
                break
        if found is None:
            raise LoaderError(f".maps relo #{i}: cannot find map '{name}' at rel->r_offset "
                              f"{rel.offset}")
        m = obj.maps[found]
        if mapdefs.is_map_in_map(m.type):
            if sym.shndx != obj.btf_maps_shndx:
                raise LoaderError(f".maps relo #{i}: '{name}' isn't a BTF-defined map")
            if m.type == mapdefs._map_type("HASH_OF_MAPS") and m.key_size != 4:
                raise LoaderError(f".maps relo #{i}: hash-of-maps '{m.name}' should have key "
                                  f"size 4.")
            if not any(_map_name_matches(t, name) for t in obj.maps):
                raise LoaderError(f".maps relo #{i}: '{name}' isn't a valid map reference")
        elif m.type == mapdefs._map_type("PROG_ARRAY"):
            targ = next((p for p in obj.programs
                         if not _is_subprog(obj, p) and p.name == name), None)
            if targ is None:
                raise LoaderError(f".maps relo #{i}: '{name}' isn't a valid program "
                                  f"reference")
            if targ.section_index != sym.shndx or targ.insn_offset * 8 != sym.value:
                raise LoaderError(f".maps relo #{i}: '{name}' isn't an entry-point program")
        else:
            raise LoaderError(f".maps relo #{i}: map '{m.name}' can't hold references")
        var = btf.type(secinfos[m.btf_var_index][0])
        definition = btf.skip_modifiers(var.ref) if var is not None else None
        if definition is None or not definition.members or \
                definition.members[-1].name != "values":
            raise LoaderError(f".maps relo #{i}: map '{m.name}' has no 'values' member last")
        member_off = definition.members[-1].bit_offset // 8
        v_off = secinfos[m.btf_var_index][1]
        if rel.offset - v_off < member_off:
            raise LoaderError(f".maps relo #{i}: relocation before 'values' of '{m.name}'")
        slot_off = rel.offset - v_off - member_off
        if slot_off % 8:
            raise LoaderError(f".maps relo #{i}: misaligned slot in '{m.name}'")
        slots.setdefault(found, {})[slot_off // 8] = name
    for index, filled in slots.items():
        table = tuple(filled.get(k) for k in range(max(filled) + 1))
        obj.maps[index] = replace(obj.maps[index], init_slots=table)


def _map_name_matches(m: MapSpec, name: str) -> bool:
    """libbpf's bpf_object__find_map_by_name() rules."""
    if name.startswith("."):
        return m.real_name == name
    uses_real = (m.kind == MapKind.DATA and m.real_name != ".data") or \
        (m.kind == MapKind.RODATA and m.real_name != ".rodata")
    return (m.real_name if uses_real else m.name) == name


# ---------------------------------------------------------------- assembling


def _finish(obj: _Object, programs: list[_Program], parsed: Btf | None) -> ObjectSpec:
    """``parsed``: the BTF as parsed after the fixups, reused if nothing changed since."""
    btf_ext = obj.btf_ext
    core_by_prog, core_all = _place_core_relos(obj)
    specs = []
    for p in programs:
        subprog = _is_subprog(obj, p)
        autoload = not p.elf_section.startswith("?")
        section = p.elf_section[1:] if not autoload else p.elf_section
        sec_def = None if subprog else find_sec_def(section)
        func_info = line_info = None
        if btf_ext is not None:
            func_info = _ext_info(obj, p, btf_ext.func_info)
            line_info = _ext_info(obj, p, btf_ext.line_info)
        specs.append(ProgramSpec(
            name=p.name, section=section, section_index=p.section_index,
            insn_offset=p.insn_offset, insns=p.insns,
            prog_type=sec_def.prog_type if sec_def else 0,
            expected_attach_type=sec_def.expected_attach_type if sec_def else 0,
            attach_target=attach_target(section, sec_def), sec_def=sec_def,
            autoload=autoload, is_subprog=subprog, mark_btf_static=p.mark_btf_static,
            relocations=tuple(p.relocations),
            func_info=func_info,
            func_info_rec_size=btf_ext.func_info.record_size if func_info is not None else 0,
            line_info=line_info,
            line_info_rec_size=btf_ext.line_info.record_size if line_info is not None else 0,
            core_relos=tuple(core_by_prog.get(p.name, ()))))
    # Load time, but no kernel needed: hidden global subprograms become static FUNCs
    # in the BTF libbpf loads (bpf_object__sanitize_and_load_btf()).
    editor, btf = obj.editor, obj.btf
    if editor is not None and btf is not None:
        for spec in specs:
            if not (spec.mark_btf_static and spec.is_subprog):
                continue
            for t in btf.types:
                if t.kind == Kind.FUNC and editor.vlen(t.id) == 1 and t.name == spec.name:
                    editor.set_info(t.id, Kind.FUNC, 0)
                    break
    btf_bytes = editor.raw() if editor is not None else None
    if editor is not None and btf is not None and btf_bytes != obj.parsed_raw:
        parsed = editor.parsed(btf)  # hidden subprograms were made static since
    final_btf = parsed if btf_bytes is not None else None
    return ObjectSpec(name=obj.name, path=obj.path, license=obj.license,
                      kern_version=obj.kern_version, btf=final_btf, btf_bytes=btf_bytes,
                      btf_ext=btf_ext, programs=tuple(specs), maps=tuple(obj.maps),
                      externs=tuple(obj.externs), core_relos=tuple(core_all),
                      text_section_index=obj.text_shndx, warnings=tuple(obj.warnings))


def _ext_section_index(obj: _Object, name: str) -> int:
    s = obj.elf.section_by_name(name) if name else None
    return s.index if s is not None else 0


def _ext_info(obj: _Object, p: _Program, part: BtfExtPart) -> bytes | None:
    """libbpf's adjust_prog_btf_ext_info() for a program on its own: its records, with
    insn_off turned from section bytes into instructions from the program's start."""
    for sec in part.sections:
        if _ext_section_index(obj, sec.name) != p.section_index:
            continue
        start = end = None
        for i, record in enumerate(sec.records):
            insn = sec.insn_off(record) // BPF_INSN_SZ
            if insn < p.insn_offset:
                continue
            if insn >= p.insn_offset + p.insn_count:
                break
            if start is None:
                start = i
            end = i + 1
        if start is None:
            return None
        out = bytearray()
        for record in sec.records[start:end]:
            insn = sec.insn_off(record) // BPF_INSN_SZ - p.insn_offset
            out += struct.pack("<I", insn & 0xFFFFFFFF) + record[4:]
        return bytes(out)
    return None


def _place_core_relos(obj: _Object) -> tuple[dict[str, list[ProgramCoreRelo]],
                                             list[ProgramCoreRelo]]:
    by_prog: dict[str, list[ProgramCoreRelo]] = {}
    everything: list[ProgramCoreRelo] = []
    if obj.btf_ext is None:
        return by_prog, everything
    for sec in obj.btf_ext.core_relos.sections:
        if not sec.name:
            raise LoaderError(f"{obj.path}: CO-RE relocations of a section without a name")
        index = _ext_section_index(obj, sec.name)
        for i, relo in enumerate(obj.btf_ext.core_relo_records(sec)):
            if relo.insn_off % BPF_INSN_SZ:
                raise LoaderError(f"sec '{sec.name}': CO-RE relo #{i} at a misaligned "
                                  f"offset {relo.insn_off}")
            insn = relo.insn_off // BPF_INSN_SZ
            prog = _find_prog(obj, index, insn)
            if prog is None:
                continue  # an eliminated weak subprogram's record
            placed = ProgramCoreRelo(prog.name, insn - prog.insn_offset, i, relo)
            by_prog.setdefault(prog.name, []).append(placed)
            everything.append(placed)
    return by_prog, everything
