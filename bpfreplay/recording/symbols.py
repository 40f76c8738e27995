"""Names for addresses of one ELF file: its function symbols, and the functions DWARF
says were inlined at an address (what ``addr2line -i -f`` prints).

Symbols come from ``.symtab`` when the file has one, else from ``.dynsym`` (a stripped
library: its static functions have no name there, and a frame in one is shown as
``module+offset``). ``exported`` marks a symbol that ``.dynsym`` defines with global or
weak binding: the library's public API, whichever table named the frame.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Any

from elftools.elf.elffile import ELFFile

_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_STB_GLOBAL, _STB_WEAK = 1, 2
_SHN_UNDEF = 0
_ELF64_SYM = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, value, size


def _functions(elf: ELFFile, table: Any) -> list[tuple[int, int, str, int]]:
    """(value, size, name, binding) of the defined functions of a symbol table, read
    from its bytes: pyelftools' per-symbol parsing costs ~0.5 ms a symbol, and libc's
    .dynsym has 3,000."""
    if table is None or elf.elfclass != 64 or not elf.little_endian:
        return []
    data = table.data()
    strings = elf.get_section(table.header.sh_link).data()
    out = []
    for name_at, info, _, shndx, value, size in _ELF64_SYM.iter_unpack(
            data[:len(data) - len(data) % _ELF64_SYM.size]):
        if info & 0xF in (_STT_FUNC, _STT_GNU_IFUNC) and shndx != _SHN_UNDEF:
            end = strings.find(b"\0", name_at)
            name = strings[name_at:end if end >= 0 else len(strings)].decode(errors="replace")
            out.append((value, size, name, info >> 4))
    return out


@dataclass(frozen=True)
class Symbol:
    name: str
    start: int
    exported: bool


class SymbolTable:
    def __init__(self, elf: ELFFile):
        dynsym = elf.get_section_by_name(".dynsym")
        exported = {value for value, _, name, bind in _functions(elf, dynsym)
                    if bind in (_STB_GLOBAL, _STB_WEAK)}
        table = elf.get_section_by_name(".symtab") or dynsym
        # A .symtab may carry the version (bpf_object__open@@LIBBPF_0.0.1).
        entries = [(value, value + size, name.split("@", 1)[0])
                   for value, size, name, _ in _functions(elf, table) if size > 0 and name]
        # Aliases (same start) keep the global one: the name a user knows.
        entries.sort(key=lambda e: (e[0], e[2].startswith("_"), e[2]))
        self._starts = [start for start, _, _ in entries]
        self._entries = entries
        self._exported = exported

    def lookup(self, address: int) -> Symbol | None:
        at = bisect.bisect_right(self._starts, address) - 1
        if at < 0:
            return None
        start = self._starts[at]
        for _, end, name in self._entries[bisect.bisect_left(self._starts, start):at + 1]:
            if address < end:  # the preferred alias first
                return Symbol(name, start, start in self._exported)
        return None


class InlineInfo:
    """DW_TAG_inlined_subroutine ranges of a file's DWARF, found per address."""

    def __init__(self, elf: ELFFile):
        self._dwarf = elf.get_dwarf_info() if elf.has_dwarf_info(strict=True) else None
        self._aranges: Any = None
        self._names: dict[int, str | None] = {}

    def inlined_at(self, address: int) -> list[str]:
        """The functions inlined at ``address``, innermost first (the frame's own
        function, which the symbol table names, is not in the list)."""
        if self._dwarf is None:
            return []
        cu = self._unit_of(address)
        if cu is None:
            return []
        top = cu.get_top_DIE()
        chain: list[str] = []
        for die in top.iter_children():
            if die.tag == "DW_TAG_subprogram" and self._covers(die, cu, address):
                self._descend(die, cu, address, chain)
                break
        chain.reverse()
        return chain

    def _unit_of(self, address: int) -> Any:
        assert self._dwarf is not None
        if self._aranges is None:
            self._aranges = self._dwarf.get_aranges() or False
        if self._aranges:
            offset = self._aranges.cu_offset_at_addr(address)
            if offset is not None:
                return self._dwarf.get_CU_at(offset)
        for cu in self._dwarf.iter_CUs():  # no .debug_aranges: ask each unit
            if self._covers(cu.get_top_DIE(), cu, address):
                return cu
        return None

    def _descend(self, die: Any, cu: Any, address: int, chain: list[str]) -> None:
        for child in die.iter_children():
            if child.tag in ("DW_TAG_inlined_subroutine", "DW_TAG_lexical_block") \
                    and self._covers(child, cu, address):
                if child.tag == "DW_TAG_inlined_subroutine":
                    chain.append(self._name(child) or "??")
                self._descend(child, cu, address, chain)
                return

    def _name(self, die: Any) -> str | None:
        for _ in range(4):  # follow abstract_origin / specification to the named DIE
            if "DW_AT_name" in die.attributes:
                return die.attributes["DW_AT_name"].value.decode(errors="replace")
            origin = die.attributes.get("DW_AT_abstract_origin") \
                or die.attributes.get("DW_AT_specification")
            if origin is None:
                return None
            die = die.get_DIE_from_attribute(origin.name)
        return None

    def _covers(self, die: Any, cu: Any, address: int) -> bool:
        attributes = die.attributes
        if "DW_AT_low_pc" in attributes and "DW_AT_high_pc" in attributes:
            low = attributes["DW_AT_low_pc"].value
            high_attr = attributes["DW_AT_high_pc"]
            high = high_attr.value if high_attr.form == "DW_FORM_addr" else low + high_attr.value
            return low <= address < high
        if "DW_AT_ranges" in attributes:
            assert self._dwarf is not None
            lists = self._dwarf.range_lists()
            if lists is None:
                return False
            base = attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in attributes else 0
            if base == 0 and die.tag != "DW_TAG_compile_unit":
                top = cu.get_top_DIE().attributes
                base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
            for entry in lists.get_range_list_at_offset(attributes["DW_AT_ranges"].value, cu=cu):
                if type(entry).__name__ == "BaseAddressEntry":
                    base = entry.base_address
                    continue
                begin, end = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    begin, end = begin + base, end + base
                if begin <= address < end:
                    return True
        return False
