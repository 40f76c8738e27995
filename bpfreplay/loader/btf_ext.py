""".BTF.ext: per-section func_info, line_info and CO-RE relocation records.

Layout (kernel's struct btf_ext_header + libbpf's btf_ext_info_sec): a header
(magic 0xEB9F, version 1, flags 0, hdr_len, then offset/length pairs of the three
parts, relative to the end of the header); each part is a u32 record size followed by
sections, each ``{u32 sec_name_off (into .BTF strings), u32 num_info, records}``.
Records keep their raw bytes: a newer compiler's longer records go to the kernel as
they are, like libbpf does. Checks follow libbpf's btf_ext__new().
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from bpfreplay.errors import LoaderError

BTF_EXT_MAGIC = 0xEB9F
# Minimum record sizes (struct bpf_func_info, bpf_line_info, bpf_core_relo).
FUNC_INFO_MIN = 8
LINE_INFO_MIN = 16
CORE_RELO_MIN = 16


class CoreReloKind(enum.IntEnum):
    """enum bpf_core_relo_kind."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """One struct bpf_core_relo. ``insn_off`` is in bytes, as in the file: from the
    start of the section in ``BtfExtSection``; from the start of the program once a
    ProgramSpec holds it. ``access`` is the access string ("0:1:2")."""

    insn_off: int
    type_id: int
    access_str_off: int
    kind: int  # a CoreReloKind value (unknown kinds kept as numbers)
    access: str = ""


@dataclass(frozen=True, slots=True)
class BtfExtSection:
    """The records of one ELF section in one part of .BTF.ext."""

    name: str
    name_off: int
    records: tuple[bytes, ...] = field(repr=False)

    @staticmethod
    def insn_off(record: bytes) -> int:
        """Every record starts with the instruction offset in bytes."""
        return struct.unpack_from("<I", record)[0]


@dataclass(frozen=True, slots=True)
class BtfExtPart:
    record_size: int
    sections: tuple[BtfExtSection, ...]


@dataclass(frozen=True, slots=True)
class BtfExt:
    func_info: BtfExtPart
    line_info: BtfExtPart
    core_relos: BtfExtPart
    strings: bytes = field(repr=False, default=b"")  # the .BTF strings the names index

    def core_relo_records(self, section: BtfExtSection) -> list[CoreRelo]:
        """The decoded CO-RE records of one section, access strings resolved."""
        out = []
        for record in section.records:
            insn_off, type_id, access_str_off, kind = struct.unpack_from("<IIII", record)
            out.append(CoreRelo(insn_off, type_id, access_str_off, kind,
                                _string(self.strings, access_str_off)))
        return out


_EMPTY = BtfExtPart(0, ())


def parse_btf_ext(data: bytes, strings: bytes) -> BtfExt:
    """Parse .BTF.ext; ``strings`` is the string section of the object's .BTF (section
    names and CO-RE access strings live there). LoaderError when libbpf's btf_ext__new
    would fail."""
    if len(data) < 8:
        raise LoaderError(f".BTF.ext of {len(data)} bytes has no header")
    magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic == 0x9FEB:
        raise LoaderError(".BTF.ext in non-native endianness is not supported")
    if magic != BTF_EXT_MAGIC:
        raise LoaderError(f"invalid .BTF.ext magic {magic:#x}")
    if version != 1:
        raise LoaderError(f"unsupported .BTF.ext version {version}")
    if flags:
        raise LoaderError(f"unsupported .BTF.ext flags {flags:#x}")
    if len(data) < hdr_len:
        raise LoaderError(f".BTF.ext header of {hdr_len} bytes is longer than the section")
    if len(data) == hdr_len:
        raise LoaderError(".BTF.ext has no data")
    if hdr_len < 24:
        raise LoaderError(f".BTF.ext header of {hdr_len} bytes lacks func/line info")
    func_off, func_len, line_off, line_len = struct.unpack_from("<IIII", data, 8)
    func_info = _part(data, hdr_len, func_off, func_len, FUNC_INFO_MIN, "func_info", strings)
    line_info = _part(data, hdr_len, line_off, line_len, LINE_INFO_MIN, "line_info", strings)
    core = _EMPTY
    if hdr_len >= 32:
        core_off, core_len = struct.unpack_from("<II", data, 24)
        core = _part(data, hdr_len, core_off, core_len, CORE_RELO_MIN, "core_relo", strings)
    return BtfExt(func_info, line_info, core, strings)


def _part(data: bytes, hdr_len: int, off: int, length: int, min_size: int, what: str,
          strings: bytes) -> BtfExtPart:
    if length == 0:
        return _EMPTY
    if off & 3:
        raise LoaderError(f".BTF.ext {what} section is not aligned to 4 bytes")
    start = hdr_len + off
    end = start + length
    if end > len(data):
        raise LoaderError(f".BTF.ext {what} section (off:{off} len:{length}) is beyond the "
                          f"end of the ELF section .BTF.ext")
    if length < 4:
        raise LoaderError(f".BTF.ext {what} record size not found")
    (record_size,) = struct.unpack_from("<I", data, start)
    if record_size < min_size or record_size & 3:
        raise LoaderError(f".BTF.ext {what} section has invalid record size {record_size}")
    pos = start + 4
    if pos == end:
        raise LoaderError(f".BTF.ext {what} section has no records")
    sections = []
    while pos < end:
        if end - pos < 8:
            raise LoaderError(f".BTF.ext {what} section header is not found")
        name_off, count = struct.unpack_from("<II", data, pos)
        if count == 0 or end - pos - 8 < count * record_size:
            raise LoaderError(f".BTF.ext {what} section has incorrect num_records")
        pos += 8
        records = tuple(data[pos + i * record_size:pos + (i + 1) * record_size]
                        for i in range(count))
        pos += count * record_size
        sections.append(BtfExtSection(_string(strings, name_off), name_off, records))
    return BtfExtPart(record_size, tuple(sections))


def _string(strings: bytes, offset: int) -> str:
    if offset >= len(strings):
        return ""
    end = strings.find(b"\0", offset)
    return strings[offset:end if end >= 0 else len(strings)].decode("utf-8", "replace")
