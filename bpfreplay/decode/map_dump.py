"""A map's entries as text, in the form ``bpftool map dump`` (bpftool 7.1) prints them,
and its BTF-typed values as Python values. Pure: bytes and BTF in, text out.

With BTF (the map's ``btf_id`` is set) bpftool prints every entry through its BTF
dumper into a pretty-printing JSON writer (map.c do_dump_btf(), btf_dumper.c, with
``is_plain_text``): ``[{`` ... ``"key": ..., "value": ...`` ... ``}`` ``]``, per-CPU
values as ``"values": [{"cpu": N, "value": ...}, ...]``. Without BTF, each entry as hex
bytes (map.c print_entry_plain(), main.c fprint_hex()) and ``Found N element(s)``.

The same walk in bpftool's JSON mode (``bpftool -j``'s ``formatted``: pointers as
numbers, bitfields and chars as strings) is valid JSON once strings are escaped
properly: that is what :func:`btf_value` returns as Python values.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from bpfreplay.decode.btf import INT_BOOL, INT_CHAR, INT_SIGNED, MODIFIER_KINDS, Btf, Kind
from bpfreplay.errors import DecodeError

# What a BTF-typed value decodes to: structs and datasecs as dicts, arrays as lists,
# char arrays holding a C string, enumerator names, bitfields ("0x5") and non-printable
# chars as strings; ints (and pointers) as ints; bools.
BtfValue: TypeAlias = int | bool | str | list["BtfValue"] | dict[str, "BtfValue"]


@dataclass(frozen=True)
class MapLayout:
    """What bpftool reads of a map's struct bpf_map_info to print it."""

    key_size: int
    value_size: int
    per_cpu: bool
    cpus: int  # possible CPUs: a per-CPU value holds one 8-byte aligned slot for each
    btf_id: int = 0
    key_type_id: int = 0  # btf_key_type_id
    value_type_id: int = 0  # btf_vmlinux_value_type_id, else btf_value_type_id
    fd_slots: bool = False  # a map of maps or of programs: a missing slot is no error

    @property
    def slot(self) -> int:
        return (self.value_size + 7) // 8 * 8


def format_map_dump(layout: MapLayout, entries: Iterable[tuple[bytes, bytes | int]],
                    btf: Btf | None) -> str:
    """Everything ``bpftool map dump`` prints for one map whose get_next_key walk and
    lookups gave ``entries``: (key, value), or (key, errno) for a lookup that failed.
    ``btf``: the map's BTF, None when it has no value type: then the hex form, as
    bpftool falls back to print_entry_plain()."""
    if not layout.btf_id:
        out, count = [], 0
        for key, value in entries:
            if isinstance(value, int):
                out.append(_error_entry(layout, key, value))
            else:
                out.append(_plain_entry(layout, key, value))
                count += 1
        return "".join(out) + f"Found {count} element{'s' if count != 1 else ''}\n"
    writer = JsonWriter(pretty=True, bpftool_escapes=True)
    writer.start_array()
    for key, value in entries:
        if isinstance(value, int):
            writer.raw(_error_entry(layout, key, value))
        elif btf is None or not layout.value_type_id:
            writer.raw(_plain_entry(layout, key, value))  # map.c dump_map_elem(), btf NULL
            continue
        _entry(writer, BtfDumper(btf, writer, plain_text=True), layout, key, value)
    writer.end_array()
    return writer.text() + "\n"  # jsonw_destroy()


def btf_value(btf: Btf, type_id: int, data: bytes) -> BtfValue:
    """``data`` as a value of BTF type ``type_id``, as bpftool's JSON mode shows it."""
    writer = JsonWriter(pretty=False, bpftool_escapes=False)
    try:
        BtfDumper(btf, writer, plain_text=False).dump(type_id, data)
        value: BtfValue = json.loads(writer.text())
    except (_Refused, ValueError) as e:  # a FLOAT, a FWD, "(unknown)", a bad size
        raise DecodeError(f"BTF type {type_id} ({btf.name(type_id) or 'anon'}) cannot be "
                          "shown as a value (bpftool refuses it too)") from e
    return value


