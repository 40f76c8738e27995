"""Call-frame information of one ELF file: for an address, how to find its caller.

The rules come from ``.eh_frame`` (what the C runtime itself unwinds with), else from
``.debug_frame``; pyelftools decodes the entries. Parsing a whole ``.eh_frame`` costs
~0.5 s for libc, so the FDE covering an address is found through ``.eh_frame_hdr``'s
binary search table (the one the loader gives ``_Unwind_Find_FDE``) and only that FDE
is parsed; a file without the table has its FDEs parsed once and kept sorted.
"""

from __future__ import annotations

import bisect
import io
import struct
from dataclasses import dataclass
from typing import Any

from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

# DW_EH_PE_* encodings of .eh_frame_hdr that GNU ld and lld write.
_PE_UDATA4 = 0x03
_PE_SDATA4 = 0x0B
_PE_PCREL = 0x10
_PE_DATAREL = 0x30


@dataclass(frozen=True)
class Rule:
    """One row of an FDE's table: the CFA as register + offset (None: a DWARF expression,
    which we do not evaluate) and the rules of the registers it saves."""

    cfa_register: int | None
    cfa_offset: int
    registers: dict[int, tuple[str, Any]]


class FrameInfo:
    """The unwind rules of one file, looked up by the file's virtual address."""

    def __init__(self, elf: ELFFile):
        self._structs = DWARFStructs(little_endian=elf.little_endian, dwarf_format=32,
                                     address_size=elf.elfclass // 8)
        self._rows: dict[int, tuple[int, int, list[tuple[int, Rule]]] | None] = {}
        self._starts: list[int] = []  # initial locations, sorted
        self._fde_offsets: list[int] = []  # eh_frame offset of the FDE at each start
        self._cfi: CallFrameInfo | None = None
        self._fdes: list[FDE] = []  # when no search table: every FDE, sorted by start
        eh_frame = elf.get_section_by_name(".eh_frame")
        header = elf.get_section_by_name(".eh_frame_hdr")
        if eh_frame is not None and eh_frame.header.sh_type != "SHT_NOBITS":
            self._cfi = CallFrameInfo(io.BytesIO(eh_frame.data()), eh_frame.data_size,
                                      eh_frame.header.sh_addr, self._structs,
                                      for_eh_frame=True)
            if header is None or not self._read_search_table(
                    header.data(), header.header.sh_addr, eh_frame.header.sh_addr):
                self._sort_all(self._cfi)
        else:
            debug_frame = elf.get_section_by_name(".debug_frame")
            if debug_frame is not None and not debug_frame.compressed:
                self._cfi = CallFrameInfo(io.BytesIO(debug_frame.data()), debug_frame.data_size, 0,
                                          self._structs)
                self._sort_all(self._cfi)

    def _read_search_table(self, data: bytes, address: int, eh_frame_address: int) -> bool:
        """The sorted (initial location, FDE) pairs of .eh_frame_hdr; False if its
        encodings are not the usual ones (then every FDE is parsed instead)."""
        if len(data) < 12 or data[0] != 1:
            return False
        frame_ptr_enc, count_enc, table_enc = data[1], data[2], data[3]
        if frame_ptr_enc != _PE_PCREL | _PE_SDATA4 or count_enc != _PE_UDATA4 \
                or table_enc != _PE_DATAREL | _PE_SDATA4:
            return False
        (count,) = struct.unpack_from("<I", data, 8)
        if len(data) < 12 + 8 * count:
            return False
        pairs = struct.unpack_from(f"<{2 * count}i", data, 12)
        self._starts = [address + value for value in pairs[0::2]]
        self._fde_offsets = [address + value - eh_frame_address for value in pairs[1::2]]
        return True

    def _sort_all(self, cfi: CallFrameInfo) -> None:
        fdes = [entry for entry in cfi.get_entries() if isinstance(entry, FDE)]
        fdes.sort(key=lambda fde: fde.header["initial_location"])
        self._fdes = fdes
        self._starts = [fde.header["initial_location"] for fde in fdes]
        self._fde_offsets = list(range(len(fdes)))

    def rule(self, address: int) -> Rule | None:
        """The rule at ``address``, or None if no FDE covers it."""
        slot = bisect.bisect_right(self._starts, address) - 1
        if slot < 0:
            return None
        rows = self._rows.get(slot, False)
        if rows is False:
            rows = self._rows[slot] = self._decode(slot)
        if rows is None:
            return None
        start, end, table = rows
        if not start <= address < end:
            return None
        at = bisect.bisect_right(table, address, key=lambda row: row[0]) - 1
        return table[at][1] if at >= 0 else None

    def _decode(self, slot: int) -> tuple[int, int, list[tuple[int, Rule]]] | None:
        if self._fdes:
            fde = self._fdes[slot]
        else:
            assert self._cfi is not None
            entry = self._cfi._parse_entry_at(self._fde_offsets[slot])  # noqa: SLF001 - one FDE, not all
            if not isinstance(entry, FDE):
                return None
            fde = entry
        start = fde.header["initial_location"]
        end = start + fde.header["address_range"]
        table = []
        for line in fde.get_decoded().table:
            cfa = line["cfa"]
            registers = {number: (rule.type, rule.arg) for number, rule in line.items()
                         if isinstance(number, int)}
            if cfa.expr is not None or cfa.reg is None:
                table.append((line["pc"], Rule(None, 0, registers)))
            else:
                table.append((line["pc"], Rule(cfa.reg, cfa.offset, registers)))
        return start, end, table
