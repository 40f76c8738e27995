"""The ELF side of an eBPF object: sections, symbols and relocations.

Only what the spec stage needs, with the checks libbpf's bpf_object__elf_init makes
(64-bit, little-endian, relocatable, machine EM_BPF or EM_NONE) and a check that every
section lies inside the file, so a truncated object is refused here with a clear error
instead of yielding short section data later.

Read with ``struct`` rather than pyelftools: an eBPF object is always ELF64
little-endian, the three tables needed are fixed-size records, and reading the raw
header fields lets every check say exactly which byte is missing (pyelftools alone
costs ~90 ms to import and reads past a truncated file silently).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bpfreplay.errors import LoaderError

# Section types and flags (elf.h).
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHT_REL = 9
SHT_LLVM_ADDRSIG = 0x6FFF4C03
SHF_EXECINSTR = 0x4
# Symbol binding, type and visibility.
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN = 0, 1, 2
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
EM_NONE, EM_BPF = 0, 247
ET_REL = 1

_MACHINES = {3: "x86 (i386)", 62: "x86-64", 40: "ARM", 183: "AArch64", 243: "RISC-V",
             8: "MIPS", 21: "PowerPC64", 22: "s390"}


# Section, Symbol and Relocation are read-only by convention: a frozen dataclass's
# __init__ (object.__setattr__ per field) costs 3 times a plain one's, and every open
# makes one per section and per symbol. unsafe_hash keeps them hashable.
@dataclass(slots=True, unsafe_hash=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    entsize: int
    offset: int  # sh_offset: where the section's bytes start in the file
    _file: bytes = field(repr=False, compare=False)
    _data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """The section's bytes (b"" for SHT_NOBITS: its size still says how big), cut
        from the file when first asked for: most sections of an object (DWARF) never
        are."""
        data = self._data
        if data is None:
            data = b"" if self.type == SHT_NOBITS else \
                self._file[self.offset:self.offset + self.size]
            self._data = data
        return data

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(slots=True, unsafe_hash=True)
class Symbol:
    index: int
    name: str
    name_off: int
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    shndx: int


@dataclass(slots=True, unsafe_hash=True)
class Relocation:
    """One Elf64_Rel entry (BPF objects only use REL, never RELA)."""

    offset: int
    symbol: int
    type: int


@dataclass
class ElfObject:
    """The sections (index 0 included, as in the file) and the symbol table."""

    sections: list[Section]
    symbols: list[Symbol]
    symtab_index: int
    path: str

    def section_by_name(self, name: str) -> Section | None:
        """The first section called ``name`` (libbpf's elf_sec_by_name)."""
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def relocations(self, section: Section) -> list[Relocation]:
        if section.entsize != 16:
            raise LoaderError(f"elf: relocation section '{section.name}' of {self.path} has "
                              f"entries of {section.entsize} bytes, expected 16")
        out = []
        for offset, info in struct.iter_unpack("<QQ", section.data[: len(section.data) // 16 * 16]):
            out.append(Relocation(offset, info >> 32, info & 0xFFFFFFFF))
        return out


def read_elf(data: bytes, path: str) -> ElfObject:
    """Parse an eBPF ELF object; LoaderError for anything libbpf would refuse at this
    stage (not ELF, not 64-bit little-endian, not relocatable BPF, truncated)."""
    headers, shstrndx = _check_header(data, path)
    names = headers[shstrndx]
    if names[0] == SHT_NOBITS:
        raise LoaderError(f"elf: failed to get section names strings from {path}")
    name_table = data[names[2]:names[2] + names[3]]
    sections = [Section(index, _cstr(name_table, sh_name), sh_type, sh_flags, sh_size,
                        sh_link, sh_info, sh_entsize, sh_offset, data)
                for index, (sh_type, sh_name, sh_offset, sh_size, sh_flags, sh_link, sh_info,
                            sh_entsize) in enumerate(headers)]

    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) > 1:
        raise LoaderError(f"elf: multiple symbol tables in {path}")
    if not symtabs:
        raise LoaderError(f"elf: couldn't find symbol table in {path}, stripped object file?")
    symtab = symtabs[0]
    if symtab.entsize != 24:
        raise LoaderError(f"elf: symbol table of {path} has {symtab.entsize}-byte entries")
    if not 0 < symtab.link < len(sections):
        raise LoaderError(f"elf: symbol strings section missing or invalid in {path}")
    strtab = sections[symtab.link].data
    symbols = [Symbol(i, _cstr(strtab, name_off), name_off, value, size, info >> 4, info & 0xF,
                      other & 0x3, shndx)
               for i, (name_off, info, other, shndx, value, size) in enumerate(
                   _SYMBOL.iter_unpack(symtab.data[: len(symtab.data) // 24 * 24]))]
    return ElfObject(sections, symbols, symtab.index, path)


_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SYMBOL = struct.Struct("<IBBHQQ")  # Elf64_Sym


def _check_header(data: bytes, path: str) -> tuple[list[tuple[int, ...]], int]:
    """Validate the ELF header and return the section headers as (type, name, offset,
    size, flags, link, info, entsize) tuples, and the section-names index."""
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise LoaderError(f"not an eBPF object: {path} is not an ELF file")
    if len(data) < 64:
        raise LoaderError(f"elf: {path} is truncated: {len(data)} bytes, shorter than an "
                          f"ELF header")
    if data[4] != 2:
        raise LoaderError(f"not an eBPF object: '{path}' is not a 64-bit ELF object")
    if data[5] != 1:
        raise LoaderError(f"elf: endianness mismatch in {path} (big-endian object)")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    # Old LLVM set e_machine to EM_NONE; libbpf accepts it.
    if e_type != ET_REL or e_machine not in (EM_NONE, EM_BPF):
        what = []
        if e_machine not in (EM_NONE, EM_BPF):
            what.append(f"machine {_MACHINES.get(e_machine, e_machine)}, not BPF")
        if e_type != ET_REL:
            what.append(f"ELF type {e_type}, not a relocatable object")
        raise LoaderError(f"not an eBPF object: {path} is not a valid eBPF object file "
                          f"({'; '.join(what)})")
    e_shoff, = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if e_shoff == 0 or e_shnum == 0:
        # (Objects with 65280+ sections keep the count elsewhere; no BPF object has them.)
        raise LoaderError(f"elf: {path} has no section headers")
    if e_shentsize != 64:
        raise LoaderError(f"elf: {path} has section headers of {e_shentsize} bytes, "
                          f"expected 64")
    if e_shoff + e_shnum * 64 > len(data):
        raise LoaderError(f"elf: {path} is truncated: its section headers end at byte "
                          f"{e_shoff + e_shnum * 64} of a {len(data)}-byte file")
    if e_shstrndx >= e_shnum:
        raise LoaderError(f"elf: failed to get section names section index for {path}")
    headers = []
    table = data[e_shoff:e_shoff + e_shnum * 64]
    for i, (sh_name, sh_type, sh_flags, _addr, sh_offset, sh_size, sh_link, sh_info, _align,
            sh_entsize) in enumerate(_SECTION_HEADER.iter_unpack(table)):
        if sh_type != SHT_NOBITS and sh_offset + sh_size > len(data):
            raise LoaderError(f"elf: {path} is truncated: section #{i} ends at byte "
                              f"{sh_offset + sh_size} of a {len(data)}-byte file")
        headers.append((sh_type, sh_name, sh_offset, sh_size, sh_flags, sh_link, sh_info,
                        sh_entsize))
    return headers, e_shstrndx


def _cstr(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("utf-8", "replace")
