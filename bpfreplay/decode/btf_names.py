"""The name of a BTF type by id without parsing the whole blob: one pass over the type
section records where each type starts (vmlinux has some 130,000 types; decoding
them all for the few a program's kfunc calls name would cost seconds), a name is read
when asked. Used for kfunc calls (``call bpf_task_acquire#N``), whose BTF id is into
the kernel's BTF.

Pure: bytes in, names out; a blob that is not BTF names nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from bpfreplay.decode.btf import Kind, parse_header
from bpfreplay.errors import DecodeError

# Bytes after the 12-byte struct btf_type, per kind: a fixed part and a per-vlen part.
_EXTRA = {Kind.INT: (4, 0), Kind.ARRAY: (12, 0), Kind.STRUCT: (0, 12), Kind.UNION: (0, 12),
          Kind.ENUM: (0, 8), Kind.FUNC_PROTO: (0, 8), Kind.VAR: (4, 0),
          Kind.DATASEC: (0, 12), Kind.DECL_TAG: (4, 0), Kind.ENUM64: (0, 12)}
_TYPE = struct.Struct("<II")


def type_namer(blob: bytes) -> Callable[[int], str | None]:
    """``name(type_id)``: the name of type ``type_id`` of this (base) BTF, None for an id
    it does not have or an anonymous type."""
    try:
        header = parse_header(blob)
    except DecodeError:
        return lambda type_id: None
    pos = header.hdr_len + header.type_off
    end = pos + header.type_len
    strings_start = header.hdr_len + header.str_off
    strings_end = strings_start + header.str_len
    name_offsets = [0]  # by type id; id 0 is void
    unpack, extra = _TYPE.unpack_from, _EXTRA
    while pos + 12 <= end:
        name_off, info = unpack(blob, pos)
        name_offsets.append(name_off)
        fixed, per = extra.get((info >> 24) & 0x1F, (0, 0))
        pos += 12 + fixed + per * (info & 0xFFFF)

    def name(type_id: int) -> str | None:
        if not 0 < type_id < len(name_offsets):
            return None
        start = strings_start + name_offsets[type_id]
        if not strings_start < start < strings_end:
            return None
        stop = blob.find(b"\0", start, strings_end)
        return blob[start:stop if stop >= 0 else strings_end].decode(errors="replace") or None

    return name
