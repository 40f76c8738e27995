"""Decoded struct fields: the records ``decode_bpf_attr`` and ``decode_perf_event_attr``
return, the text of one value by its role, and the one-line form.

A struct is decoded through a *view*: the fields (with how to print each) that apply
to this call, union aliases already chosen. ``decode_view`` reads them from the bytes
the caller passed, stopping at the size it passed: the kernel zero-fills the rest, so
a field the size cuts in the middle is shown with its partial bytes zero-extended and
named in ``cut``; non-zero bytes past the last field of the view are kept in
``trailing`` (the kernel answers E2BIG or EINVAL for them, or ignores them inside a
union member this call does not use).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from bpfreplay.errors import DecodeError
from bpfreplay.uapi.layout import Field


@dataclass(frozen=True, slots=True)
class FieldValue:
    name: str  # "prog_type", "kprobe_multi.syms"
    offset: int  # bytes from the start of the struct
    size: int  # bytes (for a bitfield: its storage unit)
    raw: int | bytes  # the unsigned value; the bytes of a char[] field
    text: str  # "BPF_PROG_TYPE_TRACEPOINT", "BPF_F_MMAPABLE|0x100", '"minimal_.rodata"'
    # "enum" "flags" "fd" "pointer" "size" "count" "string" "int" "id", "bytes" (hex), and
    # "bit" for a one-bit (or few-bit) perf_event_attr bitfield.
    role: str


@dataclass(frozen=True, slots=True)
class DecodedAttr:
    struct: str  # "prog_load", "perf_event_attr", "bpf_common_attr"
    size: int  # the size the caller passed
    fields: tuple[FieldValue, ...]  # in offset order, only those inside ``size``
    cut: tuple[str, ...]  # fields the size cuts in the middle (decoded from their part)
    trailing: bytes  # bytes from ``trailing_offset`` to ``size`` when any is non-zero
    trailing_offset: int = 0  # where ``trailing`` starts: the end of the known fields
    notes: tuple[str, ...] = ()  # what else a reader should know (bytes missing ...)

    def field(self, name: str) -> FieldValue | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def value(self, name: str, default: int = 0) -> int:
        """The integer value of field ``name``, ``default`` when it is not decoded."""
        f = self.field(name)
        return f.raw if f is not None and isinstance(f.raw, int) else default


class Spec(NamedTuple):
    """How to print one field.

    ``role`` is the FieldValue role. ``table`` names the names: ``enum:NAME`` a kernel
    enum (bpfreplay.uapi.enum_values), ``flags:NAME`` / ``values:NAME`` a set in
    bpfreplay.uapi.defines. ``style``: ``unset0`` (zero means "not set": shown as 0,
    not as the enum's zero name), ``hex``, ``kver`` (KERNEL_VERSION), ``at`` (AT_FDCWD),
    ``numa`` (NUMA_NO_NODE), ``update`` (map update mode + flags).
    """

    role: str
    table: str = ""
    style: str = ""


ENUM, FLAGS, FD, POINTER = "enum", "flags", "fd", "pointer"
SIZE, COUNT, STRING, INT, ID, BIT = "size", "count", "string", "int", "id", "bit"
HEX_BYTES = "bytes"  # a byte array shown as hex digits in memory order (a program's tag)


class ViewField(NamedTuple):
    field: Field
    spec: Spec
    annotate: str = ""  # a comment appended to the text: " /* syscalls:sys_enter_write */"


# --- names -------------------------------------------------------------------------

def names_of(table: str) -> Mapping[str, int]:
    """Name -> value for a Spec table (``enum:bpf_prog_type``, ``flags:prog_flags``)."""
    kind, _, name = table.partition(":")
    if kind == "enum":
        from bpfreplay.uapi import enum_values

        return enum_values(name)
    from bpfreplay.uapi import defines

    if kind == "flags":
        return defines.FLAG_SETS.get(name, {})
    if kind == "values":
        return defines.VALUE_SETS.get(name, {})
    return {}


def value_name(table: str, value: int) -> str | None:
    if table.startswith("enum:"):
        from bpfreplay.uapi import enum_name

        return enum_name(table[5:], value)
    for name, v in names_of(table).items():
        if v == value:
            return name
    return None


def flags_text(table: str, value: int) -> str:
    """``BPF_F_MMAPABLE|BPF_F_RDONLY_PROG|0x100000``: named bits in table order, then the
    rest in hex; ``0`` for no bits."""
    if value == 0:
        return "0"
    parts = []
    rest = value
    for name, bit in names_of(table).items():
        if bit and bit & (bit - 1) == 0 and rest & bit:  # single bits only
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def map_update_flags_text(value: int) -> str:
    """BPF_MAP_UPDATE_ELEM flags: the low two bits are a mode (BPF_ANY, BPF_NOEXIST,
    BPF_EXIST), the others flags; with BPF_F_CPU the upper 32 bits are a CPU number."""
    mode = value & 3
    rest = value & ~3
    cpu = rest >> 32 if rest & 8 else None  # BPF_F_CPU
    if cpu is not None:
        rest &= 0xFFFFFFFF
    parts = []
    if mode or not rest:
        parts.append(value_name("values:map_update_mode", mode) or str(mode))
    if rest:
        parts.append(flags_text("flags:map_elem_flags", rest))
    if cpu is not None:
        parts.append(f"{cpu}<<32")
    return "|".join(parts)


def kernel_version_text(value: int) -> str:
    if value == 0:
        return "0"
    return f"KERNEL_VERSION({value >> 16}, {(value >> 8) & 0xFF}, {value & 0xFF})"


def c_string(raw: bytes) -> str:
    """A char[] field as C text: up to the first NUL, quoted and escaped; ``...`` after
    the quote when the field has no NUL (the kernel refuses such names)."""
    end = raw.find(b"\0")
    body = raw if end < 0 else raw[:end]
    out = []
    for byte in body:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"' + ("..." if end < 0 else "")


def _signed(value: int, size: int) -> int:
    bits = size * 8
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def value_text(spec: Spec, field: Field, value: int) -> str:
    """The text of an integer field by its Spec."""
    role, table, style = spec
    if role == FLAGS:
        if style == "update":
            return map_update_flags_text(value)
        return flags_text(table, value)
    if role == ENUM:
        if value == 0 and style == "unset0":
            return "0"
        name = value_name(table, value) if table else None
        return name if name is not None else str(value)
    if role == FD:
        fd = _signed(value, min(field.size, 4))
        if style == "at" and fd == -100:
            return "AT_FDCWD"
        return str(fd)
    if role == POINTER:
        return "NULL" if value == 0 else hex(value)
    if style == "kver":
        return kernel_version_text(value)
    if style == "hex":
        return hex(value) if value else "0"
    if style == "numa" and value == 0xFFFFFFFF:
        return "-1 /* NUMA_NO_NODE */"
    if field.signed and not field.bit_size:
        return str(_signed(value, field.size))
    return str(value)


def default_spec(field: Field) -> Spec:
    """The Spec of a field no table names: a string, an fd, or a number."""
    if field.type.startswith("char["):
        return Spec(STRING)
    last = field.name.rsplit(".", 1)[-1]
    if last == "fd" or last.endswith("_fd"):
        return Spec(FD)
    return Spec(INT)


# --- reading -----------------------------------------------------------------------

def read_uint(data: bytes, offset: int, size: int) -> int:
    """The little-endian unsigned integer at ``offset`` (bytes past the data read as 0,
    as the kernel zero-fills what the caller did not pass)."""
    return int.from_bytes(data[offset:offset + size].ljust(size, b"\0"), "little")


def peek(data: bytes, field: Field | None) -> int:
    """A field's value for choosing a view (0 when the field or its bytes are absent)."""
    if field is None:
        return 0
    value = read_uint(data, field.offset, field.size)
    if field.bit_size:
        value = value >> field.bit_offset & ((1 << field.bit_size) - 1)
    return value


def as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise DecodeError(f"decoding {what}: expected bytes, got {type(data).__name__}")


def decode_view(struct: str, size: int, data: bytes, view: Iterable[ViewField],
                notes: tuple[str, ...] = ()) -> DecodedAttr:
    """Decode ``view`` from ``data`` as far as ``size`` (and the data) reach."""
    if size < 0:
        raise DecodeError(f"decoding {struct}: negative size {size}")
    have = min(size, len(data))
    if len(data) < size:
        notes += (f"only {len(data)} of the {size} bytes were captured: fields past byte "
                  f"{len(data)} are not shown",)
    values: list[FieldValue] = []
    cut: list[str] = []
    known_end = 0
    ordered = sorted(view, key=lambda v: (v.field.offset, v.field.bit_offset))
    for vf in ordered:
        f, spec = vf.field, vf.spec
        if f.bit_size:
            needed = (f.bit_offset + f.bit_size + 7) // 8  # bytes of the unit holding it
        else:
            needed = f.size
        if f.offset >= have:
            continue
        partial = f.offset + needed > have
        known_end = max(known_end, min(f.offset + needed, have) if partial else f.end)
        chunk = data[f.offset:min(f.offset + f.size, have)]
        if spec.role == STRING:
            raw: int | bytes = chunk
            text = c_string(chunk)
        elif spec.role == HEX_BYTES:
            raw, text = chunk, chunk.hex()
        else:
            value = int.from_bytes(chunk.ljust(f.size, b"\0"), "little")
            if f.bit_size:
                value = value >> f.bit_offset & ((1 << f.bit_size) - 1)
            raw = value
            text = value_text(spec, f, value) + vf.annotate
        if partial:
            cut.append(f.name)
            text += f" /* partial: {have - f.offset} of {needed} bytes */"
        values.append(FieldValue(f.name, f.offset, f.size, raw, text, spec.role))
    notes += _padding_notes(data[:known_end], values)
    tail = data[known_end:have]
    trailing = tail if any(tail) else b""
    return DecodedAttr(struct, size, tuple(values), tuple(cut), trailing, known_end, notes)


def _padding_notes(data: bytes, values: list[FieldValue]) -> tuple[str, ...]:
    """Non-zero bytes between the fields (padding, or a union member of another size
    than the one this call uses): the kernel ignores them, a reader should see them."""
    covered = bytearray(len(data))
    for f in values:
        covered[f.offset:f.offset + f.size] = b"\1" * len(covered[f.offset:f.offset + f.size])
    notes = []
    start = None
    for offset in range(len(data) + 1):
        loose = offset < len(data) and not covered[offset]
        if loose and start is None:
            start = offset
        elif not loose and start is not None:
            if any(data[start:offset]):
                notes.append(f"bytes {start}..{offset - 1} belong to no field of this call "
                             f"and are not zero: 0x{data[start:offset].hex()}")
            start = None
    return tuple(notes)


# --- one line ----------------------------------------------------------------------

def _trailing_text(decoded: DecodedAttr) -> str:
    tail = decoded.trailing
    first = next(i for i, b in enumerate(tail) if b)
    last = len(tail) - next(i for i, b in enumerate(reversed(tail)) if b) - 1
    start = decoded.trailing_offset + first
    shown = tail[first:last + 1]
    more = "" if len(shown) <= 64 else "..."
    return (f"extra_data=0x{shown[:64].hex()}{more} /* bytes {start}..{start + len(shown) - 1}"
            f", past the known fields (which end at byte {decoded.trailing_offset}) */")


def format_attr(decoded: DecodedAttr) -> str:
    """``{prog_type=BPF_PROG_TYPE_TRACEPOINT, insn_cnt=13, ...}``: every field, except
    perf_event_attr bitfields that are 0 (the set ones say all there is); the notes
    follow as comments."""
    parts = [f"{f.name}={f.text}" for f in decoded.fields
             if not (f.role == BIT and f.raw == 0)]
    if decoded.trailing:
        parts.append(_trailing_text(decoded))
    notes = "".join(f" /* {note} */" for note in decoded.notes)
    return "{" + ", ".join(parts) + "}" + notes
