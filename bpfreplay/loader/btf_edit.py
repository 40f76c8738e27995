"""In-place edits of a raw BTF blob, for the fixups libbpf makes to an object's BTF
before loading it (DATASEC sizes and VAR offsets, extern linkage, hidden functions).

libbpf edits its parsed copy in place and, unless it had to add a type, hands the
kernel the very bytes it read with those fields changed; this editor does the same on
a bytearray, so the result is byte-identical. Adding a type (libbpf's btf__add_var for
``dummy_ksym``) re-serialises the blob the way libbpf's btf_get_raw_data() does:
header (its own length kept), types, then strings, with the new string appended unless
already present.
"""

from __future__ import annotations

import struct

from bpfreplay.decode.btf import KIND_RECORD_SIZES as _EXTRA
from bpfreplay.decode.btf import Btf, Kind, decode_type, parse_btf, parse_header, string_in
from bpfreplay.errors import DecodeError, LoaderError


class BtfEditor:
    """A raw BTF blob with the byte offset of every type, editable field by field.
    Type ids start at 1 (no split BTF: object BTF is always standalone)."""

    def __init__(self, blob: bytes) -> None:
        try:
            header = parse_header(blob)
        except DecodeError as e:
            raise LoaderError(f"Error loading ELF section .BTF: {e}") from e
        self._blob = bytearray(blob)
        self.hdr_len = header.hdr_len
        self._types_start = header.hdr_len + header.type_off
        self._types_end = self._types_start + header.type_len
        self._strings_start = header.hdr_len + header.str_off
        self._strings_len = header.str_len
        self._offsets: list[int] = [0]  # index = type id; id 0 (void) has no bytes
        pos = self._types_start
        while pos < self._types_end:
            if pos + 12 > self._types_end:
                raise LoaderError(f"Error loading ELF section .BTF: type "
                                  f"{len(self._offsets)} is truncated")
            info = struct.unpack_from("<I", self._blob, pos + 4)[0]
            kind = (info >> 24) & 0x1F
            extra = _EXTRA.get(kind)  # type: ignore[call-overload]
            if extra is None:
                raise LoaderError(f"Error loading ELF section .BTF: type "
                                  f"{len(self._offsets)} has unknown kind {kind}")
            self._offsets.append(pos)
            pos += 12 + extra[0] + extra[1] * (info & 0xFFFF)
        self._added_types = bytearray()
        self._added_strings = bytearray()
        self._edited: set[int] = set()  # ids of the types whose record was written
        self._strings_edited = False

    # ---------------------------------------------------------------- reading

    @property
    def type_count(self) -> int:
        """Number of ids including void (libbpf's btf__type_cnt)."""
        return len(self._offsets)

    def kind(self, type_id: int) -> int:
        return (self._u32(type_id, 4) >> 24) & 0x1F

    def vlen(self, type_id: int) -> int:
        return self._u32(type_id, 4) & 0xFFFF

    def name_off(self, type_id: int) -> int:
        return self._u32(type_id, 0)

    def size_or_type(self, type_id: int) -> int:
        return self._u32(type_id, 8)

    def name(self, type_id: int) -> str:
        return self.string(self.name_off(type_id))

    def string(self, offset: int) -> str:
        strings = self._strings()
        if offset >= len(strings):
            return ""
        end = strings.find(b"\0", offset)
        return strings[offset:end if end >= 0 else len(strings)].decode("utf-8", "replace")

    def secinfos(self, type_id: int) -> list[tuple[int, int, int]]:
        """(type, offset, size) of each VAR of a DATASEC."""
        base = self._offsets[type_id] + 12
        return [struct.unpack_from("<III", self._blob, base + 12 * i)
                for i in range(self.vlen(type_id))]

    def var_linkage(self, type_id: int) -> int:
        return self._u32(type_id, 12)

    # ---------------------------------------------------------------- writing

    def set_size(self, type_id: int, size: int) -> None:
        self._put(type_id, 8, size)

    def set_type(self, type_id: int, ref: int) -> None:
        self._put(type_id, 8, ref)

    def set_info(self, type_id: int, kind: int, vlen: int, kind_flag: bool = False) -> None:
        self._put(type_id, 4, (int(kind_flag) << 31) | (kind << 24) | (vlen & 0xFFFF))

    def set_var_linkage(self, type_id: int, linkage: int) -> None:
        self._put(type_id, 12, linkage)

    def set_secinfos(self, type_id: int, entries: list[tuple[int, int, int]]) -> None:
        base = self._offsets[type_id] + 12
        self._edited.add(type_id)
        for i, entry in enumerate(entries):
            struct.pack_into("<III", self._blob, base + 12 * i, *entry)

    def set_param_name_off(self, type_id: int, index: int, name_off: int) -> None:
        self._edited.add(type_id)
        struct.pack_into("<I", self._blob, self._offsets[type_id] + 12 + 8 * index, name_off)

    def params(self, type_id: int) -> list[tuple[int, int]]:
        """(name_off, type) of each FUNC_PROTO parameter."""
        base = self._offsets[type_id] + 12
        return [struct.unpack_from("<II", self._blob, base + 8 * i)
                for i in range(self.vlen(type_id))]

    def set_name_off(self, type_id: int, name_off: int) -> None:
        self._put(type_id, 0, name_off)

    def set_word(self, type_id: int, field_offset: int, value: int) -> None:
        """A u32 of a type's record: 12 is the first word after struct btf_type."""
        self._put(type_id, field_offset, value)

    def set_string_in_place(self, offset: int, text: str) -> None:
        """Overwrite a string of the string section with one of the same length (libbpf
        edits names through the pointer btf__name_by_offset() returns)."""
        raw = text.encode()
        start = self._strings_start + offset
        if offset + len(raw) > self._strings_len:
            raise LoaderError(f"BTF string at {offset} cannot be edited in place")
        self._blob[start:start + len(raw)] = raw
        self._strings_edited = True

    def add_int(self, name: str, size: int, encoding: int) -> int:
        """Append an INT (libbpf's btf__add_int); returns its id."""
        name_off = self._add_string(name)
        new_id = self.type_count
        self._offsets.append(-1 - len(self._added_types))
        self._added_types += struct.pack("<IIII", name_off, Kind.INT << 24, size,
                                         (encoding << 24) | (size * 8))
        return new_id

    def add_var(self, name: str, linkage: int, type_id: int) -> int:
        """Append a VAR (libbpf's btf__add_var); returns its id."""
        name_off = self._add_string(name)
        new_id = self.type_count
        self._offsets.append(-1 - len(self._added_types))  # marks an added type
        self._added_types += struct.pack("<IIII", name_off, Kind.VAR << 24, type_id, linkage)
        return new_id

    def raw(self) -> bytes:
        if not self._added_types and not self._added_strings:
            return bytes(self._blob)
        types = (self._blob[self._types_start:self._types_end] + self._added_types)
        strings = self._strings()
        header = bytearray(self._blob[:self.hdr_len])
        struct.pack_into("<IIII", header, 8, 0, len(types), len(types), len(strings))
        return bytes(header + types + strings)

    def parsed(self, original: Btf) -> Btf:
        """What ``parse_btf(self.raw())`` gives, made from ``original`` (the parse of the
        blob this editor was made from) by decoding again only the types written or
        added since: the fixups touch a handful of DATASECs, VARs and FUNCs, and a
        second full parse of an object's BTF costs as much as the first. DecodeError as
        parse_btf() raises it. (An edited string may name any type: then all of them.)"""
        raw = self.raw()
        if self._strings_edited:
            return parse_btf(raw)
        header = original.header
        strings = original.strings
        if self._added_types or self._added_strings:
            header = parse_header(raw)
            start = header.hdr_len + header.str_off
            strings = raw[start:start + header.str_len]
        types_start = header.hdr_len + header.type_off
        types_end = types_start + header.type_len
        types = list(original.types)

        def name_of(offset: int) -> str:  # as parse_btf() names: offset 0 is always ""
            return string_in(strings, offset) if offset else ""

        added = range(len(types) + 1, self.type_count)
        for type_id in sorted(self._edited.union(added)):
            pos = self._offsets[type_id]
            pos = types_start + (pos - self._types_start if pos >= 0 else
                                 self._types_end - self._types_start - 1 - pos)
            t, _ = decode_type(raw, pos, types_end, type_id, name_of)
            if type_id <= len(types):
                types[type_id - 1] = t
            else:
                types.append(t)
        return Btf(header, types, strings)

    # ---------------------------------------------------------------- internals

    def _strings(self) -> bytes:
        start = self._strings_start
        return bytes(self._blob[start:start + self._strings_len]) + bytes(self._added_strings)

    def _add_string(self, text: str) -> int:
        strings = self._strings()
        encoded = text.encode() + b"\0"
        at = strings.find(b"\0" + encoded)
        if at >= 0:
            return at + 1
        self._added_strings += encoded
        return len(strings)

    def _where(self, type_id: int, field_offset: int) -> tuple[bytearray, int]:
        if not 0 < type_id < len(self._offsets):
            raise LoaderError(f"BTF type id {type_id} out of range")
        pos = self._offsets[type_id]
        if pos < 0:
            return self._added_types, -1 - pos + field_offset
        return self._blob, pos + field_offset

    def _u32(self, type_id: int, field_offset: int) -> int:
        buf, pos = self._where(type_id, field_offset)
        return struct.unpack_from("<I", buf, pos)[0]

    def _put(self, type_id: int, field_offset: int, value: int) -> None:
        buf, pos = self._where(type_id, field_offset)
        self._edited.add(type_id)
        struct.pack_into("<I", buf, pos, value & 0xFFFFFFFF)