def _entry(writer: JsonWriter, dumper: BtfDumper, layout: MapLayout, key: bytes,
           value: bytes) -> None:
    """map.c do_dump_btf(): one entry's object; a type the dumper refuses ends it."""
    writer.start_object()
    try:
        if layout.key_type_id:
            writer.name("key")
            dumper.dump(layout.key_type_id, key)
        if not layout.per_cpu:
            writer.name("value")
            dumper.dump(layout.value_type_id, value)
        else:
            writer.name("values")
            writer.start_array()
            try:
                for cpu in range(layout.cpus):
                    writer.start_object()
                    writer.name("cpu")
                    writer.printf(str(cpu))
                    writer.name("value")
                    try:
                        dumper.dump(layout.value_type_id,
                                    value[cpu * layout.slot:cpu * layout.slot + layout.value_size])
                    finally:
                        writer.end_object()
            finally:
                writer.end_array()
    except _Refused:
        pass
    writer.end_object()


def _error_entry(layout: MapLayout, key: bytes, error: int) -> str:
    """map.c print_entry_error(): nothing for a missing slot of a map of maps or of
    programs, else the key and the error in place of the value."""
    if error == errno.ENOENT and layout.fd_slots:
        return ""
    message = "<no entry>" if error == errno.ENOENT else os.strerror(error)
    break_names = layout.key_size > 16 or len(message) > 16
    single_line = layout.key_size + len(message) <= 24 and not break_names
    return ("key:" + ("\n" if break_names else " ") + hex_bytes(key[:layout.key_size])
            + ("  " if single_line else "\n") + "value:" + ("\n" if break_names else " ")
            + message + "\n")


def _plain_entry(layout: MapLayout, key: bytes, value: bytes) -> str:
    """map.c print_entry_plain()."""
    out = []
    if not layout.per_cpu:
        break_names = layout.key_size > 16 or layout.value_size > 16
        single_line = layout.key_size + layout.value_size <= 24 and not break_names
        if layout.key_size:
            out.append("key:" + ("\n" if break_names else " ") + hex_bytes(key[:layout.key_size]))
            out.append("  " if single_line else "\n")
        if layout.value_size:
            out.append("value:" + ("\n" if break_names else " ")
                       + hex_bytes(value[:layout.value_size]))
        out.append("\n")
        return "".join(out)
    if layout.key_size:
        out.append("key:\n" + hex_bytes(key[:layout.key_size]) + "\n")
    if layout.value_size:
        for cpu in range(layout.cpus):
            slot = value[cpu * layout.slot:cpu * layout.slot + layout.value_size]
            out.append(f"value (CPU {cpu:02d}):" + ("\n" if layout.value_size > 16 else " ")
                       + hex_bytes(slot) + "\n")
    return "".join(out)


def hex_bytes(data: bytes) -> str:
    """main.c fprint_hex() with a space between bytes: two spaces after each 8, a line
    break after each 16."""
    parts = []
    for i, b in enumerate(data):
        if i and i % 16 == 0:
            parts.append("\n")
        elif i and i % 8 == 0:
            parts.append("  ")
        elif i:
            parts.append(" ")
        parts.append(f"{b:02x}")
    return "".join(parts)


class JsonWriter:
    """bpftool's json_writer.c: a comma before every element but the first of its
    container, and in pretty mode each name on its own line indented 4 spaces per
    level; a container closes on its own line only if it holds something."""

    def __init__(self, *, pretty: bool, bpftool_escapes: bool):
        self.pretty = pretty
        self.bpftool_escapes = bpftool_escapes
        self.depth = 0
        self.separator = ""
        self.parts: list[str] = []

    def text(self) -> str:
        return "".join(self.parts)

    def _eol(self) -> None:
        if self.pretty:
            self.parts.append("\n" + "    " * self.depth)

    def _eor(self) -> None:
        self.parts.append(self.separator)
        self.separator = ","

    def _begin(self, char: str) -> None:
        self._eor()
        self.parts.append(char)
        self.depth += 1
        self.separator = ""

    def _end(self, char: str) -> None:
        self.depth -= 1
        if self.separator:
            self._eol()
        self.parts.append(char)
        self.separator = ","

    def start_object(self) -> None:
        self._begin("{")

    def end_object(self) -> None:
        self._end("}")

    def start_array(self) -> None:
        self._begin("[")

    def end_array(self) -> None:
        self._end("]")

    def name(self, name: str) -> None:
        self._eor()
        self._eol()
        self.separator = ""
        self.parts.append(self._quoted(name) + (": " if self.pretty else ":"))

    def printf(self, text: str) -> None:
        """jsonw_printf(): a value written as is."""
        self._eor()
        self.parts.append(text)

    def string(self, text: str) -> None:
        self._eor()
        self.parts.append(self._quoted(text))

    def raw(self, text: str) -> None:
        """Text bpftool prints around the writer (printf to stdout), no separator."""
        self.parts.append(text)

    def _quoted(self, text: str) -> str:
        if not self.bpftool_escapes:
            return json.dumps(text)
        # json_writer.c jsonw_puts(): C escapes only, and a backslash comes out as
        # "\n"; Debian's bpftool 7.1 leaves a single quote as it is
        return '"' + "".join(_BPFTOOL_ESCAPES.get(c, c) for c in text) + '"'


