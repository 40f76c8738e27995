"""Bytes of a map key or value shown through their BTF type, C-like:
``{my_pid = 1234}`` for a .bss value, ``"BPF triggered from PID %d.\\n"`` for a char
array. Pure; anything that does not fit the type falls back to hex."""

from __future__ import annotations

import struct

from bpfreplay.decode.btf import Btf, Kind
from bpfreplay.errors import DecodeError

_MAX_ITEMS = 64


def format_btf_value(btf: Btf, type_id: int, data: bytes) -> str:
    """``data`` as a value of BTF type ``type_id``; DecodeError if the type is unusable."""
    return _format(btf, type_id, data, depth=0)


def _format(btf: Btf, type_id: int, data: bytes, depth: int) -> str:
    if depth > 16:
        raise DecodeError("BTF value nested too deep")
    t = btf.skip_modifiers(type_id)
    if t is None:
        raise DecodeError(f"BTF type {type_id} has no value")
    if t.kind == Kind.INT:
        if t.encoding & 4 and t.size == 1:  # BOOL
            return "true" if data[:1] != b"\0" else "false"
        value = int.from_bytes(data[: t.size], "little", signed=bool(t.encoding & 1))
        if t.encoding & 2 and 32 <= value < 127:  # CHAR
            return repr(chr(value))
        return str(value)
    if t.kind == Kind.PTR:
        return hex(int.from_bytes(data[:8], "little"))
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        value = int.from_bytes(data[: t.size], "little", signed=t.kind_flag)
        for e in t.enumerators:
            if e.value == value:
                return e.name
        return str(value)
    if t.kind == Kind.FLOAT:
        fmt = {4: "<f", 8: "<d"}.get(t.size)
        return repr(struct.unpack(fmt, data[: t.size])[0]) if fmt else data[: t.size].hex()
    if t.kind == Kind.ARRAY:
        return _format_array(btf, t.elem_type, t.nelems, data, depth)
    if t.kind in (Kind.STRUCT, Kind.UNION):
        parts = []
        for m in t.members[:_MAX_ITEMS]:
            start = m.bit_offset // 8
            if m.bitfield_size:
                raw = int.from_bytes(data[start:start + 8].ljust(8, b"\0"), "little")
                value = (raw >> (m.bit_offset % 8)) & ((1 << m.bitfield_size) - 1)
                parts.append(f"{m.name or '(anon)'} = {value}")
                continue
            size = btf.type_size(m.type)
            parts.append(f"{m.name or '(anon)'} = "
                         f"{_format(btf, m.type, data[start:start + size], depth + 1)}")
        return "{" + ", ".join(parts) + "}"
    if t.kind == Kind.DATASEC:
        parts = []
        for info in t.secinfos[:_MAX_ITEMS]:
            var = btf.type(info.type)
            name = var.name if var is not None else f"type {info.type}"
            value = data[info.offset:info.offset + info.size]
            text = _format(btf, var.ref if var else info.type, value, depth + 1)
            parts.append(f"{name} = {text}")
        return "{" + ", ".join(parts) + "}"
    if t.kind == Kind.VAR:
        return _format(btf, t.ref, data, depth + 1)
    raise DecodeError(f"BTF type {type_id} ({t.kind_name}) has no value")


def _format_array(btf: Btf, elem_type: int, count: int, data: bytes, depth: int) -> str:
    elem = btf.skip_modifiers(elem_type)
    if elem is not None and elem.kind == Kind.INT and elem.size == 1:
        return _c_text(data[:count])
    size = btf.type_size(elem_type)
    items = [_format(btf, elem_type, data[i * size:(i + 1) * size], depth + 1)
             for i in range(min(count, _MAX_ITEMS))]
    more = ", ..." if count > _MAX_ITEMS else ""
    return "[" + ", ".join(items) + more + "]"


_ESCAPES = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}


def _c_text(raw: bytes) -> str:
    """A char array as a C string literal, up to its first NUL."""
    end = raw.find(b"\0")
    body = raw if end < 0 else raw[:end]
    return '"' + "".join(_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
                         for b in body) + '"'