_BPFTOOL_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b",
                    "\\": "\\n", '"': '\\"'}


class _Refused(Exception):
    """A type btf_dumper_do_type() returns an error for: the entry's object ends."""


class BtfDumper:
    """btf_dumper.c's walk of a value through its BTF type into a JsonWriter."""

    def __init__(self, btf: Btf, writer: JsonWriter, *, plain_text: bool):
        self.btf = btf
        self.writer = writer
        self.plain_text = plain_text

    def dump(self, type_id: int, data: bytes) -> None:
        """btf_dumper_type(); raises _Refused (after writing what bpftool writes) for a
        type it cannot show."""
        self._type(type_id, 0, data, 0)

    def _type(self, type_id: int, bit_offset: int, data: bytes, depth: int) -> None:
        if depth > 64:
            raise DecodeError("BTF value nested too deep")
        t = self.btf.type(type_id)
        kind = t.kind if t is not None else Kind.UNKN
        w = self.writer
        if t is None or kind == Kind.UNKN:
            w.printf("(unknown)")
        elif kind == Kind.INT:
            self._int(t.encoding, t.bits_offset, t.nr_bits, bit_offset, data)
        elif kind in (Kind.STRUCT, Kind.UNION):
            w.start_object()
            try:
                for m in t.members:
                    w.name(m.name)
                    at = data[m.bit_offset // 8:]
                    if m.bitfield_size:
                        self._bitfield(m.bitfield_size, m.bit_offset % 8, at)
                    else:
                        self._type(m.type, m.bit_offset % 8, at, depth + 1)
            finally:
                w.end_object()
        elif kind == Kind.ARRAY:
            self._array(t.elem_type, t.nelems, data, depth)
        elif kind == Kind.ENUM:
            value = int.from_bytes(_padded(data, t.size), "little", signed=True) \
                if t.size in (1, 2, 4, 8) else None
            if value is None:
                raise _Refused
            # btf_enum's val is an __s32, compared with the value read signed
            names = [e.name for e in t.enumerators if _s32(e.value) == value]
            w.string(names[0]) if names else w.printf(str(value))
        elif kind == Kind.ENUM64:
            value = int.from_bytes(_padded(data, 8), "little")
            names = [e.name for e in t.enumerators if e.value % (1 << 64) == value]
            # jsonw_int() of the __u64: printed as an int64_t
            w.string(names[0]) if names else w.printf(str(_signed(value, 64)))
        elif kind == Kind.PTR:
            value = int.from_bytes(_padded(data, 8), "little")
            if self.plain_text:
                w.printf(f"0x{value:x}" if value else "(nil)")  # glibc's %p
            else:
                w.printf(str(value))
        elif kind == Kind.FWD:
            w.printf("(fwd-kind-invalid)")
            raise _Refused
        elif kind in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT):
            resolved = self._resolve(type_id)
            self._type(resolved, bit_offset, data, depth + 1)
        elif kind == Kind.VAR:
            w.start_object()
            try:
                w.name(t.name)
                self._type(t.ref, bit_offset, data, depth + 1)
            finally:
                w.end_object()
        elif kind == Kind.DATASEC:
            w.start_object()
            try:
                w.name(t.name)
                w.start_array()
                try:
                    for info in t.secinfos:
                        self._type(info.type, 0, data[info.offset:], depth + 1)
                finally:
                    w.end_array()
            finally:
                w.end_object()
        else:
            w.printf("(unsupported-kind")
            raise _Refused

    def _resolve(self, type_id: int) -> int:
        """libbpf btf__resolve_type(): past modifiers, typedefs and vars."""
        for _ in range(32):
            t = self.btf.type(type_id)
            if t is None or not (t.kind in MODIFIER_KINDS or t.kind == Kind.VAR):
                return type_id
            type_id = t.ref
        raise _Refused

    def _int(self, encoding: int, int_offset: int, nr_bits: int, bit_offset: int,
             data: bytes) -> None:
        """btf_dumper_int()."""
        w = self.writer
        if bit_offset or int_offset or nr_bits % 8:
            total = bit_offset + int_offset
            self._bitfield(nr_bits, total % 8, data[total // 8:])
            return
        if nr_bits == 128:
            self._int128(int.from_bytes(_padded(data, 16), "little"))
            return
        if encoding == 0 or encoding == INT_SIGNED:
            if nr_bits not in (8, 16, 32, 64):
                self._bitfield(nr_bits, bit_offset, data)
                return
            w.printf(str(int.from_bytes(_padded(data, nr_bits // 8), "little",
                                        signed=encoding == INT_SIGNED)))
        elif encoding == INT_CHAR:
            c = data[0] if data else 0
            if 0x20 <= c < 0x7F:  # isprint() in the C locale
                w.printf(f'"{self._char(chr(c))}"')
            else:
                w.printf(f"0x{c:x}" if self.plain_text else f'"\\u00{c:02x}"')
        elif encoding == INT_BOOL:
            w.printf("true" if data[:1] != b"\0" else "false")
        else:
            raise _Refused

    def _char(self, c: str) -> str:
        """A printable char inside jsonw_printf("\"%c\""): not escaped by bpftool; a
        Python value gets it escaped."""
        return c if self.writer.bpftool_escapes else json.dumps(c)[1:-1]

    def _bitfield(self, nr_bits: int, bit_offset: int, data: bytes) -> None:
        """btf_dumper_bitfield(): the bits as a hex number (a string in JSON mode)."""
        nbytes = (bit_offset + nr_bits + 7) // 8
        raw = int.from_bytes(_padded(data, nbytes)[:16], "little")
        self._int128((raw >> bit_offset) & ((1 << nr_bits) - 1))

    def _int128(self, value: int) -> None:
        """btf_int128_print()."""
        text = f"0x{value:x}"
        self.writer.printf(text if self.plain_text else f'"{text}"')

    def _array(self, elem_type: int, count: int, data: bytes, depth: int) -> None:
        """btf_dumper_array(): a char array holding a C string as a string."""
        if _is_c_string(self.btf, elem_type, count, data):
            self.writer.string(data[:data.index(0)].decode("ascii"))
            return
        try:
            size = self.btf.type_size(elem_type)
        except DecodeError as e:
            raise _Refused from e
        self.writer.start_array()
        try:
            for i in range(count):
                self._type(elem_type, 0, data[i * size:(i + 1) * size], depth + 1)
        finally:
            self.writer.end_array()


def _is_c_string(btf: Btf, elem_type: int, count: int, data: bytes) -> bool:
    """btf_dumper.c is_str_array(): elements of a 1-byte int (past const/volatile, not
    typedefs) that is a char, and a NUL within the array after printable bytes only."""
    if not count:
        return False
    t = btf.type(elem_type)
    while t is not None and t.kind in (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                                       Kind.TYPE_TAG):
        t = btf.type(t.ref)
    if t is None or t.kind != Kind.INT or t.size != 1:
        return False
    if not t.encoding & INT_CHAR and t.name != "char":
        return False
    for b in _padded(data, count)[:count]:
        if b == 0:
            return True
        if b <= 0x1F or b >= 0x7F:
            return False
    return False


def _padded(data: bytes, size: int) -> bytes:
    return data[:size].ljust(size, b"\0")


def _s32(value: int) -> int:
    return _signed(value % (1 << 32), 32)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value
